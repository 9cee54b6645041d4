"""The ``clipforge moderate`` job: calibrate thresholds on a labelled CSV, score a collection, write a report."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from clipforge.data.sources import Item, Source, open_source
from clipforge.errors import UserError
from clipforge.index.build import read_embeddings
from clipforge.index.embed import embed_in_memory
from clipforge.index.manifest import EMBED_MANIFEST, checkpoint_fingerprint, same_checkpoint
from clipforge.index.moderate import (
    Calibration,
    Concept,
    Moderator,
    calibrate,
    concept_probabilities,
    with_thresholds,
    write_concepts,
)
from clipforge.index.search import Searcher
from clipforge.pipeline import Pipeline
from clipforge.utils.io import atomic_write_text


def read_labelled(csv_path: Path, concepts: list[Concept]) -> tuple[Source, list[tuple[str, str, bool]]]:
    """The labelled images (deduplicated) and their (path, concept, label) rows.

    The CSV is read as an image table (``clipforge.data.sources``: UTF-8, malformed rows skipped and counted)
    with the image paths in its ``path`` column.

    Raises:
        UserError: for a missing column, an unknown concept, or a label other than 0/1.
    """
    if not csv_path.is_file():
        raise UserError(f"{csv_path}: no such labelled CSV")
    names = {c.name for c in concepts}
    table = open_source(csv_path, image_column="path", extra_columns=("concept", "label"))
    rows = []
    for item in table.items:
        concept, label = item.fields.get("concept"), str(item.fields.get("label") or "").strip()
        if concept is None:
            raise UserError(f"{csv_path}: needs the columns path,concept,label")
        if concept not in names:
            raise UserError(f"{csv_path}: {item.path}: unknown concept {concept!r} (known: {sorted(names)})")
        if label not in ("0", "1"):
            raise UserError(f"{csv_path}: {item.path}: label must be 0 or 1, got {label!r}")
        rows.append((item.path, concept, label == "1"))
    unique = tuple(Item(p) for p in sorted({p for p, _, _ in rows}))
    return replace(table, items=unique), rows


def calibrate_from_csv(pipeline: Pipeline, concepts: list[Concept], csv_path: Path, precision: float,
                       **embed_opts: Any) -> tuple[list[Concept], dict[str, Calibration]]:
    """Concepts with thresholds calibrated to ``precision`` on the labelled CSV, and each calibration."""
    collection, rows = read_labelled(csv_path, concepts)
    paths, vectors, _ = embed_in_memory(pipeline, collection, progress=False, **embed_opts)
    row_of = {p: i for i, p in enumerate(paths)}
    scores = Moderator(concepts, Searcher.text_embedder(pipeline)).scores(vectors)  # (N, C)
    calibrations = {}
    for j, concept in enumerate(concepts):
        mine = [(row_of[p], y) for p, c, y in rows if c == concept.name and p in row_of]
        if not mine:
            continue
        idx = np.array([i for i, _ in mine])
        labels = np.array([y for _, y in mine])
        calibrations[concept.name] = calibrate(concept.name, scores[idx, j], labels, precision)
    return with_thresholds(concepts, calibrations), calibrations


def moderate_collection(pipeline: Pipeline, checkpoint: str, src: str, concepts: list[Concept],
                        embed_texts: Callable[[list[str]], np.ndarray],
                        **embed_opts: Any) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """Flagged (path, concept, score, threshold) rows of ``src``, the number of images checked, skip counts.

    ``src`` may be an embedding directory made with the same checkpoint (nothing is re-embedded).
    """
    if (Path(src) / EMBED_MANIFEST).is_file():
        emb = read_embeddings(src)
        if not same_checkpoint(emb.checkpoint, checkpoint_fingerprint(checkpoint, pipeline.identity)):
            raise UserError(f"{src} was embedded with another checkpoint ({emb.checkpoint['path']})",
                            hint="moderate the images themselves, or embed them with this checkpoint first")
        paths, vectors, skipped = list(emb.meta["path"]), emb.image, {}
    else:
        paths, vectors, skipped = embed_in_memory(pipeline, open_source(src), **embed_opts)
    scores = Moderator(concepts, embed_texts).scores(vectors)  # (N, C)
    probs = concept_probabilities(pipeline.model, scores)  # (N, C) for SigLIP models, else None
    rows = []
    for j, concept in enumerate(concepts):
        if concept.threshold is None:
            continue
        for i in np.flatnonzero(scores[:, j] >= concept.threshold):
            row = {"path": paths[i], "concept": concept.name, "score": round(float(scores[i, j]), 6),
                   "threshold": concept.threshold}  # fmt: skip
            if probs is not None:
                row["prob"] = round(float(probs[i, j]), 6)
            rows.append(row)
    rows.sort(key=lambda r: (-r["score"], r["path"]))
    return rows, len(paths), skipped


def write_report(out: Path, concepts: list[Concept], calibrations: dict[str, Calibration],
                 rows: list[dict[str, Any]], total: int, skipped: dict[str, int], precision: float) -> None:
    """OUT/report.json (everything), OUT/report.csv (flagged rows), OUT/concepts.yaml (thresholds used)."""
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "images": total,
        "skipped": skipped,
        "flagged_images": len({r["path"] for r in rows}),
        # Flags follow the cosine score and its threshold; SigLIP models add each flag's sigmoid probability.
        "probability": "sigmoid" if any("prob" in r for r in rows) else "none",
        "requested_precision": precision,
        "concepts": [{"name": c.name, "prompts": list(c.prompts), "threshold": c.threshold} for c in concepts],
        "calibration": {name: asdict(cal) for name, cal in calibrations.items()},
        "flagged": rows,
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    buf = io.StringIO()
    fields = ["path", "concept", "score", "threshold"] + (["prob"] if any("prob" in r for r in rows) else [])
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "report.csv", buf.getvalue())
    write_concepts(out / "concepts.yaml", concepts)
