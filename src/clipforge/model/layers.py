"""Transformer blocks shared by the image and text towers, with the switches CLIP's descendants differ in.

One block covers OpenAI's CLIP (pre-LN, GELU or QuickGELU), SigLIP (GELU-tanh), EVA-02 (SwiGLU, sub-LN, no
key bias, rotary positions) and Perception Encoder (rotary positions): see ``BlockSpec``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from clipforge.model.config import Activation
from clipforge.model.rope import apply_rope


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation OpenAI's released CLIP weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            return x * torch.sigmoid(1.702 * x)
        # Without autograd: the same three float operations, one temporary instead of two (the MLP's hidden
        # activations are the largest tensors of a block).
        return torch.sigmoid_(x * 1.702).mul_(x)


def make_activation(act: Activation) -> nn.Module:
    """The elementwise activation of a non-gated MLP."""
    if act == "quick_gelu":
        return QuickGELU()
    if act == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if act == "gelu":
        return nn.GELU()
    raise ValueError(f"{act!r} is not an elementwise activation")


@dataclass(frozen=True)
class BlockSpec:
    """Everything that shapes one transformer block (the same for every block of a tower).

    Args:
        width: token width; heads: attention heads.
        mlp_ratio: MLP hidden size over the width (hidden = int(width * mlp_ratio)).
        act: the MLP kind.
        ln_eps: LayerNorm epsilon.
        qkv_bias: "qkv" or "qv" (no key bias).
        sub_ln: LayerNorm before the attention's output projection and before the MLP's second layer.
    """

    width: int
    heads: int
    mlp_ratio: float = 4.0
    act: Activation = "gelu"
    ln_eps: float = 1e-5
    qkv_bias: str = "qkv"
    sub_ln: bool = False

    @property
    def hidden(self) -> int:
        return int(self.width * self.mlp_ratio)


class Attention(nn.Module):
    """Multi-head self-attention with one fused QKV projection, computed by SDPA.

    SDPA picks flash / memory-efficient kernels where available; the fused QKV matmul is one GEMM instead
    of three. With ``qkv_bias="qv"`` the keys have no bias (their bias would add the same amount to every
    logit of a query, which the softmax cancels); queries and values keep theirs as separate parameters.
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        w = spec.width
        self.heads = spec.heads
        self.qkv = nn.Linear(w, 3 * w, bias=spec.qkv_bias == "qkv")
        self.q_bias: nn.Parameter | None = None
        self.v_bias: nn.Parameter | None = None
        if spec.qkv_bias == "qv":
            self.q_bias = nn.Parameter(torch.zeros(w))
            self.v_bias = nn.Parameter(torch.zeros(w))
        self.norm = nn.LayerNorm(w, eps=spec.ln_eps) if spec.sub_ln else None
        self.out = nn.Linear(w, w)

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        if self.q_bias is None or self.v_bias is None:
            return self.qkv(x)
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])  # (3W,) zero key bias
        return F.linear(x, self.qkv.weight, bias)

    def forward(
        self, x: torch.Tensor, causal: bool = False, rope: torch.Tensor | None = None, prefix: int = 0
    ) -> torch.Tensor:
        """Args: x (B, N, D); causal mask or not; rope (B or 1, N - prefix, 2 * Dh) sin/cos for the tokens after
        the first ``prefix`` (class) tokens, which are not rotated."""
        b, n, d = x.shape
        qkv = self._qkv(x).view(b, n, 3, self.heads, d // self.heads)  # (B, N, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, Dh)
        if rope is not None:
            q, k = apply_rope(q, rope, prefix), apply_rope(k, rope, prefix)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, N, Dh)
        y = y.transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        if self.norm is not None:
            y = self.norm(y)
        return self.out(y)


class MLP(nn.Module):
    """fc1 -> activation -> (sub-LN) -> fc2; for "swiglu", fc1 holds the gate and value halves in one matrix."""

    def __init__(self, spec: BlockSpec, width_out: int | None = None) -> None:
        super().__init__()
        hidden = spec.hidden
        self.gated = spec.act == "swiglu"
        self.fc1 = nn.Linear(spec.width, 2 * hidden if self.gated else hidden)
        self.act = nn.SiLU() if self.gated else make_activation(spec.act)
        self.norm = nn.LayerNorm(hidden, eps=spec.ln_eps) if spec.sub_ln else None
        self.fc2 = nn.Linear(hidden, width_out or spec.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)  # (..., H) or (..., 2H)
        if self.gated:
            gate, value = h.chunk(2, dim=-1)  # each (..., H)
            h = self.act(gate) * value
        else:
            h = self.act(h)
        if self.norm is not None:
            h = self.norm(h)
        return self.fc2(h)


class Block(nn.Module):
    """Pre-LN residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(spec.width, eps=spec.ln_eps)
        self.attn = Attention(spec)
        self.norm2 = nn.LayerNorm(spec.width, eps=spec.ln_eps)
        self.mlp = MLP(spec)

    def forward(
        self, x: torch.Tensor, causal: bool = False, rope: torch.Tensor | None = None, prefix: int = 0
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), causal=causal, rope=rope, prefix=prefix)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of pre-LN blocks over (B, N, D) tokens, with optional activation checkpointing."""

    def __init__(self, spec: BlockSpec, layers: int) -> None:
        super().__init__()
        self.width = spec.width
        self.blocks = nn.ModuleList(Block(spec) for _ in range(layers))
        self.grad_checkpointing = False

    def forward(
        self, x: torch.Tensor, causal: bool = False, rope: torch.Tensor | None = None, prefix: int = 0
    ) -> torch.Tensor:
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, causal, rope, prefix, use_reentrant=False)
            else:
                x = block(x, causal=causal, rope=rope, prefix=prefix)
        return x

    def init_weights(self, proj_std: float, attn_std: float, fc_std: float) -> None:
        """OpenAI CLIP's init: normal weights scaled by width and depth, zero biases (LayerNorms at 1, 0)."""
        for block in self.blocks:
            nn.init.normal_(block.attn.qkv.weight, std=attn_std)
            nn.init.normal_(block.attn.out.weight, std=proj_std)
            nn.init.normal_(block.mlp.fc1.weight, std=fc_std)
            nn.init.normal_(block.mlp.fc2.weight, std=proj_std)
            for lin in (block.attn.qkv, block.attn.out, block.mlp.fc1, block.mlp.fc2):
                if lin.bias is not None:
                    nn.init.zeros_(lin.bias)
            for bias in (block.attn.q_bias, block.attn.v_bias):
                if bias is not None:
                    nn.init.zeros_(bias)
            for norm in (block.norm1, block.norm2, block.attn.norm, block.mlp.norm):
                if norm is not None:
                    norm.reset_parameters()
