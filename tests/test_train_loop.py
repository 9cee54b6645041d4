"""The training loop: overfitting, NaN/inf handling, checkpoints, logs, evaluation hook, final export."""

from __future__ import annotations

import json
import math

import pytest
import torch
from train_support import PairSet, synthetic_factory, tiny_config

from clipforge.dist.env import World
from clipforge.train.config import CheckpointConfig, LogConfig, OptimConfig
from clipforge.train.trainer import Trainer, TrainingDiverged, run_training


def test_tiny_model_overfits_64_pairs(tmp_path):
    """64 random pairs in one batch of 64: chance level is ln 64 = 4.16 (each image must pick its text among 64).

    A model that has memorized the pairs puts almost all probability on the right partner; the bar of 0.1 means
    a mean probability of about exp(-0.1) = 0.90 on the right text and image, in both directions, which
    random features or a model that learned only the temperature cannot reach. (Observed: about 0.01 at
    step 30; 0.98 at step 10.)
    """
    torch.set_num_threads(1)
    data = PairSet(64)
    cfg = tiny_config(tmp_path, steps=30, batch_size=64, optim=OptimConfig(lr=3e-3, warmup_steps=5, weight_decay=0.0))
    result = run_training(cfg, loader_factory=synthetic_factory(data, 64))
    assert result.losses[1] > math.log(64) - 1.0  # starts near chance
    assert result.losses[30] < 0.1, result.losses


def _nan_on(data: PairSet, batch_size: int, bad_steps: set[int]):
    """A loader whose batches at the given (1-based, global) steps carry NaN pixels."""
    base = synthetic_factory(data, batch_size)
    counter = {"step": 0}

    class Loader:
        def __init__(self, inner):
            self.inner = inner

        def __len__(self):
            return len(self.inner)

        def __iter__(self):
            for batch in self.inner:
                counter["step"] += 1
                if counter["step"] in bad_steps:
                    batch.pixels = torch.full_like(batch.pixels, float("nan"))
                yield batch

    return lambda epoch, skip: Loader(base(epoch, skip))


def test_nan_step_is_skipped_without_an_update(tmp_path):
    data = PairSet(64)
    cfg = tiny_config(tmp_path, steps=6)
    snapshots = {}
    trainer = None

    def on_step(step, metrics):
        snapshots[step] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    trainer = Trainer(cfg, World(), loader_factory=_nan_on(data, 16, {3}), on_step=on_step)
    result = trainer.fit()
    assert result.skipped_steps == 1 and math.isnan(result.losses[3])
    assert all(torch.equal(snapshots[3][k], snapshots[2][k]) for k in snapshots[2])  # step 3 changed nothing
    assert not torch.equal(snapshots[4]["logit_scale"], snapshots[3]["logit_scale"])  # step 4 trained again
    assert all(math.isfinite(result.losses[s]) for s in (1, 2, 4, 5, 6))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["skipped_steps"] == 1


def test_too_many_bad_steps_in_a_row_abort_with_a_clear_message(tmp_path):
    data = PairSet(64)
    cfg = tiny_config(tmp_path, steps=8, max_bad_steps=3)
    with pytest.raises(TrainingDiverged, match="NaN/inf 3 steps in a row"):
        run_training(cfg, loader_factory=_nan_on(data, 16, {2, 3, 4}))
    ok = tiny_config(tmp_path / "ok", steps=8, max_bad_steps=3)
    assert run_training(ok, loader_factory=_nan_on(data, 16, {2, 3, 5, 6})).skipped_steps == 4  # never 3 in a row


def test_checkpoints_keep_last_k_and_logs(tmp_path):
    data = PairSet(64)
    cfg = tiny_config(tmp_path, steps=8, checkpoint=CheckpointConfig(every_steps=2, keep_last=2),
                      log=LogConfig(every_steps=4, tensorboard=True, progress=False))
    run_training(cfg, loader_factory=synthetic_factory(data, 16))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000006.pt", "step_00000008.pt"]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [4, 8]
    assert {"loss", "lr", "logit_scale", "samples_per_s", "data_wait_pct", "mfu"} <= set(lines[0])
    assert lines[0]["mfu"] is None  # CPU without a given peak: n/a
    assert (tmp_path / "config.yaml").is_file()
    assert any((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_logit_scale_is_clamped_at_100(tmp_path):
    data = PairSet(32)
    cfg = tiny_config(tmp_path, steps=3)
    trainer = Trainer(cfg, World(), loader_factory=synthetic_factory(data, 16))
    with torch.no_grad():  # above the cap: the forward's clamp gives it no gradient, only the step's clamp moves it
        trainer.model.logit_scale.fill_(5.0)
    trainer.fit()
    assert float(trainer.model.logit_scale.detach()) <= math.log(100.0)


def test_eval_hook_is_called_every_n_steps_with_a_pipeline(tmp_path):
    data = PairSet(32)
    calls = []

    def evaluate(pipeline):
        calls.append(pipeline.model.training)
        with torch.no_grad():
            feats = pipeline.model.encode_image(data.pixels[:2])
        return {"dummy.top1": float(feats.shape[0]) / 4}

    cfg = tiny_config(tmp_path, steps=6, eval_every=3)
    run_training(cfg, loader_factory=synthetic_factory(data, 16), eval_fn=evaluate)
    assert calls == [False, False]  # steps 3 and 6, model in eval mode
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "eval.dummy.top1" in r] == [3, 6]
