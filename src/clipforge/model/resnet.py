"""OpenAI's ModifiedResNet image tower (Radford et al. 2021, section 2.4).

Differences from torchvision's ResNet: a 3-conv stem with average pooling, anti-aliased strided
downsampling (avg-pool before the strided path, Zhang 2019), and attention pooling instead of global
average pooling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from clipforge.model.config import ResNetConfig


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        # All convs have stride 1; striding is an avg-pool before the last conv (anti-aliasing).
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample: nn.Module | None = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                nn.Conv2d(inplanes, out, 1, bias=False),
                nn.BatchNorm2d(out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(self.pool(y)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(y + identity)


class AttentionPool2d(nn.Module):
    """Attention pooling: the mean token (plus positions) attends over all spatial tokens."""

    def __init__(self, grid: int, width: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.pos_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) / width**0.5)
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # (B, 1+HW, C)
        x = x + self.pos_embedding.to(x.dtype)
        dh = c // self.heads
        q = self.q(x[:, :1]).view(b, 1, self.heads, dh).transpose(1, 2)  # (B, H, 1, Dh)
        k = self.k(x).view(b, -1, self.heads, dh).transpose(1, 2)  # (B, H, 1+HW, Dh)
        v = self.v(x).view(b, -1, self.heads, dh).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, Dh)
        return self.out(y.transpose(1, 2).reshape(b, c))  # (B, out_dim)


@contextlib.contextmanager
def frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Keep BatchNorm running statistics unchanged while a checkpointed stage is recomputed in backward.

    Without this, every training step under gradient checkpointing would update them twice. Momentum 0
    leaves them exactly as they were; train-mode outputs use batch statistics, so they are unaffected.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


class ModifiedResNet(nn.Module):
    def __init__(self, cfg: ResNetConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.stem = nn.Sequential(
            nn.Conv2d(3, w // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(w // 2, w // 2, 3, padding=1, bias=False),
            nn.BatchNorm2d(w // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(w // 2, w, 3, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2),
        )
        stages = []
        inplanes = w
        for i, blocks in enumerate(cfg.layers):
            planes = w * 2**i
            stage = [Bottleneck(inplanes, planes, stride=1 if i == 0 else 2)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.stages = nn.ModuleList(stages)
        feat = w * 32  # channels after the last stage (w * 8 * expansion 4)
        self.attn_pool = AttentionPool2d(cfg.image_size // 32, feat, cfg.pool_heads, embed_dim)
        self.grad_checkpointing = False
        self.init_weights()

    def init_weights(self) -> None:
        std = self.attn_pool.q.in_features**-0.5
        for lin in (self.attn_pool.q, self.attn_pool.k, self.attn_pool.v, self.attn_pool.out):
            nn.init.normal_(lin.weight, std=std)
            nn.init.zeros_(lin.bias)
        # Zero the last BN gain of each residual branch so every block starts as the identity (Goyal 2017).
        for stage in self.stages:
            for block in stage:
                nn.init.zeros_(block.bn3.weight)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Args: pixels (B, 3, H, W) normalized. Returns (B, embed_dim) unnormalized features."""
        x = self.stem(pixels.to(self.stem[0].weight.dtype))  # (B, w, H/4, W/4)
        for stage in self.stages:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(
                    stage,
                    x,
                    use_reentrant=False,
                    context_fn=lambda s=stage: (contextlib.nullcontext(), frozen_batchnorm_stats(s)),
                )
            else:
                x = stage(x)
        return self.attn_pool(x)  # (B, E)
