"""Image preprocessing config, saved in every checkpoint's config.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# CLIP's normalization statistics (OpenAI, computed on their training set); OpenCLIP uses the same.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# The decoding budget (width x height) of data.transforms.load_image: a 156 Mpx PNG compresses to 600 KB but
# decodes to 4 GB, so the pixel count is checked from the header first. 40 Mpx covers camera photos (a larger
# JPEG decodes at a reduced scale) and bounds one decode to ~160 MB (RGBA).
DEFAULT_MAX_PIXELS = 40_000_000


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


@dataclass(frozen=True)
class DataConfig:
    """Where training pairs come from and how they are loaded (part of a training run's config).

    Args:
        train: a folder of images with sidecar .txt captions, a CSV/TSV/JSONL/Parquet table, or a WebDataset
            shard pattern ("dir/shard-{000000..000009}.tar" or a directory of .tar files).
        image_column, caption_column: column names for tables (a caption cell may hold a list of captions).
        workers: DataLoader worker processes per rank.
        random_resized_crop: train-time random resized crop instead of the eval resize + centre crop.
        crop_scale: area range of the random resized crop.
        caption_sampling: "random" picks one of an image's captions per epoch; "first" always the first.
        silhouette: probability of training on a light-on-dark silhouette view of an image drawn on white
            (data.transforms.silhouette); 0 = off.
        max_pixels: decoding budget per image (width x height, checked from the header before decoding); a
            larger image is skipped and counted as ``too_large`` (a JPEG is first tried at a reduced scale).
    """

    train: str = ""
    image_column: str = "image"
    caption_column: str = "caption"
    workers: int = 2
    random_resized_crop: bool = False
    crop_scale: tuple[float, float] = (0.8, 1.0)
    caption_sampling: Literal["random", "first"] = "random"
    silhouette: float = 0.0
    max_pixels: int = DEFAULT_MAX_PIXELS
