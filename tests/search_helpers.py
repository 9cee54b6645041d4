"""Shared fixtures for the search/serve tests: a tiny random checkpoint and a small image collection."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLORS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (240, 200, 30), (150, 60, 200), (30, 200, 200)]
SHAPES = ["circle", "square", "triangle"]


def make_checkpoint(out_dir: Path, seed: int = 0, embed_dim: int | None = None) -> Path:
    """A random ``test-vit`` checkpoint (32 px images, 16 tokens), saved with save_checkpoint."""
    import dataclasses

    import torch

    from clipforge.checkpoint import PipelineConfig, save_checkpoint
    from clipforge.data.config import PreprocessConfig
    from clipforge.model.clip import CLIP
    from clipforge.model.registry import get_config
    from clipforge.text.config import TokenizerConfig

    cfg = get_config("test-vit")
    if embed_dim is not None:
        cfg = dataclasses.replace(cfg, embed_dim=embed_dim)
    torch.manual_seed(seed)
    model = CLIP(cfg)
    config = PipelineConfig(
        model=cfg,
        tokenizer=TokenizerConfig(kind="openai", context_length=cfg.text.context_length),
        preprocess=PreprocessConfig(image_size=cfg.vision.image_size),
    )
    return save_checkpoint(model, config, out_dir)


def draw(color: tuple[int, int, int], shape: str, size: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(image)
    o = int(rng.integers(2, 8))
    box = (o, o, size - o, size - o)
    if shape == "circle":
        d.ellipse(box, fill=color)
    elif shape == "square":
        d.rectangle(box, fill=color)
    else:
        d.polygon([(size // 2, o), (o, size - o), (size - o, size - o)], fill=color)
    return image


def make_collection(root: Path, n: int = 12, captions: bool = True, bad: int = 0) -> Path:
    """``n`` small PNGs in two sub-folders (with sidecar captions) and ``bad`` corrupt files."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        color, shape = COLORS[i % len(COLORS)], SHAPES[i % len(SHAPES)]
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        draw(color, shape, seed=i).save(sub / f"img{i:03d}.png")
        if captions:
            (sub / f"img{i:03d}.txt").write_text(f"a {shape} number {i}")
    for j in range(bad):
        (root / f"broken{j}.jpg").write_bytes(b"this is not an image")
    return root


def build_demo(tmp: Path, n: int = 12, bad: int = 1) -> dict[str, Path]:
    """Checkpoint, collection, embeddings and exact index under ``tmp`` (through the CLI, as a user would)."""
    from clipforge.cli import main

    paths = {"ckpt": make_checkpoint(tmp / "ckpt"), "col": make_collection(tmp / "col", n, bad=bad),
             "emb": tmp / "emb", "idx": tmp / "idx"}
    assert main(["embed", str(paths["ckpt"]), str(paths["col"]), str(paths["emb"]), "workers=0"]) == 0
    assert main(["index", str(paths["emb"]), str(paths["idx"])]) == 0
    return paths


def png_bytes(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGBA and whose data is 64 bytes: decoding would fail as
    truncated, so an 'image too large' answer proves the size was read from the header, before any decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")

def serve_in_thread(app, host: str = "127.0.0.1"):
    """Start a real uvicorn server on a free loopback port; returns (base_url, stop)."""
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://{host}:{port}", stop
