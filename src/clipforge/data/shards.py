"""WebDataset tar shards as files: members grouped into samples, and writing shards.

A sample is the run of consecutive tar members sharing a key; the key is a member's path up to the first dot
of its file name and the rest, lower-cased, is the member's extension (WebDataset's convention:
``dir/0001.jpg`` and ``dir/0001.txt`` are sample ``dir/0001`` with members ``jpg`` and ``txt``). Which
extensions are images and where captions come from are rules of ``clipforge.data.sources``.
``write_shards`` also writes ``shards.json`` with each shard's sample count, so loaders know the sizes
without reading the shards.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clipforge.errors import UserError

if TYPE_CHECKING:
    from clipforge.data.sources import Source

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


@dataclass
class WriteStats:
    written: int = 0
    shards: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def write_shards(
    source: Source,
    out: str | Path,
    *,
    resize: int | None = None,
    shard_size: int = 1000,
    image_format: str = "jpg",
    progress: bool = True,
) -> WriteStats:
    """Write a source's items as WebDataset shards ``out/shard-000000.tar`` ... and ``out/shards.json``.

    Args:
        source: the items to write (``clipforge.data.sources.open_source``).
        out: output folder.
        resize: if set, images whose shortest side exceeds it are downscaled (bicubic, aspect kept) to it.
        shard_size: samples per shard (the last shard may be smaller).
        image_format: "jpg" (quality 95) or "png" (lossless; better for drawings and emoji).
        progress: show a progress bar.
    """
    import webdataset as wds
    from PIL import Image
    from rich.progress import Progress

    from clipforge.data.skips import SkipStats
    from clipforge.data.sources import read_bytes
    from clipforge.data.transforms import BadImageError, ImageTooLarge, load_image, resized_size
    from clipforge.utils.io import atomic_write_text

    if image_format not in ("jpg", "png"):
        raise UserError(f"unknown image format '{image_format}'", hint="use jpg or png")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats, skipped = WriteStats(), SkipStats()
    shard_names: list[str] = []
    counts: list[int] = []

    def note_shard(fname: str) -> None:  # ShardWriter calls this as each shard closes
        shard_names.append(Path(fname).name)
        counts.append(stats.written - sum(counts))

    with (
        wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=shard_size, verbose=0, post=note_shard) as sink,
        Progress(disable=not progress) as bar,
    ):
        task = bar.add_task("writing shards", total=len(source.items))
        for i, item in enumerate(source.items):
            bar.advance(task)
            if not item.captions:
                skipped.add(item.caption_error or "empty_caption", item.path)
                continue
            try:
                img = load_image(read_bytes(source.root, item.path), item.path)
            except (OSError, KeyError):
                skipped.add("missing", item.path)
                continue
            except ImageTooLarge as exc:
                log.warning("skipping %s", exc)
                skipped.add("too_large", item.path)
                continue
            except BadImageError as exc:
                log.warning("skipping %s", exc)
                skipped.add("corrupt", item.path)
                continue
            if resize and min(img.size) > resize:
                img = img.resize(resized_size(img.width, img.height, resize), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="JPEG" if image_format == "jpg" else "PNG", quality=95)
            meta = {"captions": list(item.captions), "source": Path(item.path).name}
            sink.write({"__key__": f"{i:09d}", image_format: buf.getvalue(), "txt": "\n".join(item.captions),
                        "json": meta})
            stats.written += 1
    stats.skipped = dict(skipped.counts)
    skipped.log(log, f"writing shards of {source.spec}")
    if stats.written == 0:
        for name in shard_names:
            (out / name).unlink(missing_ok=True)
        raise UserError(f"{source.spec}: no usable samples to write (skipped: {skipped.summary()})")
    stats.shards = [{"name": n, "count": c} for n, c in zip(shard_names, counts, strict=True)]
    index = {"shards": stats.shards, "total": stats.written, "skipped": stats.skipped}
    atomic_write_text(out / INDEX_FILE, json.dumps(index, indent=1) + "\n")
    log.info("wrote %d samples in %d shards to %s", stats.written, len(shard_names), out)
    return stats
