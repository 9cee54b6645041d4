"""Training-state checkpoints: atomic writes, keep-last-K, --resume resolution, RNG capture."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from clipforge.errors import UserError
from clipforge.train import state as train_state
from clipforge.utils.rng import capture_rng, isolated_rng, restore_rng


def _state(step: int) -> dict:
    return {"step": step, "w": torch.full((3,), float(step)), "rng": [capture_rng()]}


def test_keep_last_k(tmp_path):
    for step in (5, 10, 15, 20):
        train_state.save_train_state(tmp_path, step, _state(step), keep_last=2)
    assert [s for s, _ in train_state.list_checkpoints(tmp_path)] == [15, 20]
    assert train_state.load_train_state(train_state.checkpoint_path(tmp_path, 20))["w"].tolist() == [20.0] * 3


def test_keep_all(tmp_path):
    for step in (1, 2, 3):
        train_state.save_train_state(tmp_path, step, _state(step), keep_last=0)
    assert len(train_state.list_checkpoints(tmp_path)) == 3


def test_a_failed_save_leaves_no_partial_file_and_keeps_the_old_ones(tmp_path, monkeypatch):
    train_state.save_train_state(tmp_path, 1, _state(1), keep_last=1)
    real_save = torch.save

    def dying_save(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        with open(path, "r+b") as f:  # simulate a crash part-way: truncated bytes on disk, then an error
            f.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="disk full"):
        train_state.save_train_state(tmp_path, 2, _state(2), keep_last=1)
    files = sorted(p.name for p in (tmp_path / train_state.CHECKPOINT_DIR).iterdir())
    assert files == ["step_00000001.pt"]  # no step 2, no temp file, step 1 not pruned
    assert train_state.load_train_state(train_state.checkpoint_path(tmp_path, 1))["step"] == 1


def test_temp_files_are_never_taken_for_checkpoints(tmp_path):
    train_state.save_train_state(tmp_path, 3, _state(3), keep_last=2)
    (tmp_path / train_state.CHECKPOINT_DIR / ".step_00000009.pt.abc.tmp").write_bytes(b"partial")
    assert train_state.resolve_resume(tmp_path, "latest") == train_state.checkpoint_path(tmp_path, 3)


def test_resolve_resume(tmp_path):
    assert train_state.resolve_resume(tmp_path, None) is None
    assert train_state.resolve_resume(tmp_path, "latest") is None  # nothing yet: a fresh start
    for step in (2, 4):
        train_state.save_train_state(tmp_path, step, _state(step), keep_last=0)
    assert train_state.resolve_resume(tmp_path, "latest").name == "step_00000004.pt"
    assert train_state.resolve_resume(tmp_path / "other", str(tmp_path)).name == "step_00000004.pt"  # a run dir
    explicit = train_state.checkpoint_path(tmp_path, 2)
    assert train_state.resolve_resume(tmp_path, str(explicit)) == explicit
    with pytest.raises(UserError, match="no such checkpoint"):
        train_state.resolve_resume(tmp_path, str(tmp_path / "missing.pt"))


def test_unreadable_checkpoint_is_a_user_error(tmp_path):
    bad = tmp_path / "step_00000001.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        train_state.load_train_state(bad)


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_capture_and_restore_through_a_checkpoint(tmp_path):
    random.gauss(0, 1)  # leave a cached gaussian in Python's generator
    np.random.randn()
    train_state.save_train_state(tmp_path, 1, {"rng": [capture_rng()]}, keep_last=1)
    expected = _draws()
    _draws()
    restore_rng(train_state.load_train_state(train_state.checkpoint_path(tmp_path, 1))["rng"][0])
    assert _draws() == expected


def test_isolated_rng_leaves_the_streams_untouched():
    state = capture_rng()
    expected = _draws()
    restore_rng(state)
    with isolated_rng():
        _draws()
    assert _draws() == expected
