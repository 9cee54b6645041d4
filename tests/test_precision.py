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
from clipforge.precision import (
    MIN_COSINE,
    PRECISIONS,
    _Patchify,
    check_precision,
    int8_linears,
    precision_name,
    probe_inputs,
    quantize_tower,
)
from clipforge.utils.configs import load_resolved


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("precision") / "ckpt")


@torch.inference_mode()
def _features(pipeline, pixels, ids):
    image = F.normalize(pipeline.model.encode_image(pixels).float(), dim=-1)
    text = F.normalize(pipeline.model.encode_text(ids).float(), dim=-1)
    return image, text


@pytest.mark.parametrize(("precision", "min_cos"), [("fp32", 0.999999), ("bf16", 0.9995), ("int8", 0.99), ("int8-image", 0.99)])
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


def test_auto_on_cpu_keeps_per_tower_the_fastest_mode_that_passes(ckpt, one_thread):
    pipe = clipforge.load(ckpt, precision="auto")
    chosen = {}
    for tower in ("image", "text"):
        checks = [c for c in pipe.precision_checks if c.tower == tower]
        assert {c.precision for c in checks} == {"fp32", "int8", "bf16"}
        assert all(c.passed == (c.min_cosine >= MIN_COSINE) for c in checks)
        passed = [c for c in checks if c.passed]
        chosen[tower] = min(passed, key=lambda c: c.seconds).precision
        int8 = [c for c in checks if c.precision == "int8"]  # more fp32 blocks only while int8 misses the gate
        assert [c.head_blocks for c in int8] == list(range(len(int8)))
        assert all(not c.passed for c in int8[:-1])
    assert pipe.precision == precision_name(chosen)
    quantized = {t: any(m._get_name() == "DynamicQuantizedLinear" for m in getattr(pipe.model, a).modules())
                 for t, a in (("image", "visual"), ("text", "text"))}  # fmt: skip
    assert quantized == {t: chosen[t] == "int8" for t in chosen}


def test_precision_names_of_per_tower_choices():
    assert precision_name({"image": "int8", "text": "int8"}) == "int8"
    assert precision_name({"image": "int8", "text": "fp32"}) == "int8-image"
    assert precision_name({"image": "fp32", "text": "bf16"}) == "bf16-text"
    assert precision_name({"image": "bf16", "text": "int8"}) == "bf16-image+int8-text"


def test_int8_image_quantizes_the_image_tower_only(ckpt, one_thread):
    pipe = clipforge.load(ckpt, precision="int8-image")
    assert pipe.precision == "int8-image"
    assert [m for m in pipe.model.visual.modules() if m._get_name() == "DynamicQuantizedLinear"]
    assert not [m for m in pipe.model.text.modules() if m._get_name() == "DynamicQuantizedLinear"]
    ref = clipforge.load(ckpt)
    pixels, ids = probe_inputs(ref.model, ref.tokenizer)
    with torch.inference_mode():
        assert torch.equal(pipe.model.encode_text(ids), ref.model.encode_text(ids))  # the text tower is untouched


def test_int8_keeps_the_first_blocks_fp32_when_asked(ckpt):
    model = clipforge.load(ckpt).model
    blocks = len(model.visual.transformer.blocks)
    assert len(int8_linears(model.visual)) == 4 * blocks
    assert len(int8_linears(model.visual, head_blocks=1)) == 4 * (blocks - 1)
    tower = quantize_tower(model.visual, head_blocks=1)
    assert type(tower.transformer.blocks[0].mlp.fc1) is torch.nn.Linear
    assert tower.transformer.blocks[1].mlp.fc1._get_name() == "DynamicQuantizedLinear"
    assert type(model.visual.transformer.blocks[1].mlp.fc1) is torch.nn.Linear  # a copy: the model is untouched


def test_bf16_patchify_is_the_convolution(ckpt):
    model = clipforge.load(ckpt).model
    conv = model.visual.patch_embed
    pixels = torch.randn(2, 3, model.cfg.vision.image_size, model.cfg.vision.image_size)
    with torch.inference_mode():
        want = conv(pixels)
        got = _Patchify(conv)(pixels)
        exact = _Patchify(conv, torch.float64)(pixels)  # the same sums as the convolution, in float64
    assert got.shape == exact.shape == want.shape and got.dtype == exact.dtype == torch.float32
    assert torch.allclose(exact, want, atol=1e-5)
    assert (got - want).abs().max() <= 0.02 * want.abs().max()  # bf16 inputs and weights
    quantized = quantize_tower(model.visual, head="bf16")
    assert isinstance(quantized.patch_embed, _Patchify)
    assert isinstance(quantize_tower(model.visual).patch_embed, torch.nn.Conv2d)


def test_int8_runs_the_left_out_blocks_in_bf16_when_asked(ckpt, one_thread):
    model = clipforge.load(ckpt).model
    tower = quantize_tower(model.text, head_blocks=1, head="bf16")
    assert tower.transformer.blocks[0].block.mlp.fc1.weight.dtype == torch.bfloat16
    assert tower.transformer.blocks[1].mlp.fc1._get_name() == "DynamicQuantizedLinear"
    ids = probe_inputs(model, clipforge.load(ckpt).tokenizer)[1]
    with torch.inference_mode():
        got, want = tower(ids), model.text(ids)
    assert got.dtype == torch.float32
    assert F.cosine_similarity(got, want).min() > 0.99


def test_auto_without_dynamic_quantization_chooses_among_the_others(ckpt, one_thread, monkeypatch):
    """A torch whose eager dynamic quantization is gone (moved to torchao): int8 is a one-line error, and auto
    chooses between fp32 and bf16 instead of failing."""
    monkeypatch.delattr(torch.ao.quantization, "quantize_dynamic")
    with pytest.raises(UserError, match="has no torch.ao.quantization.quantize_dynamic"):
        clipforge.load(ckpt, precision="int8")
    pipe = clipforge.load(ckpt, precision="auto")
    assert {c.precision for c in pipe.precision_checks} == {"fp32", "bf16"}
    assert pipe.precision in ("fp32", "bf16", "bf16-image", "bf16-text")


def test_bad_modes_are_one_line_errors(ckpt):
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        clipforge.load(ckpt, precision="fp8")
    with pytest.raises(UserError, match="int8 runs on CPU only"):
        check_precision("int8", "cuda")
    assert PRECISIONS == ("fp32", "bf16", "int8", "int8-image", "auto")
    with pytest.raises(UserError, match="int8-image runs on CPU only"):
        check_precision("int8-image", "cuda")


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
