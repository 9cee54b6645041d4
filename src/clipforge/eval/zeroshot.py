"""Zero-shot classification (CLIP paper, sec. 3.1.2 and 3.1.4).

Each class gets one text embedding: the class name is put into every prompt template, each prompt is
embedded and L2-normalized, the embeddings are averaged and the mean renormalized (the "ensemble in
embedding space" of sec. 3.1.4). An image is assigned the class whose embedding has the highest cosine
similarity.

Ties: classes are ranked by a stable descending sort of the similarities, so among classes with exactly
equal scores the one listed first (lowest class index) ranks higher. This holds for top-1, top-k and the
confusion matrix, and does not depend on the device or on ``torch.topk``'s unspecified order.

Classes with no images stay candidates (they can be predicted, and so cost accuracy) but are left out
of the mean per-class accuracy, which is undefined for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from clipforge.eval.datasets import ClassificationData, DatasetConfig, ImageSet, ListImages, load_classification
from clipforge.eval.features import FeatureCache, cached_image_features, encode_images, encode_texts
from clipforge.eval.templates import fill, get_templates
from clipforge.pipeline import Pipeline

TOP_K = 5  # top-5 as in the CLIP paper; with fewer classes it becomes top-(number of classes), i.e. 1.0


@dataclass(frozen=True)
class ZeroShotConfig:
    """Zero-shot classification of a labelled image set.

    Args:
        dataset: the images and class names.
        templates: template set name (``openai``, ``short``, ``single``, ``plain``) or a file path.
        batch_size: images / texts per forward pass.
        progress: show a progress bar while embedding images.
    """

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    templates: str = "openai"
    batch_size: int = 128
    progress: bool = False


@dataclass
class ZeroShotResult:
    """Everything a zero-shot run computed; ``metrics()`` is the ``run`` dict.

    Attributes:
        classnames: the C candidate classes.
        labels: (N,) true class of each embedded image.
        ranking: (N, C) classes ordered best first for each image (stable ties: lower index first).
        scores: (N, C) cosine similarities.
        image_indices: (N,) index of each row in the dataset's image set (images that failed to load are absent).
    """

    classnames: list[str]
    labels: torch.Tensor
    ranking: torch.Tensor
    scores: torch.Tensor
    image_indices: torch.Tensor
    images: ImageSet | None = None

    @property
    def predictions(self) -> torch.Tensor:
        return self.ranking[:, 0]

    def confusion(self) -> torch.Tensor:
        """(C, C) int64 counts: row = true class, column = predicted class."""
        c = len(self.classnames)
        flat = self.labels * c + self.predictions
        return torch.bincount(flat, minlength=c * c).reshape(c, c)

    def per_class_accuracy(self) -> list[float | None]:
        """Accuracy of each class; None for a class with no images."""
        conf = self.confusion()
        totals = conf.sum(dim=1)
        return [float(conf[i, i] / totals[i]) if totals[i] > 0 else None for i in range(len(self.classnames))]

    def metrics(self) -> dict[str, float]:
        k = min(TOP_K, len(self.classnames))
        hits = self.ranking[:, :k] == self.labels[:, None]  # (N, k)
        per_class = [a for a in self.per_class_accuracy() if a is not None]
        return {
            "top1": float(hits[:, 0].float().mean()),
            "top5": float(hits.any(dim=1).float().mean()),
            "mean_per_class": float(sum(per_class) / len(per_class)),
            "n_images": float(len(self.labels)),
            "n_classes": float(len(self.classnames)),
        }


def class_embeddings(
    pipeline: Pipeline, classnames: Sequence[str], templates: Sequence[str], batch_size: int = 256
) -> torch.Tensor:
    """One L2-normalized text embedding per class: the renormalized mean of its normalized prompt embeddings.

    Args:
        pipeline: the model and tokenizer.
        classnames: C class names.
        templates: T prompt templates with a ``{}``/``{c}`` placeholder.
        batch_size: prompts per forward pass.

    Returns:
        (C, D) float32, each row of unit norm.
    """
    prompts = [fill(t, c) for c in classnames for t in templates]  # C*T, class-major
    emb = encode_texts(pipeline, prompts, batch_size)  # (C*T, D), rows normalized
    emb = emb.reshape(len(classnames), len(templates), -1).mean(dim=1)  # (C, D)
    return F.normalize(emb, dim=-1)


# How a model turns cosine similarities into class probabilities.
SOFTMAX = "softmax"  # CLIP: softmax(scale * s) over the candidate classes (they compete; the sum is 1)
SIGMOID = "sigmoid"  # SigLIP: sigmoid(scale * s + bias) per class (each is its own yes/no, Zhai et al. 2023)


def probability_kind(model: torch.nn.Module) -> str:
    """"sigmoid" for a model trained with a logit bias (SigLIP), else "softmax"."""
    return SIGMOID if getattr(model, "logit_bias", None) is not None else SOFTMAX


@torch.no_grad()
def class_probabilities(scores: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """Probabilities of the candidate classes as the model was trained to give them.

    Args:
        scores: (..., C) cosine similarities of images to class embeddings.
        model: the CLIP model (its temperature and, for SigLIP, its logit bias).

    Returns:
        (..., C) float32: softmax(scale * s) over the classes, or sigmoid(scale * s + bias) per class.
    """
    scale = model.temperature().float()  # type: ignore[operator]
    logits = scale * scores.float()
    if probability_kind(model) == SIGMOID:
        return torch.sigmoid(logits + model.logit_bias.float())  # type: ignore[union-attr]
    return torch.softmax(logits, dim=-1)


def rank_classes(image_features: torch.Tensor, class_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine scores (N, C) and classes ranked best first (N, C), ties to the lower class index."""
    scores = image_features @ class_weights.T  # (N, C)
    ranking = torch.sort(scores, dim=1, descending=True, stable=True).indices  # (N, C)
    return scores, ranking


def evaluate(
    pipeline: Pipeline,
    data: ClassificationData,
    templates: Sequence[str],
    batch_size: int = 128,
    progress: bool = False,
    cache: FeatureCache | None = None,
    cache_key: object = None,
) -> ZeroShotResult:
    """Zero-shot classify ``data`` with ``pipeline``.

    Args:
        pipeline: the model, tokenizer and preprocess.
        data: labelled images and their class names.
        templates: prompt templates.
        batch_size: images / texts per forward pass.
        progress: show a progress bar while embedding images.
        cache, cache_key: reuse image features another evaluator computed for the same data (suite runs).
    """
    weights = class_embeddings(pipeline, data.classnames, templates, batch_size)
    feats, kept = cached_image_features(
        cache, cache_key, pipeline, data.images, batch_size, f"zero-shot {data.source}", progress
    )
    scores, ranking = rank_classes(feats, weights)
    labels = torch.tensor(data.labels, dtype=torch.long)[kept]
    return ZeroShotResult(list(data.classnames), labels, ranking, scores, kept, data.images)


def run_detailed(pipeline: Pipeline, cfg: ZeroShotConfig, cache: FeatureCache | None = None) -> ZeroShotResult:
    """Load ``cfg.dataset`` and evaluate it; the full result (confusion matrix, rankings) for reports."""
    data = load_classification(cfg.dataset)
    key = ("classification", cfg.dataset)
    return evaluate(pipeline, data, get_templates(cfg.templates), cfg.batch_size, cfg.progress, cache, key)


def run(pipeline: Pipeline, cfg: ZeroShotConfig) -> dict[str, float]:
    """Zero-shot accuracy: ``top1``, ``top5``, ``mean_per_class`` (fractions), ``n_images``, ``n_classes``."""
    return run_detailed(pipeline, cfg).metrics()


def make_zeroshot_hook(
    classnames: Sequence[str],
    images: Sequence[object] | ImageSet,
    labels: Sequence[int],
    templates: Sequence[str] = ("a photo of a {}.",),
    batch_size: int = 128,
    prefix: str = "zeroshot.",
) -> Callable[[Pipeline], dict[str, float]]:
    """A callable the trainer runs every N steps: ``hook(pipeline) -> {"zeroshot.top1": ..., ...}``.

    Class-text embeddings are computed once per call (not per image batch) from the model as it is at that
    step. Preprocessed pixels are cached after the first call, keyed on the preprocess config, since they
    do not change during training. The model's train/eval mode is restored afterwards.

    Args:
        classnames: candidate classes.
        images: the evaluation images (PIL images, or an ImageSet).
        labels: class index of each image.
        templates: prompt templates (a short set keeps in-training evaluation cheap).
        batch_size: images / texts per forward pass.
        prefix: put before each metric name.
    """
    image_set = images if isinstance(images, ImageSet) else ListImages(list(images))
    label_tensor = torch.tensor(list(labels), dtype=torch.long)
    if len(label_tensor) != len(image_set):
        raise ValueError(f"{len(image_set)} images but {len(label_tensor)} labels")
    cache: dict[object, ListImages] = {}

    def hook(pipeline: Pipeline) -> dict[str, float]:
        key = pipeline.config.preprocess
        if key not in cache:
            cache.clear()
            cache[key] = ListImages([pipeline.preprocess(image_set.load(i)) for i in range(len(image_set))])
        pixels = cache[key]
        identity = Pipeline(pipeline.model, pipeline.tokenizer, _identity, pipeline.config)
        weights = class_embeddings(pipeline, classnames, templates, batch_size)
        feats, kept = encode_images(identity, pixels, batch_size)
        scores, ranking = rank_classes(feats, weights)
        result = ZeroShotResult(list(classnames), label_tensor[kept], ranking, scores, kept)
        return {prefix + k: v for k, v in result.metrics().items() if not k.startswith("n_")}

    return hook


def make_zeroshot_hook_for(
    dataset: DatasetConfig, templates: str = "single", batch_size: int = 128, prefix: str = "zeroshot."
) -> Callable[[Pipeline], dict[str, float]]:
    """``make_zeroshot_hook`` on a configured dataset, e.g. the emoji set's ``heldout.jsonl`` for a training run.

    Args:
        dataset: the labelled images (set ``limit`` to keep in-training evaluation short).
        templates: template set name or file (one prompt keeps it cheap; the suite uses the full set).
        batch_size: images / texts per forward pass.
        prefix: put before each metric name.
    """
    data = load_classification(dataset)
    return make_zeroshot_hook(data.classnames, data.images, data.labels, get_templates(templates), batch_size, prefix)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
