"""MobileCLIP import against OpenCLIP 3.3.0 + timm's own model code (tests/reference/fixtures, random weights).

Each fixture is a tiny instance of an OpenCLIP MobileCLIP name built by OpenCLIP itself, with perturbed weights
and BatchNorm statistics; its outputs were computed by OpenCLIP, before and after timm's reparameterize_model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clipforge.convert.common import build_model, export_state
from clipforge.convert.mobileclip import PREPROCESS, mobileclip_rules
from clipforge.convert.open_clip import import_open_clip, read_open_clip_config
from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig, FastViTConfig
from clipforge.model.mobileclip_reparam import reparameterize
from clipforge.model.registry import get_config

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "reference" / "fixtures"
NAMES = ["mobileclip_s1", "mobileclip2_s3", "mobileclip_b"]
FP32_TOL = 1e-5


def fixture_config(name: str) -> CLIPConfig:
    """Our config for a fixture: its OpenCLIP config mapped as-is, with the trunk sizes it gave timm."""
    folder = FIXTURES / name
    meta = json.loads((folder / "meta.json").read_text())
    model = read_open_clip_config(folder / "config.json").model
    v, kw = model.vision, meta["timm_kwargs"]
    if isinstance(v, FastViTConfig):
        v = dataclasses.replace(v, layers=tuple(kw["layers"]), widths=tuple(kw["embed_dims"]))
    else:
        stem = meta["timm_stem_channels"]
        assert stem[-1] == kw["embed_dim"] and stem[0] == stem[1]
        v = dataclasses.replace(v, image_size=kw["img_size"], width=kw["embed_dim"], layers=kw["depth"],
                                head_width=kw["embed_dim"] // kw["num_heads"], stem_width=stem[0])  # fmt: skip
    return dataclasses.replace(model, vision=v)


def close(got: torch.Tensor, want: torch.Tensor) -> float:
    diff = (got - want).abs().max().item()
    assert diff <= FP32_TOL * max(1.0, want.abs().max().item()), diff
    return diff


@pytest.mark.parametrize("name", NAMES)
def test_import_matches_open_clip_before_and_after_reparameterization(name):
    folder = FIXTURES / name
    io = load_file(str(folder / "io.safetensors"))
    cfg = fixture_config(name)
    model = build_model(import_open_clip(folder / "model.safetensors", cfg))
    with torch.no_grad():
        close(model.encode_image(io["pixels"]), io["image_features"])
        close(model.encode_text(io["token_ids"]), io["text_features"])
    assert torch.equal(model.logit_scale.detach(), io["logit_scale"])
    fused = reparameterize(model)  # our fold of the imported weights against timm's fold of its own
    with torch.no_grad():
        close(fused.encode_image(io["pixels"]), io["image_features_reparam"])
    # Export writes OpenCLIP's own state dict back, key for key and bit for bit.
    theirs = load_file(str(folder / "model.safetensors"))
    ours = export_state(model.state_dict(), mobileclip_rules(cfg))
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("name", [n for n in NAMES if (FIXTURES / n / "reparam.safetensors").is_file()])
def test_reparameterized_open_clip_weights_import(name):
    folder = FIXTURES / name
    io = load_file(str(folder / "io.safetensors"))
    imported = import_open_clip(folder / "reparam.safetensors", fixture_config(name))
    assert imported.config.model.vision.reparameterized
    model = build_model(imported)
    with torch.no_grad():
        close(model.encode_image(io["pixels"]), io["image_features_reparam"])
        close(model.encode_text(io["token_ids"]), io["text_features"])
    theirs = load_file(str(folder / "reparam.safetensors"))
    ours = export_state(model.state_dict(), mobileclip_rules(imported.config.model))
    assert sorted(ours) == sorted(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("name", NAMES)
def test_every_covered_name_has_the_fixtures_structure(name):
    """The registry's config of each name a fixture covers differs from the fixture only in sizes."""
    meta = json.loads((FIXTURES / name / "meta.json").read_text())
    fixture = fixture_config(name)
    for covered in [meta["imitates"], *meta["also_covers"]]:
        cfg = get_config(covered)
        v = cfg.vision
        sizes = ("layers", "widths") if isinstance(v, FastViTConfig) else ("width", "layers", "head_width", "stem_width")
        v = dataclasses.replace(v, image_size=fixture.vision.image_size,
                                **{k: getattr(fixture.vision, k) for k in sizes})  # fmt: skip
        assert v == fixture.vision, covered
        assert cfg.text.causal == fixture.text.causal, covered
        assert covered in PREPROCESS


def test_the_names_preprocessing_and_layout_errors():
    src, cfg = FIXTURES / "mobileclip_s1" / "model.safetensors", fixture_config("mobileclip_s1")
    unit = import_open_clip(src, cfg, name="MobileCLIP-S1").config.preprocess  # pixels in [0, 1], bilinear
    assert unit.mean == (0.0, 0.0, 0.0) and unit.std == (1.0, 1.0, 1.0) and unit.interpolation == "bilinear"
    openai = import_open_clip(src, cfg, name="MobileCLIP2-S3").config.preprocess  # OpenAI's normalization
    assert openai.mean[0] > 0.4 and openai.interpolation == "bilinear"
    with pytest.raises(UserError, match="missing keys"):  # another tower's weights are refused, naming keys
        import_open_clip(FIXTURES / "mobileclip_b" / "model.safetensors", cfg)
