"""Image-text retrieval Recall@K in both directions, several captions per image.

Image → text: an image query is a hit at K when any of its own captions is among the K best texts.
Text → image: a caption query is a hit at K when an image it describes is among the K best images.

Identical caption strings are one text: a caption shared by several images (e.g. skin-tone variants of one
emoji, all captioned "waving hand") is one query whose correct answers are all those images, and one
candidate that is correct for each of them. Otherwise a duplicate would compete with itself at an exactly
equal score and the tie rule, not the model, would decide the rank.

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
        text_ranks: (M,) for each caption query, rank of its best-placed image among all images.
        image_features, text_features: (N, D), (M, D) normalized embeddings.
        texts: the M distinct captions; positives: (M, N) bool, caption t describes image i.
    """

    image_ranks: torch.Tensor
    text_ranks: torch.Tensor
    image_features: torch.Tensor
    text_features: torch.Tensor
    texts: list[str]
    positives: torch.Tensor
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


def _first_positive_rank(sims: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Rank (0 = best) of each query's best-placed positive candidate in a stable descending sort.

    Args:
        sims: (Q, C) similarities of Q queries to C candidates.
        positive: (Q, C) bool, at least one True per row.
    """
    index = torch.arange(sims.shape[1])[None, :]  # (1, C)
    pos_scores = sims.masked_fill(~positive, float("-inf"))
    best = pos_scores.max(dim=1, keepdim=True).values  # (Q, 1)
    # First positive in a stable sort: highest score, ties to the lowest index.
    best_index = torch.where(positive & (pos_scores == best), index, sims.shape[1]).min(dim=1, keepdim=True).values
    ahead = (sims > best) | ((sims == best) & (index < best_index))  # (Q, C)
    return ahead.sum(dim=1)  # (Q,)


def rank_matches(
    image_features: torch.Tensor, text_features: torch.Tensor, positives: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-query and text-query ranks of the first correct match.

    Args:
        image_features: (N, D) normalized.
        text_features: (M, D) normalized.
        positives: (M, N) bool, text t describes image i; every image and every text needs one True.

    Returns:
        image_ranks (N,), text_ranks (M,), int64.
    """
    n, m = image_features.shape[0], text_features.shape[0]
    if positives.shape != (m, n):
        raise ValueError(f"positives must be ({m}, {n}), got {tuple(positives.shape)}")
    if not positives.any(dim=0).all():
        raise ValueError("every image needs at least one caption")
    if not positives.any(dim=1).all():
        raise ValueError("every caption needs at least one image")
    text_ranks = torch.empty(m, dtype=torch.long)
    for s in range(0, m, QUERY_CHUNK):
        sims = text_features[s : s + QUERY_CHUNK] @ image_features.T  # (q, N)
        text_ranks[s : s + QUERY_CHUNK] = _first_positive_rank(sims, positives[s : s + QUERY_CHUNK])
    image_ranks = torch.empty(n, dtype=torch.long)
    for s in range(0, n, QUERY_CHUNK):
        sims = image_features[s : s + QUERY_CHUNK] @ text_features.T  # (q, M)
        image_ranks[s : s + QUERY_CHUNK] = _first_positive_rank(sims, positives[:, s : s + QUERY_CHUNK].T)
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
    text_index: dict[str, int] = {}  # distinct captions, in first-seen order
    pairs = []
    for row, i in enumerate(kept.tolist()):
        for caption in data.captions[i]:
            pairs.append((text_index.setdefault(caption, len(text_index)), row))
    texts = list(text_index)
    positives = torch.zeros(len(texts), len(kept), dtype=torch.bool)  # (M, N)
    positives[tuple(torch.tensor(pairs).T)] = True
    text_features = encode_texts(pipeline, texts, batch_size)
    image_ranks, text_ranks = rank_matches(image_features, text_features, positives)
    images = data.images
    if len(kept) < len(images):
        images = Subset(images, kept.tolist())
    return RetrievalResult(image_ranks, text_ranks, image_features, text_features, texts, positives, images)


def run_detailed(pipeline: Pipeline, cfg: RetrievalConfig, cache: FeatureCache | None = None) -> RetrievalResult:
    """Load ``cfg.dataset`` and evaluate it, keeping ranks and embeddings for the report."""
    data = load_retrieval(cfg.dataset)
    return evaluate(pipeline, data, cfg.batch_size, cfg.progress, cache, ("retrieval", cfg.dataset))


def run(pipeline: Pipeline, cfg: RetrievalConfig) -> dict[str, float]:
    """Recall@1/5/10 both directions (fractions), plus ``n_images`` and ``n_texts``."""
    return run_detailed(pipeline, cfg).metrics()
