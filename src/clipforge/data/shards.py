"""WebDataset tar shards: list, count, read (with the ``webdataset`` library) and write.

A sample is ``<key>.<jpg|jpeg|png|webp>`` plus ``<key>.txt`` (one caption per line) and/or ``<key>.json``
(``{"captions": [...]}`` or ``{"caption": "..."}``). ``write_shards`` also writes ``shards.json`` with the
sample count of each shard, so loaders know every shard's size without reading it.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clipforge.data.pairs import PairTable, split_caption_text
from clipforge.errors import UserError

log = logging.getLogger(__name__)

INDEX_FILE = "shards.json"
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class ShardSample:
    """One raw sample: ``image`` is the encoded bytes (None when the sample has no image member)."""

    key: str
    image: bytes | None
    captions: tuple[str, ...]


def expand_shards(spec: str) -> list[str]:
    """Shard paths from a folder of .tar files, one .tar file, or a brace pattern ("d/s-{000..009}.tar")."""
    from braceexpand import braceexpand

    p = Path(spec)
    urls = sorted(str(t) for t in p.glob("*.tar")) if p.is_dir() else list(braceexpand(spec))
    missing = [u for u in urls if not Path(u).exists()]
    if not urls:
        raise UserError(f"{spec}: no .tar shards found")
    if missing:
        raise UserError(f"{spec}: {len(missing)} shard(s) missing, e.g. {missing[0]}")
    return urls


def _count_tar(path: str) -> int:
    keys: set[str] = set()
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and "." in Path(member.name).name:
                stem = str(Path(member.name).parent / Path(member.name).name.split(".", 1)[0])
                if member.name.rsplit(".", 1)[-1].lower() in IMAGE_KEYS:
                    keys.add(stem)
    return len(keys)


def shard_counts(urls: list[str]) -> list[int]:
    """Samples (keys with an image member) per shard: from ``shards.json`` beside them when present, else counted."""
    counts: dict[str, int] = {}
    for folder in {str(Path(u).parent) for u in urls}:
        index = Path(folder) / INDEX_FILE
        if index.exists():
            for entry in json.loads(index.read_text())["shards"]:
                counts[str(Path(folder) / entry["name"])] = int(entry["count"])
    return [counts[u] if u in counts else _count_tar(u) for u in urls]


def _captions_of(sample: dict) -> tuple[str, ...]:
    if sample.get("txt") is not None:
        return split_caption_text(sample["txt"].decode("utf-8", errors="replace"))
    if sample.get("json") is not None:
        try:
            meta = json.loads(sample["json"])
        except (json.JSONDecodeError, UnicodeDecodeError):
            return ()
        cell = meta.get("captions", meta.get("caption", meta.get("text", ())))
        cells = [cell] if isinstance(cell, str) else list(cell or ())
        return tuple(str(c).strip() for c in cells if str(c).strip())
    return ()


def iter_shard(url: str) -> Iterator[ShardSample]:
    """The samples of one shard in file order, read with webdataset's tar iterators."""
    import webdataset as wds

    for sample in wds.tarfile_samples([{"url": url}]):
        image = next((sample[k] for k in IMAGE_KEYS if sample.get(k) is not None), None)
        if image is None:
            continue  # not counted as a sample by shard_counts either (e.g. a stray metadata file)
        yield ShardSample(sample["__key__"], image, _captions_of(sample))


@dataclass
class WriteStats:
    written: int = 0
    shards: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def write_shards(
    table: PairTable,
    out: str | Path,
    *,
    resize: int | None = None,
    shard_size: int = 1000,
    image_format: str = "jpg",
    progress: bool = True,
) -> WriteStats:
    """Write a folder/table source as WebDataset shards ``out/shard-000000.tar`` ... and ``out/shards.json``.

    Args:
        table: the pairs to write (see clipforge.data.pairs.read_pairs).
        out: output folder.
        resize: if set, images whose shortest side exceeds it are downscaled (bicubic, aspect kept) to it.
        shard_size: samples per shard (the last shard may be smaller).
        image_format: "jpg" (quality 95) or "png" (lossless; better for drawings and emoji).
        progress: show a progress bar.
    """
    import webdataset as wds
    from PIL import Image

    from clipforge.data.transforms import BadImageError, load_image, resized_size
    from clipforge.utils.io import atomic_write_text

    if image_format not in ("jpg", "png"):
        raise UserError(f"unknown image format '{image_format}'", hint="use jpg or png")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats = WriteStats()
    shard_names: list[str] = []

    def note_shard(fname: str) -> None:
        shard_names.append(Path(fname).name)

    def skip(reason: str) -> None:
        stats.skipped[reason] = stats.skipped.get(reason, 0) + 1

    from rich.progress import Progress

    with (
        wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=shard_size, verbose=0, post=note_shard) as sink,
        Progress(disable=not progress) as bar,
    ):
        task = bar.add_task("writing shards", total=len(table))
        for i, (path, captions) in enumerate(zip(table.images, table.captions, strict=True)):
            bar.advance(task)
            if not captions:
                skip("empty_caption")
                continue
            try:
                img = load_image(path)
            except FileNotFoundError:
                skip("missing")
                continue
            except BadImageError as exc:
                log.warning("skipping %s", exc)
                skip("corrupt")
                continue
            if resize and min(img.size) > resize:
                img = img.resize(resized_size(img.width, img.height, resize), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="JPEG" if image_format == "jpg" else "PNG", quality=95)
            meta = {"captions": list(captions), "source": Path(path).name}
            sink.write({"__key__": f"{i:09d}", image_format: buf.getvalue(), "txt": "\n".join(captions), "json": meta})
            stats.written += 1
    if stats.written == 0:
        for name in shard_names:
            (out / name).unlink(missing_ok=True)
        raise UserError(f"{table.source}: no usable samples to write (skipped: {stats.skipped})")
    # ShardWriter's post hook runs as each shard closes; count what each one holds.
    counts = shard_counts([str(out / n) for n in shard_names]) if shard_names else []
    stats.shards = [{"name": n, "count": c} for n, c in zip(shard_names, counts, strict=True)]
    index = {"shards": stats.shards, "total": stats.written, "skipped": stats.skipped}
    atomic_write_text(out / INDEX_FILE, json.dumps(index, indent=1) + "\n")
    log.info(
        "wrote %d samples in %d shards to %s; skipped %s", stats.written, len(shard_names), out, stats.skipped or 0
    )
    return stats
