"""Vision Transformer image tower (Dosovitskiy et al. 2021) as used by CLIP (Radford et al. 2021)."""

from __future__ import annotations

import torch
from torch import nn

from clipforge.model.config import ViTConfig
from clipforge.model.layers import Transformer


class VisionTransformer(nn.Module):
    """Patchify conv (no bias) → [class token; patches] + learned positions → ln_pre → blocks →
    ln_post on the class token → projection to ``embed_dim``."""

    def __init__(self, cfg: ViTConfig, embed_dim: int, quick_gelu: bool) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.patch_embed = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.pos_embedding = nn.Parameter(torch.zeros(cfg.grid_size**2 + 1, w))
        self.norm_pre = nn.LayerNorm(w, eps=cfg.ln_eps)
        self.transformer = Transformer(w, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu, cfg.ln_eps)
        self.norm_post = nn.LayerNorm(w, eps=cfg.ln_eps)
        self.proj = nn.Parameter(torch.zeros(w, embed_dim))
        self.init_weights()

    def init_weights(self) -> None:
        w, layers = self.cfg.width, self.cfg.layers
        scale = w**-0.5
        nn.init.normal_(self.class_embedding, std=scale)
        nn.init.normal_(self.pos_embedding, std=scale)
        nn.init.normal_(self.proj, std=scale)
        nn.init.normal_(self.patch_embed.weight, std=(3 * self.cfg.patch_size**2) ** -0.5)
        self.transformer.init_weights(proj_std=scale * (2 * layers) ** -0.5, attn_std=scale, fc_std=(2 * w) ** -0.5)

    def _drop_patches(self, x: torch.Tensor) -> torch.Tensor:
        """FLIP patch dropout: keep a random subset of patch tokens (never the class token) in training."""
        keep_prob = 1.0 - self.cfg.patch_dropout
        if not self.training or keep_prob >= 1.0:
            return x
        b, n, d = x.shape
        n_patches = n - 1
        keep = max(1, int(n_patches * keep_prob))
        idx = torch.rand(b, n_patches, device=x.device).argsort(dim=-1)[:, :keep] + 1  # (B, keep)
        patches = x.gather(1, idx.unsqueeze(-1).expand(-1, -1, d))  # (B, keep, D)
        return torch.cat([x[:, :1], patches], dim=1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Args: pixels (B, 3, H, W) normalized. Returns (B, embed_dim) unnormalized features."""
        x = self.patch_embed(pixels.to(self.patch_embed.weight.dtype))  # (B, W, g, g); fp32 pixels into a bf16 model
        x = x.flatten(2).transpose(1, 2)  # (B, g*g, W)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # (B, 1, W)
        x = torch.cat([cls, x], dim=1) + self.pos_embedding.to(x.dtype)  # (B, 1+g*g, W)
        x = self._drop_patches(x)
        x = self.norm_pre(x)
        x = self.transformer(x)
        x = self.norm_post(x[:, 0])  # (B, W)
        return x @ self.proj  # (B, E)
