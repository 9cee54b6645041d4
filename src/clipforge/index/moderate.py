"""Concept-based moderation: flag images whose similarity to a concept text passes its threshold.

A concepts file (YAML)::

    concepts:
      - name: weapon
        prompts: ["a photo of a weapon", "a photo of a gun"]   # averaged into one concept vector
        threshold: 0.24                                          # optional until calibrated

Thresholds are calibrated on a small labelled set (CSV ``path,concept,label`` with label 1/0): for each
concept the lowest threshold whose precision on the labelled set reaches the requested precision. The
lowest such threshold flags the most images at that precision (best recall).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from clipforge.errors import UserError
from clipforge.eval.zeroshot import SIGMOID, class_probabilities, probability_kind
from clipforge.utils.io import atomic_write_text


@dataclass(frozen=True)
class Concept:
    """A named concept: its prompt texts and the cosine threshold above which an image is flagged."""

    name: str
    prompts: tuple[str, ...]
    threshold: float | None = None


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold: precision/recall at it on the labelled set, and whether the target was reached."""

    concept: str
    threshold: float | None
    precision: float
    recall: float
    positives: int
    negatives: int
    reachable: bool
    note: str


def read_concepts(path: str | Path) -> list[Concept]:
    """Parse a concepts YAML file (see the module docstring).

    Raises:
        UserError: naming the file and the entry that is malformed.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read concepts file ({exc})") from exc
    entries = raw.get("concepts") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: expected a 'concepts:' list", hint="see 'clipforge moderate --help' for the format")
    concepts = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise UserError(f"{path}: concepts[{i}] needs a 'name'")
        prompts = entry.get("prompts") or entry.get("prompt") or [f"a photo of a {entry['name']}"]
        prompts = [prompts] if isinstance(prompts, str) else prompts
        threshold = entry.get("threshold")
        if threshold is not None and not isinstance(threshold, int | float):
            raise UserError(f"{path}: concepts[{i}].threshold must be a number, got {threshold!r}")
        concepts.append(Concept(str(entry["name"]), tuple(str(p) for p in prompts),
                                None if threshold is None else float(threshold)))
    names = [c.name for c in concepts]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: concept names must be unique, got {names}")
    return concepts


def write_concepts(path: str | Path, concepts: list[Concept]) -> None:
    data = {"concepts": [{"name": c.name, "prompts": list(c.prompts), "threshold": c.threshold} for c in concepts]}
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def concept_vectors(concepts: list[Concept], embed_texts: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """(C, D) unit vectors: each concept's prompt embeddings averaged (prompt ensembling), renormalized."""
    vectors = []
    for concept in concepts:
        v = embed_texts(list(concept.prompts)).mean(axis=0)
        vectors.append(v / np.linalg.norm(v))
    return np.stack(vectors).astype(np.float32)


def calibrate(concept: str, scores: np.ndarray, labels: np.ndarray, precision: float) -> Calibration:
    """The lowest threshold whose precision on (scores, labels) reaches ``precision``.

    Args:
        concept: the concept name (for messages).
        scores: (N,) cosine scores of the labelled images for this concept.
        labels: (N,) booleans, True where the image shows the concept.
        precision: the requested precision in (0, 1].
    """
    labels = labels.astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0:
        return Calibration(concept, None, 0.0, 0.0, pos, neg, False, "no positive examples in the labelled set")
    best = (0.0, None, 0.0)
    for t in np.unique(scores):  # ascending: the first threshold reaching the precision is the lowest
        flagged = scores >= t
        prec = float((flagged & labels).sum() / flagged.sum())
        rec = float((flagged & labels).sum() / pos)
        if prec >= precision:
            return Calibration(concept, float(t), prec, rec, pos, neg, True,
                               f"lowest threshold with precision >= {precision:g}")
        if prec > best[0]:
            best = (prec, float(t), rec)
    return Calibration(concept, None, best[0], best[2], pos, neg, False,
                       f"precision {precision:g} is unreachable on the labelled set (best {best[0]:.3f} "
                       f"at threshold {best[1]:.4f}); add labelled examples or lower precision=")


class Moderator:
    """Scores image vectors against concepts and flags those at or above each concept's threshold.

    Args:
        concepts: concepts with thresholds (a concept without one is scored but never flags).
        embed_texts: texts -> (N, D) unit vectors, from the same model as the image vectors.
        probability: for a sigmoid-trained (SigLIP) model, (N, C) scores -> each concept's own probability
            sigmoid(scale * score + bias), reported beside the score; None for softmax (CLIP) models, whose
            probabilities only compare the concepts with each other. Flagging uses the score either way.
    """

    def __init__(self, concepts: list[Concept], embed_texts: Callable[[list[str]], np.ndarray],
                 probability: Callable[[np.ndarray], np.ndarray] | None = None) -> None:  # fmt: skip
        self.concepts = concepts
        self.vectors = concept_vectors(concepts, embed_texts)  # (C, D)
        self.probability = probability

    def scores(self, images: np.ndarray) -> np.ndarray:
        """(N, C) cosine scores of (N, D) unit image vectors against every concept."""
        return images.astype(np.float32) @ self.vectors.T

    def flags(self, images: np.ndarray) -> np.ndarray:
        """(N,) booleans: True where an (N, D) unit image vector reaches any concept's threshold."""
        thresholds = np.array([np.inf if c.threshold is None else c.threshold for c in self.concepts], np.float32)
        return (self.scores(images) >= thresholds).any(axis=1)

    def judge(self, image: np.ndarray) -> dict[str, Any]:
        """Verdict for one (D,) or (1, D) image vector: flagged, and per-concept score/threshold/flag."""
        row = self.scores(image.reshape(1, -1))[0]
        probs = self.probability(row[None])[0] if self.probability is not None else None
        results = []
        for j, (concept, score) in enumerate(zip(self.concepts, row, strict=True)):
            flagged = concept.threshold is not None and float(score) >= concept.threshold
            result = {"concept": concept.name, "score": round(float(score), 6), "threshold": concept.threshold,
                      "flagged": flagged}  # fmt: skip
            if probs is not None:
                result["prob"] = round(float(probs[j]), 6)
            results.append(result)
        kind = "sigmoid" if probs is not None else "none"
        return {"flagged": any(r["flagged"] for r in results), "probability": kind, "concepts": results}


def with_thresholds(concepts: list[Concept], calibrations: dict[str, Calibration]) -> list[Concept]:
    """Concepts with calibrated thresholds where calibration succeeded, the configured ones elsewhere."""
    out = []
    for c in concepts:
        cal = calibrations.get(c.name)
        out.append(replace(c, threshold=cal.threshold) if cal and cal.reachable else c)
    return out


def concept_probabilities(model: torch.nn.Module, scores: np.ndarray) -> np.ndarray | None:
    """sigmoid(scale * score + bias) per image and concept for a SigLIP model; None for softmax CLIP models,
    whose probabilities only rank concepts against each other and so say nothing about one concept alone.

    Args:
        model: the CLIP model (its temperature and logit bias; ``eval.zeroshot.class_probabilities``).
        scores: (N, C) cosine similarities of images to concepts.
    """
    if probability_kind(model) != SIGMOID:
        return None
    return class_probabilities(torch.from_numpy(scores), model).numpy()
