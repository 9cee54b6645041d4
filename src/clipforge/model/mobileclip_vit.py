"""MobileCLIP-B's image tower (Vasu et al. 2024, section 4): a ViT-B/16 whose patch embedding is a 3-conv stem.

A convolutional stem gives the transformer better-conditioned patch features than one 16x16 patchify conv
(Xiao et al. 2021, "Early convolutions help transformers see better"). The blocks are the shared pre-LN blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from clipforge.model.config import ConvStemViTConfig
from clipforge.model.layers import BlockSpec, Transformer


class ConvNormAct(nn.Module):
    """Conv (no bias, no padding) -> BatchNorm -> GELU."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=k, bias=False)
        self.norm = nn.BatchNorm2d(cout)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ConvStemViT(nn.Module):
    """Conv stem (stride 16) -> patches + learned positions -> [class token; patches] -> blocks -> LayerNorm ->
    class token -> Linear (with bias) to ``embed_dim``."""

    def __init__(self, cfg: ConvStemViTConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        w, s = cfg.width, cfg.stem_width
        self.stem = nn.Sequential(ConvNormAct(3, s, 4), ConvNormAct(s, s, 2), nn.Conv2d(s, w, 2, stride=2))
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.pos_embedding = nn.Parameter(torch.zeros(cfg.grid_size**2, w))
        self.transformer = Transformer(BlockSpec(w, cfg.heads, cfg.mlp_ratio, "gelu", cfg.ln_eps), cfg.layers)
        self.norm = nn.LayerNorm(w, eps=cfg.ln_eps)
        self.proj = nn.Linear(w, embed_dim)
        self.init_weights()

    def init_weights(self) -> None:
        w, layers = self.cfg.width, self.cfg.layers
        nn.init.normal_(self.class_embedding, std=1e-6)
        nn.init.trunc_normal_(self.pos_embedding, std=0.02)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        scale = w**-0.5
        self.transformer.init_weights(proj_std=scale * (2 * layers) ** -0.5, attn_std=scale, fc_std=(2 * w) ** -0.5)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Args: pixels (B, 3, H, W) normalized. Returns (B, embed_dim) unnormalized features."""
        x = self.stem(pixels.to(self.proj.weight.dtype))  # (B, W, g, g)
        x = x.flatten(2).transpose(1, 2) + self.pos_embedding.to(x.dtype)  # (B, g*g, W)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # (B, 1, W)
        x = self.transformer(torch.cat([cls, x], dim=1))  # (B, 1+g*g, W)
        return self.proj(self.norm(x[:, 0]))  # (B, E)
