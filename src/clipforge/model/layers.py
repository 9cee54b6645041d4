"""Building blocks shared by the image and text towers: pre-LN transformer with SDPA attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation OpenAI's released CLIP weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(quick_gelu: bool) -> nn.Module:
    return QuickGELU() if quick_gelu else nn.GELU()


class Attention(nn.Module):
    """Multi-head self-attention with one fused QKV projection, computed by SDPA.

    SDPA picks flash / memory-efficient kernels where available; the fused QKV matmul is one GEMM instead
    of three.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads)  # (B, N, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, Dh)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, N, Dh)
        y = y.transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return self.out(y)


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, quick_gelu: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = make_activation(quick_gelu)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool, ln_eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=ln_eps)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=ln_eps)
        self.mlp = MLP(width, int(width * mlp_ratio), quick_gelu)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), causal=causal)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of pre-LN blocks over (B, N, D) tokens, with optional activation checkpointing."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, quick_gelu: bool, ln_eps: float) -> None:
        super().__init__()
        self.width = width
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, quick_gelu, ln_eps) for _ in range(layers))
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, causal, use_reentrant=False)
            else:
                x = block(x, causal=causal)
        return x

    def init_weights(self, proj_std: float, attn_std: float, fc_std: float) -> None:
        """OpenAI CLIP's init: normal weights scaled by width and depth, zero biases."""
        for block in self.blocks:
            nn.init.normal_(block.attn.qkv.weight, std=attn_std)
            nn.init.normal_(block.attn.out.weight, std=proj_std)
            nn.init.normal_(block.mlp.fc1.weight, std=fc_std)
            nn.init.normal_(block.mlp.fc2.weight, std=proj_std)
            for lin in (block.attn.qkv, block.attn.out, block.mlp.fc1, block.mlp.fc2):
                nn.init.zeros_(lin.bias)
