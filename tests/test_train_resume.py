"""A run stopped part-way and resumed with --resume latest computes the same loss at every later step.

"Same" is exact equality on CPU: model, optimizer, schedule position, data position (mid-epoch, with
multi-worker loading) and every RNG state are restored.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from train_support import PairSet, synthetic_factory, tiny_config, write_png_pairs

from clipforge.data.config import DataConfig
from clipforge.model.registry import get_config
from clipforge.train.config import CheckpointConfig
from clipforge.train.trainer import run_training


class Stop(Exception):
    """Raised from the step callback: the run dies like a killed process, after its last checkpoint."""


def _stop_at(step: int):
    def callback(s: int, metrics: dict) -> None:
        if s == step:
            raise Stop

    return callback


def _losses(result, steps) -> torch.Tensor:
    return torch.tensor([result.losses[s] for s in steps], dtype=torch.float32)


def _patch_dropout_model():
    cfg = get_config("test-vit")  # patch dropout makes the model draw random numbers every step
    return dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, patch_dropout=0.5))


@pytest.mark.parametrize(("accum_freq", "accum_mode"), [(1, "gradcache"), (2, "gradcache"), (2, "mean")])
def test_resume_latest_mid_epoch_gives_identical_losses(tmp_path, accum_freq, accum_mode):
    torch.set_num_threads(1)
    data = PairSet(80)  # 5 batches of 16 per epoch: the checkpoint at step 6 lies inside epoch 1
    kw = dict(steps=12, model=_patch_dropout_model(), accum_freq=accum_freq, accum_mode=accum_mode,
              checkpoint=CheckpointConfig(every_steps=3, keep_last=2))

    def factory():
        return synthetic_factory(data, 16, workers=2)

    full = run_training(tiny_config(tmp_path / "full", **kw), loader_factory=factory())
    cut_cfg = tiny_config(tmp_path / "cut", **kw)
    with pytest.raises(Stop):
        run_training(cut_cfg, loader_factory=factory(), on_step=_stop_at(8))  # dies 2 steps after step 6's save
    resumed = run_training(cut_cfg, loader_factory=factory(), resume="latest")
    assert sorted(resumed.losses) == list(range(7, 13))  # restarted from the newest checkpoint (step 6)
    later = range(7, 13)
    assert torch.equal(_losses(full, later), _losses(resumed, later))
    assert resumed.step == full.step == 12


def test_resume_with_the_real_loader_mid_epoch(tmp_path):
    """The real data path: PNG files, JSONL table, random crops and random captions, 2 workers."""
    torch.set_num_threads(1)
    table = write_png_pairs(tmp_path / "data", 40)
    data = DataConfig(train=str(table), caption_column="captions", workers=2, random_resized_crop=True)
    kw = dict(steps=9, data=data, batch_size=8, checkpoint=CheckpointConfig(every_steps=2, keep_last=1))
    full = run_training(tiny_config(tmp_path / "full", **kw))
    cut_cfg = tiny_config(tmp_path / "cut", **kw)
    with pytest.raises(Stop):
        run_training(cut_cfg, on_step=_stop_at(8))  # 5 batches per epoch: the step-6 checkpoint is mid-epoch 1
    resumed = run_training(cut_cfg, resume="latest")
    later = range(7, 10)
    assert sorted(resumed.losses) == list(later)
    assert torch.equal(_losses(full, later), _losses(resumed, later))


def test_resume_of_a_finished_run_does_nothing(tmp_path):
    data = PairSet(32)
    cfg = tiny_config(tmp_path, steps=4)
    run_training(cfg, loader_factory=synthetic_factory(data, 16))
    again = run_training(cfg, loader_factory=synthetic_factory(data, 16), resume="latest")
    assert again.step == 4 and again.losses == {}
