"""Typed, JSON-round-trippable model configs.

A config fully determines the architecture: clipforge never infers an architecture from the shapes of a
state dict. Field names follow OpenCLIP's model-config JSON where the concept is the same so the two are
easy to compare; ``convert/`` maps foreign configs onto these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ViTConfig:
    """Vision Transformer image tower (Dosovitskiy et al. 2021) as CLIP uses it.

    Args:
        kind: the tower family tag; a checkpoint's ``vision.kind`` says which config class to read.
        image_size: input side in pixels (square).
        patch_size: patch side in pixels.
        width: token width.
        layers: transformer depth.
        head_width: channels per attention head (heads = width // head_width).
        mlp_ratio: hidden size of the MLP over the width.
        ln_eps: LayerNorm epsilon.
        patch_dropout: fraction of patch tokens dropped while training (FLIP, Li et al. 2023); 0 = off.
    """

    kind: Literal["vit"] = "vit"
    image_size: int = 224
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    head_width: int = 64
    mlp_ratio: float = 4.0
    ln_eps: float = 1e-5
    patch_dropout: float = 0.0

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.head_width:
            raise ValueError(f"width {self.width} is not a multiple of head_width {self.head_width}")
        if not 0.0 <= self.patch_dropout < 1.0:
            raise ValueError(f"patch_dropout must be in [0, 1), got {self.patch_dropout}")


@dataclass(frozen=True)
class ResNetConfig:
    """OpenAI's ModifiedResNet image tower: 3-conv stem, anti-aliased strided bottlenecks, attention pooling.

    Args:
        kind: the tower family tag (see ViTConfig.kind).
        image_size: input side in pixels (square, a multiple of the total stride 32).
        layers: bottleneck blocks per stage, e.g. (3, 4, 6, 3) for RN50.
        width: stem width (64 for RN50); stage i has width * 2**i planes.
        head_width: channels per head of the attention pool over the last stage's width * 32 channels.
    """

    kind: Literal["resnet"] = "resnet"
    image_size: int = 224
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    width: int = 64
    head_width: int = 64

    @property
    def pool_heads(self) -> int:
        """Heads of the attention pool: OpenAI's rule, (stem width * 32) // 64 for head width 64."""
        return self.width * 32 // self.head_width

    def __post_init__(self) -> None:
        if self.image_size % 32:
            raise ValueError(f"ResNet image_size must be a multiple of 32, got {self.image_size}")
        if len(self.layers) != 4 or min(self.layers) < 1:
            raise ValueError(f"ResNet layers must be 4 positive block counts, got {self.layers}")
        if (self.width * 32) % self.head_width:
            raise ValueError(f"ResNet pool width {self.width * 32} is not a multiple of head_width {self.head_width}")


# Every image-tower config; a union member is chosen by the ``kind`` key when a config is read.
VisionConfig = ViTConfig | ResNetConfig


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
    vision: VisionConfig = field(default_factory=ViTConfig)
    text: TextConfig = field(default_factory=TextConfig)
    quick_gelu: bool = False
    init_logit_scale: float = math.log(1 / 0.07)
    init_logit_bias: float | None = None
