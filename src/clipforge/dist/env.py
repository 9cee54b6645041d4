"""Process-group set-up: the only place (with dist/gather.py) that knows about ranks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from clipforge.errors import UserError


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


def _env_int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError as e:
        raise UserError(f"environment variable {key}={env[key]!r} is not an integer",
                        hint="launch with torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK") from e


def _pick_device(device: str | None, local_rank: int) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise UserError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device 'cuda' requested but CUDA is not available", hint="use device=cpu")
        # One GPU per process: torchrun's LOCAL_RANK picks it on this host.
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: str | None = None, env: Mapping[str, str] | None = None) -> World:
    """Join the torchrun process group if launched by torchrun (env RANK/WORLD_SIZE set), else a single-process World.

    Backend: NCCL when CUDA is available, gloo otherwise. ``device`` overrides the automatic choice
    ("cpu", "cuda").

    Args:
        device: "cpu", "cuda" or None (CUDA when available).
        env: the environment to read (default: ``os.environ``, read here, never at import).
    """
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return World(device=_pick_device(device, 0))
    rank, world_size = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
    local_rank = _env_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    if not 0 <= rank < world_size:
        raise UserError(f"RANK={rank} is outside WORLD_SIZE={world_size}")
    dev = _pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        # MASTER_ADDR/MASTER_PORT come from torchrun via the default env:// rendezvous.
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return World(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def destroy_distributed() -> None:
    """Tear down the process group if one was created."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
