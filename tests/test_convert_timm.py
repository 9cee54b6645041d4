"""OpenCLIP checkpoints with timm image towers (SigLIP / SigLIP 2, EVA-02, PE-Core) and the big plain ViTs:
import matches OpenCLIP 3.3.0 + timm 1.0.31 within fp32 tolerance.

The reference outputs are tests/reference/fixtures (tiny random instances built by OpenCLIP itself in a
reference environment, see tests/reference/README.md): their state dicts, inputs and features.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clipforge.convert.common import Imported, build_model, import_state, model_shapes, pipeline_config
from clipforge.convert.open_clip import config_from_open_clip, open_clip_rules
from clipforge.errors import UserError
from clipforge.model.registry import get_config, list_models

FP32_TOL = 1e-5
FIXTURES = Path(__file__).parent / "reference" / "fixtures"
NAMES = ["siglip_b16", "siglip2_b16", "siglip_so400m14", "siglip_so400m16_i18n", "siglip2_gopt16", "eva02_b16",
         "eva02_l14", "pe_core_b16", "pe_core_g14", "vit_bigG14", "vit_h14_quickgelu"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def fixture(name: str) -> Path:
    folder = FIXTURES / name
    if not (folder / "io.safetensors").is_file():
        pytest.skip(f"reference fixture {folder} is not in this checkout")
    return folder


def imported(folder: Path):
    raw = json.loads((folder / "config.json").read_text())
    meta = json.loads((folder / "meta.json").read_text())
    spec = config_from_open_clip(raw, folder.name, meta.get("timm_kwargs"))
    rules = open_clip_rules(spec.model, spec.custom_text)
    state = import_state(load_file(str(folder / "model.safetensors")), rules, spec.model, folder.name,
                         ignore=("attn_mask", "text.attn_mask"))  # fmt: skip
    return build_model(Imported(state, pipeline_config(spec.model))), meta


@pytest.mark.parametrize("name", NAMES)
def test_import_matches_open_clip(name):
    model, meta = imported(fixture(name))
    io = load_file(str(fixture(name) / "io.safetensors"))
    with torch.no_grad():
        img, txt = model.encode_image(io["pixels"]), model.encode_text(io["token_ids"])
    d_img = (img - io["image_features"]).abs().max().item()
    d_txt = (txt - io["text_features"]).abs().max().item()
    print(f"\nparity import open_clip->clipforge fp32 [{meta['imitates']}]: image {d_img:.3g}, text {d_txt:.3g}")
    assert d_img <= FP32_TOL and d_txt <= FP32_TOL
    assert io["image_features"].abs().max() > 0.1 and io["text_features"].abs().max() > 0.1
    assert torch.equal(model.logit_scale, io["logit_scale"].reshape(()))
    if "logit_bias" in io:
        assert model.logit_bias is not None and torch.equal(model.logit_bias, io["logit_bias"].reshape(()))


def test_key_maps_cover_every_timm_family_config():
    """Each registered SigLIP / EVA-02 / PE config's OpenCLIP key map sets every one of our parameters once."""
    checked = 0
    for name in list_models():
        cfg = get_config(name)
        if cfg.vision.kind != "vit" or not (cfg.init_logit_bias is not None or cfg.vision.proj == "bias"):
            continue
        rules = open_clip_rules(cfg, custom_text=True)
        ours = [r.ours for r in rules]
        assert sorted(ours) == sorted(model_shapes(cfg)), name
        checked += 1
    assert checked >= 34


def test_unsupported_timm_tower_names_the_supported_ones():
    raw = {"embed_dim": 16, "vision_cfg": {"timm_model_name": "convnext_base", "timm_pool": "avg"},
           "text_cfg": {"width": 16, "heads": 2, "layers": 1}}  # fmt: skip
    with pytest.raises(UserError, match="timm_model_name 'convnext_base' is not supported") as info:
        config_from_open_clip(raw)
    assert "vit_base_patch16_siglip_224" in info.value.hint and "eva02_base_patch16_clip_224" in info.value.hint
