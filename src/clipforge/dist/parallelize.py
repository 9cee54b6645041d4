"""FSDP2 (``torch.distributed.fsdp.fully_shard``): parameters, gradients and optimizer state sharded over ranks.

For towers that do not fit one device with DDP's full replica per rank (ViT-H/bigG, SO400M). Each transformer
block of both towers is one FSDP unit (its parameters are all-gathered just before it runs and freed after),
then each tower as a whole (embeddings, norms, projection). The root's own parameters, the 0-d temperature
``logit_scale`` and ``logit_bias``, stay replicated: FSDP2 cannot shard 0-d parameters, so their gradients are
averaged over ranks here, as DDP would.

Checkpoints are sharded with ``torch.distributed.checkpoint``: every rank writes its own shards into a
``step_N.dcp`` directory, and the run resumes from them on the same number of ranks or another.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Replicate

from clipforge.dist.env import World


def shard_towers(model: nn.Module) -> nn.Module:
    """Apply FSDP2 to ``model`` in place: every transformer block of each tower, then each tower.

    Call before building the optimizer: sharding replaces the parameters with DTensor parameters.
    """
    for tower in (model.visual, model.text):
        transformer = getattr(tower, "transformer", None)
        for block in getattr(transformer, "blocks", None) or []:
            fully_shard(block)
        fully_shard(tower)
    return model


def is_sharded(model: nn.Module) -> bool:
    return any(isinstance(p, DTensor) for p in model.parameters())


def average_replicated_grads(model: nn.Module, world: World) -> None:
    """Mean over ranks of the gradients of the parameters FSDP does not manage (the root's 0-d scalars)."""
    grads = [p.grad for p in model.parameters() if not isinstance(p, DTensor) and p.grad is not None]
    if not grads or not world.distributed:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Total gradient norm over sharded and replicated parameters (every rank gets the same value); clips
    when ``max_norm`` is finite. ``clip_grad_norm_`` does not handle a mix of DTensor and plain gradients."""
    sharded = [p.grad for p in params if isinstance(p, DTensor) and p.grad is not None]
    plain = [p.grad for p in params if not isinstance(p, DTensor) and p.grad is not None]
    norms = []
    if sharded:
        norm = torch.nn.utils.get_total_norm(sharded)
        norms.append(norm.full_tensor() if isinstance(norm, DTensor) else norm)
    if plain:
        norms.append(torch.nn.utils.get_total_norm(plain))
    total = torch.stack(norms).square().sum().sqrt()
    if math.isfinite(max_norm):
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)  # as clip_grad_norm_ computes it
        for g in plain:
            g.mul_(coef)
        for g in sharded:  # a plain tensor does not scale a DTensor in place: give it the same placement
            g.mul_(DTensor.from_local(coef, g.device_mesh, [Replicate()] * g.device_mesh.ndim))
    return total


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on CPU (a collective: every rank calls it; every rank gets it)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, folder: Path, world: World) -> None:
    """Every rank writes its shards of the model and optimizer state into ``folder`` (a collective).

    Written under a temporary name and renamed by rank 0 once all ranks are done, so a complete ``folder``
    always holds a whole checkpoint.
    """
    tmp = folder.with_name(folder.name + ".tmp")
    if world.is_main:
        folder.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(tmp))
    dist.barrier()
    if world.is_main:
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    dist.barrier()


def load_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Read the shards in ``folder`` (``save_sharded``) into the sharded ``model`` and ``optimizer``."""
    model_state, optim_state = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": model_state, "optimizer": optim_state}
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
