"""Parity with transformers' CLIPModel (the reference), tiny random weights, both directions.

Import: an HF CLIPModel folder -> clipforge; our encode_image / encode_text must equal HF's
get_image_features / get_text_features. Export: clipforge -> HF folder -> CLIPModel.from_pretrained, same check.
"""

from __future__ import annotations

import json

import pytest
import torch

from clipforge.convert.common import build_model
from clipforge.convert.hf import config_from_hf, export_hf, import_hf
from clipforge.errors import UserError

transformers = pytest.importorskip("transformers")

FP32_TOL = 1e-5
BF16_TOL = 5e-2  # bf16 keeps 8 mantissa bits: ~4e-3 relative per op, features here are O(1)
VOCAB = 1000


pytestmark = pytest.mark.usefixtures("one_thread")



def make_hf(tmp_path, act: str = "quick_gelu", eos: int = VOCAB - 1, seed: int = 0, **text):
    """A tiny random HF CLIPModel saved as a folder; every parameter (biases, norms too) is non-trivial."""
    torch.manual_seed(seed)
    cfg = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=16, hidden_act=act, eos_token_id=eos, bos_token_id=VOCAB - 2, pad_token_id=1,
            **text,
        ),
        vision_config=dict(
            hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=3, image_size=32,
            patch_size=8, hidden_act=act,
        ),
        projection_dim=24,
    )  # fmt: skip
    cfg._attn_implementation = "eager"  # the plain-math path: an independent reference for our SDPA path
    model = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    folder = tmp_path / f"hf-{act}-{eos}"
    model.save_pretrained(folder)
    return model, folder


def inputs(seed: int = 1, batch: int = 4, length: int = 16):
    """Images and token rows of different lengths; end-of-text (the highest id) ends each row, 0-padded."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, 32, 32, generator=g)
    ids = torch.zeros(batch, length, dtype=torch.long)
    for row, n in enumerate([length, 2, 7, length // 2][:batch]):
        ids[row, 0] = VOCAB - 2  # start of text
        ids[row, 1 : n - 1] = torch.randint(2, VOCAB - 2, (n - 2,), generator=g)
        ids[row, n - 1] = VOCAB - 1  # end of text
    return pixels, ids


def hf_features(model, pixels, ids):
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pixels)
        txt = model.get_text_features(input_ids=ids)
    # transformers 5 returns an output object whose pooler_output holds the projected features.
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    return img, txt


def ours_features(model, pixels, ids):
    with torch.no_grad():
        return model.encode_image(pixels.to(model.logit_scale.dtype)), model.encode_text(ids)


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_import_matches_transformers(tmp_path, act):
    hf, folder = make_hf(tmp_path, act)
    imported = import_hf(folder)
    assert imported.config.model.vision.act == imported.config.model.text.act == act
    ours = build_model(imported)
    pixels, ids = inputs()
    ref_img, ref_txt = hf_features(hf, pixels, ids)
    img, txt = ours_features(ours, pixels, ids)
    d_img, d_txt = max_abs(img, ref_img), max_abs(txt, ref_txt)
    print(f"\nparity import hf->clipforge fp32 [{act}]: image max-abs {d_img:.3g}, text max-abs {d_txt:.3g}")
    assert d_img <= FP32_TOL and d_txt <= FP32_TOL
    assert ref_img.abs().max() > 0.1 and ref_txt.abs().max() > 0.1  # not a comparison of near-zeros
    assert torch.equal(ours.logit_scale, hf.logit_scale)


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_export_matches_transformers(tmp_path, act):
    hf, folder = make_hf(tmp_path, act)
    imported = import_hf(folder)
    ours = build_model(imported)
    out = export_hf(ours.state_dict(), imported.config, tmp_path / "exported")
    back = transformers.CLIPModel.from_pretrained(out, attn_implementation="eager").eval()
    pixels, ids = inputs()
    img, txt = ours_features(ours, pixels, ids)
    ref_img, ref_txt = hf_features(back, pixels, ids)
    d_img, d_txt = max_abs(img, ref_img), max_abs(txt, ref_txt)
    print(f"\nparity export clipforge->hf fp32 [{act}]: image max-abs {d_img:.3g}, text max-abs {d_txt:.3g}")
    assert d_img <= FP32_TOL and d_txt <= FP32_TOL
    # The round trip is exact, weight for weight.
    original, exported = hf.state_dict(), back.state_dict()
    assert set(original) == set(exported)
    for key in original:
        assert torch.equal(original[key], exported[key]), key
    assert back.config.text_config.eos_token_id == VOCAB - 1


def test_bf16_parity(tmp_path):
    hf, folder = make_hf(tmp_path)
    ours = build_model(import_hf(folder)).to(torch.bfloat16)
    pixels, ids = inputs()
    ref_img, ref_txt = hf_features(hf, pixels, ids)  # fp32 reference
    img, txt = ours_features(ours, pixels, ids)
    d_img, d_txt = max_abs(img, ref_img), max_abs(txt, ref_txt)
    print(f"\nparity import hf->clipforge bf16 vs fp32 reference: image max-abs {d_img:.3g}, text {d_txt:.3g}")
    assert d_img <= BF16_TOL * ref_img.abs().max() and d_txt <= BF16_TOL * ref_txt.abs().max()


def test_legacy_eos_config_imports_and_exports_with_real_eos(tmp_path):
    """eos_token_id == 2 (old configs): transformers pools at argmax, as we do; export writes the real id."""
    hf, folder = make_hf(tmp_path, eos=2)
    imported = import_hf(folder)
    ours = build_model(imported)
    pixels, ids = inputs()
    _, ref_txt = hf_features(hf, pixels, ids)
    assert max_abs(ours_features(ours, pixels, ids)[1], ref_txt) <= FP32_TOL
    out = export_hf(ours.state_dict(), imported.config, tmp_path / "exported")
    assert json.loads((out / "config.json").read_text())["text_config"]["eos_token_id"] == VOCAB - 1


def test_eos_not_highest_id_is_refused(tmp_path):
    _, folder = make_hf(tmp_path, eos=5)
    with pytest.raises(UserError, match="eos_token_id 5"):
        import_hf(folder)


def test_config_mapping_defaults_and_errors():
    cfg = config_from_hf({"model_type": "clip", "text_config": {}, "vision_config": {}})
    assert (cfg.vision.width, cfg.vision.patch_size, cfg.vision.heads, cfg.vision.layers) == (768, 32, 12, 12)
    assert (cfg.text.width, cfg.text.heads, cfg.text.context_length, cfg.embed_dim) == (512, 8, 77, 512)
    assert cfg.vision.act == cfg.text.act == "quick_gelu"
    mixed = config_from_hf({"text_config": {"hidden_act": "gelu"}, "vision_config": {"hidden_act": "gelu_new"}})
    assert (mixed.text.act, mixed.vision.act) == ("gelu", "gelu_tanh")
    with pytest.raises(UserError, match=r"text_config.hidden_act 'relu' is not supported"):
        config_from_hf({"text_config": {"hidden_act": "relu"}, "vision_config": {}})
    with pytest.raises(UserError, match="not square"):
        config_from_hf({"vision_config": {"image_size": [224, 256]}})
    with pytest.raises(UserError, match="model_type"):
        config_from_hf({"model_type": "siglip"})


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = make_hf(tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    state.pop("text_model.final_layer_norm.bias")
    state["vision_model.extra.weight"] = torch.zeros(1)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError, match=r"missing keys \[text_model.final_layer_norm.bias\].*vision_model.extra"):
        import_hf(folder)


def test_shape_mismatch_names_the_foreign_parameter(tmp_path):
    _, folder = make_hf(tmp_path)
    raw = json.loads((folder / "config.json").read_text())
    raw["projection_dim"] = 16
    cfg_path = tmp_path / "other-config.json"
    cfg_path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match=r"shape mismatch for (visual|text)_projection.weight \(24, \d+\)"):
        import_hf(folder, config=cfg_path)


def test_resnet_cannot_be_exported(tmp_path):
    from clipforge.convert.common import pipeline_config
    from clipforge.model.registry import get_config

    with pytest.raises(UserError, match="ResNet"):
        export_hf({}, pipeline_config(get_config("tiny-resnet")), tmp_path / "x")


def test_pytorch_model_bin_folder(tmp_path):
    hf, folder = make_hf(tmp_path)
    torch.save(hf.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    ours = build_model(import_hf(folder))
    pixels, ids = inputs()
    assert max_abs(ours_features(ours, pixels, ids)[1], hf_features(hf, pixels, ids)[1]) <= FP32_TOL


def test_old_style_sub_config_dicts_override():
    raw = {"text_config": {"hidden_size": 256, "num_attention_heads": 4}, "text_config_dict": {"hidden_size": 128},
           "vision_config_dict": {"image_size": 336, "patch_size": 14}}  # fmt: skip
    cfg = config_from_hf(raw)
    assert (cfg.text.width, cfg.text.heads, cfg.vision.image_size, cfg.vision.patch_size) == (128, 4, 336, 14)


def test_preprocessor_config_is_read(tmp_path):
    _, folder = make_hf(tmp_path)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    prep = import_hf(folder).config.preprocess
    assert (prep.mean, prep.std, prep.image_size) == ((0.5,) * 3, (0.25,) * 3, 32)
