"""Image preprocessing config, saved in every checkpoint's config.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# CLIP's normalization statistics (OpenAI, computed on their training set); OpenCLIP uses the same.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PreprocessConfig:
    """Eval-time image preprocessing: resize shortest side, centre crop, to tensor, normalize.

    Args:
        image_size: output side in pixels.
        mean, std: per-channel normalization.
        interpolation: resize filter ("bicubic" as OpenAI/OpenCLIP, or "bilinear").
        resize_mode: "shortest" (resize shortest side then centre crop) or "squash" (resize to square).
        fill_color: background for transparent images (RGB 0..255); white, as images are usually drawn on it.
    """

    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    resize_mode: Literal["shortest", "squash"] = "shortest"
    fill_color: tuple[int, int, int] = (255, 255, 255)
