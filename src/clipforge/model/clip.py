"""The two-tower CLIP model: image and text encoders projected into one L2-normalized space."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from clipforge.model.config import CLIPConfig, ConvStemViTConfig, FastViTConfig, ResNetConfig, VisionConfig
from clipforge.model.mobileclip import FastViT
from clipforge.model.mobileclip_vit import ConvStemViT
from clipforge.model.resnet import ModifiedResNet
from clipforge.model.text import TextTransformer
from clipforge.model.vit import VisionTransformer

# CLIP paper, section 2.5: the temperature is clipped so logits are never scaled by more than 100
# (CLIPConfig.max_logit_scale's default).
MAX_LOGIT_SCALE = math.log(100.0)


class CLIPOutput(NamedTuple):
    """What ``CLIP.forward`` returns, always.

    image_features: (B, E) L2-normalized.  text_features: (B, E) L2-normalized.
    logit_scale: scalar, exp of the learned log-temperature, clamped at 100.
    logit_bias: scalar for SigLIP models, else None.
    """

    image_features: torch.Tensor
    text_features: torch.Tensor
    logit_scale: torch.Tensor
    logit_bias: torch.Tensor | None


def build_vision(cfg: VisionConfig, embed_dim: int) -> nn.Module:
    """The image tower ``cfg`` describes, projecting to ``embed_dim``."""
    if isinstance(cfg, ResNetConfig):
        return ModifiedResNet(cfg, embed_dim)
    if isinstance(cfg, FastViTConfig):
        return FastViT(cfg, embed_dim)
    if isinstance(cfg, ConvStemViTConfig):
        return ConvStemViT(cfg, embed_dim)
    return VisionTransformer(cfg, embed_dim)


class CLIP(nn.Module):
    def __init__(self, cfg: CLIPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual = build_vision(cfg.vision, cfg.embed_dim)
        self.text = TextTransformer(cfg.text, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))
        self.logit_bias: nn.Parameter | None = None
        if cfg.init_logit_bias is not None:
            self.logit_bias = nn.Parameter(torch.tensor(float(cfg.init_logit_bias)))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Args: pixels (B, 3, H, W) preprocessed. Returns (B, E) unnormalized image features."""
        return self.visual(pixels)

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Args: token_ids (B, L) from the tokenizer. Returns (B, E) unnormalized text features."""
        return self.text(token_ids)

    def forward(self, pixels: torch.Tensor, token_ids: torch.Tensor) -> CLIPOutput:
        image = F.normalize(self.encode_image(pixels), dim=-1)
        text = F.normalize(self.encode_text(token_ids), dim=-1)
        return CLIPOutput(image, text, self.temperature(), self.logit_bias)

    def temperature(self) -> torch.Tensor:
        """The scalar logits are multiplied by: exp of the log temperature, clamped at ``cfg.max_logit_scale``."""
        log_scale = self.logit_scale
        if self.cfg.max_logit_scale is not None:
            log_scale = log_scale.clamp(max=self.cfg.max_logit_scale)
        return log_scale.exp()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward instead of storing them (less memory, ~30% more compute)."""
        if isinstance(self.visual, (ModifiedResNet, FastViT)):
            self.visual.grad_checkpointing = enable
        else:
            self.visual.transformer.grad_checkpointing = enable
        self.text.transformer.grad_checkpointing = enable

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Keep the stored log-temperature within [0, cfg.max_logit_scale]; the trainer calls this after each step."""
        self.logit_scale.clamp_(0, self.cfg.max_logit_scale)
