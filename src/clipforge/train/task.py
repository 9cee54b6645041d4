"""Forward and backward for one optimizer step's batch, with optional gradient accumulation.

Three ways to spend one batch of B pairs on this rank:

- plain: one forward, the loss over the whole batch, one backward.
- accum "mean": k micro-batches, each with its own loss over B/k pairs (fewer negatives), gradients averaged.
- accum "gradcache" (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
  Setup"): features of all k micro-batches computed without a graph, the loss over the full batch (all B
  negatives) on detached copies, then each micro-batch re-run with a graph and its slice of the feature
  gradients back-propagated. Same loss and gradients as plain (up to float rounding), activation memory of
  one micro-batch. The RNG state of each micro-batch's first forward is replayed in its second, so random
  patch dropout picks the same patches both times.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from clipforge.model.clip import CLIPOutput

LossFn = Callable[..., torch.Tensor]


@dataclass
class StepResult:
    loss: torch.Tensor  # detached scalar, this rank's loss on its full batch
    logit_scale: torch.Tensor  # detached 0-d: exp of the (clamped) learned log-temperature used in this step


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for the forward when ``precision == "bf16"``; the loss is always computed in fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _up(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _to_fp32(out: CLIPOutput) -> CLIPOutput:
    """Autocast leaves features in bf16: the loss (a softmax over the batch) is computed in fp32 or wider."""
    bias = _up(out.logit_bias) if out.logit_bias is not None else None
    return CLIPOutput(_up(out.image_features), _up(out.text_features), _up(out.logit_scale), bias)


def _sync_context(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` for every micro-batch but the last, so gradients are all-reduced once per step."""
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _chunks(pixels: torch.Tensor, token_ids: torch.Tensor, k: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    return zip(pixels.chunk(k), token_ids.chunk(k), strict=True)


def forward_backward(
    model: nn.Module,
    loss_fn: LossFn,
    pixels: torch.Tensor,
    token_ids: torch.Tensor,
    *,
    accum_freq: int = 1,
    accum_mode: str = "gradcache",
    precision: str = "fp32",
    teacher: CLIPOutput | None = None,
) -> StepResult:
    """Compute this rank's loss for one batch and accumulate its gradients into ``model``'s ``.grad``.

    Args:
        model: the CLIP model, possibly wrapped in DistributedDataParallel or compiled.
        loss_fn: ``loss_fn(CLIPOutput) -> scalar`` (from ``clipforge.loss.build.build_loss``).
        pixels: (B, 3, H, W) this rank's batch; token_ids: (B, L).
        accum_freq: number of micro-batches (1 = plain).
        accum_mode: "gradcache" (full-batch negatives) or "mean" (per-micro-batch losses averaged).
        precision: "fp32" or "bf16" (autocast of the forward).
        teacher: the teacher's output for this batch (distillation), or None.
    """
    device = pixels.device
    if teacher is not None and not (accum_freq > 1 and accum_mode == "mean"):
        loss_fn = functools.partial(loss_fn, teacher=teacher)
    if accum_freq <= 1 or pixels.shape[0] < 2:
        with autocast_context(device, precision):
            out = model(pixels, token_ids)
        loss = loss_fn(_to_fp32(out))
        loss.backward()
        return StepResult(loss.detach(), out.logit_scale.detach())
    if accum_mode == "mean":
        return _accumulate_mean(model, loss_fn, pixels, token_ids, accum_freq, precision, teacher)
    return _gradcache(model, loss_fn, pixels, token_ids, accum_freq, precision)


def _accumulate_mean(
    model: nn.Module,
    loss_fn: LossFn,
    pixels: torch.Tensor,
    token_ids: torch.Tensor,
    k: int,
    precision: str,
    teacher: CLIPOutput | None,
) -> StepResult:
    chunks = list(_chunks(pixels, token_ids, k))
    sizes = [px.shape[0] for px, _ in chunks]
    parts = []
    scale = torch.zeros(())
    for j, (px, ids) in enumerate(chunks):
        with _sync_context(model, j == len(chunks) - 1), autocast_context(px.device, precision):
            out = model(px, ids)
            kwargs = {}
            if teacher is not None:  # the teacher rows of this micro-batch
                lo = sum(sizes[:j])
                kwargs["teacher"] = CLIPOutput(teacher.image_features[lo : lo + sizes[j]],
                                               teacher.text_features[lo : lo + sizes[j]],
                                               teacher.logit_scale, teacher.logit_bias)
            loss = loss_fn(_to_fp32(out), **kwargs) / len(chunks)
            loss.backward()
        parts.append(loss.detach())
        scale = out.logit_scale.detach()
    return StepResult(torch.stack(parts).sum(), scale)


def _gradcache(
    model: nn.Module, loss_fn: LossFn, pixels: torch.Tensor, token_ids: torch.Tensor, k: int, precision: str
) -> StepResult:
    device = pixels.device
    chunks = list(_chunks(pixels, token_ids, k))
    # 1. features of every micro-batch, no graph; remember each one's RNG state for the replay.
    states, outs = [], []
    with torch.no_grad():
        for px, ids in chunks:
            states.append(_rng_state(device))
            with autocast_context(device, precision):
                outs.append(_to_fp32(model(px, ids)))
    after = _rng_state(device)
    image = torch.cat([o.image_features for o in outs]).requires_grad_()  # (B, E) leaf
    text = torch.cat([o.text_features for o in outs]).requires_grad_()  # (B, E) leaf
    scale = outs[0].logit_scale.detach().requires_grad_()
    bias = outs[0].logit_bias.detach().requires_grad_() if outs[0].logit_bias is not None else None
    # 2. the loss over the whole batch, back-propagated only as far as the detached features.
    loss = loss_fn(CLIPOutput(image, text, scale, bias))
    loss.backward()
    # 3. replay each micro-batch with a graph and push its slice of the feature gradients through the towers.
    start = 0
    for j, (px, ids) in enumerate(chunks):
        last = j == len(chunks) - 1
        n = px.shape[0]
        _set_rng_state(states[j], device)
        with _sync_context(model, last):
            with autocast_context(device, precision):
                out = model(px, ids)
            tensors = [out.image_features, out.text_features]
            grads = [image.grad[start : start + n], text.grad[start : start + n]]
            if last:  # the temperature's gradient, once, through the model so DDP reduces it with the rest
                tensors.append(out.logit_scale)
                grads.append(scale.grad)
                if bias is not None and out.logit_bias is not None:
                    tensors.append(out.logit_bias)
                    grads.append(bias.grad)
            grads = [g.to(t.dtype) for t, g in zip(tensors, grads, strict=True)]
            torch.autograd.backward(tensors, grads)
        start += n
    _set_rng_state(after, device)
    return StepResult(loss.detach(), scale.detach())
