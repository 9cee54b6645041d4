"""Vision Transformer image tower (Dosovitskiy et al. 2021) as CLIP (Radford et al. 2021) and its successors
use it: OpenAI's class-token ViT, SigLIP's (Zhai et al. 2023) MAP-pooled ViT without class token, EVA-02's
(Fang et al. 2023) rotary SwiGLU ViT and Perception Encoder's (Bolya et al. 2025) rotary MAP ViT are one
module with the switches of ``ViTConfig``."""

from __future__ import annotations

import torch
from torch import nn

from clipforge.model.config import ViTConfig
from clipforge.model.layers import BlockSpec, Transformer
from clipforge.model.pool import AttentionPool
from clipforge.model.rope import rope_table


def vit_block_spec(cfg: ViTConfig) -> BlockSpec:
    """The block shape of an image tower."""
    return BlockSpec(cfg.width, cfg.heads, cfg.mlp_ratio, cfg.act, cfg.ln_eps, cfg.qkv_bias, cfg.sub_ln)


class VisionTransformer(nn.Module):
    """Patchify conv → [class token;] patches (+ learned positions) → (ln_pre) → blocks (+ rotary positions) →
    LayerNorm → class token or MAP pooling → projection to ``embed_dim``."""

    def __init__(self, cfg: ViTConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.patch_embed = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=cfg.patch_bias)
        self.class_embedding = nn.Parameter(torch.zeros(w)) if cfg.class_token else None
        n_pos = cfg.grid_size**2 + cfg.prefix_tokens
        self.pos_embedding = nn.Parameter(torch.zeros(n_pos, w)) if cfg.pos_embed else None
        self.norm_pre = nn.LayerNorm(w, eps=cfg.ln_eps) if cfg.norm_pre else None
        self.transformer = Transformer(vit_block_spec(cfg), cfg.layers)
        self.norm_post = nn.LayerNorm(w, eps=cfg.ln_eps)
        self.attn_pool: AttentionPool | None = None
        if cfg.pool == "map":
            mlp_ratio = cfg.pool_mlp_ratio or cfg.mlp_ratio
            spec = BlockSpec(w, cfg.pool_heads or cfg.heads, mlp_ratio, cfg.act, cfg.ln_eps)
            self.attn_pool = AttentionPool(spec)
        self.proj = nn.Parameter(torch.zeros(w, embed_dim)) if cfg.proj != "none" else None
        self.proj_bias = nn.Parameter(torch.zeros(embed_dim)) if cfg.proj == "bias" else None
        self.init_weights()

    def init_weights(self) -> None:
        w, layers = self.cfg.width, self.cfg.layers
        scale = w**-0.5
        for p in (self.class_embedding, self.pos_embedding, self.proj):
            if p is not None:
                nn.init.normal_(p, std=scale)
        nn.init.normal_(self.patch_embed.weight, std=(3 * self.cfg.patch_size**2) ** -0.5)
        if self.patch_embed.bias is not None:
            nn.init.zeros_(self.patch_embed.bias)
        self.transformer.init_weights(proj_std=scale * (2 * layers) ** -0.5, attn_std=scale, fc_std=(2 * w) ** -0.5)
        if self.attn_pool is not None:
            self.attn_pool.init_weights()

    def _drop_patches(
        self, x: torch.Tensor, rope: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """FLIP patch dropout: keep a random subset of patch tokens (never the class token) in training.

        The rotary table, when there is one, keeps the rows of the kept patches, so each token keeps its position.
        """
        keep_prob = 1.0 - self.cfg.patch_dropout
        if not self.training or keep_prob >= 1.0:
            return x, rope
        b, n, d = x.shape
        prefix = self.cfg.prefix_tokens
        n_patches = n - prefix
        keep = max(1, int(n_patches * keep_prob))
        idx = torch.rand(b, n_patches, device=x.device).argsort(dim=-1)[:, :keep]  # (B, keep)
        patches = x[:, prefix:].gather(1, idx.unsqueeze(-1).expand(-1, -1, d))  # (B, keep, D)
        if rope is not None:
            rope = rope.unsqueeze(0).expand(b, -1, -1).gather(1, idx.unsqueeze(-1).expand(-1, -1, rope.shape[-1]))
        return torch.cat([x[:, :prefix], patches], dim=1), rope  # (B, prefix + keep, D)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Args: pixels (B, 3, H, W) normalized. Returns (B, embed_dim) unnormalized features."""
        x = self.patch_embed(pixels.to(self.patch_embed.weight.dtype))  # (B, W, g, g); fp32 pixels into a bf16 model
        x = x.flatten(2).transpose(1, 2)  # (B, g*g, W)
        if self.class_embedding is not None:
            cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # (B, 1, W)
            x = torch.cat([cls, x], dim=1)  # (B, 1+g*g, W)
        if self.pos_embedding is not None:
            x = x + self.pos_embedding.to(x.dtype)
        rope = None
        if self.cfg.rope is not None:
            rope = rope_table(self.cfg.rope, self.cfg.grid_size, self.cfg.head_width, x.device)  # (g*g, 2*Dh)
        x, rope = self._drop_patches(x, rope)
        if self.norm_pre is not None:
            x = self.norm_pre(x)
        x = self.transformer(x, rope=rope, prefix=self.cfg.prefix_tokens)
        if self.attn_pool is not None:
            x = self.attn_pool(self.norm_post(x))  # (B, W)
        else:
            x = self.norm_post(x[:, 0])  # (B, W); LayerNorm is per token, so only the class token needs it
        if self.proj is not None:
            x = x @ self.proj.to(x.dtype)  # (B, E)
        if self.proj_bias is not None:
            x = x + self.proj_bias.to(x.dtype)
        return x
