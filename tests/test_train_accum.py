"""Gradient accumulation: GradCache gives the plain full-batch loss and gradients; "mean" does not."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from train_support import PairSet

from clipforge.dist.env import World
from clipforge.loss.build import build_loss
from clipforge.loss.config import LossConfig
from clipforge.model.clip import CLIP, CLIPOutput
from clipforge.model.registry import get_config
from clipforge.train.task import forward_backward


def _grads(kind: str, accum_freq: int, mode: str, patch_dropout: float = 0.0):
    cfg = get_config("test-vit")
    if kind == "sigmoid":
        cfg = dataclasses.replace(cfg, init_logit_bias=-10.0, init_logit_scale=2.3)
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, patch_dropout=patch_dropout))
    torch.manual_seed(0)
    model = CLIP(cfg).double()
    data = PairSet(24)
    loss_fn = build_loss(LossConfig(kind=kind), World())
    torch.manual_seed(1)
    out = forward_backward(model, loss_fn, data.pixels.double(), data.token_ids, accum_freq=accum_freq,
                           accum_mode=mode)
    return out.loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["contrastive", "sigmoid"])
@pytest.mark.parametrize("k", [2, 3])
def test_gradcache_matches_the_full_batch(kind, k):
    loss, grads = _grads(kind, 1, "gradcache")
    loss_k, grads_k = _grads(kind, k, "gradcache")
    assert torch.allclose(loss, loss_k, rtol=1e-12, atol=0)
    assert grads.keys() == grads_k.keys()
    for name in grads:  # float64: only summation order differs
        assert torch.allclose(grads[name], grads_k[name], rtol=1e-9, atol=1e-12), name


def test_gradcache_replays_patch_dropout():
    """Reference: both micro-batches forwarded with a graph in one go (same RNG draws), one loss, one backward.

    GradCache's second pass must drop the same patches as its first; without the RNG replay it would draw new
    masks and its gradients would not match this reference.
    """
    _, grads_k = _grads("contrastive", 2, "gradcache", patch_dropout=0.5)
    cfg = get_config("test-vit")
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, patch_dropout=0.5))
    torch.manual_seed(0)
    model = CLIP(cfg).double()
    data = PairSet(24)
    loss_fn = build_loss(LossConfig(), World())
    torch.manual_seed(1)
    outs = [model(px, ids) for px, ids in zip(data.pixels.double().chunk(2), data.token_ids.chunk(2), strict=True)]
    joined = CLIPOutput(torch.cat([o.image_features for o in outs]), torch.cat([o.text_features for o in outs]),
                        outs[0].logit_scale, None)
    loss_fn(joined).backward()
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, grads_k[name], rtol=1e-9, atol=1e-12), name


def test_mean_accumulation_has_fewer_negatives():
    loss, _ = _grads("contrastive", 1, "gradcache")
    loss_mean, _ = _grads("contrastive", 2, "mean")
    assert not torch.allclose(loss, loss_mean)  # 12 negatives per row instead of 24: a different objective
