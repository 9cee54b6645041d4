"""Atomic file writes (a reader never sees a half-written checkpoint, index or result file); output folders."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from clipforge.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file lives in the same directory so the final ``os.replace`` is a rename on one
    file system, which POSIX makes atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file 0600; give the result the mode a plain open() would (0666 minus umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files ``atomic_path`` leaves behind when its process is killed (kill -9, power loss).

    Call it only where no other process is writing (at the start of a run, on the main rank): a temp file of a
    live writer looks the same. Returns the removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def check_out_dir(path: str | Path, what: str = "output") -> Path:
    """Refuse an output directory that a file stands in the way of (checked before any work, created later).

    Raises:
        UserError: naming the file in the way.
    """
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        where = "is a file" if blocker == path else f"cannot be created: {blocker} is a file"
        raise UserError(f"{what} {path} {where}, not a directory", hint="choose another output directory")
    return path


def ensure_dir(path: str | Path, what: str = "output") -> Path:
    """Create the output directory ``path`` (and its parents); a file in the way is a UserError, not a crash.

    Args:
        path: the directory.
        what: how the user named it in messages (e.g. "out").
    """
    path = check_out_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        raise UserError(f"{what} {path}: permission denied", hint="choose a directory you can write to") from exc
    return path
