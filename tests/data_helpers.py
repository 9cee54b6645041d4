"""Small fixtures shared by the data tests: tiny image folders, tables and a picklable stand-in tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CONTEXT = 8


def toy_tokenizer(texts: list[str]) -> torch.Tensor:
    """Characters -> ids, padded to CONTEXT (module level so DataLoader workers can pickle it)."""
    out = torch.zeros(len(texts), CONTEXT, dtype=torch.int64)
    for row, text in enumerate(texts):
        ids = [ord(c) % 1000 + 1 for c in text[:CONTEXT]]
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return out


def decode_tokens(ids: torch.Tensor) -> str:
    return "".join(chr(i - 1) for i in ids.tolist() if i)


def write_image(path: Path, value: int, size: tuple[int, int] = (12, 10)) -> Path:
    """An image whose pixels encode ``value`` (so tests can tell samples apart after decoding)."""
    arr = np.full((size[1], size[0], 3), (value * 37) % 256, dtype=np.uint8)
    arr[..., 1] = value % 256
    arr[..., 2] = (value // 256) % 256
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def make_jsonl(root: Path, n: int, captions_per_image: int = 1, name: str = "pairs.jsonl") -> Path:
    """``n`` images under root/images and a JSONL table (image, captions) with paths relative to root."""
    rows = []
    for i in range(n):
        write_image(root / "images" / f"{i:04d}.png", i)
        caps = [f"c{i}-{k}" for k in range(captions_per_image)]
        rows.append({"image": f"images/{i:04d}.png", "captions": caps if captions_per_image > 1 else caps[0]})
    table = root / name
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return table
