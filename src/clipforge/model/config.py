"""Typed, JSON-round-trippable model configs.

A config fully determines the architecture: clipforge never infers an architecture from the shapes of a
state dict. Field names follow OpenCLIP's model-config JSON where the concept is the same so the two are
easy to compare; ``convert/`` maps foreign configs onto these.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

# The MLP of a transformer block. "gelu" is exact (erf) GELU, "gelu_tanh" its tanh approximation (SigLIP's
# big_vision / Hugging Face weights), "quick_gelu" x * sigmoid(1.702 x) (OpenAI's weights), "swiglu" a gated
# SiLU unit (Shazeer 2020) as EVA-02 uses it.
Activation = Literal["gelu", "gelu_tanh", "quick_gelu", "swiglu"]
# How a tower turns its tokens into one feature: "token" reads the class token (ViT) and "map" pools with
# a learned probe (multihead attention pooling, Zhai et al. 2022); the text tower's "argmax" reads the
# position of the highest id (OpenAI's end-of-text) and "last" the final position (SigLIP).
ImagePool = Literal["token", "map"]
TextPool = Literal["argmax", "last"]
# The projection into the shared space: "plain" a bias-free matrix (OpenAI), "bias" a linear layer with
# bias (timm heads, SigLIP's text head), "none" the tower's width already is the embedding (SigLIP's image).
Projection = Literal["plain", "bias", "none"]


@dataclass(frozen=True)
class RopeConfig:
    """2-D rotary position embedding over the patch grid (Su et al. 2021; axial form of EVA-02, Fang et al. 2023).

    Each head's channels are split in two halves: the first rotates with one grid axis, the second with the
    other, in interleaved pairs at frequencies ``temperature ** (-i / (head_width / 4))``.

    Args:
        ref_grid: grid side the positions are scaled to (EVA-02 fine-tunes at one grid, keeping the positions
            of its pretraining grid); 0 = the model's own grid (no scaling).
        offset: added to every grid index (Perception Encoder counts patches from 1, the class token being 0).
        axes: "ij" rotates the first half with the row and the second with the column; "xy" the reverse.
        temperature: base of the frequencies.
    """

    ref_grid: int = 0
    offset: float = 0.0
    axes: Literal["ij", "xy"] = "ij"
    temperature: float = 10000.0


@dataclass(frozen=True)
class ViTConfig:
    """Vision Transformer image tower (Dosovitskiy et al. 2021) with the switches its CLIP descendants use.

    OpenAI's CLIP is the defaults. SigLIP: patch_bias, no class token, norm_pre off, pool "map", proj "none".
    EVA-02: patch_bias, rope, qkv_bias "qv", sub_ln, act "swiglu", proj "bias". Perception Encoder: rope,
    pool "map", proj "bias".

    Args:
        kind: the tower family tag; a checkpoint's ``vision.kind`` says which config class to read.
        image_size: input side in pixels (square). When it is not a multiple of patch_size the last
            image_size % patch_size rows and columns are not seen (the strided patchify convolution skips them,
            as in timm and Hugging Face: SigLIP So400m/14 at 384 px runs a 27 x 27 grid).
        patch_size: patch side in pixels.
        width: token width.
        layers: transformer depth.
        head_width: channels per attention head (heads = width // head_width).
        mlp_ratio: hidden size of the MLP over the width (hidden = int(width * mlp_ratio), as timm rounds).
        ln_eps: LayerNorm epsilon.
        patch_dropout: fraction of patch tokens dropped while training (FLIP, Li et al. 2023); 0 = off.
        act: the MLP (see ``Activation``).
        class_token: prepend a learned class token.
        pos_embed: add a learned position table (one row per token, class token included).
        rope: rotary positions applied to queries and keys of the patch tokens; None = none.
        patch_bias: the patchify convolution has a bias.
        norm_pre: LayerNorm on the tokens before the first block.
        qkv_bias: "qkv" biases on queries, keys and values; "qv" none on keys (EVA: a key bias cannot change
            the softmax, so it is left out).
        sub_ln: sub-LayerNorm (Wang et al. 2022, "Foundation Transformers") inside the attention before its
            output projection and inside the MLP before its second layer.
        pool: how the tokens become one feature (see ``ImagePool``); a final LayerNorm comes before it.
        pool_heads: heads of the "map" pooling attention; 0 = the tower's heads.
        pool_mlp_ratio: MLP ratio of the "map" pooling block; 0 = the tower's mlp_ratio.
        proj: the projection to the embedding (see ``Projection``).
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
    act: Activation = "gelu"
    class_token: bool = True
    pos_embed: bool = True
    rope: RopeConfig | None = None
    patch_bias: bool = False
    norm_pre: bool = True
    qkv_bias: Literal["qkv", "qv"] = "qkv"
    sub_ln: bool = False
    pool: ImagePool = "token"
    pool_heads: int = 0
    pool_mlp_ratio: float = 0.0
    proj: Projection = "plain"

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def prefix_tokens(self) -> int:
        """Tokens before the patches (the class token, if any)."""
        return int(self.class_token)

    def __post_init__(self) -> None:
        if self.image_size < self.patch_size:
            raise ValueError(f"image_size {self.image_size} is smaller than patch_size {self.patch_size}")
        if self.width % self.head_width:
            raise ValueError(f"width {self.width} is not a multiple of head_width {self.head_width}")
        if not 0.0 <= self.patch_dropout < 1.0:
            raise ValueError(f"patch_dropout must be in [0, 1), got {self.patch_dropout}")
        if self.pool == "token" and not self.class_token:
            raise ValueError("pool 'token' reads the class token: set class_token or use pool 'map'")
        if self.pool == "map" and self.act == "swiglu":
            raise ValueError("the 'map' pooling block has a GELU-family MLP; act 'swiglu' is not supported with it")
        if self.pool == "map" and self.width % (self.pool_heads or self.heads):
            raise ValueError(f"width {self.width} is not a multiple of pool_heads {self.pool_heads}")
        if self.rope is not None and self.head_width % 4:
            raise ValueError(f"rotary positions need head_width divisible by 4, got {self.head_width}")


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


Mixer = Literal["repmixer", "attention"]
# Total stride of MobileCLIP-B's conv stem (4 * 2 * 2): one token per 16x16 pixels, like ViT-B/16.
CONVSTEM_STRIDE = 16


@dataclass(frozen=True)
class FastViTConfig:
    """MobileCLIP's MCi image tower (Vasu et al. 2024): a FastViT (Vasu et al. 2023) with a projection head.

    A MobileOne stem (stride 4), then stages of RepMixer blocks (depthwise-conv token mixing) and, at the
    lowest resolutions, self-attention blocks; every stage after the first starts with a stride-2 large-kernel
    downsampling, attention stages with a conditional positional encoding (a depthwise 7x7 conv). Convolutions
    carry train-time parallel branches that ``model.mobileclip.reparameterize`` folds into single convolutions.

    Args:
        kind: the tower family tag (see ViTConfig.kind).
        image_size: input side in pixels (square).
        layers: blocks per stage.
        widths: channels per stage.
        mixers: token mixer per stage, "repmixer" or "attention".
        se_downsample: per stage, squeeze-excitation in its downsampling (MCi0-2 use it in the last two).
        mlp_ratio: hidden channels of the convolutional MLP over the stage width.
        attn_norm: normalization before attention: "batch" (MCi0-2) or "layer" (channel LayerNorm, MCi3/4).
        stem_scale_branch: the stem's 3x3 MobileOne convs have a parallel 1x1 branch (not in MCi3/4).
        head_width: channels per attention head.
        final_ratio: the last conv widens the final stage's channels by this factor before pooling.
        reparameterized: the inference form: every train-time branch already folded into one conv.
    """

    kind: Literal["fastvit"] = "fastvit"
    image_size: int = 256
    layers: tuple[int, ...] = (2, 6, 10, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    mixers: tuple[Mixer, ...] = ("repmixer", "repmixer", "repmixer", "attention")
    se_downsample: tuple[bool, ...] = (False, False, True, True)
    mlp_ratio: float = 3.0
    attn_norm: Literal["batch", "layer"] = "batch"
    stem_scale_branch: bool = True
    head_width: int = 32
    final_ratio: int = 2
    reparameterized: bool = False

    def __post_init__(self) -> None:
        n = len(self.layers)
        if n < 1 or len(self.widths) != n or len(self.mixers) != n or len(self.se_downsample) != n:
            raise ValueError(f"FastViT layers, widths, mixers and se_downsample need one entry per stage, got "
                             f"{self.layers}, {self.widths}, {self.mixers}, {self.se_downsample}")
        if min(self.layers) < 1:
            raise ValueError(f"FastViT layers must be positive block counts, got {self.layers}")
        for w, mixer in zip(self.widths, self.mixers, strict=True):
            if mixer == "attention" and w % self.head_width:
                raise ValueError(f"attention stage width {w} is not a multiple of head_width {self.head_width}")
        for a, b in zip(self.widths, self.widths[1:], strict=False):
            if b % a:  # the downsampling conv is grouped per input channel
                raise ValueError(f"FastViT stage widths must each be a multiple of the previous, got {self.widths}")


@dataclass(frozen=True)
class ConvStemViTConfig:
    """MobileCLIP-B's image tower: a ViT whose patches come from a 3-conv stem instead of one patchify conv.

    Stem: conv 4x4/4 + BatchNorm + GELU, conv 2x2/2 + BatchNorm + GELU, conv 2x2/2 (with bias) to ``width``:
    stride 16. The class token is concatenated after the learned positions are added (positions cover the
    patches only); no LayerNorm before the blocks; LayerNorm after them; the class token is projected by a
    Linear with bias.

    Args:
        kind: the tower family tag (see ViTConfig.kind).
        image_size: input side in pixels (square, a multiple of 16).
        stem_width: channels of the first two stem convs.
        width, layers, head_width, mlp_ratio, ln_eps: the transformer (as ViTConfig).
    """

    kind: Literal["vit_convstem"] = "vit_convstem"
    image_size: int = 224
    stem_width: int = 192
    width: int = 768
    layers: int = 12
    head_width: int = 64
    mlp_ratio: float = 4.0
    ln_eps: float = 1e-6

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid_size(self) -> int:
        return self.image_size // CONVSTEM_STRIDE

    def __post_init__(self) -> None:
        if self.image_size % CONVSTEM_STRIDE:
            raise ValueError(f"image_size {self.image_size} is not a multiple of the stem stride {CONVSTEM_STRIDE}")
        if self.width % self.head_width:
            raise ValueError(f"width {self.width} is not a multiple of head_width {self.head_width}")


# Every image-tower config; a union member is chosen by the ``kind`` key when a config is read.
VisionConfig = ViTConfig | ResNetConfig | FastViTConfig | ConvStemViTConfig


@dataclass(frozen=True)
class TextConfig:
    """Text tower: a transformer over token ids (OpenAI's CLIP is the defaults; SigLIP: not causal, pool
    "last", proj "bias", LayerNorm eps 1e-6).

    Args:
        context_length: tokens per text, including start and end of text.
        vocab_size: embedding rows. With pool "argmax" the end-of-text token must be the highest id, since
            features are taken at ``argmax(token_ids)`` as in OpenAI's CLIP.
        width: model width; heads: attention heads; layers: depth.
        mlp_ratio: hidden size of the MLP over the width.
        ln_eps: LayerNorm epsilon.
        act: the MLP (see ``Activation``).
        causal: each position attends only to itself and earlier positions (OpenAI); SigLIP attends to all.
        pool: which position's output is the text feature (see ``TextPool``).
        proj: the projection to the embedding (see ``Projection``).
    """

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    ln_eps: float = 1e-5
    act: Activation = "gelu"
    causal: bool = True
    pool: TextPool = "argmax"
    proj: Projection = "plain"

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"text width {self.width} is not a multiple of heads {self.heads}")


@dataclass(frozen=True)
class CLIPConfig:
    """The two-tower model.

    Args:
        embed_dim: size of the shared embedding space.
        vision: the image tower (its ``kind`` picks the config class).
        text: the text tower.
        init_logit_scale: initial log temperature; log(1/0.07) per the CLIP paper, log(10) for SigLIP.
        init_logit_bias: None for softmax CLIP; a float (SigLIP uses -10) adds a learnable logit bias.
        max_logit_scale: the log temperature is clamped at this (CLIP paper, sec. 2.5: ln 100); None = never
            clamped, as SigLIP's reference implementations do (released SigLIP weights sit above ln 100).
    """

    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=ViTConfig)
    text: TextConfig = field(default_factory=TextConfig)
    init_logit_scale: float = math.log(1 / 0.07)
    init_logit_bias: float | None = None
    max_logit_scale: float | None = math.log(100.0)

    def __post_init__(self) -> None:
        for name, tower in (("vision", self.vision), ("text", self.text)):
            if getattr(tower, "proj", None) == "none" and tower.width != self.embed_dim:
                raise ValueError(
                    f"{name} proj 'none' needs the tower width ({tower.width}) to equal embed_dim ({self.embed_dim})"
                )


def with_activation(cfg: CLIPConfig, act: Activation) -> CLIPConfig:
    """``cfg`` with ``act`` in every transformer MLP (e.g. "quick_gelu" for OpenAI-trained weights).

    A ResNet image tower has no such MLP, and a gated (SwiGLU) MLP no elementwise activation to swap: those
    towers are kept as they are.
    """
    vision = cfg.vision
    if isinstance(vision, ViTConfig) and vision.act != "swiglu":
        vision = dataclasses.replace(vision, act=act)
    return dataclasses.replace(cfg, vision=vision, text=dataclasses.replace(cfg.text, act=act))
