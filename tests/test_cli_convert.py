"""`clipforge convert` / `clipforge export` end to end on tiny random weights, and named pretrained models."""

from __future__ import annotations

import json

import pytest
import torch
from convert_reference import openai_state
from safetensors.torch import load_file
from test_convert_hf import FP32_TOL, hf_features, inputs, make_hf, max_abs, transformers

from clipforge.checkpoint import load_state_into, read_config
from clipforge.cli import main
from clipforge.errors import UserError
from clipforge.model.clip import CLIP
from clipforge.model.registry import get_config
from clipforge.pretrained import resolve_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")



def load_ckpt(path) -> CLIP:
    model = CLIP(read_config(path).model)
    load_state_into(model, load_file(str(path / "model.safetensors")), str(path))
    return model.eval()


def test_hf_convert_then_export(tmp_path, capsys):
    hf, folder = make_hf(tmp_path)
    assert main(["convert", "--from", "hf", str(folder), "--out", str(tmp_path / "ckpt")]) == 0
    assert "wrote" in capsys.readouterr().out
    cfg = read_config(tmp_path / "ckpt")
    assert (cfg.tokenizer.kind, cfg.tokenizer.context_length, cfg.preprocess.image_size) == ("openai", 16, 32)
    ours = load_ckpt(tmp_path / "ckpt")
    pixels, ids = inputs()
    ref_img, ref_txt = hf_features(hf, pixels, ids)
    with torch.no_grad():
        assert max_abs(ours.encode_image(pixels), ref_img) <= FP32_TOL
        assert max_abs(ours.encode_text(ids), ref_txt) <= FP32_TOL
    assert main(["export", "--to", "hf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf-out")]) == 0
    back = transformers.CLIPModel.from_pretrained(tmp_path / "hf-out").eval()
    for key, value in hf.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    prep = json.loads((tmp_path / "hf-out" / "preprocessor_config.json").read_text())
    assert prep["crop_size"] == {"height": 32, "width": 32}


def test_openai_convert_export_round_trip(tmp_path):
    cfg = get_config("test-vit-quickgelu")
    state = openai_state(cfg)
    torch.save(state, tmp_path / "w.pt")
    assert main(["convert", "--from", "openai", str(tmp_path / "w.pt"), "--config", "test-vit", "--out",
                 str(tmp_path / "ckpt")]) == 0  # fmt: skip
    assert read_config(tmp_path / "ckpt").model == cfg  # QuickGELU switched on for OpenAI weights
    assert main(["export", "--to", "openai", str(tmp_path / "ckpt"), "--out", str(tmp_path / "oa")]) == 0
    back = torch.load(tmp_path / "oa" / "model.pt", weights_only=True)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_open_clip_convert(tmp_path):
    raw = {"embed_dim": 16, "quick_gelu": True,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(raw))
    torch.save(openai_state(get_config("test-vit-quickgelu")), tmp_path / "w.pt")
    rc = main(["convert", "--from", "open_clip", str(tmp_path / "w.pt"), "--config", str(tmp_path / "cfg.json"),
               "--out", str(tmp_path / "ckpt")])  # fmt: skip
    assert rc == 0 and read_config(tmp_path / "ckpt").model == get_config("test-vit-quickgelu")


def test_cli_errors_are_one_line_messages(tmp_path, capsys):
    torch.save(openai_state(get_config("test-vit")), tmp_path / "w.pt")
    out = str(tmp_path / "o")
    assert main(["convert", "--from", "openai", str(tmp_path / "w.pt"), "--config", "ViT-B-99", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "unknown model name 'ViT-B-99'" in err and "RN50" in err and "ViT-L-14" in err
    assert main(["convert", "--from", "open_clip", str(tmp_path / "w.pt"), "--out", out]) == 2
    assert "carry no model config" in capsys.readouterr().err
    assert main(["convert", "--from", "openai", str(tmp_path / "nope.pt"), "--out", out]) == 2
    assert "nope.pt" in capsys.readouterr().err
    assert main(["convert", "--from", "openai", str(tmp_path / "w.pt"), "--config", "RN50", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "missing keys [transformer.resblocks.10." in err and "unexpected keys [visual.class_embedding," in err
    assert main(["export", "--to", "hf", str(tmp_path), "--out", out]) == 2
    assert "not a clipforge checkpoint" in capsys.readouterr().err


def test_help_has_examples(capsys):
    for verb in ("convert", "export"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert "examples:" in capsys.readouterr().out


def test_pretrained_offline_error_names_files_and_folder(tmp_path):
    with pytest.raises(UserError) as info:
        resolve_pretrained("openai/clip-vit-base-patch32", cache_dir=tmp_path, network=False, hub_cache_dir=tmp_path)
    text = str(info.value)
    assert "https://huggingface.co/openai/clip-vit-base-patch32/resolve/main/model.safetensors" in text
    assert "resolve/main/config.json" in text and str(tmp_path / "hf" / "openai--clip-vit-base-patch32") in text
    with pytest.raises(UserError, match="(?s)known pretrained name.*openai/clip-vit-large-patch14"):
        resolve_pretrained("runs/typo", cache_dir=tmp_path, network=False)


def test_pretrained_from_manual_folder_and_hub_cache(tmp_path):
    hf, folder = make_hf(tmp_path)
    manual = tmp_path / "cache" / "hf" / "openai--clip-vit-base-patch32"
    manual.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (manual / name).write_bytes((folder / name).read_bytes())
    ckpt = resolve_pretrained("openai/clip-vit-base-patch32", cache_dir=tmp_path / "cache", network=False)
    assert ckpt == tmp_path / "cache" / "converted" / "openai--clip-vit-base-patch32"
    pixels, ids = inputs()
    with torch.no_grad():
        assert max_abs(load_ckpt(ckpt).encode_image(pixels), hf_features(hf, pixels, ids)[0]) <= FP32_TOL
    # A Hugging Face hub cache in its own layout (models--ORG--NAME/refs/main -> snapshots/<rev>/...).
    hub = tmp_path / "hub"
    snap = hub / "models--someone--tiny-clip" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (hub / "models--someone--tiny-clip" / "refs").mkdir()
    (hub / "models--someone--tiny-clip" / "refs" / "main").write_text("abc123")
    for name in ("config.json", "model.safetensors"):
        (snap / name).write_bytes((folder / name).read_bytes())
    ckpt = resolve_pretrained("hf-hub:someone/tiny-clip", cache_dir=tmp_path / "cache", network=False,
                              hub_cache_dir=hub)  # fmt: skip
    assert read_config(ckpt).model.vision.width == 48


def test_load_pipeline_on_converted_checkpoint(tmp_path):
    import clipforge

    torch.save(openai_state(get_config("test-vit")), tmp_path / "w.pt")
    assert main(["convert", "--from", "openai", str(tmp_path / "w.pt"), "--config", "test-vit", "--out",
                 str(tmp_path / "ckpt")]) == 0  # fmt: skip
    pipe = clipforge.load(tmp_path / "ckpt")
    tokens = pipe.tokenizer(["a photo of a cat"])
    assert tokens.shape == (1, 16)
    with torch.no_grad():
        assert pipe.model.encode_text(tokens).shape == (1, 16)
