"""``clipforge export --to onnx``: both towers as ONNX graphs with a dynamic batch, checked in onnxruntime."""

from __future__ import annotations

import json

import pytest
import torch
from search_helpers import make_checkpoint

import clipforge
from clipforge.cli import main
from clipforge.convert.onnx import IMAGE_FILE, TEXT_FILE
from clipforge.precision import PROBE_TEXTS

ort = pytest.importorskip("onnxruntime")


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_onnx_towers_match_the_model_at_any_batch(tmp_path, one_thread):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "onnx"
    assert main(["export", "--to", "onnx", str(ckpt), "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text()) == json.loads((ckpt / "config.json").read_text())
    pipe = clipforge.load(ckpt)
    image, text = _session(out / IMAGE_FILE), _session(out / TEXT_FILE)
    assert [i.shape[0] for i in image.get_inputs() + text.get_inputs()] == ["batch", "batch"]
    size = pipe.config.preprocess.image_size
    for batch in (1, 5):  # the graphs were traced at batch 2
        pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        ids = pipe.tokenizer(list(PROBE_TEXTS[:batch]))  # texts of different lengths, padded to the context
        with torch.inference_mode():
            want_image, want_text = pipe.model.encode_image(pixels), pipe.model.encode_text(ids)
        got_image = torch.from_numpy(image.run(None, {"pixels": pixels.numpy()})[0])
        got_text = torch.from_numpy(text.run(None, {"token_ids": ids.numpy()})[0])
        assert got_image.shape == want_image.shape and got_text.shape == want_text.shape
        assert (got_image - want_image).abs().max() < 1e-4, batch
        assert (got_text - want_text).abs().max() < 1e-4, batch
        assert want_image.abs().max() > 0.1 and want_text.abs().max() > 0.1  # not comparing zeros
