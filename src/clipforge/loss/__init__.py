"""Losses: pure math over features; cross-rank exchange functions are passed in from dist/.

Contract used by the trainer:

    loss_fn = build_loss(cfg, world)           # cfg: LossConfig, world: dist.env.World
    loss = loss_fn(out, teacher=None)          # out: model.clip.CLIPOutput of this rank's local batch
                                               # teacher: CLIPOutput of a teacher (kind "distill")
    # loss: scalar tensor; with world_size > 1 the negatives come from every rank and gradients are such
    # that DDP's gradient averaging yields the single-process gradient of the concatenated batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from clipforge.dist.env import World
    from clipforge.loss.config import LossConfig
    from clipforge.model.clip import CLIPOutput

LossFn = Callable[..., "torch.Tensor"]


def build_loss(cfg: LossConfig, world: World) -> LossFn:
    """The loss function for ``cfg`` on this ``world`` (see the module docstring)."""
    raise NotImplementedError  # implemented on the loss branch


__all__ = ["LossFn", "build_loss", "CLIPOutput"]
