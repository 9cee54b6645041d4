"""Rank synchronisation outside the loss: barriers, metric means and Python-object gathers.

Each function is a no-op (or the trivial answer) in a single-process ``World``, so callers need not branch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from clipforge.dist.env import World


def barrier(world: World) -> None:
    """Wait until every rank reaches this point.

    Args:
        world: this process's place in the job.
    """
    if world.distributed:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of ``value`` over all ranks, as a new tensor (``value`` itself in a single-process world).

    Args:
        value: a tensor of the same shape on every rank.
        world: this process's place in the job.
    """
    if not world.distributed:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / world.world_size


def all_gather_object(obj: Any, world: World) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order.

    Args:
        obj: this rank's object.
        world: this process's place in the job.
    """
    if not world.distributed:
        return [obj]
    objs: list[Any] = [None] * world.world_size
    dist.all_gather_object(objs, obj)
    return objs
