"""MobileCLIP towers: structural reparameterization, the non-causal text tower, checkpoints, export.

Parameter counts against OpenCLIP's are checked for every registered name in tests/test_registry.py.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_model import batch, shrink

import clipforge
from clipforge.checkpoint import PipelineConfig, read_config, save_checkpoint
from clipforge.model.clip import CLIP
from clipforge.model.config import FastViTConfig
from clipforge.model.mobileclip_blocks import Reparameterizable
from clipforge.model.mobileclip_reparam import is_reparameterizable, reparameterize
from clipforge.model.registry import get_config
from clipforge.text.config import TokenizerConfig

pytestmark = pytest.mark.usefixtures("one_thread")

FP32_TOL = 1e-5


def randomize_(model: CLIP, seed: int = 0) -> CLIP:
    """Non-trivial BatchNorm statistics and layer scales, so that every folded term matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_scale" in name or p.ndim == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


@pytest.mark.parametrize("name", ["test-mobileclip", "MobileCLIP-S1", "MobileCLIP2-S4"])
def test_reparameterize_keeps_the_features_and_drops_the_branches(name):
    cfg = get_config(name) if name.startswith("test") else shrink(get_config(name))
    model = randomize_(CLIP(cfg))
    pixels, ids = batch(cfg)
    fused = reparameterize(model)
    assert fused.cfg.vision.reparameterized and not is_reparameterizable(fused)
    with torch.no_grad():
        before, after = model.encode_image(pixels), fused.encode_image(pixels)
        assert torch.equal(model.encode_text(ids), fused.encode_text(ids))
    assert (before - after).abs().max() <= FP32_TOL * max(1.0, before.abs().max())
    folded = [m for m in fused.modules() if isinstance(m, Reparameterizable)]
    assert folded and all(m.fused is not None for m in folded)
    for m in folded:  # only the folded conv and the squeeze-excitation after it hold weights
        assert {name.split(".")[0] for name, _ in m.named_parameters()} <= {"fused", "se"}
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in model.parameters())
    assert reparameterize(fused) is fused  # nothing left to fold


def test_towers_without_branches_are_returned_unchanged():
    for name in ("test-vit", "MobileCLIP-B"):
        model = CLIP(shrink(get_config(name)))
        assert not is_reparameterizable(model) and reparameterize(model) is model


def test_reparameterized_checkpoint_round_trip(tmp_path):
    cfg = get_config("test-mobileclip")
    fused = reparameterize(randomize_(CLIP(cfg)))
    tok = TokenizerConfig(kind="openai", context_length=cfg.text.context_length)
    save_checkpoint(fused, PipelineConfig(model=fused.cfg, tokenizer=tok), tmp_path / "ckpt")
    assert read_config(tmp_path / "ckpt").model.vision == dataclasses.replace(cfg.vision, reparameterized=True)
    pipe = clipforge.load(tmp_path / "ckpt")
    pixels, _ = batch(cfg)
    with torch.no_grad():
        assert torch.equal(pipe.model.encode_image(pixels), fused.encode_image(pixels))


def test_non_causal_text_reads_every_position():
    cfg = get_config("test-mobileclip")
    assert not cfg.text.causal
    model = CLIP(cfg).eval()
    _, ids = batch(cfg)
    noisy = ids.clone()
    noisy[1, 4:] = torch.randint(1, 50, (cfg.text.context_length - 4,))  # after the end of text at 3
    with torch.no_grad():
        clean, changed = model.encode_text(ids), model.encode_text(noisy)
    assert torch.equal(clean[0], changed[0]) and not torch.allclose(clean[1], changed[1])
    # The same weights with the causal mask ignore everything after the end of text.
    causal = CLIP(dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, causal=True))).eval()
    causal.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(causal.encode_text(ids)[1], causal.encode_text(noisy)[1])


def test_fastvit_config_is_checked():
    with pytest.raises(ValueError, match="one entry per stage"):
        FastViTConfig(layers=(1, 1), widths=(8, 16, 32))
    with pytest.raises(ValueError, match="multiple of head_width"):
        FastViTConfig(widths=(8, 16, 32, 48), head_width=32)
    with pytest.raises(ValueError, match="multiple of the previous"):
        FastViTConfig(widths=(8, 12, 24, 48), head_width=8)


def test_export_reparameterize_cli(tmp_path, capsys):
    from clipforge.cli import main

    cfg = get_config("test-mobileclip")
    model = randomize_(CLIP(cfg))
    tok = TokenizerConfig(kind="openai", context_length=cfg.text.context_length)
    save_checkpoint(model, PipelineConfig(model=cfg, tokenizer=tok), tmp_path / "ckpt")
    assert main(["export", "--reparameterize", str(tmp_path / "ckpt"), "--out", str(tmp_path / "fused")]) == 0
    fused = clipforge.load(tmp_path / "fused")
    assert fused.config.model.vision.reparameterized and fused.config.tokenizer == tok
    pixels, _ = batch(cfg)
    with torch.no_grad():
        assert (fused.model.encode_image(pixels) - model.encode_image(pixels)).abs().max() <= FP32_TOL
    # OpenCLIP's layout of the folded model: timm's reparam_conv names.
    assert main(["export", "--to", "openai", str(tmp_path / "fused"), "--out", str(tmp_path / "oc")]) == 0
    keys = set(torch.load(tmp_path / "oc" / "model.pt", weights_only=True))
    assert "visual.trunk.stem.0.reparam_conv.weight" in keys and "text.text_projection" in keys
    assert main(["export", "--to", "hf", str(tmp_path / "fused"), "--out", str(tmp_path / "hf")]) == 2
    assert "only ViT image towers" in capsys.readouterr().err
