"""Multihead attention pooling ("MAP", Zhai et al. 2022, "Scaling Vision Transformers", sec. 3.2): a learned
probe attends over all tokens, then a pre-LN MLP with a residual refines the pooled token. SigLIP and
Perception Encoder pool their image towers this way."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clipforge.model.layers import MLP, BlockSpec


class AttentionPool(nn.Module):
    """probe -> attention over tokens -> out projection -> x + mlp(ln(x)); one (B, W) feature per image.

    The query, key and value projections are one (3W, W) matrix (rows in q, k, v order); the query half is
    applied to the probe only, the key and value halves to the tokens.
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        w = spec.width
        self.heads = spec.heads
        self.probe = nn.Parameter(torch.zeros(w))
        self.qkv = nn.Linear(w, 3 * w)
        self.out = nn.Linear(w, w)
        self.norm = nn.LayerNorm(w, eps=spec.ln_eps)
        self.mlp = MLP(spec)

    def init_weights(self) -> None:
        w = self.probe.shape[0]
        nn.init.normal_(self.probe, std=w**-0.5)
        for lin in (self.qkv, self.out, self.mlp.fc1, self.mlp.fc2):
            nn.init.normal_(lin.weight, std=w**-0.5)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, N, W) tokens. Returns (B, W)."""
        b, n, w = x.shape
        h = self.heads
        wq, wkv = self.qkv.weight.split([w, 2 * w])  # (W, W), (2W, W)
        bq, bkv = self.qkv.bias.split([w, 2 * w])
        q = F.linear(self.probe.to(x.dtype), wq, bq).view(1, h, 1, w // h).expand(b, -1, -1, -1)  # (B, H, 1, Dh)
        kv = F.linear(x, wkv, bkv).view(b, n, 2, h, w // h)  # (B, N, 2, H, Dh)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, Dh)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, Dh)
        y = self.out(y.transpose(1, 2).reshape(b, w))  # (B, W)
        return y + self.mlp(self.norm(y))
