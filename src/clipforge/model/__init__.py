"""CLIP architecture: configs, towers and the two-tower model. Architecture only (no training code)."""

from clipforge.model.config import CLIPConfig, ResNetConfig, TextConfig, VisionConfig, ViTConfig

__all__ = ["CLIPConfig", "ResNetConfig", "TextConfig", "ViTConfig", "VisionConfig"]
