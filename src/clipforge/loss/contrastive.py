"""Symmetric InfoNCE (CLIP, Radford et al. 2021, Fig. 3) with negatives from every rank.

For N global pairs, logits = scale * I @ T^T (N, N) and
    L = ( CE(logits, diag) + CE(logits^T, diag) ) / 2,
CE averaged over rows.  A rank holds rows ``q`` (its own pairs, or all of them) and the gathered columns
``k`` (all pairs); the row losses are summed and divided by N / W, so that the mean over ranks of the
per-rank losses is exactly L (also when ranks hold different numbers of pairs).

Two evaluations of the same numbers:
- plain: materialize the (M, N) logits; autograd keeps them (and the softmax) for backward.
- streamed (``chunk_size > 0``): a custom autograd function walks column blocks with an online
  log-sum-exp, keeps only the (M,) log-sum-exps, and recomputes each block's softmax in backward, so
  peak memory is O(M * chunk) instead of O(M * N).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from clipforge.model.clip import CLIPOutput

# (this rank's rows) -> (all ranks' rows in rank order, index of this rank's first row); from dist/gather.py.
Gather = Callable[[torch.Tensor], tuple[torch.Tensor, int]]


def infonce_rows(
    q_img: torch.Tensor,
    q_txt: torch.Tensor,
    k_img: torch.Tensor,
    k_txt: torch.Tensor,
    scale: torch.Tensor,
    offset: int,
    denom: float,
) -> torch.Tensor:
    """Plain symmetric InfoNCE of rows ``q`` against columns ``k``; row i's positive is column ``offset + i``.

    Args:
        q_img, q_txt: (M, E) row features; k_img, k_txt: (N, E) column features (L2-normalized).
        scale: scalar logit scale (already exponentiated).
        offset: column of row 0's positive.
        denom: the row-loss sum is divided by this (M for a plain mean).
    Returns: scalar ``(sum_i CE_i2t + sum_i CE_t2i) / (2 * denom)``.
    """
    m = q_img.shape[0]
    labels = torch.arange(offset, offset + m, device=q_img.device)
    logits_i2t = scale * q_img @ k_txt.T  # (M, N)
    if q_img is k_img and q_txt is k_txt:
        logits_t2i = logits_i2t.T  # global matrix: the text rows are its transpose
    else:
        logits_t2i = scale * q_txt @ k_img.T  # (M, N)
    ce = F.cross_entropy(logits_i2t, labels, reduction="sum") + F.cross_entropy(logits_t2i, labels, reduction="sum")
    return ce / (2 * denom)


def _stream_lse(q: torch.Tensor, k: torch.Tensor, scale: torch.Tensor, chunk: int) -> torch.Tensor:
    """log-sum-exp over columns of ``scale * q @ k^T`` (M,), one (M, chunk) block at a time (online softmax)."""
    m = q.new_full((q.shape[0],), float("-inf"))  # running row max
    s = q.new_zeros(q.shape[0])  # running sum of exp(logit - m)
    for j in range(0, k.shape[0], chunk):
        logits = scale * (q @ k[j : j + chunk].T)  # (M, c)
        m_new = torch.maximum(m, logits.amax(dim=1))
        s = s * torch.exp(m - m_new) + torch.exp(logits - m_new[:, None]).sum(dim=1)
        m = m_new
    return m + torch.log(s)


def _stream_grad(
    q: torch.Tensor, k: torch.Tensor, scale: torch.Tensor, lse: torch.Tensor, offset: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``sum_i (lse_i - scale * q_i . k_{offset+i})`` w.r.t. q (M, E), k (N, E) and scale.

    d/dlogits = softmax - onehot; logits = scale * q k^T.  Each block's softmax is recomputed from ``lse``.
    """
    dq, dk = torch.zeros_like(q), torch.zeros_like(k)
    dscale = q.new_zeros(())
    for j in range(0, k.shape[0], chunk):
        kb = k[j : j + chunk]  # (c, E)
        dots = q @ kb.T  # (M, c)
        p = torch.exp(scale * dots - lse[:, None])  # softmax block (M, c)
        dq += scale * (p @ kb)
        dk[j : j + chunk] = scale * (p.T @ q)
        dscale += (p * dots).sum()
    m = q.shape[0]
    pos = k[offset : offset + m]  # (M, E) positives
    dq -= scale * pos
    dk[offset : offset + m] -= scale * q
    dscale -= (q * pos).sum()
    return dq, dk, dscale


class _StreamedInfoNCE(torch.autograd.Function):
    """``infonce_rows`` without keeping any (M, N) tensor: forward keeps the (M,) log-sum-exps only."""

    @staticmethod
    def forward(ctx: Any, q_img: torch.Tensor, q_txt: torch.Tensor, k_img: torch.Tensor, k_txt: torch.Tensor,
                scale: torch.Tensor, offset: int, denom: float, chunk: int) -> torch.Tensor:
        m = q_img.shape[0]
        lse_i = _stream_lse(q_img, k_txt, scale, chunk)  # (M,)
        lse_t = _stream_lse(q_txt, k_img, scale, chunk)  # (M,)
        pos_i = (q_img * k_txt[offset : offset + m]).sum()
        pos_t = (q_txt * k_img[offset : offset + m]).sum()
        loss = (lse_i.sum() + lse_t.sum() - scale * (pos_i + pos_t)) / (2 * denom)
        ctx.save_for_backward(q_img, q_txt, k_img, k_txt, scale, lse_i, lse_t)
        ctx.offset, ctx.denom, ctx.chunk = offset, denom, chunk
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q_img, q_txt, k_img, k_txt, scale, lse_i, lse_t = ctx.saved_tensors
        dq_i, dk_t, ds_i = _stream_grad(q_img, k_txt, scale, lse_i, ctx.offset, ctx.chunk)
        dq_t, dk_i, ds_t = _stream_grad(q_txt, k_img, scale, lse_t, ctx.offset, ctx.chunk)
        g = grad / (2 * ctx.denom)
        return g * dq_i, g * dq_t, g * dk_i, g * dk_t, (g * (ds_i + ds_t)).reshape(scale.shape), None, None, None


def infonce_rows_streamed(
    q_img: torch.Tensor,
    q_txt: torch.Tensor,
    k_img: torch.Tensor,
    k_txt: torch.Tensor,
    scale: torch.Tensor,
    offset: int,
    denom: float,
    chunk_size: int,
) -> torch.Tensor:
    """``infonce_rows`` streamed over column blocks of ``chunk_size``; same value and gradients.

    Computes in at least float32 whatever the input dtype (the log-sum-exp needs it; features are small).

    Args: as ``infonce_rows``, plus chunk_size: columns per block (> 0).
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    f32 = [t.to(torch.promote_types(t.dtype, torch.float32)) for t in (q_img, q_txt, k_img, k_txt, scale)]
    return _StreamedInfoNCE.apply(*f32, offset, float(denom), int(chunk_size))


class RowsColumns(NamedTuple):
    """What a rank computes the loss over: rows q (M, E) against columns k (N, E); row i's positive is
    column ``offset + i``; the row-loss sum is divided by ``denom``."""

    q_img: torch.Tensor
    q_txt: torch.Tensor
    k_img: torch.Tensor
    k_txt: torch.Tensor
    offset: int
    denom: float


def rows_and_columns(
    img: torch.Tensor, txt: torch.Tensor, gather: Gather | None, world_size: int, local_loss: bool
) -> RowsColumns:
    """Arrange this rank's features (B, E) and every rank's (gathered) into rows and columns.

    Args:
        img, txt: this rank's normalized features (B, E).
        gather: all-gather of (B, 2E) rows (dist/gather.py); None in a single process.
        world_size: ranks whose losses DDP averages.
        local_loss: rows = this rank's pairs; else rows = all pairs (every rank computes the global loss).
    """
    if gather is None:
        return RowsColumns(img, txt, img, txt, 0, float(img.shape[0]))
    e = img.shape[1]
    both, start = gather(torch.cat([img, txt], dim=1))  # (N, 2E): one collective for both towers
    k_img, k_txt = both[:, :e], both[:, e:]
    if local_loss:
        # Sum over local rows / (N / W): the mean over ranks is the mean over all N rows.
        return RowsColumns(img, txt, k_img, k_txt, start, both.shape[0] / world_size)
    # Every rank's loss is already the full global loss.
    return RowsColumns(k_img, k_txt, k_img, k_txt, 0, float(both.shape[0]))


def contrastive_loss(
    out: CLIPOutput,
    gather: Gather | None = None,
    *,
    world_size: int = 1,
    local_loss: bool = True,
    chunk_size: int = 0,
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE for this rank's batch, negatives from every rank.

    Args:
        out: this rank's model output (normalized features, exponentiated scale).
        gather: all-gather of (B, 2E) rows (dist/gather.py); None in a single process.
        world_size: ranks whose losses DDP averages (1 in a single process).
        local_loss: rows = this rank's pairs against all columns; else every rank computes the full matrix.
        chunk_size: > 0 streams column blocks (see module docstring); 0 = plain.
    Returns: scalar; the mean over ranks equals the single-process loss on the concatenated batch.
    """
    rc = rows_and_columns(out.image_features, out.text_features, gather, world_size, local_loss)
    return infonce(rc, out.logit_scale, chunk_size)


def infonce(rc: RowsColumns, scale: torch.Tensor, chunk_size: int = 0) -> torch.Tensor:
    """InfoNCE over ``rc``: streamed when ``chunk_size > 0``, else plain. Args: rc; scale; chunk_size."""
    if chunk_size > 0:
        return infonce_rows_streamed(rc.q_img, rc.q_txt, rc.k_img, rc.k_txt, scale, rc.offset, rc.denom, chunk_size)
    return infonce_rows(rc.q_img, rc.q_txt, rc.k_img, rc.k_txt, scale, rc.offset, rc.denom)
