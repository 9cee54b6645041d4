"""``build_loss``: the loss function a LossConfig names, with the cross-rank exchange for this world.

Contract used by the trainer:

    loss_fn = build_loss(cfg, world)           # cfg: LossConfig, world: dist.env.World
    loss = loss_fn(out, teacher=None)          # out: model.clip.CLIPOutput of this rank's local batch
                                               # teacher: CLIPOutput of a teacher (kind "distill")
    # loss: scalar tensor; with world_size > 1 the negatives come from every rank and gradients are such
    # that DDP's gradient averaging yields the single-process gradient of the concatenated batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from clipforge.dist import gather as dist_gather
from clipforge.errors import UserError
from clipforge.loss.contrastive import contrastive_loss
from clipforge.loss.distill import distill_loss
from clipforge.loss.sigmoid import sigmoid_loss

if TYPE_CHECKING:
    import torch

    from clipforge.dist.env import World
    from clipforge.loss.config import LossConfig
    from clipforge.model.clip import CLIPOutput

LossFn = Callable[..., "torch.Tensor"]


def build_loss(cfg: LossConfig, world: World, has_logit_bias: bool = False) -> LossFn:
    """The loss function for ``cfg`` on this ``world`` (see the module docstring).

    Gradient scaling, per variant (DDP averages parameter gradients over the W ranks; each rank's loss is
    written so that the mean over ranks is the single-process loss L on the concatenated batch):
    - local_loss, gather_with_grad: the gather's backward sums every rank's gradient for this rank's rows
      (reduce-scatter SUM), so rank r's features get d(sum_s loss_s)/dx_r and DDP's 1/W yields dL/dtheta. Exact.
    - global (local_loss=False), gather_with_grad: every rank computes L itself; the SUM backward gives
      W * dL/dx_r, and DDP's 1/W cancels it. Exact, no extra factor (scaling by W again would double count).
    - global, no gather_with_grad: only the local rows carry gradient, dL/dx_r, computed entirely on rank r;
      it is multiplied by W (dist.gather.scale_grad) so that after DDP's 1/W it is exact, with no
      communication in backward. The logit scale's gradient is dL/ds on every rank and is left alone.
    - local_loss, no gather_with_grad: OpenCLIP's approximation: the other ranks' rows' gradients
      w.r.t. this rank's features are dropped (columns from other ranks are constants). Not exact.
    - sigmoid: texts travel a ring with gradients returned to their owner; images stay local. Exact.
      local_loss, gather_with_grad and chunk_size do not apply (each step is one rank's block already).
    - distill: the contrastive part as above; the teacher's features are gathered without gradient.

    Args:
        cfg: which objective and how it is distributed.
        world: this process's place in the job (dist.env.init_distributed).
        has_logit_bias: the model has a learnable logit bias; kind "auto" then means "sigmoid".
    Returns: ``loss_fn(out, teacher=None) -> scalar``.
    """
    if cfg.chunk_size < 0:
        raise UserError(f"loss.chunk_size must be >= 0, got {cfg.chunk_size}")
    if cfg.kind not in ("auto", "contrastive", "sigmoid", "distill"):
        raise UserError(f"unknown loss.kind {cfg.kind!r}", hint="use auto, contrastive, sigmoid or distill")
    kind = ("sigmoid" if has_logit_bias else "contrastive") if cfg.kind == "auto" else cfg.kind
    gather = ring = None
    if world.distributed:
        if cfg.gather_with_grad:
            gather = dist_gather.all_gather_with_grad
        else:
            factor = 1.0 if cfg.local_loss else float(world.world_size)
            gather = functools.partial(dist_gather.all_gather_no_grad, local_grad_scale=factor)
        ring = dist_gather.ring_blocks
    w = world.world_size

    if kind == "sigmoid":
        return lambda out, teacher=None: sigmoid_loss(out, ring, world_size=w)

    if kind == "distill":
        def distill_fn(out: CLIPOutput, teacher: CLIPOutput | None = None) -> torch.Tensor:
            if teacher is None:
                raise UserError("loss kind 'distill' needs the teacher's output for the batch",
                                hint="pass teacher=the teacher's CLIPOutput for the batch (train/teacher.py)")
            return distill_loss(out, teacher, gather, world_size=w, local_loss=cfg.local_loss,
                                chunk_size=cfg.chunk_size, distill_weight=cfg.distill_weight,
                                contrastive_weight=cfg.contrastive_weight)

        return distill_fn

    return lambda out, teacher=None: contrastive_loss(
        out, gather, world_size=w, local_loss=cfg.local_loss, chunk_size=cfg.chunk_size
    )

