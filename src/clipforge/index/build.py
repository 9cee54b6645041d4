"""Build an index from an embedding directory, or bring an existing index up to date with one."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from clipforge.errors import UserError
from clipforge.index.manifest import (
    IMAGE_EMB_FILE,
    METADATA_FILE,
    TEXT_EMB_FILE,
    read_embed_manifest,
    same_checkpoint,
)
from clipforge.index.store import (
    IndexStore,
    build_index,
    choose_params,
    exact_neighbours,
    params_json,
    recall_at_k,
    recall_queries,
    set_nprobe,
    tune_nprobe,
)

META_KEYS = ("id", "path", "width", "height", "sha256", "caption")


@dataclass
class Embeddings:
    """An embedding directory in memory: float32 unit vectors, metadata columns, the manifest."""

    image: np.ndarray
    text: np.ndarray
    meta: dict[str, list]
    checkpoint: dict[str, str]
    source: dict[str, str]

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self.meta["id"], dtype=np.int64)

    @property
    def has_captions(self) -> bool:
        return any(c for c in self.meta["caption"])


def read_embeddings(emb_dir: str | Path) -> Embeddings:
    """Load an embedding directory written by ``clipforge embed`` (vectors as float32)."""
    emb = Path(emb_dir)
    manifest = read_embed_manifest(emb)
    meta = pq.read_table(emb / METADATA_FILE).to_pydict()
    image = np.load(emb / IMAGE_EMB_FILE).astype(np.float32)
    text = np.load(emb / TEXT_EMB_FILE).astype(np.float32)
    if len(image) != len(meta["id"]) or len(text) != len(image):
        raise UserError(f"{emb}: {len(meta['id'])} metadata rows but {len(image)} vectors",
                        hint="re-run 'clipforge embed' into this directory to repair it")
    if image.ndim != 2 or image.shape[1] != manifest.dim:
        raise UserError(f"{emb}: vectors of shape {image.shape}, but embed.json says {manifest.dim} dimensions",
                        hint="re-run 'clipforge embed' into a new directory")
    bad = ~(np.isfinite(image).all(axis=1) & np.isfinite(text).all(axis=1))
    if bad.any():
        # A NaN vector ranks arbitrarily against every query; indexing it (or quietly dropping it) hides the fault.
        first = meta["path"][int(np.flatnonzero(bad)[0])]
        raise UserError(f"{emb}: {int(bad.sum())} of {len(image)} embeddings are not finite (NaN/inf), e.g. {first}",
                        hint="check the checkpoint's weights, then embed into a new directory")
    return Embeddings(image, text, {k: meta[k] for k in META_KEYS}, manifest.checkpoint, manifest.source)


@dataclass
class BuildReport:
    """What ``build_store`` chose and measured (printed by the CLI, stored in index.json)."""

    params: dict[str, Any]
    count: int
    build_seconds: float
    recall_at_10: float
    recall_curve: dict[int, float] = field(default_factory=dict)


def build_store(emb: Embeddings, *, kind: str = "auto", quant: str = "none", nlist: int | None = None,
                nprobe: int | None = None, m: int | None = None, target_recall: float = 0.95,
                recall_sample: int = 500, seed: int = 0) -> tuple[IndexStore, BuildReport]:
    """Index every vector of ``emb`` and measure recall@10 against exact search on a sample of queries.

    Args:
        emb: from ``read_embeddings``.
        kind, quant, nlist, m: see ``store.choose_params``.
        nprobe: fixed nprobe; by default the smallest power of two reaching ``target_recall`` on the sample.
        target_recall: recall@10 the automatic nprobe must reach.
        recall_sample: number of queries for the recall measurement.
        seed: seeds training-point choice, k-means and the recall queries.
    """
    if len(emb.image) == 0:
        raise UserError("the embedding directory holds no vectors", hint="check 'clipforge embed' skipped counts")
    params = choose_params(len(emb.image), emb.image.shape[1], kind, quant, nlist, m)
    start = time.perf_counter()
    index = build_index(emb.image, emb.ids, params, seed=seed)
    seconds = time.perf_counter() - start
    k = min(10, len(emb.image))
    queries = recall_queries(emb.image, recall_sample, seed=seed)
    truth = exact_neighbours(emb.image, emb.ids, queries, k)
    if nprobe is not None and params.kind == "ivf":
        params = replace(params, nprobe=min(nprobe, params.nlist))
        set_nprobe(index, params.nprobe)
        recall, curve = recall_at_k(index, queries, truth, k), {}
    else:
        params, recall, curve = tune_nprobe(index, params, queries, truth, target_recall, k)
    manifest = {
        "format": 1,
        "params": params_json(params),
        "dim": int(emb.image.shape[1]),
        "count": len(emb.image),
        "recall_at_10": recall,
        "trained_on": len(emb.image),
        "checkpoint": emb.checkpoint,
        "source": emb.source,
    }
    captions = emb.text.astype(np.float16) if emb.has_captions else None
    store = IndexStore(index, {k: list(v) for k, v in emb.meta.items()}, captions, manifest)
    return store, BuildReport(params_json(params), len(emb.image), seconds, recall, curve)


def sync_store(store: IndexStore, emb: Embeddings) -> tuple[int, int]:
    """Bring ``store`` in line with ``emb`` (``clipforge index --add``): add new ids, drop ids no longer there.

    IVF centroids are not retrained; the CLI suggests a rebuild once the index grew well beyond its
    training size. Returns (added, removed).

    Raises:
        UserError: when the embeddings come from another checkpoint or another collection than the index (checked
            before anything changes, so a refused update leaves the index as it was).
    """
    if not same_checkpoint(emb.checkpoint, store.manifest["checkpoint"]):
        raise UserError(
            f"these embeddings come from {emb.checkpoint.get('path')}, the index from "
            f"{store.manifest['checkpoint'].get('path')}: vectors of two models cannot share an index",
            hint="build a new index (without --add)",
        )
    mine, theirs = store.manifest.get("source", {}), emb.source
    if (mine.get("root"), mine.get("kind")) != (theirs.get("root"), theirs.get("kind")):
        # Syncing would drop every id of this collection and add paths that do not resolve under its root.
        raise UserError(
            f"these embeddings are of {theirs.get('root')} ({theirs.get('kind')}), the index of {mine.get('root')} "
            f"({mine.get('kind')}): --add updates an index from the same collection only",
            hint="build a separate index for the other collection, or embed one folder holding both and index that",
        )
    indexed = {int(i) for i in store.meta["id"]}
    current = {int(i) for i in emb.meta["id"]}
    removed = store.remove(sorted(indexed - current))
    new_rows = [r for r, i in enumerate(emb.meta["id"]) if int(i) not in indexed]
    if new_rows:
        rows = {k: [emb.meta[k][r] for r in new_rows] for k in META_KEYS}
        if store.captions is None and emb.has_captions:
            store.captions = np.zeros((len(store.meta["id"]), emb.text.shape[1]), np.float16)
        store.add(emb.image[new_rows], rows, emb.text[new_rows])
    return len(new_rows), removed
