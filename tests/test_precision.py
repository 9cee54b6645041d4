"""Inference precision modes: ``clipforge.load(path, precision=...)`` against fp32 on the fixed probe set.

Tolerances per mode (random test-vit weights): bf16 keeps 8 mantissa bits, so features move by ~1e-4 in
cosine; int8 quantizes every block's weights and activations, ~1e-3. The benchmark
(benchmarks/cpu_inference.py) records the same cosines for ViT-B/32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from search_helpers import build_demo, make_checkpoint

import clipforge
from clipforge.cli import main
from clipforge.commands import config_args
from clipforge.errors import UserError
from clipforge.index.config import EmbedConfig
from clipforge.index.search import Searcher
from clipforge.precision import MIN_COSINE, PRECISIONS, check_precision, probe_inputs
from clipforge.utils.configs import load_resolved


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("precision") / "ckpt")


@torch.inference_mode()
def _features(pipeline, pixels, ids):
    image = F.normalize(pipeline.model.encode_image(pixels).float(), dim=-1)
    text = F.normalize(pipeline.model.encode_text(ids).float(), dim=-1)
    return image, text


@pytest.mark.parametrize(("precision", "min_cos"), [("fp32", 0.999999), ("bf16", 0.9995), ("int8", 0.99)])
def test_each_mode_stays_close_to_fp32(ckpt, one_thread, precision, min_cos):
    ref = clipforge.load(ckpt)
    probe = probe_inputs(ref.model, ref.tokenizer)
    want = _features(ref, *probe)
    pipe = clipforge.load(ckpt, precision=precision)
    assert pipe.precision == precision
    got = _features(pipe, *probe)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32  # normalized in fp32 whatever the model computes in
        cos = (g * w).sum(-1)
        assert cos.min() >= min_cos, (precision, cos)


def test_the_modes_really_change_the_arithmetic(ckpt):
    bf16 = clipforge.load(ckpt, precision="bf16").model
    assert bf16.visual.transformer.blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    int8 = clipforge.load(ckpt, precision="int8").model
    quantized = [m for m in int8.modules() if m._get_name() == "DynamicQuantizedLinear"]
    assert len(quantized) == 4 * (len(int8.visual.transformer.blocks) + len(int8.text.transformer.blocks))
    assert not [m for m in int8.modules() if type(m) is torch.nn.Linear]  # every block Linear is int8


def test_auto_on_cpu_keeps_the_fastest_mode_that_passes(ckpt, one_thread):
    pipe = clipforge.load(ckpt, precision="auto")
    checks = {c.precision: c for c in pipe.precision_checks}
    assert set(checks) == {"fp32", "int8", "bf16"}
    chosen = checks[pipe.precision]
    assert chosen.passed
    assert all(chosen.seconds <= c.seconds for c in checks.values() if c.passed)
    assert all(c.passed == (min(c.min_cosine_image, c.min_cosine_text) >= MIN_COSINE) for c in checks.values())



def test_auto_without_dynamic_quantization_chooses_among_the_others(ckpt, one_thread, monkeypatch):
    """A torch whose eager dynamic quantization is gone (moved to torchao): int8 is a one-line error, and auto
    chooses between fp32 and bf16 instead of failing."""
    monkeypatch.delattr(torch.ao.quantization, "quantize_dynamic")
    with pytest.raises(UserError, match="has no torch.ao.quantization.quantize_dynamic"):
        clipforge.load(ckpt, precision="int8")
    pipe = clipforge.load(ckpt, precision="auto")
    assert {c.precision for c in pipe.precision_checks} == {"fp32", "bf16"}
    assert pipe.precision in ("fp32", "bf16")

def test_bad_modes_are_one_line_errors(ckpt):
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        clipforge.load(ckpt, precision="fp8")
    with pytest.raises(UserError, match="int8 runs on CPU only"):
        check_precision("int8", "cuda")
    assert PRECISIONS == ("fp32", "bf16", "int8", "auto")


def test_the_verbs_take_precision(tmp_path, capsys, one_thread):
    """embed, search, eval (and serve, through the same Searcher) run the model in the chosen precision."""
    assert config_args.PRECISIONS == PRECISIONS
    demo = build_demo(tmp_path, n=6, bad=0)
    emb8 = tmp_path / "emb8"
    assert main(["embed", str(demo["ckpt"]), str(demo["col"]), str(emb8), "workers=0", "--precision", "int8"]) == 0
    assert load_resolved(EmbedConfig, emb8 / "embed_config.yaml").precision == "int8"
    fp32, int8 = np.load(demo["emb"] / "image_emb.npy").astype(np.float32), np.load(emb8 / "image_emb.npy").astype(np.float32)
    assert fp32.shape == int8.shape and not np.array_equal(fp32, int8)
    assert (fp32 * int8).sum(-1).min() > 0.99  # float16 storage on top of int8 arithmetic
    capsys.readouterr()
    assert main(["search", str(demo["idx"]), "--text", "a circle", "--precision", "bf16", "--json"]) == 0
    assert "results" in capsys.readouterr().out
    assert Searcher.open(demo["idx"], precision="bf16").pipeline.precision == "bf16"
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        main(["search", str(demo["idx"]), "--text", "x", "--precision", "fp8"])
    out = tmp_path / "eval"
    assert main(["eval", str(demo["ckpt"]), f"zeroshot=[{demo['col']}]", f"out_dir={out}", "report=false",
                 "suite.progress=false", "--precision", "int8"]) == 0  # fmt: skip
    assert "precision: int8" in (out / "eval_config.yaml").read_text()
