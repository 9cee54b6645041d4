"""Symmetric InfoNCE: known values, plain vs streamed (value and every gradient), config validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipforge.dist.env import World
from clipforge.errors import UserError
from clipforge.loss.build import build_loss
from clipforge.loss.config import LossConfig
from clipforge.loss.contrastive import infonce_rows, infonce_rows_streamed
from clipforge.model.clip import CLIPOutput


def _feats(n: int, e: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, e, generator=g, dtype=dtype), dim=-1)


def _out(img: torch.Tensor, txt: torch.Tensor, scale: float) -> CLIPOutput:
    return CLIPOutput(img, txt, torch.tensor(scale, dtype=img.dtype), None)


def test_aligned_features_with_large_scale_give_zero_loss() -> None:
    # Orthonormal pairs: the positive logit is 100, every negative 0, so CE = log(1 + (N-1) e^-100) ~ 0.
    eye = torch.eye(8, dtype=torch.float64)
    loss = build_loss(LossConfig(), World())(_out(eye, eye.clone(), 100.0))
    assert loss.item() < 1e-40


def test_identical_features_give_log_n() -> None:
    # Every logit equal: each row's softmax is uniform over N columns, CE = log N in both directions.
    same = F.normalize(torch.ones(16, 4, dtype=torch.float64), dim=-1)
    for chunk in (0, 5):
        loss = build_loss(LossConfig(chunk_size=chunk), World())(_out(same, same.clone(), 30.0))
        assert loss.item() == pytest.approx(math.log(16), abs=1e-12)


def test_matches_direct_formula() -> None:
    img, txt = _feats(6, 5, 0), _feats(6, 5, 1)
    logits = 7.0 * img @ txt.T
    want = 0.0
    for i in range(6):  # written out: -log softmax of the diagonal, rows then columns
        want += -logits[i, i] + torch.logsumexp(logits[i], 0)
        want += -logits[i, i] + torch.logsumexp(logits[:, i], 0)
    got = build_loss(LossConfig(), World())(_out(img, txt, 7.0))
    assert got.item() == pytest.approx((want / 12).item(), abs=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("chunk", [1, 4, 7, 100])
@pytest.mark.parametrize("local_rows", [True, False])
def test_streamed_matches_plain_value_and_gradients(dtype: torch.dtype, tol: float, chunk: int, local_rows: bool) -> None:
    m, n, e = 5, 13, 8
    k_img, k_txt = _feats(n, e, 2, dtype).requires_grad_(), _feats(n, e, 3, dtype).requires_grad_()
    if local_rows:  # a rank's rows against all columns, positives at offset 4
        q_img, q_txt, offset = _feats(m, e, 4, dtype).requires_grad_(), _feats(m, e, 5, dtype).requires_grad_(), 4
    else:  # the global matrix: rows and columns are the same tensors
        q_img, q_txt, offset = k_img, k_txt, 0
    scale = torch.tensor(20.0, dtype=dtype, requires_grad=True)
    leaves = [t for t in (q_img, q_txt, k_img, k_txt, scale) if t.requires_grad]
    leaves = list({id(t): t for t in leaves}.values())
    plain = infonce_rows(q_img, q_txt, k_img, k_txt, scale, offset, q_img.shape[0])
    g_plain = torch.autograd.grad(plain, leaves)
    streamed = infonce_rows_streamed(q_img, q_txt, k_img, k_txt, scale, offset, q_img.shape[0], chunk)
    g_streamed = torch.autograd.grad(streamed, leaves)
    assert streamed.dtype == dtype
    assert abs(plain.item() - streamed.item()) < tol
    for a, b in zip(g_plain, g_streamed, strict=True):
        assert a.abs().max() > 0
        assert (a - b).abs().max().item() < tol


def test_streamed_handles_huge_logits_without_overflow() -> None:
    # exp(100 * 1) overflows no float32 accumulator because the running max is subtracted first.
    img = txt = torch.eye(4, dtype=torch.float32)
    loss = infonce_rows_streamed(img, txt, img, txt, torch.tensor(1e4), 0, 4.0, 1)
    assert torch.isfinite(loss) and loss.item() < 1e-6


def test_build_loss_rejects_bad_config() -> None:
    with pytest.raises(UserError, match="chunk_size"):
        build_loss(LossConfig(chunk_size=-1), World())
    with pytest.raises(UserError, match="kind"):
        build_loss(LossConfig(kind="triplet"), World())  # type: ignore[arg-type]
