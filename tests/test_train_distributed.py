"""The trainer under 2 gloo processes: the same losses and final weights as one process on the global batch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from train_support import PairSet, synthetic_factory, tiny_config

from clipforge.loss.config import LossConfig
from clipforge.train.trainer import run_training

STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = [("contrastive", 1), ("contrastive", 2), ("sigmoid", 1)]  # plain, GradCache under no_sync, SigLIP ring


def _worker(rank: int, world_size: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from clipforge.dist.env import destroy_distributed

    try:
        for kind, accum in CASES:  # one process group for all cases: process start-up is the slow part
            run_dir = Path(root) / f"{kind}-{accum}"
            cfg = _config(run_dir, kind, accum)
            loader = synthetic_factory(PairSet(64), cfg.batch_size // world_size, rank=rank, world_size=world_size)
            result = run_training(cfg, loader_factory=loader)
            (run_dir / f"losses_{rank}.json").write_text(json.dumps(result.losses))
    finally:
        destroy_distributed()


def _config(run_dir: Path, loss_kind: str, accum: int):
    model = "test-vit"
    if loss_kind == "sigmoid":
        import dataclasses

        from clipforge.model.registry import get_config

        model = dataclasses.replace(get_config("test-vit"), init_logit_bias=-10.0, init_logit_scale=2.3)
    return tiny_config(run_dir, model=model, steps=STEPS, batch_size=16, loss=LossConfig(kind=loss_kind),
                       accum_freq=accum)


def test_distributed_two_gloo_ranks_match_one_process(tmp_path):
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, start_method="spawn")
    for kind, accum in CASES:
        name = f"{kind}-{accum}"
        single = run_training(_config(tmp_path / "single" / name, kind, accum),
                              loader_factory=synthetic_factory(PairSet(64), 16))
        ddp_dir = tmp_path / "ddp" / name
        losses = {int(k): v for k, v in json.loads((ddp_dir / "losses_0.json").read_text()).items()}
        other = {int(k): v for k, v in json.loads((ddp_dir / "losses_1.json").read_text()).items()}
        assert losses == other  # the logged loss is the mean over ranks, the same on both
        want = torch.tensor([single.losses[s] for s in range(1, STEPS + 1)])
        got = torch.tensor([losses[s] for s in range(1, STEPS + 1)])
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (name, got, want)
        ref = load_file(str(tmp_path / "single" / name / "final" / "model.safetensors"))
        out = load_file(str(ddp_dir / "final" / "model.safetensors"))
        for key in ref:  # the same updates: DDP's averaged gradients equal the single-process gradients
            assert torch.allclose(out[key], ref[key], rtol=1e-4, atol=1e-5), (name, key)
