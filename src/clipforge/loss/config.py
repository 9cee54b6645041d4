"""Loss config (part of a training run's config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class LossConfig:
    """Which objective a run trains with.

    Args:
        kind: "contrastive" (CLIP's symmetric InfoNCE), "sigmoid" (SigLIP), "distill" (contrastive plus
            KL to a teacher's image-text similarity distribution), or "auto": "sigmoid" for a model with a
            learnable logit bias (the SigLIP family), else "contrastive".
        local_loss: each rank computes logits only for its own rows against all gathered columns
            (O(local x global) memory) instead of the full global matrix.
        gather_with_grad: all-gather features with gradients flowing back to their ranks.
        chunk_size: >0 streams the logit matrix in column chunks of this many samples, never keeping the
            local x global matrix for backward; 0 = plain.
        distill_weight: weight of the KL term for "distill"; teacher_features: a directory of precomputed
            teacher features (see loss/distill.py).
        contrastive_weight: weight of the student's own InfoNCE term for "distill".
        teacher: for "distill", a clipforge checkpoint run online as a frozen teacher, with its own
            preprocessing and tokenizer (train/teacher.py). Without it (and without teacher_features) the
            training data must be shards written by ``clipforge data reinforce``.
    """

    kind: Literal["auto", "contrastive", "sigmoid", "distill"] = "auto"
    local_loss: bool = True
    gather_with_grad: bool = True
    chunk_size: int = 0
    distill_weight: float = 1.0
    teacher_features: str | None = None
    contrastive_weight: float = 1.0
    teacher: str | None = None
