"""Choosing a benchmark's prompt template set on validation classes, never on its test classes.

With ``SuiteConfig.templates = "auto"``, each zero-shot benchmark that names validation data gets the candidate
set (``CANDIDATES``) with the best top-1 on that data; ties go to the set listed first. The emoji benchmarks
validate on ``val.jsonl``, classes that are not test classes (unseen by a model trained on ``train.jsonl``; the
demo recipe trains on them too, ``trainval.jsonl``, so there the choice is made on training classes); the
grayscale benchmarks (Fashion-MNIST, Animal-MNIST) validate on the same images in the silhouette view
(light-on-dark grayscale, ``data.transforms.silhouette``), the look of their test images, still without one
of their classes. What was chosen, on what, and every candidate's score go into results.json.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from clipforge.data.transforms import silhouette
from clipforge.eval import zeroshot
from clipforge.eval.datasets import ClassificationData, DatasetConfig, ImageSet, load_classification
from clipforge.eval.features import encode_images
from clipforge.eval.templates import get_templates
from clipforge.pipeline import Pipeline

log = logging.getLogger(__name__)

AUTO = "auto"
# Every built-in set; "openai" first, so a tie keeps the published default.
CANDIDATES = ("openai", "short", "single", "plain", "emoji", "drawing")
# How much of a drawing's own shading the validation silhouette keeps (training draws it from [0.4, 1]).
SILHOUETTE_LEVEL = 0.7

View = Literal["as_is", "silhouette"]


@dataclass(frozen=True)
class Validation:
    """Where a benchmark's prompt set is chosen: labelled images of non-test classes, seen in ``view``."""

    dataset: DatasetConfig
    view: View = "as_is"


@dataclass
class Choice:
    """The chosen set, the data it was chosen on, and each candidate's validation top-1."""

    templates: str
    chosen_on: str
    scores: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"templates": self.templates, "chosen_on": self.chosen_on, "val_top1": dict(self.scores)}


class SilhouetteImages(ImageSet):
    """Another image set seen through ``data.transforms.silhouette`` (drawings on white become light-on-dark)."""

    def __init__(self, base: ImageSet, level: float = SILHOUETTE_LEVEL) -> None:
        self.base, self.level = base, level

    def __len__(self) -> int:
        return len(self.base)

    def load(self, index: int) -> Any:
        return silhouette(self.base.load(index), self.level)


def _view(data: ClassificationData, view: View) -> ClassificationData:
    if view == "as_is":
        return data
    return ClassificationData(data.classnames, SilhouetteImages(data.images), data.labels, f"{data.source} ({view})")


def choose_templates(
    pipeline: Pipeline,
    validation: Validation,
    candidates: tuple[str, ...] = CANDIDATES,
    batch_size: int = 128,
    cache: dict | None = None,
) -> Choice:
    """Score every candidate set by zero-shot top-1 on ``validation`` and return the best (first on ties).

    Args:
        pipeline: the model being evaluated.
        validation: labelled images of classes that are not test classes, and the view to see them in.
        candidates: template set names (see ``eval.templates``).
        batch_size: images / texts per forward pass.
        cache: image features shared with other choices on the same images (suite runs pass one).
    """
    data = _view(load_classification(validation.dataset), validation.view)
    key = ("prompt-validation", validation)
    if cache is not None and key in cache:
        feats, kept = cache[key]
    else:
        feats, kept = encode_images(pipeline, data.images, batch_size)
        if cache is not None:
            cache[key] = (feats, kept)
    labels = torch.tensor(data.labels, dtype=torch.long)[kept]
    scores: dict[str, float] = {}
    for name in candidates:
        text_key = ("prompt-classes", tuple(data.classnames), name)  # the same for every view of these classes
        weights = cache.get(text_key) if cache is not None else None
        if weights is None:
            weights = zeroshot.class_embeddings(pipeline, data.classnames, get_templates(name), batch_size)
            if cache is not None:
                cache[text_key] = weights
        _, ranking = zeroshot.rank_classes(feats, weights)
        scores[name] = float((ranking[:, 0] == labels).float().mean())
    best = max(candidates, key=lambda n: (scores[n], -candidates.index(n)))
    where = f"{data.source}: {len(set(data.labels))} validation classes, {len(labels)} images"
    log.info("prompt set %s chosen on %s (top-1 %s)", best, where,
             ", ".join(f"{n} {100 * s:.1f}%" for n, s in scores.items()))  # fmt: skip
    return Choice(best, where, scores)
