"""Image decoding and CLIP preprocessing (PIL + numpy + torch; no torchvision).

``eval_transform`` reproduces OpenCLIP's eval transform (torchvision ``Resize(size, BICUBIC)`` on a PIL
image, ``CenterCrop``, ``ToTensor``, ``Normalize``): torchvision resizes PIL images with PIL itself, so
using PIL's bicubic filter with the same output-size and crop-offset arithmetic gives the same pixels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from clipforge.data.config import DEFAULT_MAX_PIXELS
from clipforge.errors import UserError

if TYPE_CHECKING:
    from clipforge.data.config import PreprocessConfig

_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
# torchvision RandomResizedCrop's default aspect-ratio range; a constant because no user has asked to change it.
_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)


# An over-budget JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) while both sides stay at least
# this long: twice the 224 px a CLIP model takes, so the resize still has detail to work from.
REDUCED_MIN_SIDE = 448


class BadImageError(UserError):
    """An image file that cannot be decoded (truncated, empty, not an image)."""


class ImageTooLarge(BadImageError):
    """An image whose pixel count exceeds the decoding budget (even after reduced decoding)."""


def load_image(
    src: str | Path | bytes,
    name: str | None = None,
    fill_color: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode an image fully and return it as 8-bit RGB, refusing images over a pixel budget before decoding.

    Transparent images (RGBA, LA, PA, palette or RGB/L with a transparency key) are composited on
    ``fill_color``; 16-bit and 32-bit grayscale are scaled to 8 bits (not clipped); CMYK and other modes
    are converted; the EXIF orientation is applied. The size comes from the header first: a JPEG over
    ``max_pixels`` is decoded at a reduced scale (sides still >= REDUCED_MIN_SIDE) when that fits the budget;
    any other image over it is refused without decoding. Images within the budget decode at full size, so
    their pixels match the reference preprocessing exactly.

    Args:
        src: a file path or the encoded bytes.
        name: how to name the image in errors (defaults to the path, or "<bytes>").
        fill_color: background for transparent pixels.
        max_pixels: the decoding budget (width x height).

    Raises:
        ImageTooLarge: over the budget. BadImageError: the data is empty, truncated or not an image.
        FileNotFoundError: for a missing path.
    """
    label = name or (str(src) if not isinstance(src, bytes) else "<bytes>")
    if isinstance(src, bytes):
        if not src:
            raise BadImageError(f"{label}: empty image data (0 bytes)")
        fp: io.BytesIO | Path = io.BytesIO(src)
    else:
        fp = Path(src)
        if fp.stat().st_size == 0:  # raises FileNotFoundError for a missing file, which callers count apart
            raise BadImageError(f"{label}: empty file (0 bytes)", hint="re-download or remove the file")
    try:
        with Image.open(fp) as img:
            _fit_budget(img, label, max_pixels)
            img.load()  # decode now: truncation shows up here, not later inside a worker
            # In place: without an orientation tag exif_transpose would return a full copy (4 bytes a pixel).
            ImageOps.exif_transpose(img, in_place=True)
            return _to_rgb(img, fill_color)
    except UnidentifiedImageError as exc:
        raise BadImageError(f"{label}: not a recognised image file", hint="check the file type") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{label}: refused by the image decoder's own size limit ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"{label}: cannot decode image ({exc})", hint="the file may be truncated") from exc


def _fit_budget(img: Image.Image, label: str, max_pixels: int) -> None:
    """Make an opened (not yet decoded) image fit ``max_pixels``: reduced JPEG decoding, else ImageTooLarge."""
    width, height = img.size
    if width * height <= max_pixels:
        return
    if img.format == "JPEG":
        img.draft(img.mode, (REDUCED_MIN_SIDE, REDUCED_MIN_SIDE))  # picks the smallest scale keeping both sides
        if img.size[0] * img.size[1] <= max_pixels:
            return
    raise ImageTooLarge(
        f"{label}: {width}x{height} pixels ({width * height / 1e6:.1f} Mpx) is over the decoding budget of "
        f"{max_pixels / 1e6:.1f} Mpx",
        hint="downscale the image, or raise the budget (max_pixels / --max-pixels)",
    )


def _to_rgb(img: Image.Image, fill_color: tuple[int, int, int]) -> Image.Image:
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        img = _high_depth_to_l(img)
        mode = "L"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img if mode == "RGBA" else img.convert("RGBA")  # convert() would copy an RGBA image
        background = Image.new("RGBA", rgba.size, (*fill_color, 255))
        composite = Image.alpha_composite(background, rgba)
        del background  # each full-size copy is 4 bytes a pixel: free it before the next one is made
        return composite.convert("RGB")
    return img if mode == "RGB" else img.convert("RGB")


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> 8-bit, scaling the full range instead of clipping at 255."""
    arr = np.asarray(img).astype(np.float64)
    if img.mode == "F":
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
    elif img.mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    else:  # "I": PIL also uses it for 16-bit PNGs; treat values above 8 bits as 16-bit data
        scale = 255.0 / 65535.0 if arr.size and arr.max() > 255 else 1.0
    return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8))


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Output (width, height) when the shortest side is resized to ``size`` (torchvision's arithmetic)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """PIL crop box of a centred ``size`` square, offsets rounded as torchvision's CenterCrop does."""
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return left, top, left + size, top + size


def to_tensor(img: Image.Image, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """8-bit RGB PIL image -> normalized float32 tensor (3, H, W)."""
    arr = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return x.sub_(m).div_(s)


class EvalTransform:
    """Resize (shortest side or squash), centre crop, to tensor, normalize. A class so workers can pickle it."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg

    def resize_crop(self, img: Image.Image) -> Image.Image:
        """The geometric part: RGB image -> (image_size, image_size) RGB image."""
        cfg, size = self.cfg, self.cfg.image_size
        resample = _FILTERS[cfg.interpolation]
        if cfg.resize_mode == "squash":
            return img.resize((size, size), resample=resample)
        img = img.resize(resized_size(img.width, img.height, size), resample=resample)
        return img.crop(center_crop_box(img.width, img.height, size))

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = self.resize_crop(_to_rgb(img, self.cfg.fill_color))
        return to_tensor(img, self.cfg.mean, self.cfg.std)  # (3, size, size)


def eval_transform(cfg: PreprocessConfig) -> EvalTransform:
    """The eval-time transform: PIL image -> float tensor (3, image_size, image_size).

    Args:
        cfg: the checkpoint's preprocessing config.
    """
    return EvalTransform(cfg)


def random_crop_box(
    width: int, height: int, scale: tuple[float, float], generator: torch.Generator
) -> tuple[int, int, int, int]:
    """A random crop box covering ``scale`` of the area with aspect ratio in [3/4, 4/3] (Inception-style crop).

    Up to 10 draws; if none fits, falls back to the largest centred crop with an in-range aspect ratio.
    """
    area = width * height
    log_lo, log_hi = math.log(_CROP_RATIO[0]), math.log(_CROP_RATIO[1])
    for _ in range(10):
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        ratio = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < _CROP_RATIO[0]:
        w, h = width, int(round(width / _CROP_RATIO[0]))
    elif in_ratio > _CROP_RATIO[1]:
        w, h = int(round(height * _CROP_RATIO[1])), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


# Luma weights (ITU-R BT.601) for the grayscale used by the silhouette view.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# A pixel this close to white counts as background in a drawing composited on white.
_BACKGROUND_LUMA = 0.97


def silhouette(img: Image.Image, level: float) -> Image.Image:
    """A light-on-dark grayscale view of a drawing on a white background.

    The drawn object becomes bright (its inner detail kept as shading) and the background black: the
    opposite polarity of clip art, and the look of product-photo sets such as Fashion-MNIST. Training on
    both views lets a model trained on drawings match object shapes in either polarity.

    Args:
        img: RGB image whose background is (near) white.
        level: in [0, 1]; how much of the object's own shading survives (0 = flat mid-gray shape).
    """
    rgb = np.asarray(img, dtype=np.float32) / 255.0  # (H, W, 3)
    luma = rgb @ _LUMA  # (H, W)
    mask = luma < _BACKGROUND_LUMA
    out = np.where(mask, level * (1.0 - 0.6 * luma) + (1.0 - level) * 0.5, 0.0)  # (H, W)
    gray = (out * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


@dataclass(frozen=True)
class Augmentation:
    """One random view of an image, so that it can be reproduced exactly (by a teacher, or from stored data).

    Args:
        box: the crop (left, top, right, bottom) in the decoded image's pixels, resized to the model's square;
            None = the eval resize and centre crop.
        silhouette: the level of the silhouette view (see ``silhouette``); None = the image itself.
    """

    box: tuple[int, int, int, int] | None = None
    silhouette: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"box": list(self.box) if self.box is not None else None, "silhouette": self.silhouette}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Augmentation:
        box = data.get("box")
        level = data.get("silhouette")
        return Augmentation(tuple(int(v) for v in box) if box is not None else None,  # type: ignore[arg-type]
                            float(level) if level is not None else None)


class TrainTransform:
    """Train-time transform: random resized crop (optional), else the eval transform; optionally a
    silhouette view (see ``silhouette``) with probability ``silhouette_p``.

    Call as ``t(img, generator)``; the generator decides the crop, so seeding it from (seed, epoch, sample
    index) makes every epoch reproducible for exact resume. ``t(img, gen) == t.apply(img, t.sample(img, gen))``:
    ``sample`` draws the view, ``apply`` renders any view at this transform's size and normalization.
    """

    def __init__(
        self,
        cfg: PreprocessConfig,
        random_resized_crop: bool,
        crop_scale: tuple[float, float],
        generator: torch.Generator | None = None,
        silhouette_p: float = 0.0,
    ) -> None:
        self.cfg = cfg
        self.random_resized_crop = random_resized_crop
        self.crop_scale = crop_scale
        self.generator = generator
        self.silhouette_p = silhouette_p
        self._eval = EvalTransform(cfg)

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(img, self.sample(img, generator))

    def sample(self, img: Image.Image, generator: torch.Generator | None = None) -> Augmentation:
        """Draw a view of ``img`` (the crop from its size, then the silhouette); no draws without augmentation."""
        if not self.random_resized_crop and self.silhouette_p <= 0:
            return Augmentation()
        gen = generator if generator is not None else self.generator
        if gen is None:
            raise ValueError("random augmentation needs a torch.Generator (pass one for reproducible epochs)")
        box = random_crop_box(img.width, img.height, self.crop_scale, gen) if self.random_resized_crop else None
        level = None
        if self.silhouette_p > 0:
            draw, u = torch.rand(2, generator=gen, dtype=torch.float64).tolist()
            if draw < self.silhouette_p:
                level = 0.4 + 0.6 * u
        return Augmentation(box, level)

    def apply(self, img: Image.Image, aug: Augmentation) -> torch.Tensor:
        """Render the view ``aug`` of ``img`` at this transform's size, filter and normalization: (3, size, size)."""
        cfg, size = self.cfg, self.cfg.image_size
        img = _to_rgb(img, cfg.fill_color)
        if aug.box is not None:
            img = img.crop(aug.box).resize((size, size), resample=_FILTERS[cfg.interpolation])
        else:
            img = self._eval.resize_crop(img)
        if aug.silhouette is not None:
            img = silhouette(img, aug.silhouette)
        return to_tensor(img, cfg.mean, cfg.std)  # (3, size, size)


def train_transform(
    cfg: PreprocessConfig,
    random_resized_crop: bool = False,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    generator: torch.Generator | None = None,
    silhouette_p: float = 0.0,
) -> TrainTransform:
    """The train-time transform.

    Args:
        cfg: preprocessing config (size, filter, normalization).
        random_resized_crop: crop a random region (area fraction in ``crop_scale``) and resize it to a square;
            when False this is the eval transform.
        crop_scale: (min, max) fraction of the image area kept by the crop.
        generator: default random source when the call passes none.
        silhouette_p: probability of the silhouette view (``silhouette``) per sample.
    """
    return TrainTransform(cfg, random_resized_crop, tuple(crop_scale), generator, silhouette_p)
