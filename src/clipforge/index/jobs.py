"""The jobs behind ``clipforge embed``, ``index``, ``moderate`` and ``search``, one function each.

    run_embed(EmbedConfig(checkpoint="ckpt", src="photos/", out="runs/emb"))
    run_index(IndexConfig(embeddings="runs/emb", out="runs/idx"))
    run_moderate(ModerateConfig(checkpoint="ckpt", src="uploads/", concepts="concepts.yaml", out="runs/mod"))
    run_search("runs/idx", text="a red car", k=5)

Each writes its resolved config into its output directory next to the results (``index.config``), so the
run can be repeated with ``--config OUT/<verb>_config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from clipforge.data.sources import open_source
from clipforge.data.transforms import load_image
from clipforge.dist.env import destroy_distributed, init_distributed
from clipforge.errors import UserError
from clipforge.index.build import BuildReport, build_store, read_embeddings, sync_store
from clipforge.index.config import (
    EMBED_CONFIG_FILE,
    INDEX_CONFIG_FILE,
    MODERATE_CONFIG_FILE,
    EmbedConfig,
    IndexConfig,
    ModerateConfig,
)
from clipforge.index.embed import EmbedResult, embed_collection
from clipforge.index.manifest import checkpoint_fingerprint, same_checkpoint
from clipforge.index.moderate import Calibration, read_concepts
from clipforge.index.moderate_run import calibrate_from_csv, moderate_collection, write_report
from clipforge.index.search import Searcher, check_k
from clipforge.index.store import IndexStore, load_store
from clipforge.pipeline import load
from clipforge.utils.configs import require, write_resolved
from clipforge.utils.io import check_out_dir


def run_embed(cfg: EmbedConfig) -> EmbedResult:
    """Embed ``cfg.src`` into ``cfg.out``; under torchrun every rank embeds its share and rank 0 merges.

    Returns:
        This rank's result (its ``manifest``, the merged one, is set on rank 0 only).
    """
    require(cfg, "checkpoint", "src", "out", command="embed")
    auto = cfg.device == "auto"
    # Under torchrun this joins the process group (RANK/WORLD_SIZE/LOCAL_RANK); a plain run is rank 0 of 1.
    world = init_distributed(None if auto else cfg.device.partition(":")[0])
    # A single process honours an explicit "cuda:N"; under torchrun each rank uses its LOCAL_RANK device.
    device = cfg.device if not auto and not world.distributed else world.device
    try:
        collection = open_source(cfg.src, cfg.image_column, cfg.caption_column)
        precision = cfg.precision or ("fp32" if torch.device(device).type == "cpu" else "auto")
        pipeline = load(cfg.checkpoint, device=device, precision=precision)
        result = embed_collection(
            pipeline, collection, cfg.out, fingerprint=checkpoint_fingerprint(cfg.checkpoint, pipeline.identity),
            rank=world.rank,
            world=world.world_size, batch_size=cfg.batch_size, workers=cfg.workers, dtype=cfg.dtype,
            device=device, barrier=dist.barrier if world.distributed else None, max_pixels=cfg.max_pixels,
        )  # fmt: skip
    finally:
        if world.distributed:
            destroy_distributed()
    if world.rank == 0:
        write_resolved(cfg, cfg.out, EMBED_CONFIG_FILE)
    return result


@dataclass(frozen=True)
class IndexChange:
    """What an index job did: the store as saved, vectors added and removed, and (full builds) the build report."""

    store: IndexStore
    added: int = 0
    removed: int = 0
    report: BuildReport | None = None


def run_index(cfg: IndexConfig) -> IndexChange:
    """Build an index of ``cfg.embeddings`` into ``cfg.out`` (replacing what was there)."""
    require(cfg, "embeddings", "out", command="index")
    check_out_dir(cfg.out, "out")  # before the build, which can take minutes
    store, report = build_store(
        read_embeddings(cfg.embeddings), kind=cfg.kind, quant=cfg.quant, nlist=cfg.nlist, nprobe=cfg.nprobe,
        m=cfg.m, target_recall=cfg.target_recall, recall_sample=cfg.recall_sample, seed=cfg.seed,
    )  # fmt: skip
    store.save(cfg.out)
    write_resolved(cfg, cfg.out, INDEX_CONFIG_FILE)
    return IndexChange(store, added=report.count, report=report)


def update_index(cfg: IndexConfig) -> IndexChange:
    """Bring the index in ``cfg.out`` up to date with ``cfg.embeddings`` (adds new vectors, drops gone ones)."""
    require(cfg, "embeddings", "out", command="index")
    store = load_store(cfg.out)
    added, removed = sync_store(store, read_embeddings(cfg.embeddings))
    store.save(cfg.out)
    return IndexChange(store, added=added, removed=removed)


def delete_from_index(index_dir: str | Path, ids: list[int]) -> IndexChange:
    """Delete ``ids`` from the index in ``index_dir`` (``removed``: how many of them were present)."""
    store = load_store(index_dir)
    removed = store.remove(ids)
    store.save(index_dir)
    return IndexChange(store, removed=removed)


@dataclass(frozen=True)
class ModerateResult:
    """What a moderation run found: flagged rows, images checked, skip counts, calibrations, concepts used."""

    rows: list[dict[str, Any]]
    total: int
    skipped: dict[str, int]
    calibrations: dict[str, Calibration] = field(default_factory=dict)
    unthresholded: list[str] = field(default_factory=list)


def run_moderate(cfg: ModerateConfig) -> ModerateResult:
    """Calibrate thresholds on ``cfg.labelled`` (when given), score ``cfg.src``, write the report to ``cfg.out``."""
    require(cfg, "checkpoint", "src", "concepts", "out", command="moderate")
    check_out_dir(cfg.out, "out")
    concepts = read_concepts(cfg.concepts)
    pipeline = load(cfg.checkpoint, device=cfg.device)
    opts = {"batch_size": cfg.batch_size, "workers": cfg.workers, "device": cfg.device}
    calibrations: dict[str, Calibration] = {}
    if cfg.labelled:
        concepts, calibrations = calibrate_from_csv(pipeline, concepts, Path(cfg.labelled), cfg.precision, **opts)
    embed_texts = Searcher.text_embedder(pipeline)
    rows, total, skipped = moderate_collection(pipeline, cfg.checkpoint, cfg.src, concepts, embed_texts, **opts)
    write_report(Path(cfg.out), concepts, calibrations, rows, total, skipped, cfg.precision)
    write_resolved(cfg, cfg.out, MODERATE_CONFIG_FILE)
    missing = [c.name for c in concepts if c.threshold is None]
    return ModerateResult(rows, total, skipped, calibrations, missing)


def run_search(index_dir: str | Path, text: str | None = None, image: str | Path | None = None,
               labels: list[str] | None = None, captions_from: str | Path | None = None, k: int = 10,
               device: str = "cpu", precision: str = "fp32") -> list[dict[str, Any]]:  # fmt: skip
    """One query against the index in ``index_dir``; returns the results as JSON rows, best first.

    Args:
        text: a text query: find matching images.
        image: an image file: find similar images, or rank ``labels`` or the captions of ``captions_from``.
        labels: image->text: rank these texts.
        captions_from: image->text: rank the captions of this index (built with the same model).
        k: results to return (1..100).
        device: where the query model runs.
        precision: the query model's arithmetic (see clipforge.precision).
    """
    check_k(k)
    if (text is None) == (image is None):
        raise UserError("give either a text or an image query")
    if (labels or captions_from) and image is None:
        raise UserError("--labels and --captions-from rank texts for an --image query")
    searcher = Searcher.open(index_dir, device=device, precision=precision)
    if text is not None:
        return [h.to_json() for h in searcher.text_to_image(text, k)]
    path = Path(image)  # type: ignore[arg-type]
    if not path.is_file():
        raise UserError(f"{path}: no such image file")
    picture = load_image(path.read_bytes(), str(path))
    if labels:
        return [s.to_json() for s in searcher.classify(picture, labels)[:k]]
    if captions_from:
        if Path(captions_from).resolve() != Path(index_dir).resolve():
            other = load_store(captions_from)
            if not same_checkpoint(other.manifest["checkpoint"], searcher.store.manifest["checkpoint"]):
                raise UserError(f"{captions_from} was built with another model than {index_dir}",
                                hint="rank captions of an index built with the same checkpoint")
            searcher = Searcher(other, searcher.pipeline)
        return [h.to_json() for h in searcher.image_to_captions(picture, k)]
    return [h.to_json() for h in searcher.image_to_image(picture, k)]
