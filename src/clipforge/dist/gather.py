"""Cross-rank exchange of features with gradients, for the losses in clipforge.loss.

Gradient convention (what makes DDP's averaging come out right): every rank r computes its own loss
``loss_r`` and DDP averages the parameter gradients over the W ranks, so the parameters receive
``(1/W) * d(sum_s loss_s)/d(theta)``.  For that, the gradient reaching rank r's local features must be
``d(sum_s loss_s)/d(x_r)``: the backward of the gather therefore SUMS the gradients all ranks computed
for rank r's rows (reduce-scatter with SUM) and hands rank r its slice, with no extra factor.  The loss
functions are then written so that ``mean_s loss_s`` equals the single-process loss on the concatenated
batch (see clipforge.loss.build.build_loss for each variant).

Local batches may differ in size between ranks (a loader drops bad samples); every function here first
exchanges the row counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist


def _row_counts(x: torch.Tensor, world_size: int) -> list[int]:
    """Rows of ``x`` on every rank (one tiny all-gather, read back to the host in one copy: the buffers the
    gather allocates need the counts on the host, so one wait per call is the floor, not one per rank)."""
    mine = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
    counts = [torch.zeros_like(mine) for _ in range(world_size)]
    dist.all_gather(counts, mine)
    return torch.cat(counts).tolist()


def _gather_padded(x: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """All ranks' ``x`` stacked in rank order: (sum(counts), *x.shape[1:]). Pads to max(counts) for the collective."""
    pad = max(counts)
    xp = x.new_zeros((pad, *x.shape[1:]))
    xp[: x.shape[0]] = x
    out = x.new_empty((len(counts) * pad, *x.shape[1:]))
    dist.all_gather_single(out, xp.contiguous())
    # (W * pad, ...) -> (sum(counts), ...): drop each rank's padding rows.
    return torch.cat([out[r * pad : r * pad + n] for r, n in enumerate(counts)])


class _AllGatherSum(torch.autograd.Function):
    """Forward: all ranks' rows.  Backward: sum over ranks of the gradient for this rank's rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, counts: list[int], rank: int) -> torch.Tensor:
        ctx.counts, ctx.rank = counts, rank
        return _gather_padded(x, counts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        counts, rank = ctx.counts, ctx.rank
        start = sum(counts[:rank])
        if len(set(counts)) == 1:
            # Equal blocks: reduce-scatter moves 1/W of what an all-reduce moves (NCCL and gloo both have it).
            out = grad.new_empty((counts[rank], *grad.shape[1:]))
            dist.reduce_scatter_single(out, grad.contiguous(), op=dist.ReduceOp.SUM)
            return out, None, None
        # Uneven blocks: all-reduce the whole gradient, keep this rank's slice.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[start : start + counts[rank]], None, None


def all_gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Gather ``x`` (B_r, ...) from every rank, differentiably.

    Args:
        x: this rank's rows.
    Returns:
        (all rows in rank order (sum_r B_r, ...), index of this rank's first row).  The gradient flowing
        back to ``x`` is the SUM over ranks of the gradients each computed for these rows.
    """
    world_size, rank = dist.get_world_size(), dist.get_rank()
    counts = _row_counts(x, world_size)
    return _AllGatherSum.apply(x, counts, rank), sum(counts[:rank])


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``factor`` in backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` unchanged, with its gradient multiplied by ``factor``. Args: x: any tensor; factor: the multiplier."""
    return x if factor == 1.0 else _ScaleGrad.apply(x, factor)


def all_gather_no_grad(x: torch.Tensor, local_grad_scale: float = 1.0) -> tuple[torch.Tensor, int]:
    """Gather ``x`` from every rank; only this rank's own rows carry a gradient (to ``x``, times ``local_grad_scale``).

    Args:
        x: this rank's rows (B_r, ...).
        local_grad_scale: factor on the gradient reaching ``x`` (build_loss uses the world size when every
            rank computes the full global loss, so that DDP's average restores the single-process gradient).
    Returns:
        (all rows in rank order, index of this rank's first row).
    """
    world_size, rank = dist.get_world_size(), dist.get_rank()
    counts = _row_counts(x, world_size)
    with torch.no_grad():
        everything = _gather_padded(x.detach(), counts)
    start = sum(counts[:rank])
    local = scale_grad(x, local_grad_scale)
    return torch.cat([everything[:start], local, everything[start + counts[rank] :]]), start


def _p2p(send: torch.Tensor, dst: int, recv_shape: tuple[int, ...], src: int) -> torch.Tensor:
    recv = send.new_empty(recv_shape)
    ops = [dist.P2POp(dist.isend, send.contiguous(), dst), dist.P2POp(dist.irecv, recv, src)]
    for work in dist.batch_isend_irecv(ops):
        work.wait()
    return recv


class _RingShift(torch.autograd.Function):
    """Forward: send ``x`` to ``dst``, receive a block of ``recv_rows`` rows from ``src``.

    Backward: the gradient of the received block goes back to ``src``; the gradient of ``x`` arrives
    from ``dst`` (which used ``x`` in its loss).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dst: int, src: int, recv_rows: int) -> torch.Tensor:
        ctx.dst, ctx.src, ctx.x_shape = dst, src, tuple(x.shape)
        return _p2p(x, dst, (recv_rows, *x.shape[1:]), src)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        return _p2p(grad, ctx.src, ctx.x_shape, ctx.dst), None, None, None


def ring_blocks(x: torch.Tensor) -> Iterator[torch.Tensor]:
    """The other ranks' ``x`` blocks, one at a time, passed around a ring (never all held by one exchange).

    Step k (1 .. W-1) yields the block of rank ``(rank - k) mod W``: every rank sends the block it holds
    to ``rank + 1`` and receives one from ``rank - 1``.  Gradients travel the ring backwards to the owner.

    Args:
        x: this rank's rows (B_r, ...).
    """
    world_size, rank = dist.get_world_size(), dist.get_rank()
    counts = _row_counts(x, world_size)
    dst, src = (rank + 1) % world_size, (rank - 1) % world_size
    block = x
    for k in range(1, world_size):
        block = _RingShift.apply(block, dst, src, counts[(rank - k) % world_size])
        yield block
