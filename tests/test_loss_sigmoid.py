"""SigLIP sigmoid loss against its written-out formula; bias required."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipforge.dist.env import World
from clipforge.errors import UserError
from clipforge.loss.build import build_loss
from clipforge.loss.config import LossConfig
from clipforge.model.clip import CLIPOutput


def test_matches_direct_formula_and_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
    txt = F.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
    scale = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    got = build_loss(LossConfig(kind="sigmoid"), World())(CLIPOutput(img, txt, scale, bias))
    want = 0.0
    for i in range(5):  # SigLIP eq. 1, pair by pair: -log(1 / (1 + exp(-z * logit)))
        for j in range(5):
            z = 1.0 if i == j else -1.0
            logit = scale * (img[i] @ txt[j]) + bias
            want = want + torch.log1p(torch.exp(-z * logit))
    want = want / 5
    assert got.item() == pytest.approx(want.item(), abs=1e-12)
    leaves = [img, txt, scale, bias]
    for a, b in zip(torch.autograd.grad(got, leaves), torch.autograd.grad(want, leaves), strict=True):
        assert (a - b).abs().max().item() < 1e-12


def test_siglip_init_gives_small_negative_loss() -> None:
    # With bias -10 and scale 10 (SigLIP's init) the N^2 - N negatives each cost ~log(1 + e^-10 ...) ~ 0,
    # while each positive costs ~10 - 10 * cos: the loss starts near its positives' share, not N log 2.
    img = txt = torch.eye(4, dtype=torch.float64)
    loss = build_loss(LossConfig(kind="sigmoid"), World())(
        CLIPOutput(img, txt, torch.tensor(10.0, dtype=torch.float64), torch.tensor(-10.0, dtype=torch.float64))
    )
    # positives: logit 0 -> log 2 each; negatives: logit -10 -> log(1 + e^-10) each.
    assert loss.item() == pytest.approx((4 * math.log(2) + 12 * math.log1p(math.exp(-10))) / 4, abs=1e-12)


def test_sigmoid_needs_a_bias() -> None:
    eye = torch.eye(3)
    with pytest.raises(UserError, match="logit bias"):
        build_loss(LossConfig(kind="sigmoid"), World())(CLIPOutput(eye, eye, torch.tensor(10.0), None))
