"""The demo's fixed search queries and their precision@k: "does search look right" as a number.

The packaged ``data/queries.yaml`` lists twenty everyday text queries, each with the emoji labels judged
relevant, written before any model was trained. precision@k of a query is the share of its top k images
whose label is relevant; the demo reports the mean over all queries and each query's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from clipforge.errors import UserError

K = 5


@dataclass(frozen=True)
class Query:
    """A text query and the labels of the images that answer it."""

    text: str
    relevant: frozenset[str]


def load_queries(path: str | Path = "") -> list[Query]:
    """The queries of ``path`` (YAML: ``queries: [{query, relevant: [labels]}]``); "" = the packaged list.

    Args:
        path: a queries file, or "" for ``clipforge/demo/data/queries.yaml``.
    """
    import yaml

    if path:
        if not Path(path).is_file():
            raise UserError(f"queries file {path} does not exist", hint="leave queries empty for the packaged list")
        text, name = Path(path).read_text(encoding="utf-8"), str(path)
    else:
        text = resources.files("clipforge.demo").joinpath("data", "queries.yaml").read_text(encoding="utf-8")
        name = "clipforge/demo/data/queries.yaml"
    entries = (yaml.safe_load(text) or {}).get("queries")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{name}: no 'queries' list", hint="queries: [{query: a dog, relevant: [dog, dog face]}]")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not str(e.get("query", "")).strip() or not e.get("relevant"):
            raise UserError(f"{name}: query {i + 1} needs a 'query' text and a non-empty 'relevant' list")
        out.append(Query(str(e["query"]).strip(), frozenset(str(r) for r in e["relevant"])))
    return out


def precision_at_k(labels: list[str], relevant: frozenset[str], k: int = K) -> float:
    """Share of the first ``k`` results whose label is relevant (missing results count as misses).

    Args:
        labels: result labels, best first.
        relevant: labels judged relevant.
        k: cut-off.
    """
    return sum(label in relevant for label in labels[:k]) / k


def score_queries(search: Any, queries: list[Query], k: int = K) -> dict[str, Any]:
    """Run every query and score it.

    Args:
        search: ``search(text, k) -> [label, ...]`` best first (the demo passes its index's text search).
        queries: the queries.
        k: cut-off.

    Returns:
        ``{"k", "mean", "queries": [{"query", "precision", "top"}]}`` (precisions as fractions).
    """
    rows = []
    for q in queries:
        top = search(q.text, k)
        rows.append({"query": q.text, "precision": precision_at_k(top, q.relevant, k), "top": top})
    mean = sum(r["precision"] for r in rows) / len(rows) if rows else 0.0
    return {"k": k, "mean": mean, "queries": rows}
