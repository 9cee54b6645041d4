"""The one config reader: strict everywhere, tower unions chosen by ``kind``, 0.1 checkpoints still read."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from clipforge.checkpoint import PipelineConfig, read_config
from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig, ResNetConfig, ViTConfig, with_activation
from clipforge.model.registry import get_config
from clipforge.train.config import TrainConfig, load_train_config
from clipforge.utils.configs import from_dict, resolve_config, to_dict


def test_union_member_is_chosen_by_kind():
    cfg = from_dict(CLIPConfig, {"vision": {"kind": "resnet", "layers": [1, 2, 1, 1], "width": 16}})
    assert cfg.vision == ResNetConfig(layers=(1, 2, 1, 1), width=16)
    assert from_dict(CLIPConfig, to_dict(get_config("ViT-B-16"))) == get_config("ViT-B-16")
    assert from_dict(CLIPConfig, to_dict(get_config("RN50"))) == get_config("RN50")


def test_union_without_kind_or_with_an_unknown_kind_is_refused():
    with pytest.raises(UserError, match=r"vision\.kind is missing") as info:
        from_dict(CLIPConfig, {"vision": {"width": 16}})
    assert "'vit'" in info.value.hint and "'resnet'" in info.value.hint
    with pytest.raises(UserError, match=r"vision\.kind = 'mlp' is not one of 'vit', 'resnet'"):
        from_dict(CLIPConfig, {"vision": {"kind": "mlp"}})


def test_fields_of_another_tower_kind_are_unknown_keys():
    with pytest.raises(UserError, match=r"unknown key 'vision\.patch_size'"):
        from_dict(CLIPConfig, {"vision": {"kind": "resnet", "patch_size": 16}})


def test_override_switching_tower_kind_starts_from_that_kinds_defaults():
    cfg = load_train_config(None, ["model=ViT-B-32", "model.vision.kind=resnet", "model.vision.width=32"])
    assert cfg.model.vision == ResNetConfig(width=32)
    same_kind = load_train_config(None, ["model=ViT-B-32", "model.vision.kind=vit", "model.vision.layers=3"])
    assert same_kind.model.vision == ViTConfig(image_size=224, patch_size=32, layers=3)


def test_strict_reader_names_the_key_and_source():
    with pytest.raises(UserError, match=r"ckpt/config.json: model.vision.width = 'wide' is not a valid int"):
        from_dict(PipelineConfig, {"model": {"vision": {"kind": "vit", "width": "wide"}}}, source="ckpt/config.json")
    with pytest.raises(UserError, match="did you mean batch_size"):
        resolve_config(TrainConfig, None, ["batch_sise=3"])


def test_checkpoint_config_written_by_version_0_1_is_read(tmp_path):
    """0.1 stored one VisionConfig with ``arch``; ResNets kept their blocks in ``resnet_layers``."""
    old = {
        "model": {
            "embed_dim": 16,
            "vision": {"arch": "resnet", "image_size": 64, "layers": 12, "resnet_layers": [1, 1, 2, 1], "width": 8,
                       "head_width": 64, "mlp_ratio": 4.0, "patch_size": 16, "ln_eps": 1e-5, "patch_dropout": 0.0},
            "text": to_dict(get_config("test-vit").text),
        },
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert read_config(tmp_path).model.vision == ResNetConfig(image_size=64, layers=(1, 1, 2, 1), width=8)
    old["model"]["vision"] = {"arch": "vit", "image_size": 32, "layers": 2, "resnet_layers": [3, 4, 6, 3],
                              "width": 32, "head_width": 16, "patch_size": 8}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert read_config(tmp_path).model.vision == ViTConfig(image_size=32, patch_size=8, width=32, layers=2, head_width=16)


@pytest.mark.parametrize("quick", [True, False])
@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_checkpoint_config_with_model_quick_gelu_is_read(tmp_path, quick, tower):
    """Up to 0.1 the model said ``quick_gelu`` for both towers; it is now each transformer tower's ``act``."""
    cfg = get_config("test-vit" if tower == "vit" else "tiny-resnet")
    old = to_dict(PipelineConfig(model=cfg))
    for key in ("act", "causal", "pool", "proj"):
        old["model"]["text"].pop(key)
    if tower == "vit":
        old["model"]["vision"].pop("act")
    old["model"]["quick_gelu"] = quick
    (tmp_path / "config.json").write_text(json.dumps(old))
    model = read_config(tmp_path).model
    act = "quick_gelu" if quick else "gelu"
    assert model.text.act == act
    assert model == (with_activation(cfg, act) if tower == "vit" else dataclasses.replace(
        cfg, text=dataclasses.replace(cfg.text, act=act)))


def test_unreadable_checkpoint_config_is_a_user_error(tmp_path):
    (tmp_path / "config.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    with pytest.raises(UserError, match="not a readable checkpoint config"):
        read_config(tmp_path)


def test_importing_clipforge_does_not_import_torch():
    """Every CLI start imports clipforge; `clipforge --help` must not wait for torch."""
    code = "import sys, clipforge, clipforge.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
