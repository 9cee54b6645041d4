"""Training-state checkpoints: ``run_dir/checkpoints/step_00000123.pt``, written atomically, newest K kept.

A state holds the model and optimizer state dicts, the step, the data position (epoch and batches done in
that epoch), the skipped-step counters, every RNG state (per rank) and the resolved config. It is loaded
with ``weights_only=True``: only tensors and plain values, no pickled code.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch

from clipforge.errors import UserError
from clipforge.utils.io import atomic_path, remove_stale_temps
from clipforge.utils.layout import CHECKPOINT_DIR, FINAL_DIR

_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def sharded_dir(path: Path) -> Path:
    """The folder of an FSDP checkpoint's shards, beside its ``step_N.pt`` (``step_N.dcp``)."""
    return path.with_suffix(".dcp")


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint in ``run_dir``, oldest first (temp files are ignored)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_train_state(run_dir: str | Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write ``state`` for ``step`` atomically (temp file + rename), then delete all but the newest ``keep_last``.

    Args:
        run_dir: the run directory.
        step: optimizer steps done; names the file.
        state: tensors and plain values only.
        keep_last: how many checkpoints to keep (0 = all). Older ones are removed only after the new one is
            complete, so a crash at any moment leaves at least one whole checkpoint.
    """
    path = checkpoint_path(run_dir, step)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    if keep_last > 0:
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            old.unlink(missing_ok=True)
            if sharded_dir(old).is_dir():
                shutil.rmtree(sharded_dir(old))
    return path


def clean_run_dir(run_dir: str | Path) -> list[Path]:
    """Remove the partial files of saves a killed run left (``checkpoints/.step_*.pt.*.tmp``, ``final/.*.tmp``).

    Run on the main rank before training starts, when nothing else writes there. Returns what was removed.
    """
    run_dir = Path(run_dir)
    return [p for folder in (run_dir, run_dir / CHECKPOINT_DIR, run_dir / FINAL_DIR) for p in remove_stale_temps(folder)]


def resolve_resume(run_dir: str | Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from: None (fresh run), "latest" (newest in run_dir, None if none), or a path.

    Raises:
        UserError: when an explicit path does not exist.
    """
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(run_dir)
        return found[-1][1] if found else None
    path = Path(resume)
    if path.is_dir():  # a run directory: its newest checkpoint
        found = list_checkpoints(path)
        if not found:
            raise UserError(f"--resume {resume}: no checkpoints under {path / CHECKPOINT_DIR}")
        return found[-1][1]
    if not path.is_file():
        raise UserError(f"--resume {resume}: no such checkpoint", hint="use --resume latest or a step_*.pt path")
    return path


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by ``save_train_state`` onto the CPU.

    Raises:
        UserError: in one line for any unreadable file (PyTorch's own message is a page of weights_only advice
            that does not apply: clipforge states never need pickled code).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the same user problem
        raise UserError(f"cannot read checkpoint {path}: not a clipforge training state ({type(exc).__name__})",
                        hint="--resume takes 'latest', a run directory or one of its checkpoints/step_*.pt") from exc
    if not isinstance(state, dict):
        raise UserError(f"cannot read checkpoint {path}: not a clipforge training state (not a mapping)",
                        hint="--resume takes 'latest', a run directory or one of its checkpoints/step_*.pt")
    return state
