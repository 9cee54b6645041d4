"""Queries against an index with the model that made it: text->image, image->image, image->text.

The index records the checkpoint (path + config hash) its vectors came from; ``Searcher`` loads that
checkpoint (or checks a given pipeline against the hash), so queries are embedded with the same model,
tokenizer and preprocessing as the collection.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from clipforge.errors import UserError
from clipforge.eval.templates import get_templates
from clipforge.eval.zeroshot import class_embeddings, class_probabilities, probability_kind, rank_classes
from clipforge.index.manifest import config_sha256, same_checkpoint
from clipforge.index.moderate import concept_probabilities
from clipforge.index.store import IndexStore, load_store
from clipforge.pipeline import Pipeline, load

if TYPE_CHECKING:
    from collections.abc import Callable

# classify's prompt set (eval.templates): the 7 prompts CLIP's notebook chose from its 80, averaged per label
# (CLIP paper, sec. 3.1.4: ensembling helps); 7 text passes per label keep a request fast.
CLASSIFY_TEMPLATES = "short"
MAX_K = 100


@dataclass(frozen=True)
class Hit:
    """One result: the indexed item's id and path (or a label/caption text) and its cosine score."""

    id: int
    path: str
    score: float
    caption: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "path": self.path, "score": round(self.score, 6)}
        if self.caption:
            out["caption"] = self.caption
        return out


@dataclass(frozen=True)
class LabelScore:
    """A zero-shot label with its cosine score and probability (see ``eval.zeroshot.class_probabilities``)."""

    label: str
    score: float
    prob: float

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(self.score, 6), "prob": round(self.prob, 6)}


def check_pipeline(pipeline: Pipeline, checkpoint: dict[str, str]) -> None:
    """Refuse a pipeline whose config or weights differ from the ones that made the index's vectors."""
    mine = {"config_sha256": config_sha256(pipeline.config), "identity": pipeline.identity}
    if not same_checkpoint(checkpoint, mine):
        raise UserError(
            f"the model does not match the one that built this index ({checkpoint.get('path')}): its config or "
            f"weights changed since", hint="query with the checkpoint recorded in index.json, or embed and index "
                                           "the collection again with this one")


def embed_texts(pipeline: Pipeline, texts: list[str]) -> np.ndarray:
    """(N, D) float32 unit vectors for ``texts``, embedded with ``pipeline``."""
    with torch.inference_mode():
        model = pipeline.model
        tokens = pipeline.tokenizer(texts).to(next(model.parameters()).device)  # (N, L)
        return F.normalize(model.encode_text(tokens).float(), dim=-1).cpu().numpy()


class Searcher:
    """Embeds queries and searches one index. Thread-safe: model calls are serialized by a lock.

    Args:
        store: the loaded index (``load_store``).
        pipeline: the model; by default the checkpoint recorded in the index is loaded.
        device: where to load the model when ``pipeline`` is None.
        precision: its arithmetic (fp32, bf16, int8, auto; see clipforge.precision).
    """

    def __init__(self, store: IndexStore, pipeline: Pipeline | None = None, device: str = "cpu",
                 precision: str = "fp32") -> None:
        self.store = store
        if pipeline is None:
            ckpt = store.manifest["checkpoint"]["path"]
            if not Path(ckpt).exists():
                raise UserError(f"the checkpoint that built this index is gone: {ckpt}",
                                hint="restore it, or rebuild the index with 'clipforge embed' + 'clipforge index'")
            pipeline = load(ckpt, device=device, precision=precision)
        check_pipeline(pipeline, store.manifest["checkpoint"])
        self.pipeline = pipeline
        self.lock = threading.Lock()
        self.root = Path(store.manifest["source"]["root"])

    @classmethod
    def open(cls, index_dir: str | Path, pipeline: Pipeline | None = None, device: str = "cpu",
             precision: str = "fp32") -> Searcher:
        return cls(load_store(index_dir), pipeline, device, precision)

    # --- embedding -------------------------------------------------------------------------------
    @staticmethod
    def text_embedder(pipeline: Pipeline) -> Callable[[list[str]], np.ndarray]:
        """texts -> (N, D) float32 unit vectors with ``pipeline`` (no lock: for single-threaded callers)."""
        return lambda texts: embed_texts(pipeline, texts)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32 unit vectors for ``texts``."""
        with self.lock:
            return embed_texts(self.pipeline, texts)

    def embed_image(self, image: Any) -> np.ndarray:
        """(1, D) float32 unit vector for an RGB PIL image."""
        with self.lock, torch.inference_mode():
            model = self.pipeline.model
            param = next(model.parameters())
            pixels = self.pipeline.preprocess(image).unsqueeze(0).to(param.device, param.dtype)  # (1, 3, H, W)
            return F.normalize(model.encode_image(pixels).float(), dim=-1).cpu().numpy()

    def concept_probabilities(self, scores: np.ndarray) -> np.ndarray:
        """(N, C) cosine scores -> sigmoid(scale * score + bias) per concept (sigmoid-trained models only)."""
        probs = concept_probabilities(self.pipeline.model, scores)
        if probs is None:
            raise ValueError("per-concept probabilities need a sigmoid-trained (SigLIP) model")
        return probs

    def probability_kind(self) -> str:
        """How ``classify`` turns scores into probabilities: "softmax" over the labels or "sigmoid" per label."""
        return probability_kind(self.pipeline.model)

    # --- queries -------------------------------------------------------------------------------------
    def search_vector(self, vector: np.ndarray, k: int) -> list[Hit]:
        """Top-``k`` indexed images for one (1, D) unit vector."""
        scores, ids = self.store.search(vector.reshape(1, -1), k)
        hits = []
        for score, item_id in zip(scores[0], ids[0], strict=True):
            row = self.store.row(int(item_id)) if item_id >= 0 else None
            if row is not None:
                hits.append(Hit(int(item_id), row["path"], float(score), row.get("caption")))
        return hits

    def text_to_image(self, query: str, k: int = 10) -> list[Hit]:
        if not query.strip():
            raise UserError("the text query is empty")
        return self.search_vector(self.embed_texts([query.strip()]), k)

    def image_to_image(self, image: Any, k: int = 10) -> list[Hit]:
        return self.search_vector(self.embed_image(image), k)

    def image_to_captions(self, image: Any, k: int = 10) -> list[Hit]:
        """Top-``k`` indexed captions for an image (exact search over the caption vectors)."""
        captions = self.store.captions
        if captions is None:
            raise UserError("this index holds no captions", hint="use --labels, or embed a collection with captions")
        scores = captions.astype(np.float32) @ self.embed_image(image)[0]  # (N,)
        has = np.array([bool(c) for c in self.store.meta["caption"]])
        scores[~has] = -np.inf
        top = np.argsort(-scores)[: min(k, int(has.sum()))]
        meta = self.store.meta
        return [Hit(int(meta["id"][r]), meta["path"][r], float(scores[r]), meta["caption"][r]) for r in top]

    def classify(self, image: Any, labels: list[str]) -> list[LabelScore]:
        """Zero-shot scores of ``labels`` for an image, best first, exactly as ``eval.zeroshot`` scores classes.

        Each label's embedding is the renormalized mean over the ``CLASSIFY_TEMPLATES`` prompts
        (``zeroshot.class_embeddings``); ties go to the label listed first (``zeroshot.rank_classes``); the
        probabilities are the model's own (``zeroshot.class_probabilities``: softmax over the labels for CLIP,
        sigmoid per label for SigLIP).
        """
        labels = [label.strip() for label in labels if label.strip()]
        if not labels:
            raise UserError("no labels given", hint='pass labels as "cat,dog,car"')
        with self.lock:
            weights = class_embeddings(self.pipeline, labels, get_templates(CLASSIFY_TEMPLATES))  # (L, D)
        image_features = torch.from_numpy(self.embed_image(image))  # (1, D)
        scores, ranking = rank_classes(image_features, weights)  # (1, L) each
        probs = class_probabilities(scores, self.pipeline.model)[0]  # (L,)
        return [LabelScore(labels[i], float(scores[0, i]), float(probs[i])) for i in ranking[0].tolist()]


def check_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise UserError(f"k must be between 1 and {MAX_K}, got {k}")
    return k
