"""Process-group set-up: the only place (with dist/gather.py) that knows about ranks."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class World:
    """Where this process sits in a (possibly single-process) job.

    Args:
        rank: global rank; world_size: number of processes; local_rank: rank on this host.
        device: the device this process computes on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> World:
    """Join the torchrun process group if launched by torchrun (env RANK/WORLD_SIZE set), else a single-process World.

    Backend: NCCL when CUDA is available, gloo otherwise. ``device`` overrides the automatic choice
    ("cpu", "cuda").
    """
    raise NotImplementedError  # implemented on the loss/dist branch


def destroy_distributed() -> None:
    """Tear down the process group if one was created."""
    raise NotImplementedError
