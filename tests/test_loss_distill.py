"""Distillation: KL zero when student == teacher, direct formula, teacher features round-trip from disk."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clipforge.dist.env import World
from clipforge.errors import UserError
from clipforge.loss.build import build_loss
from clipforge.loss.config import LossConfig
from clipforge.loss.contrastive import rows_and_columns
from clipforge.loss.distill import FEATURES_FILE, TeacherFeatures, precompute_teacher_features, similarity_kl
from clipforge.model.clip import CLIPOutput


def _out(seed: int, n: int = 6, scale: float = 10.0) -> CLIPOutput:
    g = torch.Generator().manual_seed(seed)
    img, txt = (F.normalize(torch.randn(n, 4, generator=g, dtype=torch.float64), dim=-1) for _ in range(2))
    return CLIPOutput(img.requires_grad_(), txt.requires_grad_(), torch.tensor(scale, dtype=torch.float64), None)


def test_kl_is_zero_when_student_equals_teacher() -> None:
    s = _out(0)
    rc = rows_and_columns(s.image_features, s.text_features, None, 1, True)
    kl = similarity_kl(rc, rc, s.logit_scale, s.logit_scale)
    assert abs(kl.item()) < 1e-14
    # and the distill loss then reduces to the plain contrastive loss
    distill = build_loss(LossConfig(kind="distill", distill_weight=3.0), World())(s, teacher=s)
    plain = build_loss(LossConfig(), World())(s)
    assert distill.item() == pytest.approx(plain.item(), abs=1e-12)


def test_kl_matches_direct_formula_and_is_positive() -> None:
    s, t = _out(0), _out(1, scale=25.0)
    got = build_loss(LossConfig(kind="distill", contrastive_weight=0.0), World())(s, teacher=t)
    ls = s.logit_scale * s.image_features @ s.text_features.T
    lt = t.logit_scale * t.image_features @ t.text_features.T
    want = 0.0
    for a, b in ((ls, lt), (ls.T, lt.T)):  # KL(P_t || P_s) = sum p_t log(p_t / p_s), mean over rows
        p_t, p_s = torch.softmax(b, 1), torch.softmax(a, 1)
        want += (p_t * torch.log(p_t / p_s)).sum(1).mean() / 2
    assert got.item() > 0.01
    assert got.item() == pytest.approx(want.item(), abs=1e-12)
    got.backward()
    assert t.image_features.grad is None  # the teacher never receives gradient


def test_distill_needs_teacher() -> None:
    with pytest.raises(UserError, match="teacher"):
        build_loss(LossConfig(kind="distill"), World())(_out(0))


@dataclass
class _Batch:
    pixels: torch.Tensor
    token_ids: torch.Tensor
    indices: torch.Tensor


class _Teacher(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.img = nn.Linear(3, 4)
        self.txt = nn.Embedding(10, 4)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, pixels: torch.Tensor, token_ids: torch.Tensor) -> CLIPOutput:
        img = F.normalize(self.img(pixels.mean(dim=(2, 3))), dim=-1)
        txt = F.normalize(self.txt(token_ids).mean(1), dim=-1)
        return CLIPOutput(img, txt, self.logit_scale.exp(), None)


def test_precomputed_features_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    teacher = _Teacher()
    g = torch.Generator().manual_seed(3)
    pixels, tokens = torch.randn(10, 3, 2, 2, generator=g), torch.randint(0, 10, (10, 5), generator=g)
    order = torch.tensor([7, 2, 9, 0, 5, 1, 8, 3, 6, 4]) + 100  # shuffled global indices, as a loader yields
    loader = [_Batch(pixels[i : i + 4], tokens[i : i + 4], order[i : i + 4]) for i in range(0, 10, 4)]
    path = precompute_teacher_features(teacher, loader, tmp_path)
    assert path == tmp_path / FEATURES_FILE
    store = TeacherFeatures(tmp_path)
    assert len(store) == 10
    want = [teacher(pixels, tokens)[k].detach() for k in range(3)]
    query = torch.tensor([103, 109, 100])
    rows = torch.cat([torch.nonzero(order == q) for q in query]).flatten()
    got = store.get(query)
    torch.testing.assert_close(got.image_features, want[0][rows])
    torch.testing.assert_close(got.text_features, want[1][rows])
    torch.testing.assert_close(got.logit_scale, want[2])
    with pytest.raises(UserError, match="no teacher features"):
        store.get(torch.tensor([100, 555]))


def test_missing_store_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match=FEATURES_FILE):
        TeacherFeatures(tmp_path)
