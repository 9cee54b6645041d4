"""Batched, gradient-free feature extraction shared by every evaluator.

Features come back L2-normalized, float32, on the CPU: cosine similarity is then a plain matrix product,
and results do not depend on where the model ran.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from clipforge.data.skips import SkipStats
from clipforge.data.transforms import ImageTooLarge
from clipforge.errors import UserError
from clipforge.eval.datasets import ImageSet
from clipforge.pipeline import Pipeline

log = logging.getLogger(__name__)


def model_device_dtype(pipeline: Pipeline) -> tuple[torch.device, torch.dtype]:
    """Where the model's weights live and their floating dtype (inputs are sent there)."""
    for p in pipeline.model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and restore its previous mode afterwards (the trainer calls us mid-run)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def check_batch_size(batch_size: int) -> None:
    """A batch size below 1 is a UserError (evaluators call this before any work)."""
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}", hint="e.g. --batch-size 128")


def check_finite(features: torch.Tensor, desc: str) -> torch.Tensor:
    """Refuse NaN/inf features: they would score arbitrarily (e.g. always the first class) instead of failing."""
    if not bool(torch.isfinite(features).all()):
        raise UserError(f"{desc}: the model gave non-finite (NaN/inf) features",
                        hint="check the checkpoint's weights and the device/dtype")
    return features


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )


def encode_texts(pipeline: Pipeline, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """Embed ``texts``. Returns (N, D) L2-normalized float32 on the CPU, in the order of ``texts``.

    Texts are batched in order of token count: the text tower only runs up to the longest end-of-text token
    of a batch, so batches of similar lengths do less padded work (tens of thousands of prompts for
    80 templates × hundreds of classes). Each text's embedding does not depend on its batch-mates.

    Args:
        pipeline: supplies ``tokenizer`` and ``model.encode_text``.
        texts: the strings to embed.
        batch_size: texts per forward pass.
    """
    if not texts:
        raise ValueError("no texts to encode")
    check_batch_size(batch_size)
    device, _ = model_device_dtype(pipeline)
    ids = torch.cat([pipeline.tokenizer(list(texts[s : s + 4096])) for s in range(0, len(texts), 4096)])  # (N, L)
    order = torch.sort((ids != 0).sum(dim=1), stable=True).indices  # (N,) shortest first; 0 is the padding id
    out = None
    with eval_mode(pipeline.model), torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            feats = F.normalize(pipeline.model.encode_text(ids[rows].to(device)).float(), dim=-1).cpu()  # (B, D)
            if out is None:
                out = torch.empty(len(texts), feats.shape[1])
            out[rows] = feats
    assert out is not None
    return check_finite(out, f"{len(texts)} texts")


def encode_images(
    pipeline: Pipeline, images: ImageSet, batch_size: int = 128, desc: str = "images", progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed every image of ``images`` through the pipeline's preprocess and image tower.

    An image that fails to load or preprocess is skipped, counted and logged, never fatal.

    Args:
        pipeline: supplies ``preprocess`` and ``model.encode_image``.
        images: the images (loaded lazily).
        batch_size: images per forward pass.
        desc: label of the progress bar.
        progress: show a rich progress bar with ETA.

    Returns:
        features (K, D) L2-normalized float32 on the CPU, and kept (K,) int64: indices into ``images`` of the
        images that were embedded (K = len(images) when none failed).
    """
    check_batch_size(batch_size)
    device, dtype = model_device_dtype(pipeline)
    feats, kept, skipped = [], [], SkipStats()
    n = len(images)

    def flush(batch: list[torch.Tensor]) -> None:
        pixels = torch.stack(batch).to(device=device, dtype=dtype)  # (B, 3, H, W)
        feats.append(F.normalize(pipeline.model.encode_image(pixels).float(), dim=-1).cpu())  # (B, D)

    with eval_mode(pipeline.model), torch.inference_mode(), _progress(n, desc, progress) as bar:
        task = bar.add_task(desc, total=n) if bar is not None else None
        batch: list[torch.Tensor] = []
        for i in range(n):
            try:
                batch.append(pipeline.preprocess(images.load(i)))
            except ImageTooLarge as exc:
                skipped.add("too_large", str(exc).split(":")[0])
                continue
            except FileNotFoundError as exc:
                skipped.add("missing", str(exc.filename))
                continue
            except (OSError, ValueError, UserError) as exc:  # unreadable file (BadImageError is a UserError)
                skipped.add("corrupt", str(exc).split(":")[0] or f"image {i}")
                continue
            kept.append(i)
            if len(batch) == batch_size:
                flush(batch)
                batch = []
                if bar is not None:
                    bar.update(task, completed=i + 1)
        if batch:
            flush(batch)
    skipped.log(log, f"{desc} ({n} images)")
    if not feats:
        raise UserError(f"{desc}: no image could be embedded (skipped {skipped.summary()})")
    return check_finite(torch.cat(feats), desc), torch.tensor(kept, dtype=torch.long)


FeatureCache = dict  # {(kind, DatasetConfig): (features, kept)}: one suite run embeds each image set once


def cached_image_features(
    cache: FeatureCache | None,
    key: object,
    pipeline: Pipeline,
    images: ImageSet,
    batch_size: int,
    desc: str,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``encode_images`` through ``cache`` (keyed by ``key``, e.g. the dataset config); no cache when None."""
    if cache is not None and key in cache:
        return cache[key]
    out = encode_images(pipeline, images, batch_size, desc, progress)
    if cache is not None:
        cache[key] = out
    return out
