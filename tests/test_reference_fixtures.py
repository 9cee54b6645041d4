"""The OpenCLIP 3.3.0 + timm reference fixtures (tests/reference/) are present, readable and self-consistent.

The fixtures are written by tests/reference/make_open_clip_fixtures.py in a separate environment (see
tests/reference/README.md); these checks need only safetensors and torch, so they run everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

FIXTURES = Path(__file__).resolve().parent / "reference" / "fixtures"
INDEX = json.loads((FIXTURES / "index.json").read_text())
NAMES = sorted(INDEX["fixtures"])
PARAM_COUNTS = json.loads((FIXTURES / "param_counts.json").read_text())
# Every family the new towers must import, by the OpenCLIP name each fixture imitates.
REQUIRED = {
    "ViT-B-16-SigLIP", "ViT-B-16-SigLIP2", "ViT-SO400M-14-SigLIP", "EVA02-B-16", "EVA02-L-14", "PE-Core-B-16",
    "ViT-bigG-14", "MobileCLIP-S1", "MobileCLIP2-S3", "MobileCLIP-B", "MobileCLIP2-L-14",
}
REPARAM = [n for n in NAMES if "image_features_reparam" in json.loads((FIXTURES / n / "meta.json").read_text())["shapes"]]
TOTAL_LIMIT = 8 * 2**20  # the fixtures are checked in: keep them a few MB


def _read(name: str) -> tuple[dict, dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    folder = FIXTURES / name
    config = json.loads((folder / "config.json").read_text())
    meta = json.loads((folder / "meta.json").read_text())
    return config, meta, load_file(folder / "model.safetensors"), load_file(folder / "io.safetensors")


def _text_prefix(state: dict[str, torch.Tensor]) -> str:
    """OpenCLIP's CustomTextCLIP nests the text tower under ``text.``; its CLIP class keeps it at top level."""
    return "text." if "text.token_embedding.weight" in state else ""


def test_index_lists_every_fixture_folder_and_the_required_families():
    folders = {p.name for p in FIXTURES.iterdir() if p.is_dir()}
    assert folders == set(NAMES)
    assert len(REPARAM) == 3  # MobileCLIP-S*, MobileCLIP2-S3/S4 and MobileCLIP-B towers
    assert {entry["imitates"] for entry in INDEX["fixtures"].values()} >= REQUIRED
    assert INDEX["versions"]["open_clip"] == "3.3.0"


def test_fixtures_stay_small():
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < TOTAL_LIMIT, f"fixtures are {total / 2**20:.1f} MB"


@pytest.mark.parametrize("name", NAMES)
def test_fixture_tensors_are_finite_and_shaped_by_its_config(name):
    config, meta, state, io = _read(name)
    text_cfg, size = config["text_cfg"], config["vision_cfg"]["image_size"]
    batch = io["pixels"].shape[0]
    assert io["pixels"].shape == (batch, 3, size, size)
    assert io["token_ids"].dtype == torch.int64
    assert io["token_ids"].shape == (batch, text_cfg["context_length"])
    assert int(io["token_ids"].min()) >= 0 and int(io["token_ids"].max()) < text_cfg["vocab_size"]
    for key in ("image_features", "text_features"):
        assert io[key].shape == (batch, config["embed_dim"]), key
    for key, tensor in {**state, **io}.items():
        if tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), key
    assert {k: list(v.shape) for k, v in io.items()} == meta["shapes"]
    prefix = _text_prefix(state)
    assert state[f"{prefix}token_embedding.weight"].shape == (text_cfg["vocab_size"], text_cfg["width"])
    assert state[f"{prefix}positional_embedding"].shape == (text_cfg["context_length"], text_cfg["width"])


@pytest.mark.parametrize("name", NAMES)
def test_outputs_belong_to_the_saved_weights(name):
    config, meta, state, io = _read(name)
    assert torch.equal(io["logit_scale"], state["logit_scale"])
    assert ("logit_bias" in state) == ("init_logit_bias" in config) == ("logit_bias" in io)
    if "logit_bias" in io:
        assert torch.equal(io["logit_bias"], state["logit_bias"])
    # The two rows of each input differ, so a fixture whose outputs repeat one row would be broken.
    for key in ("pixels", "token_ids", "image_features", "text_features"):
        assert not torch.equal(io[key][0], io[key][1]), key
    vision_keys = [k for k in state if k.startswith("visual.")]
    assert vision_keys and all(state[k].numel() for k in vision_keys)


@pytest.mark.parametrize("name", REPARAM)
def test_reparameterized_tower_matches_the_trained_form(name):
    _, meta, state, io = _read(name)
    torch.testing.assert_close(io["image_features_reparam"], io["image_features"], atol=1e-5, rtol=1e-5)
    path = FIXTURES / name / "reparam.safetensors"
    assert path.is_file() == meta["reparam_changes_state_dict"]
    if path.is_file():
        with safe_open(path, "pt") as fused:
            keys = set(fused.keys())
        assert any(".reparam_conv." in k for k in keys)
        assert {k for k in state if not k.startswith("visual.")} <= keys  # only the image tower is fused


def test_param_counts_cover_every_fixture_and_add_up():
    models = PARAM_COUNTS["models"]
    assert PARAM_COUNTS["versions"]["open_clip"] == "3.3.0"
    check = PARAM_COUNTS["real_build_check"]
    assert check["meta_total"] == check["real_total"]
    for entry in INDEX["fixtures"].values():
        for model_name in (entry["imitates"], *entry["also_covers"]):
            assert model_name in models, model_name
    for model_name, entry in models.items():
        counts = entry["params"]
        assert counts["total"] == counts["vision"] + counts["text"] + counts["logit"] > 0, model_name
        assert {"embed_dim", "vision_cfg", "text_cfg"} <= set(entry["config"]), model_name
    for by_name in PARAM_COUNTS["fixture_coverage"].values():
        assert all(by_name.values()), by_name


@pytest.mark.parametrize("name", NAMES)
def test_fixture_meta_agrees_with_the_counted_config(name):
    _, meta, _, _ = _read(name)
    assert meta["real_config"] == PARAM_COUNTS["models"][meta["imitates"]]["config"]
    assert meta["versions"] == PARAM_COUNTS["versions"] == INDEX["versions"]
