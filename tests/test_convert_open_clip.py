"""OpenCLIP model-config JSON -> CLIPConfig mapping, and OpenCLIP checkpoint import (.pt and .safetensors)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from convert_reference import openai_state, openclip_model_configs, openclip_model_module, randomize
from safetensors.torch import save_file

from clipforge.convert.common import build_model
from clipforge.convert.open_clip import config_from_open_clip, import_open_clip
from clipforge.errors import UserError
from clipforge.model.registry import get_config, list_models

FP32_TOL = 1e-5
# A tiny OpenCLIP model config (same schema as open_clip/model_configs/*.json).
TINY_VIT = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 2},
}
TINY_RN = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 2, 1], "width": 16, "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 2},
}
# OpenCLIP's ViT-B-32.json and RN50.json, as shipped (checked against the wheel when it is present).
VIT_B_32 = {
    "embed_dim": 512,
    "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
}
RN50 = {
    "embed_dim": 1024,
    "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64, "patch_size": None},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
}


pytestmark = pytest.mark.usefixtures("one_thread")



def test_known_configs_map_to_the_registry():
    assert config_from_open_clip(VIT_B_32).model == get_config("ViT-B-32")
    assert config_from_open_clip(RN50).model == get_config("RN50")
    quick = config_from_open_clip({**VIT_B_32, "quick_gelu": True}).model
    assert quick == get_config("ViT-B-32-quickgelu")


def test_every_registry_name_matches_openclips_own_config():
    shipped = openclip_model_configs()
    assert shipped["ViT-B-32"] == VIT_B_32 and shipped["RN50"] == RN50
    checked = 0
    for name in list_models():
        for variant in (name, f"{name}-quickgelu"):
            if variant in shipped:
                mapped = config_from_open_clip(shipped[variant], variant).model
                assert mapped == get_config(variant), variant
                checked += 1
    assert checked >= 15


def test_unsupported_options_are_refused_by_name():
    for section, key, value in [
        ("vision_cfg", "ls_init_value", 1e-5),
        ("vision_cfg", "timm_model_name", "vit_base_patch16_224"),
        ("vision_cfg", "attentional_pool", True),
        ("text_cfg", "hf_model_name", "xlm-roberta-base"),
        ("text_cfg", "pool_type", "eos"),
        ("text_cfg", "proj_type", "mlp"),
    ]:
        raw = json.loads(json.dumps(VIT_B_32))
        raw[section][key] = value
        with pytest.raises(UserError, match=key):
            config_from_open_clip(raw)
    with pytest.raises(UserError, match="unknown OpenCLIP option 'made_up'"):
        config_from_open_clip({**VIT_B_32, "text_cfg": {**VIT_B_32["text_cfg"], "made_up": 1}})
    with pytest.raises(UserError, match="not an OpenCLIP model config"):
        config_from_open_clip({"vision_cfg": {}})


def test_preprocess_eps_and_logit_bias_are_mapped():
    raw = json.loads(json.dumps(VIT_B_32))
    raw["vision_cfg"]["norm_kwargs"] = {"eps": 1e-6}
    raw["text_cfg"]["norm_kwargs"] = {"eps": 1e-6}
    raw["init_logit_bias"] = -10
    raw["preprocess_cfg"] = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear",
                             "resize_mode": "squash"}  # fmt: skip
    spec = config_from_open_clip(raw)
    assert spec.model.vision.ln_eps == 1e-6 and spec.model.text.ln_eps == 1e-6
    assert spec.model.init_logit_bias == -10.0
    assert spec.preprocess == {"mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear",
                               "resize_mode": "squash"}  # fmt: skip
    raw["preprocess_cfg"]["resize_mode"] = "longest"
    with pytest.raises(UserError, match="resize_mode"):
        config_from_open_clip(raw)


@pytest.mark.parametrize("raw", [TINY_VIT, TINY_RN], ids=["vit", "resnet"])
def test_import_pt_safetensors_and_training_checkpoint(tmp_path, raw):
    (tmp_path / "cfg.json").write_text(json.dumps(raw))
    cfg = config_from_open_clip(raw).model
    state = openai_state(cfg)
    torch.save(state, tmp_path / "w.pt")
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ckpt.pt")
    results = [import_open_clip(tmp_path / n, tmp_path / "cfg.json") for n in ("w.pt", "w.safetensors", "ckpt.pt")]
    for imported in results:
        assert imported.config.model == cfg
        for key, value in results[0].state.items():
            assert torch.equal(imported.state[key], value), key
    # A registry-style CLIPConfig works as well as the JSON.
    assert import_open_clip(tmp_path / "w.pt", cfg).config.model == cfg


def test_import_needs_a_config(tmp_path):
    torch.save(openai_state(config_from_open_clip(TINY_VIT).model), tmp_path / "w.pt")
    with pytest.raises(UserError, match="carry no model config"):
        import_open_clip(tmp_path / "w.pt", None)


@pytest.mark.parametrize("custom_text", [False, True], ids=["CLIP", "CustomTextCLIP"])
def test_matches_openclip_reference(tmp_path, custom_text):
    oc = openclip_model_module()
    raw = {**TINY_VIT, "custom_text": custom_text}
    kwargs = {k: v for k, v in raw.items() if k != "custom_text"}
    torch.manual_seed(0)
    ref = randomize((oc.CustomTextCLIP if custom_text else oc.CLIP)(**kwargs))
    assert any(k.startswith("text.") for k in ref.state_dict()) == custom_text
    (tmp_path / "cfg.json").write_text(json.dumps(raw))
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "w.safetensors"))
    ours = build_model(import_open_clip(tmp_path / "w.safetensors", tmp_path / "cfg.json"))
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(2, 3, 32, 32, generator=g)
    ids = torch.zeros(2, 16, dtype=torch.long)
    ids[0] = torch.randint(1, 999, (16,), generator=g)
    ids[0, -1], ids[1, :3] = 999, torch.tensor([5, 6, 999])
    with torch.no_grad():
        d_img = (ours.encode_image(pixels) - ref.encode_image(pixels)).abs().max().item()
        d_txt = (ours.encode_text(ids) - ref.encode_text(ids)).abs().max().item()
    print(f"\nparity open_clip->clipforge vs OpenCLIP fp32 [custom_text={custom_text}]: image {d_img:.3g}, text {d_txt:.3g}")
    assert d_img <= FP32_TOL and d_txt <= FP32_TOL


def test_shape_mismatch_names_the_openclip_key(tmp_path):
    cfg = config_from_open_clip(TINY_VIT).model
    torch.save(openai_state(cfg), tmp_path / "w.pt")
    wider = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, context_length=32))
    with pytest.raises(UserError, match=r"shape mismatch for positional_embedding \(16, 64\)"):
        import_open_clip(tmp_path / "w.pt", wider)
