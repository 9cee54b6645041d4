"""ONNX export of both towers: ``image.onnx`` (pixels -> features) and ``text.onnx`` (token ids -> features).

    clipforge export --to onnx runs/tiny/final --out exported/tiny-onnx

Each graph takes a dynamic batch: ``pixels`` (B, 3, S, S) float32 and ``token_ids`` (B, context_length) int64,
and returns unnormalized (B, embed_dim) float32 features, the same as ``encode_image`` / ``encode_text``. The
folder also holds the checkpoint's ``config.json`` (tokenizer and preprocessing) and, for trained
vocabularies, ``tokenizer.json``, so a runtime without clipforge knows how to feed the graphs.
The text graph always runs all ``context_length`` positions: trimming to the longest text is a
data-dependent shape, which a traced graph cannot hold.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from clipforge.checkpoint import CONFIG_FILE, TOKENIZER_FILE
from clipforge.model.clip import CLIP
from clipforge.utils.io import atomic_path, atomic_write_bytes

IMAGE_FILE = "image.onnx"
TEXT_FILE = "text.onnx"
OPSET = 17  # LayerNormalization is a native op from 17 on


class _ImageTower(nn.Module):
    def __init__(self, model: CLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


class _TextTower(nn.Module):
    def __init__(self, model: CLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.model.text(token_ids, trim=False)


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str) -> None:
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The TorchScript-based exporter: it needs no extra package and handles SDPA and dynamic batch axes;
        # torch marks it deprecated in favour of the dynamo exporter (which needs onnxscript).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(tmp), input_names=[input_name], output_names=["features"],
            dynamic_axes={input_name: {0: "batch"}, "features": {0: "batch"}}, opset_version=OPSET, dynamo=False,
        )  # fmt: skip


def export_onnx(model: CLIP, ckpt_dir: str | Path, out_dir: str | Path) -> Path:
    """Write ``image.onnx``, ``text.onnx`` and the checkpoint's config files into ``out_dir``.

    Args:
        model: the checkpoint's model (fp32, CPU); put in eval mode here.
        ckpt_dir: the checkpoint directory (its config.json and tokenizer.json are copied).
        out_dir: the folder to create.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    size = model.cfg.vision.image_size
    context = model.cfg.text.context_length
    pixels = torch.zeros(2, 3, size, size)
    token_ids = torch.zeros(2, context, dtype=torch.int64)
    token_ids[:, 1] = model.cfg.text.vocab_size - 1  # an end-of-text token, as the tokenizer writes
    with torch.no_grad():
        _export(_ImageTower(model), pixels, out / IMAGE_FILE, "pixels")
        _export(_TextTower(model), token_ids, out / TEXT_FILE, "token_ids")
    for name in (CONFIG_FILE, TOKENIZER_FILE):
        if (Path(ckpt_dir) / name).is_file():  # atomic, as the graphs: a killed export leaves no half config
            atomic_write_bytes(out / name, (Path(ckpt_dir) / name).read_bytes())
    return out
