"""Online distillation: a frozen teacher checkpoint run in the loop; 2 gloo ranks equal one process on the
concatenated batch (the teacher's features are gathered like the student's)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_reinforce import make_teacher
from train_support import tiny_config, write_png_pairs

from clipforge.data.config import DataConfig
from clipforge.errors import UserError
from clipforge.loss.config import LossConfig
from clipforge.train.trainer import run_training

STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(run_dir: Path, table: Path, teacher: Path):
    # A ViT student (no BatchNorm, so per-rank batches normalize like the whole batch) and an MCi teacher with
    # its own image size, normalization and tokenizer; random crops and silhouettes, random captions.
    data = DataConfig(train=str(table), caption_column="captions", workers=0, random_resized_crop=True,
                      crop_scale=(0.4, 1.0), silhouette=0.5)  # fmt: skip
    loss = LossConfig(kind="distill", teacher=str(teacher), distill_weight=0.7, contrastive_weight=0.5)
    return tiny_config(run_dir, steps=STEPS, batch_size=8, data=data, loss=loss)


def _worker(rank: int, world_size: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    from clipforge.dist.env import destroy_distributed

    try:
        cfg = _config(Path(root) / "ddp", Path(root) / "data" / "train.jsonl", Path(root) / "teacher")
        result = run_training(cfg)
        (Path(root) / "ddp" / f"losses_{rank}.json").write_text(json.dumps(result.losses))
    finally:
        destroy_distributed()


def test_two_gloo_ranks_match_one_process_on_the_concatenated_batch(tmp_path):
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    table = write_png_pairs(tmp_path / "data", 32, size=40)
    teacher = make_teacher(tmp_path / "teacher")
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    single = run_training(_config(tmp_path / "single", table, teacher))
    losses = {int(k): v for k, v in json.loads((tmp_path / "ddp" / "losses_0.json").read_text()).items()}
    assert losses == {int(k): v for k, v in json.loads((tmp_path / "ddp" / "losses_1.json").read_text()).items()}
    want = torch.tensor([single.losses[s] for s in range(1, STEPS + 1)])
    got = torch.tensor([losses[s] for s in range(1, STEPS + 1)])
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (got, want)
    ref = load_file(str(tmp_path / "single" / "final" / "model.safetensors"))
    out = load_file(str(tmp_path / "ddp" / "final" / "model.safetensors"))
    for key in ref:
        assert torch.allclose(out[key], ref[key], rtol=1e-4, atol=1e-5), key


def test_the_teacher_changes_the_loss_and_stays_frozen(tmp_path, one_thread):
    from safetensors.torch import load_file

    table = write_png_pairs(tmp_path / "data", 16, size=40)
    teacher = make_teacher(tmp_path / "teacher")
    before = load_file(str(teacher / "model.safetensors"))
    cfg = _config(tmp_path / "a", table, teacher)
    distilled = run_training(cfg)
    plain = run_training(tiny_config(tmp_path / "b", steps=STEPS, batch_size=8, data=cfg.data,
                                     loss=LossConfig(contrastive_weight=0.5)))  # fmt: skip
    assert distilled.losses[1] != plain.losses[1]
    after = load_file(str(teacher / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(UserError, match="not both"):
        run_training(tiny_config(tmp_path / "c", data=cfg.data,
                                 loss=LossConfig(kind="distill", teacher=str(teacher), teacher_features="x")))  # fmt: skip
    with pytest.raises(UserError, match="are set but loss.kind is"):
        run_training(tiny_config(tmp_path / "d", data=cfg.data, loss=LossConfig(teacher=str(teacher))))
