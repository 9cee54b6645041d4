"""AdamW with weight decay on weight matrices only.

Decay is a prior on matrices that mix features. Gains and biases (1-D), embedding tables and positions
(lookups, not mixing), and the temperature ``logit_scale``/``logit_bias`` are excluded, as in the CLIP
paper's training recipe and OpenCLIP's (decaying a gain pulls it towards 0 and slowly shuts a layer off).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from clipforge.train.config import OptimConfig

# Parameters excluded from decay by name (besides every 1-D tensor and every nn.Embedding weight).
_NO_DECAY_NAMES = ("logit_scale", "logit_bias", "class_embedding", "pos_embedding")


@dataclass(frozen=True)
class ParamGroups:
    decay: list[str]
    no_decay: list[str]


def split_params(model: nn.Module) -> ParamGroups:
    """Names of trainable parameters with and without weight decay (see the module docstring)."""
    embedding_weights = {
        f"{mod_name}.weight" if mod_name else "weight"
        for mod_name, mod in model.named_modules()
        if isinstance(mod, nn.Embedding)
    }
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if param.ndim < 2 or name in embedding_weights or leaf in _NO_DECAY_NAMES:
            no_decay.append(name)
        else:
            decay.append(name)
    return ParamGroups(decay, no_decay)


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``model``'s parameters in two groups; the fused kernel where the device supports it.

    Args:
        model: the (unwrapped) model.
        cfg: learning rate, betas, eps and weight decay. The learning rate is set every step by the schedule.
    """
    groups = split_params(model)
    params = dict(model.named_parameters())
    devices = {p.device.type for p in params.values()}
    # The fused kernel (one launch for all tensors) exists for CUDA and CPU float tensors.
    fused = devices <= {"cuda", "cpu"} and all(p.is_floating_point() for p in params.values())
    return torch.optim.AdamW(
        [
            {"params": [params[n] for n in groups.decay], "weight_decay": cfg.weight_decay},
            {"params": [params[n] for n in groups.no_decay], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        fused=fused,
    )
