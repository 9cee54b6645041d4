"""CLIP architecture: configs, towers and the two-tower model. Architecture only (no training code)."""

from clipforge.model.config import CLIPConfig, TextConfig, VisionConfig

__all__ = ["CLIPConfig", "TextConfig", "VisionConfig"]
