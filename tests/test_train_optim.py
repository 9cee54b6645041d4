"""AdamW parameter groups and the warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from clipforge.model.clip import CLIP
from clipforge.model.registry import get_config
from clipforge.train.config import OptimConfig
from clipforge.train.optim import build_optimizer, split_params
from clipforge.train.schedule import lr_at


def test_no_decay_on_gains_biases_embeddings_and_temperature():
    model = CLIP(get_config("test-vit"))
    groups = split_params(model)
    no_decay = set(groups.no_decay)
    for name in ["logit_scale", "text.token_embedding.weight", "text.pos_embedding", "visual.pos_embedding",
                 "visual.class_embedding", "visual.norm_post.weight", "visual.norm_post.bias",
                 "text.transformer.blocks.0.attn.qkv.bias", "text.norm_final.weight"]:
        assert name in no_decay, name
    for name in ["visual.patch_embed.weight", "visual.proj", "text.proj", "text.transformer.blocks.1.mlp.fc1.weight",
                 "visual.transformer.blocks.0.attn.out.weight"]:
        assert name in groups.decay, name
    assert no_decay.isdisjoint(groups.decay)
    assert len(no_decay) + len(groups.decay) == len(list(model.parameters()))


def test_optimizer_groups_carry_the_decay():
    model = CLIP(get_config("test-vit"))
    opt = build_optimizer(model, OptimConfig(weight_decay=0.3, lr=1e-3, betas=(0.8, 0.9), eps=1e-7))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.3 and no_decay["weight_decay"] == 0.0
    assert any(p is model.logit_scale for p in no_decay["params"])
    assert opt.defaults["betas"] == (0.8, 0.9) and opt.defaults["eps"] == 1e-7


def test_decay_leaves_excluded_params_alone():
    # With zero gradients AdamW's only change is the decay: excluded parameters must not move at all.
    model = CLIP(get_config("test-vit"))
    opt = build_optimizer(model, OptimConfig(weight_decay=0.5, lr=0.1))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    groups = split_params(model)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], before[n]) for n in groups.no_decay)
    assert all(torch.allclose(params[n], before[n] * (1 - 0.1 * 0.5)) for n in groups.decay)


def test_schedule_warmup_then_cosine():
    kw = dict(base_lr=1.0, warmup_steps=4, total_steps=14, min_lr=0.1)
    assert [lr_at(s, **kw) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, **kw) == pytest.approx(1.0)  # first decay step: cos(0)
    assert lr_at(9, **kw) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 5 / 9)))
    assert lr_at(13, **kw) == pytest.approx(0.1)  # last step reaches the floor
    values = [lr_at(s, **kw) for s in range(4, 14)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))  # strictly decreasing


def test_schedule_without_warmup_or_decay_room():
    assert lr_at(0, base_lr=2.0, warmup_steps=0, total_steps=1) == 2.0
    assert lr_at(5, base_lr=2.0, warmup_steps=10, total_steps=10) == pytest.approx(1.2)
