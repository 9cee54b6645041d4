"""Text tower: transformer over BPE tokens (causal unless the config says not), features at the end-of-text token."""

from __future__ import annotations

import torch
from torch import nn

from clipforge.model.config import TextConfig
from clipforge.model.layers import Transformer


class TextTransformer(nn.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int, quick_gelu: bool) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_embedding = nn.Parameter(torch.zeros(cfg.context_length, cfg.width))
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu, cfg.ln_eps)
        self.norm_final = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)
        self.proj = nn.Parameter(torch.zeros(cfg.width, embed_dim))
        self.init_weights()

    def init_weights(self) -> None:
        w, layers = self.cfg.width, self.cfg.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embedding, std=0.01)
        nn.init.normal_(self.proj, std=w**-0.5)
        self.transformer.init_weights(proj_std=w**-0.5 * (2 * layers) ** -0.5, attn_std=w**-0.5, fc_std=(2 * w) ** -0.5)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Args: token_ids (B, L) with L <= context_length; end-of-text is the highest id in each row.

        Returns (B, embed_dim) unnormalized features.
        """
        eot = token_ids.argmax(dim=-1)  # (B,) first end-of-text position
        n = token_ids.shape[1]
        if self.cfg.causal and token_ids.numel():
            # The mask is causal, so positions after the last end-of-text cannot change the features we read:
            # trim the batch to its longest text instead of always running all 77 positions. Without the mask
            # every position (padding too) reaches every feature, so nothing may be trimmed.
            n = int(eot.max()) + 1
        ids = token_ids[:, :n]
        x = self.token_embedding(ids) + self.pos_embedding[:n].to(self.token_embedding.weight.dtype)  # (B, n, W)
        x = self.transformer(x, causal=self.cfg.causal)
        x = self.norm_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]  # (B, W)
        return x @ self.proj  # (B, E)
