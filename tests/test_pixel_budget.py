"""The pixel budget: checked from the header before decoding; JPEGs over it decode at a reduced scale; other
images over it are refused (load_image), skipped and counted (embed, train)."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from data_helpers import toy_tokenizer, write_image
from PIL import Image
from search_helpers import make_checkpoint, make_collection, png_header_only

from clipforge.cli import main
from clipforge.data.config import DEFAULT_MAX_PIXELS, DataConfig, PreprocessConfig
from clipforge.data.loader import build_loader
from clipforge.data.transforms import REDUCED_MIN_SIDE, ImageTooLarge, load_image
from clipforge.dist.env import World


def test_the_156_mpx_png_is_refused_from_its_header():
    assert DEFAULT_MAX_PIXELS == 40_000_000
    with pytest.raises(ImageTooLarge, match=r"12500x12500 pixels \(156.2 Mpx\) is over the decoding budget of 40.0"):
        load_image(png_header_only(12500, 12500), "big.png")
    # Within the budget the same (truncated) file is decoded, and fails as what it is.
    with pytest.raises(Exception, match="cannot decode|truncated"):
        load_image(png_header_only(100, 100), "small.png")


def test_over_budget_jpeg_decodes_at_a_reduced_scale():
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1800, 2400, 3), dtype=np.uint8)).save(buf, "JPEG")
    full = load_image(buf.getvalue(), "a.jpg")
    assert full.size == (2400, 1800)
    reduced = load_image(buf.getvalue(), "a.jpg", max_pixels=1_000_000)  # 4.3 Mpx over a 1 Mpx budget
    assert reduced.size == (600, 450)  # libjpeg 1/4 scale: the smallest keeping both sides >= REDUCED_MIN_SIDE
    assert min(reduced.size) >= REDUCED_MIN_SIDE
    with pytest.raises(ImageTooLarge):  # the reduced 600 x 450 is still over 50k pixels
        load_image(buf.getvalue(), "a.jpg", max_pixels=50_000)


def test_within_budget_images_decode_at_full_size_exactly():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert np.array_equal(np.asarray(load_image(buf.getvalue(), max_pixels=2400)), np.asarray(img))


def test_embed_skips_and_counts_over_budget_images(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    col = make_collection(tmp_path / "col", 3)  # 48 x 48 = 2,304 pixels each
    Image.new("RGB", (100, 100), (9, 9, 9)).save(col / "large.png")
    assert main(["embed", str(ckpt), str(col), str(tmp_path / "emb"), "workers=0", "max_pixels=5000"]) == 0
    manifest = json.loads((tmp_path / "emb" / "embed.json").read_text())
    assert manifest["count"] == 3 and manifest["skipped"] == {"too_large": 1}


def test_training_skips_and_counts_over_budget_images(tmp_path, caplog):
    root = tmp_path / "folder"
    for i in range(4):
        write_image(root / f"ok{i}.png", i)
        (root / f"ok{i}.txt").write_text(f"good {i}")
    write_image(root / "large.png", 7, size=(100, 100))
    (root / "large.txt").write_text("too many pixels")
    cfg = DataConfig(train=str(root), workers=0, max_pixels=5000)
    with caplog.at_level(logging.INFO, logger="clipforge.data"):
        loader = build_loader(cfg, tokenizer=toy_tokenizer, preprocess=PreprocessConfig(image_size=8), world=World(),
                              batch_size=2, train=True, epoch=0, seed=0)
        seen = sum(b.indices.numel() for b in loader)
    assert seen == 4 and loader.stats.counts == {"too_large": 1}
    assert any("large.png" in r.getMessage() for r in caplog.records)
