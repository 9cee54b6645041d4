"""A FAISS index over L2-normalized embeddings, with metadata, saved as one directory.

Index directory:
  index.faiss     exact inner product (IndexIDMap2 over IndexFlatIP) up to FLAT_MAX vectors, IVF above
  meta.parquet    id, path, width, height, sha256, caption of every indexed image
  captions.npy    (N, D) caption embeddings aligned with meta rows (only when the collection has captions)
  index.json      kind, parameters, recall@10, the checkpoint that made the embeddings (path + config hash)
                  and the collection root; written last, so a reader never sees a half-written index
Inner product on unit vectors is cosine similarity, the score CLIP was trained with.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipforge.errors import UserError
from clipforge.utils.io import atomic_path, atomic_write_text, ensure_dir

INDEX_MANIFEST = "index.json"
INDEX_FILE = "index.faiss"
META_FILE = "meta.parquet"
CAPTIONS_FILE = "captions.npy"
# Exact search scans every vector: 100k x 512 float32 took ~50 ms a query on the 2 shared cores of our CI
# machine (benchmarks/search.py), so past ~200k vectors IVF is the better trade.
FLAT_MAX = 200_000
# faiss warns below 39 training points per centroid; 64 gives stable centroids without training on everything.
TRAIN_POINTS_PER_LIST = 64
PQ_TRAIN_POINTS = 39 * 256


@dataclass(frozen=True)
class IndexParams:
    """How the index is built: kind "flat" or "ivf"; nlist lists, nprobe probed; quant "none" | "sq8" | "pq"."""

    kind: str = "flat"
    nlist: int = 0
    nprobe: int = 0
    quant: str = "none"
    m: int = 0  # PQ sub-quantizers (dim must be divisible by m)

    def factory(self, dim: int) -> str:
        if self.kind == "flat":
            return "IDMap2,Flat"
        codec = {"none": "Flat", "sq8": "SQ8", "pq": f"PQ{self.m}"}[self.quant]
        return f"IVF{self.nlist},{codec}"


def choose_params(n: int, dim: int, kind: str = "auto", quant: str = "none", nlist: int | None = None,
                  m: int | None = None) -> IndexParams:
    """Index parameters for ``n`` vectors of ``dim``: exact up to FLAT_MAX, else IVF with nlist ~ 4 sqrt(n).

    Args:
        n, dim: collection size and vector width.
        kind: "auto", "flat" or "ivf".
        quant: for IVF, "none" (full vectors), "sq8" (1 byte per dimension) or "pq" (m bytes per vector).
        nlist, m: overrides; m defaults to dim / 8 (64 bytes for 512-d), the usual PQ code size.
    """
    if kind not in ("auto", "flat", "ivf"):
        raise UserError(f"kind must be auto, flat or ivf, got {kind!r}")
    if quant not in ("none", "sq8", "pq"):
        raise UserError(f"quant must be none, sq8 or pq, got {quant!r}")
    if kind == "flat" or (kind == "auto" and n <= FLAT_MAX):
        return IndexParams("flat")
    # IVF: sqrt(n) balances probing lists against scanning them; x4 keeps lists ~250 long at 1M.
    lists = nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
    if lists > n:  # k-means cannot place more centroids than it has points (FAISS fails in C++ otherwise)
        raise UserError(f"nlist={lists} lists need at least {lists} vectors to train, the embeddings hold {n}",
                        hint=f"leave nlist unset (about 4 sqrt(N)), give nlist <= {max(1, n // 39)}, or use kind=flat")
    pq_m = 0
    if quant == "pq":
        pq_m = m or max(1, dim // 8)
        if dim % pq_m:
            raise UserError(f"m={pq_m} must divide the embedding width {dim}")
    return IndexParams("ivf", nlist=lists, nprobe=min(8, lists), quant=quant, m=pq_m)


def faiss_module() -> Any:
    """The faiss module, imported on first use.

    Deferred on purpose: importing faiss takes about a second (it probes the CPU's instruction sets), which
    every importer of this module would pay, and it logs each library it fails to load at INFO, noise for
    our users: its loader's log is quieted first.
    """
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss  # deferred: see the docstring

    return faiss


def build_index(vectors: np.ndarray, ids: np.ndarray, params: IndexParams, seed: int = 0) -> Any:
    """A trained FAISS inner-product index holding ``vectors`` under ``ids``.

    Args:
        vectors: (N, D) float32 L2-normalized.
        ids: (N,) int64 ids (the embedding directory's ids).
        params: from ``choose_params``.
        seed: seeds the choice of training points and k-means.
    """
    faiss = faiss_module()
    dim = vectors.shape[1]
    index = faiss.index_factory(dim, params.factory(dim), faiss.METRIC_INNER_PRODUCT)
    if params.kind == "ivf":
        rng = np.random.default_rng(seed)
        # PQ codebooks (256 centroids per sub-quantizer) need their own ~39 x 256 points too.
        wanted = TRAIN_POINTS_PER_LIST * params.nlist + (PQ_TRAIN_POINTS if params.quant == "pq" else 0)
        count = min(len(vectors), wanted)
        train = vectors[np.sort(rng.choice(len(vectors), size=count, replace=False))]
        index.cp.seed = seed
        index.train(train)
        index.nprobe = params.nprobe
    if len(vectors):
        index.add_with_ids(vectors, ids.astype(np.int64))
    return index


def set_nprobe(index: Any, nprobe: int) -> None:
    faiss = faiss_module()
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = nprobe


def recall_queries(vectors: np.ndarray, sample: int, seed: int = 0) -> np.ndarray:
    """Queries for measuring recall: sampled vectors moved off themselves by noise (norm 0.5), renormalized.

    A stored vector used as its own query is always found, which flatters approximate indexes; the noise
    makes the query a new point near the data, as a real query is.
    """
    rng = np.random.default_rng(seed)
    rows = vectors[rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False)].astype(np.float32)
    noise = rng.standard_normal(rows.shape).astype(np.float32)
    noise *= 0.5 / np.linalg.norm(noise, axis=1, keepdims=True)
    queries = rows + noise
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def exact_neighbours(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) ids of the exact top-k inner-product neighbours (faiss.knn: no index copy of the vectors)."""
    faiss = faiss_module()
    _, rows = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    return ids[rows]


def recall_at_k(index: Any, queries: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Fraction of the exact top-k ids that the index also returns in its top-k, averaged over queries."""
    _, found = index.search(queries, k)
    hits = sum(len(set(f[f >= 0]) & set(t)) for f, t in zip(found, truth, strict=True))
    return hits / max(truth.size, 1)


def tune_nprobe(index: Any, params: IndexParams, queries: np.ndarray, truth: np.ndarray, target: float,
                k: int = 10) -> tuple[IndexParams, float, dict[int, float]]:
    """The smallest nprobe (doubling from 1) whose recall@k reaches ``target``; returns (params, recall, curve)."""
    if params.kind == "flat":
        return params, recall_at_k(index, queries, truth, k), {}
    curve: dict[int, float] = {}
    nprobe = 1
    while True:
        set_nprobe(index, nprobe)
        curve[nprobe] = recall_at_k(index, queries, truth, k)
        if curve[nprobe] >= target or nprobe >= params.nlist:
            break
        nprobe = min(nprobe * 2, params.nlist)
    set_nprobe(index, nprobe)
    return replace(params, nprobe=nprobe), curve[nprobe], curve


@dataclass
class IndexStore:
    """An index in memory: the FAISS index, metadata columns, optional caption vectors, and the manifest."""

    index: Any
    meta: dict[str, list]
    captions: np.ndarray | None
    manifest: dict[str, Any]

    def __post_init__(self) -> None:
        self._row_of_id = {int(i): r for r, i in enumerate(self.meta["id"])}

    @property
    def params(self) -> IndexParams:
        return IndexParams(**self.manifest["params"])

    def row(self, item_id: int) -> dict[str, Any] | None:
        """The metadata of ``item_id`` (None when the id is not indexed)."""
        r = self._row_of_id.get(int(item_id))
        return None if r is None else {k: v[r] for k, v in self.meta.items()}

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) scores and ids for (Q, D) float32 unit queries; missing neighbours have id -1.

        Raises:
            UserError: when the queries' width is not the index's (FAISS would only assert).
        """
        if queries.ndim != 2 or queries.shape[1] != self.index.d:
            raise UserError(f"queries of width {queries.shape[-1]} cannot search an index of {self.index.d}-d vectors",
                            hint="query with the checkpoint recorded in index.json, or rebuild the index")
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def vectors(self, ids: list[int]) -> np.ndarray:
        """(N, D) float32 stored vectors of indexed ``ids`` (decoded from the codes: approximate for sq8/pq).

        An IVF index gets a hash-table id map on first use (FAISS keeps none by default); a flat IDMap2 index
        reconstructs by id as it is.
        """
        faiss = faiss_module()
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        if not ids:
            return np.zeros((0, self.index.d), np.float32)
        return np.stack([self.index.reconstruct(int(i)) for i in ids]).astype(np.float32)

    def add(self, vectors: np.ndarray, rows: dict[str, list], captions: np.ndarray | None) -> None:
        """Append rows (metadata columns incl. "id") and their unit vectors."""
        if vectors.shape[1] != self.index.d:
            raise UserError(f"vectors of width {vectors.shape[1]} cannot join an index of {self.index.d}-d vectors",
                            hint="build a new index (without --add)")
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(rows["id"], np.int64))
        if self.captions is not None and captions is not None:
            self.captions = np.concatenate([self.captions, captions.astype(self.captions.dtype)])
        for key in self.meta:
            self.meta[key].extend(rows[key])
        self.__post_init__()

    def remove(self, ids: list[int]) -> int:
        """Delete ``ids`` from the index and the metadata; returns how many were present."""
        present = [i for i in ids if int(i) in self._row_of_id]
        if not present:
            return 0
        self.index.remove_ids(np.asarray(present, dtype=np.int64))
        drop = {self._row_of_id[int(i)] for i in present}
        keep = [r for r in range(len(self.meta["id"])) if r not in drop]
        self.meta = {k: [v[r] for r in keep] for k, v in self.meta.items()}
        if self.captions is not None:
            self.captions = self.captions[keep]
        self.__post_init__()
        return len(present)

    def save(self, out_dir: str | Path) -> None:
        """Write every file atomically, the manifest last."""
        faiss = faiss_module()
        out = ensure_dir(out_dir, "out")
        with atomic_path(out / INDEX_FILE) as tmp:
            faiss.write_index(self.index, str(tmp))
        with atomic_path(out / META_FILE) as tmp:
            pq.write_table(pa.table(self.meta), tmp)
        if self.captions is not None:
            with atomic_path(out / CAPTIONS_FILE) as tmp, open(tmp, "wb") as fh:
                np.save(fh, self.captions)
        self.manifest["count"] = int(self.index.ntotal)
        atomic_write_text(out / INDEX_MANIFEST, json.dumps(self.manifest, indent=2) + "\n")


def load_store(index_dir: str | Path) -> IndexStore:
    """Read an index directory.

    Raises:
        UserError: when ``index_dir`` is not an index directory.
    """
    faiss = faiss_module()
    path = Path(index_dir)
    if not (path / INDEX_MANIFEST).is_file():
        raise UserError(
            f"{index_dir} is not an index directory: {path / INDEX_MANIFEST} is missing",
            hint="build one with 'clipforge index EMB_DIR INDEX_DIR'",
        )
    manifest = json.loads((path / INDEX_MANIFEST).read_text())
    index = faiss.read_index(str(path / INDEX_FILE))
    meta = pq.read_table(path / META_FILE).to_pydict()
    captions = np.load(path / CAPTIONS_FILE) if (path / CAPTIONS_FILE).is_file() else None
    store = IndexStore(index, meta, captions, manifest)
    if store.params.kind == "ivf":
        set_nprobe(index, store.params.nprobe)
    return store


def params_json(params: IndexParams) -> dict[str, Any]:
    return asdict(params)
