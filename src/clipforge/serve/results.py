"""Pages of search results: one ranked list, optionally without near-duplicates and flagged images, cut into pages.

Both filters are prefix-stable: whether a result is kept depends only on the results ranked above it (a near-
duplicate of a kept one is hidden; a flagged one is hidden), so the page at ``offset`` computed from a longer
candidate list is the same as from a shorter one, and "load more" never repeats or skips a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clipforge.index.moderate import Moderator
from clipforge.index.search import Hit, Searcher

# A page reads at most this many ranked candidates (FAISS returns them in one call; 1,000 x D floats is small).
MAX_CANDIDATES = 1000
MAX_OFFSET = 900
# The page's "hide near-duplicates" toggle: cosine 0.95 between two CLIP image embeddings is a resize, crop or
# recolour of the same picture far more often than two different pictures.
DEFAULT_DEDUP = 0.95


@dataclass(frozen=True)
class Filters:
    """What a page hides: ``dedup`` the cosine at or above which a result duplicates a better-ranked one
    (None: keep all); ``safe`` the results flagged by the server's moderation concepts."""

    dedup: float | None = None
    safe: bool = False


def _keep(vectors: np.ndarray, flagged: np.ndarray | None, filters: Filters) -> tuple[list[int], int, int]:
    """Rows to keep in rank order, and how many were hidden as duplicates and as flagged."""
    kept: list[int] = []
    duplicates = unsafe = 0
    for row in range(len(vectors)):
        if filters.safe and flagged is not None and flagged[row]:
            unsafe += 1
            continue
        if filters.dedup is not None and kept and float((vectors[kept] @ vectors[row]).max()) >= filters.dedup:
            duplicates += 1
            continue
        kept.append(row)
    return kept, duplicates, unsafe


def result_page(searcher: Searcher, vector: np.ndarray, k: int, offset: int, filters: Filters,
                moderator: Moderator | None) -> dict[str, Any]:
    """Results ``offset`` .. ``offset + k`` of the ranking for one (1, D) unit query vector.

    Returns the JSON body: ``results`` (each hit with ``flagged`` when the server has moderation concepts),
    ``offset``, ``more`` (whether a next page exists) and ``hidden`` (duplicates and flagged images hidden
    among the candidates read so far).
    """
    total = int(searcher.store.index.ntotal)
    wanted = offset + k + 1  # one past the page tells whether there is more
    n = min(wanted, MAX_CANDIDATES, total)
    while True:
        hits = searcher.search_vector(vector, n) if n else []
        filtering = filters.dedup is not None or (filters.safe and moderator is not None)
        vectors = searcher.store.vectors([h.id for h in hits]) if (filtering or moderator) else None
        flagged = moderator.flags(vectors) if moderator is not None and vectors is not None else None
        if vectors is None:
            kept, duplicates, unsafe = list(range(len(hits))), 0, 0
        else:
            kept, duplicates, unsafe = _keep(vectors, flagged, filters)
        if len(kept) >= wanted or n >= min(MAX_CANDIDATES, total):
            break
        n = min(2 * n, MAX_CANDIDATES, total)
    page = kept[offset: offset + k]
    return {"results": [_hit_json(hits[r], None if flagged is None else bool(flagged[r])) for r in page],
            "offset": offset, "more": len(kept) > offset + k,
            "hidden": {"duplicates": duplicates, "flagged": unsafe}}


def _hit_json(hit: Hit, flagged: bool | None) -> dict[str, Any]:
    out = hit.to_json()
    if flagged is not None:
        out["flagged"] = flagged
    return out
