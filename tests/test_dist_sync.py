"""dist.sync in a single-process world: the trivial answers, so callers never branch on world size."""

from __future__ import annotations

import torch

from clipforge.dist.env import World
from clipforge.dist.sync import all_gather_object, all_reduce_mean, barrier


def test_single_process_world_is_a_no_op():
    world = World()
    barrier(world)
    x = torch.tensor([1.0, 3.0])
    assert all_reduce_mean(x, world) is x
    assert all_gather_object({"a": 1}, world) == [{"a": 1}]
