"""FSDP2 (parallel=fsdp) under 2 gloo processes on CPU: the losses and final weights of one process on the
global batch, and a run resumed from sharded checkpoints that computes the same losses as the whole run."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from train_support import PairSet, synthetic_factory, tiny_config

from clipforge.dist.env import destroy_distributed, init_distributed
from clipforge.train.config import CheckpointConfig
from clipforge.train.trainer import run_training

STEPS = 4


class Stop(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(run_dir: Path, **overrides):
    return tiny_config(run_dir, steps=STEPS, batch_size=16, parallel="fsdp",
                       checkpoint=CheckpointConfig(every_steps=2, keep_last=2), **overrides)  # fmt: skip


def _stop_at(step: int):
    def on_step(s, metrics):
        if s == step:
            raise Stop

    return on_step


def _worker(rank: int, world_size: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    def loader(cfg):
        return synthetic_factory(PairSet(64), cfg.batch_size // world_size, rank=rank, world_size=world_size)

    try:
        init_distributed("cpu")  # one process group for all runs: process start-up is the slow part
        full = _config(Path(root) / "full")
        result = run_training(full, loader_factory=loader(full))
        (Path(root) / "full" / f"losses_{rank}.json").write_text(json.dumps(result.losses))
        cut = _config(Path(root) / "cut")
        with contextlib.suppress(Stop):  # dies after step 2's checkpoint
            run_training(cut, loader_factory=loader(cut), on_step=_stop_at(3))
        resumed = run_training(cut, loader_factory=loader(cut), resume="latest")
        (Path(root) / "cut" / f"losses_{rank}.json").write_text(json.dumps(resumed.losses))
    finally:
        destroy_distributed()


def test_fsdp_two_gloo_ranks_match_one_process_and_resume_exactly(tmp_path):
    torch.set_num_threads(1)
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path / "fsdp")), nprocs=2, start_method="spawn")
    single = run_training(tiny_config(tmp_path / "single", steps=STEPS, batch_size=16),
                          loader_factory=synthetic_factory(PairSet(64), 16))  # fmt: skip
    full_dir = tmp_path / "fsdp" / "full"
    losses = [{int(k): v for k, v in json.loads((full_dir / f"losses_{r}.json").read_text()).items()} for r in (0, 1)]
    assert losses[0] == losses[1]  # the logged loss is the mean over ranks
    want = torch.tensor([single.losses[s] for s in range(1, STEPS + 1)])
    got = torch.tensor([losses[0][s] for s in range(1, STEPS + 1)])
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (got, want)
    ref = load_file(str(tmp_path / "single" / "final" / "model.safetensors"))
    out = load_file(str(full_dir / "final" / "model.safetensors"))  # gathered from the shards
    assert set(out) == set(ref)
    for key in ref:
        assert torch.allclose(out[key], ref[key], rtol=1e-4, atol=1e-5), key
    shards = sorted(p.name for p in (full_dir / "checkpoints").iterdir())
    assert shards == ["step_00000002.dcp", "step_00000002.pt", "step_00000004.dcp", "step_00000004.pt"]
    assert len(list((full_dir / "checkpoints" / "step_00000004.dcp").glob("*.distcp"))) == 2  # one file per rank
    resumed = {int(k): v for k, v in json.loads((tmp_path / "fsdp" / "cut" / "losses_0.json").read_text()).items()}
    assert sorted(resumed) == [3, 4]  # restarted from the step-2 shards
    assert all(resumed[s] == losses[0][s] for s in (3, 4)), (resumed, losses[0])  # bit for bit
