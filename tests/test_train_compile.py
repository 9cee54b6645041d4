"""torch.compile and bf16 autocast training on CPU, against the eager fp32 run; fused AdamW where supported.

The compile test pays one inductor compile of a tiny CLIP's forward and backward (tens of seconds on a
2-core machine, longer when it is loaded), so it is the only one here and is marked slow.
"""

from __future__ import annotations

import pytest
import torch
from train_support import PairSet, synthetic_factory, tiny_config

from clipforge.train.optim import build_optimizer
from clipforge.train.trainer import run_training

STEPS = 3


def _losses(tmp_path, name, **overrides):
    cfg = tiny_config(tmp_path / name, steps=STEPS, batch_size=8, **overrides)
    return run_training(cfg, loader_factory=synthetic_factory(PairSet(32), 8)).losses


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path, one_thread):
    eager = _losses(tmp_path, "eager")
    compiled = _losses(tmp_path, "compiled", compile=True)
    assert sorted(compiled) == sorted(eager) == list(range(1, STEPS + 1))
    for step in eager:  # inductor fuses and reorders float ops: equal up to rounding, step after step
        assert compiled[step] == pytest.approx(eager[step], rel=1e-4, abs=1e-5), (step, compiled, eager)
    print(f"\ncompiled vs eager losses: {compiled} vs {eager}")


def test_bf16_autocast_training_on_cpu_tracks_fp32(tmp_path, one_thread):
    fp32 = _losses(tmp_path, "fp32")
    bf16 = _losses(tmp_path, "bf16", precision="bf16")
    for step in fp32:  # bf16 matmuls (8 mantissa bits), fp32 loss and weights: close, not equal
        assert bf16[step] == pytest.approx(fp32[step], rel=2e-2), (step, bf16, fp32)
    assert bf16 != fp32  # autocast really ran in bf16


def test_adamw_is_fused_on_cpu_float_params():  # CUDA takes the same path; no device here to check it
    model = torch.nn.Linear(4, 4)
    assert build_optimizer(model, tiny_config("unused").optim).defaults["fused"] is True
