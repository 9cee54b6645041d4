"""MobileCLIP's MCi image tower (Vasu et al. 2024, "MobileCLIP: Fast Image-Text Models through Multi-Modal
Reinforced Training"; MobileCLIP2, Faghri et al. 2025): a FastViT (Vasu et al. 2023) projected to the CLIP space.

    stem (3 MobileOne convs, stride 4) -> stages (RepMixer blocks, then attention blocks; each later stage
    enters with a stride-2 large-kernel downsampling, attention stages add a conditional positional encoding)
    -> final MobileOne conv widening the channels (with squeeze-excitation) -> global average pool -> Linear.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from clipforge.model.config import FastViTConfig
from clipforge.model.mobileclip_blocks import (
    SE_RATIO_FINAL,
    AttentionBlock,
    Downsample,
    RepConv,
    RepCPE,
    RepMixerBlock,
    divisible,
)
from clipforge.model.resnet import frozen_batchnorm_stats


class FastViTStage(nn.Module):
    """[downsampling] -> [positional encoding] -> blocks, at one resolution."""

    def __init__(self, cfg: FastViTConfig, i: int, cin: int) -> None:
        super().__init__()
        dim, fused = cfg.widths[i], cfg.reparameterized
        # The first stage keeps the stem's resolution and width; every later one halves the resolution.
        self.down = Downsample(cin, dim, cfg.se_downsample[i], fused) if i > 0 else None
        attention = cfg.mixers[i] == "attention"
        self.pos = RepCPE(dim, fused=fused) if attention else None
        blocks: list[nn.Module] = [
            AttentionBlock(dim, cfg.mlp_ratio, cfg.head_width, cfg.attn_norm)
            if attention
            else RepMixerBlock(dim, cfg.mlp_ratio, fused)
            for _ in range(cfg.layers[i])
        ]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down is not None:
            x = self.down(x)  # (B, dim, H/2, W/2)
        if self.pos is not None:
            x = self.pos(x)
        return self.blocks(x)


class FastViT(nn.Module):
    """The MCi tower. ``forward(pixels (B, 3, H, W)) -> (B, embed_dim)`` unnormalized features."""

    def __init__(self, cfg: FastViTConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        w0, fused, scale = cfg.widths[0], cfg.reparameterized, cfg.stem_scale_branch
        self.stem = nn.Sequential(
            RepConv(3, w0, 3, 2, scale_branch=scale, fused=fused),  # (B, w0, H/2, W/2)
            RepConv(w0, w0, 3, 2, groups=w0, scale_branch=scale, fused=fused),  # (B, w0, H/4, W/4), depthwise
            RepConv(w0, w0, 1, fused=fused),
        )
        stages, cin = [], w0
        for i in range(len(cfg.layers)):
            stages.append(FastViTStage(cfg, i, cin))
            cin = cfg.widths[i]
        self.stages = nn.ModuleList(stages)
        final = cin * cfg.final_ratio
        self.final = RepConv(cin, final, 3, groups=cin, se_reduced=divisible(final * SE_RATIO_FINAL, 1), fused=fused)
        self.proj = nn.Linear(final, embed_dim)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        self.grad_checkpointing = False

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Args: pixels (B, 3, H, W) normalized. Returns (B, embed_dim) unnormalized features."""
        x = self.stem(pixels.to(self.proj.weight.dtype))  # (B, w0, H/4, W/4)
        for stage in self.stages:
            if self.grad_checkpointing and torch.is_grad_enabled():
                # BatchNorm statistics must not be updated twice when the stage is recomputed in backward.
                x = checkpoint(stage, x, use_reentrant=False,
                               context_fn=lambda s=stage: (contextlib.nullcontext(), frozen_batchnorm_stats(s)))
            else:
                x = stage(x)
        x = self.final(x)  # (B, final, h, w)
        return self.proj(x.mean(dim=(2, 3)))  # (B, E)
