"""Image-text retrieval Recall@K in both directions, several captions per image.

Image → text: an image query is a hit at K when any of its own captions is among the K best texts.
Text → image: a caption query is a hit at K when its image is among the K best images.

Ranks use the same tie rule as zero-shot: candidates with equal similarity are ordered by index, lower
first (a stable sort), so the numbers are exact and device independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from clipforge.eval.datasets import DatasetConfig, ImageSet, RetrievalData, Subset, load_retrieval
from clipforge.eval.features import FeatureCache, cached_image_features, encode_texts
from clipforge.pipeline import Pipeline

RECALL_AT = (1, 5, 10)
QUERY_CHUNK = 1024  # queries scored at once: bounds the similarity block to QUERY_CHUNK × candidates


@dataclass(frozen=True)
class RetrievalConfig:
    """Retrieval on a captioned image set.

    Args:
        dataset: a ``jsonl`` dataset (rows with ``image`` and ``captions``).
        batch_size: images / texts per forward pass.
        progress: show a progress bar while embedding images.
    """

    dataset: DatasetConfig = field(default_factory=lambda: DatasetConfig(kind="jsonl"))
    batch_size: int = 128
    progress: bool = False


@dataclass
class RetrievalResult:
    """Ranks of the first correct candidate per query (0 = best) and what the report needs to show examples.

    Attributes:
        image_ranks: (N,) for each image query, rank of its best-placed own caption among all texts.
        text_ranks: (M,) for each caption query, rank of its image among all images.
        image_features, text_features: (N, D), (M, D) normalized embeddings.
        texts: the M captions; text_image: (M,) image index of each caption.
    """

    image_ranks: torch.Tensor
    text_ranks: torch.Tensor
    image_features: torch.Tensor
    text_features: torch.Tensor
    texts: list[str]
    text_image: torch.Tensor
    images: ImageSet | None = None

    def metrics(self) -> dict[str, float]:
        out = {}
        for k in RECALL_AT:
            out[f"image_to_text_R@{k}"] = float((self.image_ranks < k).float().mean())
        for k in RECALL_AT:
            out[f"text_to_image_R@{k}"] = float((self.text_ranks < k).float().mean())
        out["n_images"] = float(len(self.image_ranks))
        out["n_texts"] = float(len(self.text_ranks))
        return out

    def top_images(self, text_index: int, k: int = 5) -> list[int]:
        """The ``k`` best images for caption ``text_index`` (ties: lower index first)."""
        scores = self.image_features @ self.text_features[text_index]  # (N,)
        return torch.sort(scores, descending=True, stable=True).indices[:k].tolist()

    def top_texts(self, image_index: int, k: int = 5) -> list[int]:
        """The ``k`` best captions for image ``image_index`` (ties: lower index first)."""
        scores = self.text_features @ self.image_features[image_index]  # (M,)
        return torch.sort(scores, descending=True, stable=True).indices[:k].tolist()


def _rank_of_target(scores: torch.Tensor, target_score: torch.Tensor, target_index: torch.Tensor) -> torch.Tensor:
    """Position of the target in a stable descending sort: candidates scoring higher, plus equal ones before it."""
    index = torch.arange(scores.shape[1])[None, :]  # (1, C)
    ahead = (scores > target_score[:, None]) | ((scores == target_score[:, None]) & (index < target_index[:, None]))
    return ahead.sum(dim=1)  # (Q,)


def rank_matches(
    image_features: torch.Tensor, text_features: torch.Tensor, text_image: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-query and text-query ranks of the first correct match.

    Args:
        image_features: (N, D) normalized.
        text_features: (M, D) normalized.
        text_image: (M,) the image each text belongs to; every image needs at least one text.

    Returns:
        image_ranks (N,), text_ranks (M,), int64.
    """
    n, m = image_features.shape[0], text_features.shape[0]
    if torch.bincount(text_image, minlength=n).min() == 0:
        raise ValueError("every image needs at least one caption")
    text_ranks = torch.empty(m, dtype=torch.long)
    for s in range(0, m, QUERY_CHUNK):
        sims = text_features[s : s + QUERY_CHUNK] @ image_features.T  # (q, N)
        target = text_image[s : s + QUERY_CHUNK]
        text_ranks[s : s + QUERY_CHUNK] = _rank_of_target(sims, sims.gather(1, target[:, None])[:, 0], target)
    image_ranks = torch.empty(n, dtype=torch.long)
    text_index = torch.arange(m)
    for s in range(0, n, QUERY_CHUNK):
        sims = image_features[s : s + QUERY_CHUNK] @ text_features.T  # (q, M)
        own = text_image[None, :] == torch.arange(s, s + sims.shape[0])[:, None]  # (q, M)
        # The image's best own caption: highest score, ties to the lowest text index (first in a stable sort).
        own_scores = sims.masked_fill(~own, float("-inf"))
        best = own_scores.max(dim=1).values  # (q,)
        best_index = torch.where(own & (own_scores == best[:, None]), text_index, m).min(dim=1).values
        image_ranks[s : s + QUERY_CHUNK] = _rank_of_target(sims, best, best_index)
    return image_ranks, text_ranks


def evaluate(
    pipeline: Pipeline,
    data: RetrievalData,
    batch_size: int = 128,
    progress: bool = False,
    cache: FeatureCache | None = None,
    cache_key: object = None,
) -> RetrievalResult:
    """Embed ``data``'s images and captions and rank both directions.

    Args:
        pipeline: the model, tokenizer and preprocess.
        data: images with their captions.
        batch_size: images / texts per forward pass.
        progress: show a progress bar while embedding images.
        cache, cache_key: reuse image features computed earlier in a suite run.
    """
    image_features, kept = cached_image_features(
        cache, cache_key, pipeline, data.images, batch_size, f"retrieval {data.source}", progress
    )
    texts, owner = [], []
    for row, i in enumerate(kept.tolist()):
        texts.extend(data.captions[i])
        owner.extend([row] * len(data.captions[i]))
    text_features = encode_texts(pipeline, texts, batch_size)
    text_image = torch.tensor(owner, dtype=torch.long)
    image_ranks, text_ranks = rank_matches(image_features, text_features, text_image)
    images = data.images
    if len(kept) < len(images):
        images = Subset(images, kept.tolist())
    return RetrievalResult(image_ranks, text_ranks, image_features, text_features, texts, text_image, images)


def run_detailed(pipeline: Pipeline, cfg: RetrievalConfig, cache: FeatureCache | None = None) -> RetrievalResult:
    """Load ``cfg.dataset`` and evaluate it, keeping ranks and embeddings for the report."""
    data = load_retrieval(cfg.dataset)
    return evaluate(pipeline, data, cfg.batch_size, cfg.progress, cache, ("retrieval", cfg.dataset))


def run(pipeline: Pipeline, cfg: RetrievalConfig) -> dict[str, float]:
    """Recall@1/5/10 both directions (fractions), plus ``n_images`` and ``n_texts``."""
    return run_detailed(pipeline, cfg).metrics()
