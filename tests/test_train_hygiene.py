"""What a killed run leaves behind is cleaned when the next one starts: partial checkpoint files, and
metrics.jsonl lines of the steps a resume computes again."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from search_helpers import make_checkpoint, make_collection
from train_support import PairSet, synthetic_factory, tiny_config

import clipforge
from clipforge.data.sources import open_source
from clipforge.index.embed import embed_collection
from clipforge.index.manifest import checkpoint_fingerprint
from clipforge.train.config import CheckpointConfig
from clipforge.train.progress import truncate_metrics
from clipforge.train.trainer import run_training


class Stop(Exception):
    """Raised from the step callback: the run dies like a killed process, after its last checkpoint."""


def _steps(path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if "loss" in json.loads(line)]


def test_resume_cleans_partial_saves_and_repeated_metrics(tmp_path, caplog):
    torch.set_num_threads(1)
    data = PairSet(48)
    cfg = tiny_config(tmp_path / "run", steps=8, checkpoint=CheckpointConfig(every_steps=3, keep_last=2))

    def stop_at_5(step: int, metrics: dict) -> None:
        if step == 5:
            raise Stop

    with pytest.raises(Stop):  # dies 2 steps after the step-3 save: steps 4 and 5 are logged, then redone
        run_training(cfg, loader_factory=synthetic_factory(data, 16), on_step=stop_at_5)
    ckpts = tmp_path / "run" / "checkpoints"
    # What kill -9 in the middle of torch.save leaves (atomic_path's temp name), and a line cut short.
    stale = ckpts / ".step_00000006.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 1000)
    with (tmp_path / "run" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 6, "lo')
    with caplog.at_level(logging.WARNING):
        run_training(cfg, loader_factory=synthetic_factory(data, 16), resume="latest")
    assert not stale.exists() and "left by a save that was interrupted" in caplog.text
    assert not list(ckpts.glob(".*.tmp"))
    assert _steps(tmp_path / "run" / "metrics.jsonl") == list(range(1, 9))  # each step once, in order


def test_truncate_metrics_keeps_steps_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in (1, 2, 3, 4, 5)] + ["not json", '{"no_step": 1}']
    path.write_text("\n".join(lines) + "\n")
    assert truncate_metrics(path, 3) == 4
    assert path.read_text().splitlines() == lines[:3]
    assert truncate_metrics(path, 3) == 0  # nothing more to drop: the file is not rewritten
    assert truncate_metrics(tmp_path / "missing.jsonl", 3) == 0


def test_embed_cleans_stale_temp_files(tmp_path, caplog):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    col = make_collection(tmp_path / "col", 3)
    out = tmp_path / "emb"
    (out / "parts").mkdir(parents=True)
    stale = [out / ".image_emb.npy.x1.tmp", out / "parts" / ".rank000-1-00000.parquet.x2.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 100)
    with caplog.at_level(logging.WARNING):
        embed_collection(clipforge.load(ckpt), open_source(col), out, fingerprint=checkpoint_fingerprint(ckpt),
                         workers=0, progress=False)
    assert not any(p.exists() for p in stale) and "killed while saving" in caplog.text
    assert json.loads((out / "embed.json").read_text())["count"] == 3
