"""WebDataset tar shards as files: members grouped into samples, and the shard index.

A sample is the run of consecutive tar members sharing a key; the key is a member's path up to the first dot
of its file name and the rest, lower-cased, is the member's extension (WebDataset's convention:
``dir/0001.jpg`` and ``dir/0001.txt`` are sample ``dir/0001`` with members ``jpg`` and ``txt``). Which
extensions are images and where captions come from are rules of ``clipforge.data.sources``.
``clipforge.data.sharding.write_shards`` also writes ``shards.json`` with each shard's sample count, so
loaders know the sizes without reading the shards (``read_index``).
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from clipforge.errors import UserError

log = logging.getLogger(__name__)

INDEX_FILE = "shards.json"
# WebDataset's key/extension split: everything before the first dot of the file name is the key.
_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


@dataclass(frozen=True)
class TarSample:
    """One sample's members: extension -> (member name, bytes); bytes are None for members not read."""

    key: str
    members: dict[str, tuple[str, bytes | None]]


def split_key(name: str) -> tuple[str, str] | None:
    """``"d/0001.seg.PNG"`` -> ``("d/0001", "seg.png")``; None for a name without an extension."""
    m = _KEY_EXT.match(name)
    return (m.group(1), m.group(2).lower()) if m else None


def tar_samples(url: str, read: Callable[[str], bool]) -> Iterator[TarSample]:
    """The samples of one tar file in file order; a member's bytes are read when ``read(extension)`` holds.

    Args:
        url: the tar file.
        read: which members to read (others are skipped over without reading their data).

    Raises:
        UserError: naming the shard, when it is missing, truncated or not a tar file.
    """
    key, members = None, {}
    try:
        with tarfile.open(url, "r:*") as tar:
            for info in tar:
                parts = split_key(info.name) if info.isfile() else None
                if parts is None:
                    continue
                if parts[0] != key:
                    if members:
                        yield TarSample(key, members)
                    key, members = parts[0], {}
                fh = tar.extractfile(info) if read(parts[1]) else None
                members.setdefault(parts[1], (info.name, fh.read() if fh else None))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{url}: unreadable tar shard ({exc})", hint="re-copy or rewrite the shard") from exc
    if members:
        yield TarSample(key, members)


def read_index(folder: Path) -> dict[str, int]:
    """shard path -> sample count from ``folder/shards.json`` (empty when the folder has none)."""
    index = folder / INDEX_FILE
    if not index.is_file():
        return {}
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))["shards"]
        return {str(folder / e["name"]): int(e["count"]) for e in entries}
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{index}: invalid shard index ({exc})", hint="delete it; shard sizes are then counted") from exc
