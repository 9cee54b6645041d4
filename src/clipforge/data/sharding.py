"""Write a source (folder, table or shards) as WebDataset shards: what ``clipforge data shard`` runs.

The shards hold one sample per image (the image re-encoded, its captions as ``txt`` and ``json``), and
``shards.json`` beside them (``data.shards.INDEX_FILE``) gives each shard's sample count.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import webdataset as wds
from PIL import Image
from rich.progress import Progress

from clipforge.data.shards import INDEX_FILE
from clipforge.data.skips import SkipStats
from clipforge.data.sources import Source, read_bytes
from clipforge.data.transforms import BadImageError, ImageTooLarge, load_image, resized_size
from clipforge.errors import UserError
from clipforge.utils.io import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class WriteStats:
    """What ``write_shards`` wrote: samples, each shard's name and count, skipped items by reason."""

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
