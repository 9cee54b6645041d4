"""Embed a collection (folder, pairs table or shards) into an embedding directory (see ``index.manifest``).

Usage from Python::

    pipeline = clipforge.load(ckpt)
    result = embed_collection(pipeline, open_source(src), out_dir, fingerprint=checkpoint_fingerprint(ckpt))

Under torchrun each rank embeds a disjoint slice (items ``rank::world``) and writes its own parts; rank 0
merges them after a barrier. Decoding and preprocessing run in DataLoader worker processes; items whose
(path, content hash) are already in ``out_dir`` are skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from clipforge.data.config import DEFAULT_MAX_PIXELS
from clipforge.data.skips import SkipStats
from clipforge.data.sources import Item, Source, read_bytes
from clipforge.data.transforms import ImageTooLarge, load_image
from clipforge.errors import UserError
from clipforge.index.manifest import (
    EMBED_MANIFEST,
    PARTS_DIR,
    EmbedManifest,
    content_hash,
    read_embed_manifest,
    same_checkpoint,
)
from clipforge.index.parts import done_hashes, merge, write_part
from clipforge.utils.io import atomic_write_text, ensure_dir, remove_stale_temps

if TYPE_CHECKING:
    from collections.abc import Callable

    from clipforge.pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass
class EmbedResult:
    """What one rank did: counts of embedded and skipped items (by reason) and the merged manifest (rank 0)."""

    embedded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    manifest: EmbedManifest | None = None


class _ItemDataset(torch.utils.data.Dataset):
    """Reads, hashes, decodes and preprocesses one item; runs inside DataLoader workers."""

    def __init__(self, root: Path, items: list[Item], done: dict[str, str], preprocess: Callable,
                 max_pixels: int) -> None:
        self.root, self.items, self.done, self.preprocess = root, items, done, preprocess
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        try:
            data = read_bytes(self.root, item.path)
        except (OSError, KeyError, UserError) as exc:
            return {"item": item, "status": "missing", "error": str(exc)}
        digest = content_hash(data)
        if self.done.get(item.path) == digest:
            return {"item": item, "status": "done"}
        try:
            image = load_image(data, item.path, max_pixels=self.max_pixels)
            pixels = self.preprocess(image)
        except ImageTooLarge as exc:
            return {"item": item, "status": "too_large", "error": str(exc).split("\n")[0]}
        except UserError as exc:
            return {"item": item, "status": "corrupt", "error": str(exc)}
        except Exception as exc:  # a broken file must not stop a million-image run
            return {"item": item, "status": "corrupt", "error": f"{type(exc).__name__}: {exc}"}
        return {"item": item, "status": "ok", "pixels": pixels, "size": image.size, "sha256": digest}


def collate_rows(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """In the worker: the decoded images of a batch stacked into one tensor (the main process only copies it).

    Returns ``{"rows": every row without its pixels, "pixels": (n_ok, 3, H, W) float32 or None}``, the
    pixels in the order of the rows whose status is "ok".
    """
    ok = [r.pop("pixels") for r in batch if r["status"] == "ok"]
    return {"rows": batch, "pixels": torch.stack(ok) if ok else None}


def loader_options(device: torch.device) -> dict[str, Any]:
    """DataLoader options for ``device``: on CUDA the batches arrive in page-locked memory, so the copy to the
    device runs asynchronously (``non_blocking``) while the host goes on."""
    return {"pin_memory": device.type == "cuda"}


@torch.inference_mode()
def _encode(pipeline: Pipeline, rows: list[dict[str, Any]], pixels: torch.Tensor,
            device: torch.device) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """L2-normalized image and caption embeddings (float32) for decoded rows; zero text rows where no caption.

    The model may compute in bf16 or int8 (``pipeline.precision``); the normalization is always fp32.
    """
    model = pipeline.model
    dtype = next(model.parameters()).dtype
    pixels = pixels.to(device, non_blocking=True).to(dtype)  # (B, 3, H, W); cast on the device
    image = F.normalize(model.encode_image(pixels).float(), dim=-1)  # (B, D)
    text = torch.zeros_like(image)
    with_caption = [i for i, r in enumerate(rows) if r["item"].caption]
    if with_caption:
        tokens = pipeline.tokenizer([rows[i]["item"].caption for i in with_caption]).to(device, non_blocking=True)
        text[with_caption] = F.normalize(model.encode_text(tokens).float(), dim=-1)
    image_np, text_np = image.cpu().numpy(), text.cpu().numpy()  # the one wait for the device per batch
    bad = ~(np.isfinite(image_np).all(axis=1) & np.isfinite(text_np).all(axis=1))  # (B,)
    if bad.any():
        # A NaN vector ranks arbitrarily against every query: refuse it instead of storing or dropping items.
        first = rows[int(np.flatnonzero(bad)[0])]["item"].path
        raise UserError(f"the model gave a non-finite (NaN/inf) embedding for {int(bad.sum())} of {len(rows)} "
                        f"images, e.g. {first}", hint="check the checkpoint's weights and the --device/dtype")
    return image_np, text_np


def embed_collection(
    pipeline: Pipeline,
    collection: Source,
    out_dir: str | Path,
    *,
    fingerprint: dict[str, str],
    rank: int = 0,
    world: int = 1,
    batch_size: int = 64,
    workers: int = 2,
    dtype: str = "float16",
    device: str | torch.device = "cpu",
    flush_every: int = 2048,
    barrier: Callable[[], None] | None = None,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> EmbedResult:
    """Embed this rank's share of ``collection`` into ``out_dir`` and (on rank 0) merge every rank's parts.

    Args:
        pipeline: the loaded checkpoint (model, tokenizer, preprocess).
        collection: items to embed (``clipforge.data.sources.open_source``).
        out_dir: the embedding directory; created, or resumed when it already holds results.
        fingerprint: ``checkpoint_fingerprint(ckpt)``; a resumed directory must have been made by the same one.
        rank, world: this process's share is ``items[rank::world]``.
        batch_size: images per forward pass.
        workers: DataLoader worker processes decoding images (0 decodes in this process).
        dtype: "float16" or "float32" for the stored vectors.
        device: where the model runs.
        flush_every: write a part after this many new embeddings (bounds the work lost to a crash).
        barrier: called before rank 0 merges (``torch.distributed.barrier`` under torchrun).
        progress: show a rich progress bar (rank 0 only).
        max_pixels: decoding budget per image; larger images are skipped and counted as ``too_large``.
    """
    if dtype not in ("float16", "float32"):
        raise UserError(f"dtype must be float16 or float32, got {dtype!r}")
    check_batching(batch_size, workers, max_pixels)
    out = ensure_dir(out_dir, "out")
    if world == 1:  # under torchrun another rank may already be writing here; alone, a temp file is a dead save's
        for stale in [*remove_stale_temps(out), *remove_stale_temps(out / PARTS_DIR)]:
            log.warning("removed %s, left by a run that was killed while saving", stale)
    if (out / EMBED_MANIFEST).is_file():
        previous = read_embed_manifest(out)
        if not same_checkpoint(previous.checkpoint, fingerprint):
            # Resuming would mix two models' vectors in one directory (e.g. step 300 and the final weights).
            raise UserError(
                f"{out} holds embeddings from another checkpoint ({previous.checkpoint.get('path')}, other weights "
                f"or config)", hint="embed into a new out= directory, or delete this one",
            )
    done = done_hashes(out)
    mine = list(collection.items[rank::world])
    dataset = _ItemDataset(collection.root, mine, done, pipeline.preprocess, max_pixels)
    device = torch.device(device)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_rows, persistent_workers=False,
        **loader_options(device),
    )
    result = EmbedResult()
    skips = SkipStats()
    skips.update(collection.skipped.counts if rank == 0 else {})  # rows of the source that name no image
    done_now = 0  # items already in out_dir (resume)
    buffer: dict[str, list] = {"path": [], "width": [], "height": [], "sha256": [], "caption": []}
    images: list[np.ndarray] = []
    texts: list[np.ndarray] = []
    part_tag = f"rank{rank:03d}-{time.time_ns()}"
    seq = 0

    def flush() -> None:
        nonlocal seq
        if buffer["path"]:
            stored = np.dtype(dtype)
            write_part(out, f"{part_tag}-{seq:05d}", buffer, np.concatenate(images).astype(stored),
                       np.concatenate(texts).astype(stored))
            seq += 1
            for values in buffer.values():
                values.clear()
            images.clear()
            texts.clear()

    with _progress(progress and rank == 0, len(mine) * world, f"embedding {len(collection.items)} images") as advance:
        for stacked in loader:
            batch = stacked["rows"]
            ok = [r for r in batch if r["status"] == "ok"]
            for r in batch:
                _count(r, skips)
            done_now += sum(r["status"] == "done" for r in batch)
            if ok:
                image, text = _encode(pipeline, ok, stacked["pixels"], device)
                images.append(image)
                texts.append(text)
                for r in ok:
                    buffer["path"].append(r["item"].path)
                    buffer["width"].append(int(r["size"][0]))
                    buffer["height"].append(int(r["size"][1]))
                    buffer["sha256"].append(r["sha256"])
                    buffer["caption"].append(r["item"].caption)
                result.embedded += len(ok)
                if len(buffer["path"]) >= flush_every:
                    flush()
            advance(len(batch) * world)  # the bar shows all ranks' progress, estimated from rank 0's pace
    flush()
    skips.log(log, f"embedding {collection.spec} (rank {rank})")
    bad = dict(skips.counts)
    result.skipped = bad | ({"done": done_now} if done_now else {})
    atomic_write_text(out / PARTS_DIR / f"skipped-rank{rank:03d}.json", json.dumps(bad))
    if barrier is not None:
        barrier()
    if rank == 0:
        totals: dict[str, int] = {}
        for path in sorted((out / PARTS_DIR).glob("skipped-rank*.json")):
            for reason, count in json.loads(path.read_text()).items():
                totals[reason] = totals.get(reason, 0) + count
            path.unlink()
        dim = int(pipeline.model.cfg.embed_dim)
        base = EmbedManifest(fingerprint, {"root": str(collection.root), "kind": collection.kind}, dtype, dim, 0, 0, {})
        result.manifest = merge(out, base, totals)
    return result


def check_batching(batch_size: int, workers: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse a batch size below 1, a negative worker count or an empty pixel budget (before any work)."""
    if max_pixels < 1:
        raise UserError(f"the pixel budget must be at least 1, got {max_pixels}", hint="e.g. max_pixels=40000000")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}", hint="e.g. batch_size=64")
    if workers < 0:
        raise UserError(f"workers must be 0 or more, got {workers}", hint="0 decodes in the main process")


def _count(row: dict[str, Any], skips: SkipStats) -> None:
    """Count an item that was not embedded (and say why), or one whose caption could not be read."""
    status, item = row["status"], row["item"]
    if status not in ("ok", "done"):
        log.warning("skipped %s (%s): %s", item.path, status, row.get("error", ""))
        skips.add(status, item.path)
    if status == "ok" and item.caption_error:
        skips.add(item.caption_error, item.path)  # embedded without a caption: its caption file was unreadable


class _progress:
    """A rich progress bar with images/s and ETA; a no-op when disabled. Yields ``advance(n)``."""

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self.enabled, self.total, self.description = enabled, total, description

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} img/s"),
            TimeRemainingColumn(),
        )
        self.bar.__enter__()
        task = self.bar.add_task(self.description, total=self.total, rate="-")
        start = time.perf_counter()

        def advance(n: int) -> None:
            done = self.bar.tasks[0].completed + n
            rate = done / max(time.perf_counter() - start, 1e-9)
            self.bar.update(task, advance=n, rate=f"{rate:,.1f}")

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)


def embed_in_memory(
    pipeline: Pipeline, collection: Source, *, batch_size: int = 64, workers: int = 2,
    device: str | torch.device = "cpu", progress: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """Embed a (small) collection without writing anything: (paths, (N, D) float32 unit vectors, skip counts).

    Args:
        pipeline, collection, batch_size, workers, device, max_pixels: as for ``embed_collection``.
        progress: show a progress bar.
    """
    check_batching(batch_size, workers, max_pixels)
    dataset = _ItemDataset(collection.root, list(collection.items), {}, pipeline.preprocess, max_pixels)
    device = torch.device(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_rows,
                                         **loader_options(device))  # fmt: skip
    paths: list[str] = []
    vectors: list[np.ndarray] = []
    skips = SkipStats()
    skips.update(collection.skipped.counts)
    with _progress(progress, len(dataset), f"embedding {len(dataset)} images") as advance:
        for stacked in loader:
            batch = stacked["rows"]
            ok = [r for r in batch if r["status"] == "ok"]
            for r in batch:
                _count(r, skips)
            if ok:
                vectors.append(_encode(pipeline, ok, stacked["pixels"], device)[0])
                paths.extend(r["item"].path for r in ok)
            advance(len(batch))
    skips.log(log, f"embedding {collection.spec}")
    dim = int(pipeline.model.cfg.embed_dim)
    return paths, np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32), dict(skips.counts)
