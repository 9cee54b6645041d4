"""Typed, JSON-round-trippable model configs.

A config fully determines the architecture: clipforge never infers an architecture from the shapes of a
state dict. Field names follow OpenCLIP's model-config JSON where the concept is the same so the two are
easy to compare; ``convert/`` maps foreign configs onto these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

VisionArch = Literal["vit", "resnet"]


@dataclass(frozen=True)
class VisionConfig:
    """Image tower.

    Args:
        arch: "vit" (Vision Transformer) or "resnet" (OpenAI's ModifiedResNet).
        image_size: input side in pixels (square).
        layers: ViT depth; ignored for ResNet.
        resnet_layers: blocks per stage of the ModifiedResNet, e.g. (3, 4, 6, 3) for RN50.
        width: ViT width, or the ResNet stem width (64 for RN50).
        head_width: channels per attention head (heads = width // head_width).
        mlp_ratio: hidden size of the MLP over the width.
        patch_size: ViT patch side in pixels.
        ln_eps: LayerNorm epsilon.
        patch_dropout: fraction of patch tokens dropped while training (FLIP, Li et al. 2023); 0 = off.
    """

    arch: VisionArch = "vit"
    image_size: int = 224
    layers: int = 12
    resnet_layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    width: int = 768
    head_width: int = 64
    mlp_ratio: float = 4.0
    patch_size: int = 16
    ln_eps: float = 1e-5
    patch_dropout: float = 0.0

    @property
    def heads(self) -> int:
        if self.arch == "resnet":
            # OpenAI's attention pool: heads = (stem width * 32) // 64.
            return self.width * 32 // self.head_width
        return self.width // self.head_width

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    def __post_init__(self) -> None:
        if self.arch not in ("vit", "resnet"):
            raise ValueError(f"vision arch must be 'vit' or 'resnet', got {self.arch!r}")
        if self.arch == "vit" and self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.arch == "vit" and self.width % self.head_width:
            raise ValueError(f"width {self.width} is not a multiple of head_width {self.head_width}")
        if self.arch == "resnet" and self.image_size % 32:
            raise ValueError(f"ResNet image_size must be a multiple of 32, got {self.image_size}")


@dataclass(frozen=True)
class TextConfig:
    """Text tower (causal transformer over BPE tokens).

    Args:
        context_length: tokens per text, including start and end of text.
        vocab_size: embedding rows; the end-of-text token must be the highest id, since features are
            taken at ``argmax(token_ids)`` as in OpenAI's CLIP.
        width: model width; heads: attention heads; layers: depth.
    """

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"text width {self.width} is not a multiple of heads {self.heads}")


@dataclass(frozen=True)
class CLIPConfig:
    """The two-tower model.

    Args:
        embed_dim: size of the shared embedding space.
        quick_gelu: x * sigmoid(1.702 x) instead of GELU; OpenAI's released weights were trained with it.
        init_logit_scale: initial log temperature; log(1/0.07) per the CLIP paper, log(10) for SigLIP.
        init_logit_bias: None for softmax CLIP; a float (SigLIP uses -10) adds a learnable logit bias.
    """

    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    quick_gelu: bool = False
    init_logit_scale: float = math.log(1 / 0.07)
    init_logit_bias: float | None = None
