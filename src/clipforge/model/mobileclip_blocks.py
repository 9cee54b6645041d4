"""The building blocks of MobileCLIP's MCi image towers (FastViT, Vasu et al. 2023; MobileCLIP, Vasu et al. 2024).

Structural reparameterization (RepVGG, Ding et al. 2021; MobileOne, Vasu et al. 2023): at training time a
convolution has parallel *linear* branches: k x k convs each followed by BatchNorm, a 1x1 "scale" conv + BN,
and an identity BN (the skip). At inference BatchNorm is the affine map of its running statistics, so the
sum of the branches is one k x k convolution with a bias: each BN folds into its conv (W * gamma / sigma and
beta - mu * gamma / sigma), a 1x1 kernel is zero-padded to k x k, and the identity is a kernel with a one at
the centre of each output channel's own input channel.

Every reparameterizable module here is built in one of two forms: the training form (the branches) or, with
``fused=True``, the inference form (one conv named ``fused``). ``fused_weights()`` of a training-form module
returns the (weight, bias) that its inference twin holds; ``model.mobileclip_reparam`` applies it model-wide.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import nn

# Layer-scale init of every FastViT block (Touvron et al. 2021, CaiT): blocks start close to the identity.
LAYER_SCALE_INIT = 1e-5
# Squeeze-excitation reductions: 1/16 of the channels in the final conv, 1/4 (in multiples of 8) in downsampling.
SE_RATIO_FINAL, SE_RATIO_DOWN, SE_DIVISOR_DOWN = 1 / 16, 0.25, 8
# Kernel of the small parallel branch of the large-kernel downsampling conv (RepLKNet, Ding et al. 2022).
SMALL_KERNEL = 3


def divisible(value: float, divisor: int) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``): timm's channel rounding."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The (kernel, bias) of ``bn(conv(x))`` with ``kernel`` the conv's weight (no conv bias), BN in eval mode."""
    std = (bn.running_var + bn.eps).sqrt()
    return kernel * (bn.weight / std).reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * bn.weight / std


def identity_kernel(channels: int, groups: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """A (channels, channels // groups, k, k) kernel whose conv (padding k // 2) is the identity map."""
    per_group = channels // groups
    kernel = torch.zeros(channels, per_group, k, k, dtype=like.dtype, device=like.device)
    idx = torch.arange(channels, device=like.device)
    kernel[idx, idx % per_group, k // 2, k // 2] = 1.0
    return kernel


def pad_kernel(kernel: torch.Tensor, k: int) -> torch.Tensor:
    """Zero-pad a centred square kernel to k x k."""
    pad = (k - kernel.shape[-1]) // 2
    return F.pad(kernel, [pad] * 4)


class ConvBN(nn.Module):
    """Conv (no bias, 'same' padding for odd k) followed by BatchNorm: one linear branch."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        return fold_bn(self.conv.weight, self.norm)


class SqueezeExcite(nn.Module):
    """Channel gating from the global mean (Hu et al. 2018): x * sigmoid(expand(relu(reduce(mean(x)))))."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(s))))


class Reparameterizable(nn.Module, abc.ABC):
    """A module with a training form and an inference form; ``fused_weights`` maps the first to the second."""

    fused: nn.Conv2d | None

    @abc.abstractmethod
    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (weight, bias) of the inference form's ``fused`` conv; BatchNorm read in eval mode."""


class RepConv(Reparameterizable):
    """MobileOne block: act(se(sum of branches)); branches are ``branches`` k x k ConvBNs, a 1x1 ConvBN
    (``scale_branch``, k > 1 only) and an identity BN (``skip``, when shapes allow)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        *,
        branches: int = 1,
        scale_branch: bool = True,
        se_reduced: int = 0,
        act: bool = True,
        fused: bool = False,
    ) -> None:
        super().__init__()
        self.cin, self.cout, self.k, self.groups = cin, cout, k, groups
        self.fused = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups) if fused else None
        train_form = not fused
        self.skip = nn.BatchNorm2d(cin) if train_form and cin == cout and stride == 1 else None
        self.convs = nn.ModuleList(ConvBN(cin, cout, k, stride, groups) for _ in range(branches if train_form else 0))
        self.scale = ConvBN(cin, cout, 1, stride, groups) if train_form and scale_branch and k > 1 else None
        self.se = SqueezeExcite(cout, se_reduced) if se_reduced else nn.Identity()
        self.act = nn.GELU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.se(self.fused(x)))
        out = self.skip(x) if self.skip is not None else 0
        if self.scale is not None:
            out = out + self.scale(x)
        for conv in self.convs:
            out = out + conv(x)
        return self.act(self.se(out))

    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        ref = next(self.parameters())
        kernel = torch.zeros(self.cout, self.cin // self.groups, self.k, self.k, dtype=ref.dtype, device=ref.device)
        bias = torch.zeros(self.cout, dtype=ref.dtype, device=ref.device)
        parts = [conv.folded() for conv in self.convs]
        if self.scale is not None:
            w, b = self.scale.folded()
            parts.append((pad_kernel(w, self.k), b))
        if self.skip is not None:
            parts.append(fold_bn(identity_kernel(self.cin, self.groups, self.k, ref), self.skip))
        for w, b in parts:
            kernel, bias = kernel + w, bias + b
        return kernel, bias


class RepLargeKernelConv(Reparameterizable):
    """Grouped k x k conv + BN with a parallel 3x3 conv + BN (RepLKNet), then optional SE and GELU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, se: bool, fused: bool = False) -> None:
        super().__init__()
        self.k = k
        self.fused = nn.Conv2d(cin, cout, k, stride, k // 2, groups=cin) if fused else None
        self.large = None if fused else ConvBN(cin, cout, k, stride, groups=cin)
        self.small = None if fused else ConvBN(cin, cout, SMALL_KERNEL, stride, groups=cin)
        self.se = SqueezeExcite(cout, divisible(cout * SE_RATIO_DOWN, SE_DIVISOR_DOWN)) if se else nn.Identity()
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fused(x) if self.fused is not None else self.large(x) + self.small(x)
        return self.act(self.se(out))

    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        wl, bl = self.large.folded()
        ws, bs = self.small.folded()
        return wl + pad_kernel(ws, self.k), bl + bs


class Downsample(nn.Module):
    """Stride-2 stage entry: large-kernel grouped conv to the new width, then a 1x1 MobileOne conv."""

    def __init__(self, cin: int, cout: int, se: bool, fused: bool, kernel: int = 7) -> None:
        super().__init__()
        self.large = RepLargeKernelConv(cin, cout, kernel, 2, se, fused)
        self.pointwise = RepConv(cout, cout, 1, fused=fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.large(x))  # (B, cout, H/2, W/2)


class RepCPE(Reparameterizable):
    """Conditional positional encoding (Chu et al. 2023): x + depthwise_conv(x), foldable into one conv."""

    def __init__(self, dim: int, k: int = 7, fused: bool = False) -> None:
        super().__init__()
        self.dim, self.k = dim, k
        self.fused = nn.Conv2d(dim, dim, k, 1, k // 2, groups=dim) if fused else None
        self.conv = None if fused else nn.Conv2d(dim, dim, k, 1, k // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused(x) if self.fused is not None else x + self.conv(x)

    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.conv.weight
        return identity_kernel(self.dim, self.dim, self.k, w) + w, self.conv.bias


class RepMixer(Reparameterizable):
    """FastViT's token mixer: x + layer_scale * (mix(x) - norm(x)), with ``mix`` a depthwise MobileOne conv and
    ``norm`` its skip branch alone; at inference the whole residual is one depthwise conv."""

    def __init__(self, dim: int, k: int = 3, fused: bool = False) -> None:
        super().__init__()
        self.dim, self.k = dim, k
        self.fused = nn.Conv2d(dim, dim, k, 1, k // 2, groups=dim) if fused else None
        self.norm = None if fused else RepConv(dim, dim, k, groups=dim, branches=0, scale_branch=False, act=False)
        self.mix = None if fused else RepConv(dim, dim, k, groups=dim, act=False)
        self.layer_scale = None if fused else nn.Parameter(torch.full((dim, 1, 1), LAYER_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        return x + self.layer_scale * (self.mix(x) - self.norm(x))

    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        wm, bm = self.mix.fused_weights()
        wn, bn = self.norm.fused_weights()
        gamma = self.layer_scale
        w = identity_kernel(self.dim, self.dim, self.k, wm) + gamma.unsqueeze(-1) * (wm - wn)
        return w, gamma.reshape(-1) * (bm - bn)


class ConvMLP(nn.Module):
    """Depthwise 7x7 conv + BN, then a 1x1-conv MLP with GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dw = ConvBN(dim, dim, 7, groups=dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        for conv in (self.dw.conv, self.fc1, self.fc2):
            nn.init.trunc_normal_(conv.weight, std=0.02)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.dw(x))))  # (B, C, H, W)


class RepMixerBlock(nn.Module):
    """Token mixing by RepMixer, then x + layer_scale * mlp(x)."""

    def __init__(self, dim: int, mlp_ratio: float, fused: bool) -> None:
        super().__init__()
        self.mixer = RepMixer(dim, fused=fused)
        self.mlp = ConvMLP(dim, int(dim * mlp_ratio))
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), LAYER_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mixer(x)
        return x + self.layer_scale * self.mlp(x)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class SpatialAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map (QKV without bias), via SDPA."""

    def __init__(self, dim: int, head_width: int) -> None:
        super().__init__()
        self.heads = dim // head_width
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, N, C)
        qkv = self.qkv(t).view(b, h * w, 3, self.heads, c // self.heads)  # (B, N, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, Dh)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, Dh)
        y = self.proj(y.transpose(1, 2).reshape(b, h * w, c))  # (B, N, C)
        return y.transpose(1, 2).reshape(b, c, h, w)


class AttentionBlock(nn.Module):
    """x + ls1 * attn(norm(x)), then x + ls2 * mlp(x); the norm is BatchNorm or channel LayerNorm."""

    def __init__(self, dim: int, mlp_ratio: float, head_width: int, norm: str) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(dim) if norm == "batch" else ChannelLayerNorm(dim, eps=1e-5)
        self.attn = SpatialAttention(dim, head_width)
        self.layer_scale1 = nn.Parameter(torch.full((dim, 1, 1), LAYER_SCALE_INIT))
        self.mlp = ConvMLP(dim, int(dim * mlp_ratio))
        self.layer_scale2 = nn.Parameter(torch.full((dim, 1, 1), LAYER_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale1 * self.attn(self.norm(x))
        return x + self.layer_scale2 * self.mlp(x)
