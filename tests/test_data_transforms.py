"""Image decoding edge cases and eval-transform parity with transformers' CLIPImageProcessor."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from clipforge.data.config import PreprocessConfig
from clipforge.data.transforms import (
    BadImageError,
    center_crop_box,
    eval_transform,
    load_image,
    resized_size,
    train_transform,
)
from clipforge.errors import UserError


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_rgba_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    img.putpixel((0, 0), (0, 0, 255, 255))  # one opaque blue pixel
    out = load_image(_save(img, tmp_path / "a.png"))
    assert out.mode == "RGB"
    assert out.getpixel((1, 1)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)
    black = load_image(tmp_path / "a.png", fill_color=(0, 0, 0))
    assert black.getpixel((1, 1)) == (0, 0, 0)


def test_half_transparent_la_blends(tmp_path):
    img = Image.new("LA", (4, 4), (0, 128))
    out = load_image(_save(img, tmp_path / "la.png"))
    r, g, b = out.getpixel((0, 0))
    assert r == g == b and abs(r - 127) <= 1


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([10, 20, 30] + [200, 100, 50] * 255)
    img.putpixel((1, 1), 1)
    path = _save(img, tmp_path / "p.png", transparency=0)
    out = load_image(path)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 1)) == (200, 100, 50)
    opaque = load_image(_save(img, tmp_path / "p2.png"))
    assert opaque.getpixel((0, 0)) == (10, 20, 30)


def test_grayscale_and_cmyk(tmp_path):
    gray = load_image(_save(Image.new("L", (5, 3), 77), tmp_path / "g.png"))
    assert gray.mode == "RGB" and gray.getpixel((0, 0)) == (77, 77, 77)
    cmyk = load_image(_save(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), tmp_path / "c.jpg", quality=100))
    r, g, b = cmyk.getpixel((2, 2))
    assert cmyk.mode == "RGB" and r > 240 and g < 20 and b < 20


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(arr), tmp_path / "d.png")
    out = load_image(path)
    assert [out.getpixel((i, 0))[0] for i in range(3)] == [0, 128, 255]


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (6, 2), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    out = load_image(_save(img, tmp_path / "r.jpg", exif=exif.tobytes()))
    assert out.size == (2, 6)


def test_bytes_input():
    buf = io.BytesIO()
    Image.new("RGB", (3, 3), (1, 2, 3)).save(buf, format="PNG")
    assert load_image(buf.getvalue()).getpixel((0, 0)) == (1, 2, 3)


def test_bad_files_raise_named_errors(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("this is not an image\n")
    for name in ("trunc.jpg", "empty.png", "text.png"):
        with pytest.raises(BadImageError, match=name) as info:
            load_image(tmp_path / name)
        assert isinstance(info.value, UserError)
    with pytest.raises(BadImageError, match="<bytes>"):
        load_image(b"")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")


def _photo_like(w: int, h: int, seed: int) -> Image.Image:
    """Smooth gradients plus texture: a fair stand-in for photos in a resize comparison."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], -1)
    noise = rng.normal(0, 25, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _hf_crop_offset(length: int, size: int) -> int:
    return (length - size) // 2  # transformers' centre crop


@pytest.mark.parametrize("wh", [(224, 224), (300, 400), (640, 480), (97, 311), (1000, 250), (50, 60), (225, 224)])
def test_eval_transform_matches_clip_image_processor(wh):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers = pytest.importorskip("transformers")
        proc_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    size = 224
    w, h = wh
    rw, rh = resized_size(w, h, size)
    # OpenCLIP (torchvision) rounds the crop offset, transformers floors it; they agree on these sizes, which
    # is what makes transformers a valid reference for OpenCLIP's transform here.
    left, top, _, _ = center_crop_box(rw, rh, size)
    assert (left, top) == (_hf_crop_offset(rw, size), _hf_crop_offset(rh, size))
    img = _photo_like(w, h, seed=w * 7 + h)
    ours = eval_transform(PreprocessConfig(image_size=size))(img)
    proc = proc_cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    ref = torch.as_tensor(np.asarray(proc(images=img, return_tensors="np")["pixel_values"][0]))
    assert ours.shape == ref.shape == (3, size, size)
    std = torch.tensor(PreprocessConfig().std).view(3, 1, 1)
    assert ((ours - ref).abs() * std).max().item() <= 1 / 255 + 1e-6


def test_centre_crop_rounds_like_torchvision():
    # torchvision: int(round((h - size) / 2)), Python's round-half-to-even: 3/2 -> 2, 5/2 -> 2.
    assert center_crop_box(227, 10, 224)[0] == 2
    assert center_crop_box(229, 10, 224)[0] == 2
    assert resized_size(300, 401, 224) == (224, int(224 * 401 / 300))


def test_squash_mode_and_output_shape():
    img = _photo_like(90, 30, 1)
    x = eval_transform(PreprocessConfig(image_size=32, resize_mode="squash"))(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_random_resized_crop_is_deterministic_per_generator():
    img = _photo_like(120, 80, 2)
    t = train_transform(PreprocessConfig(image_size=32), random_resized_crop=True, crop_scale=(0.3, 1.0))
    a = t(img, torch.Generator().manual_seed(5))
    b = t(img, torch.Generator().manual_seed(5))
    c = t(img, torch.Generator().manual_seed(6))
    assert a.shape == (3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = train_transform(PreprocessConfig(image_size=32))(img)
    assert torch.equal(plain, eval_transform(PreprocessConfig(image_size=32))(img))
