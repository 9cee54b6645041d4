"""The config system: defaults <- YAML <- key=value, typed, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig
from clipforge.train.config import TrainConfig, load_train_config, resolve_model
from clipforge.utils.configs import load_resolved, write_resolved

REPO = Path(__file__).resolve().parents[1]


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_then_file_then_overrides(tmp_path):
    path = _yaml(tmp_path, "batch_size: 32\noptim:\n  lr: 1.0e-3\n  betas: [0.9, 0.95]\ndata:\n  train: a.jsonl\n")
    cfg = load_train_config(path, ["optim.lr=2e-3", "data.workers=0", "model=test-vit", "tokenizer=1024"])
    assert cfg.batch_size == 32  # from the file
    assert cfg.optim.lr == 2e-3  # the override wins over the file
    assert cfg.optim.betas == (0.9, 0.95) and isinstance(cfg.optim.betas, tuple)
    assert cfg.optim.eps == TrainConfig().optim.eps  # untouched default
    assert cfg.data.train == "a.jsonl" and cfg.data.workers == 0
    assert cfg.model == "test-vit" and cfg.tokenizer == 1024


def test_int_is_accepted_for_float_and_yaml_exponent_strings(tmp_path):
    # YAML 1.1 reads "1e-3" (no dot) as a string; a float field must still take it.
    cfg = load_train_config(_yaml(tmp_path, "optim:\n  lr: 1e-3\n  weight_decay: 0\n"))
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.weight_decay, float)


def test_override_into_a_named_model_expands_it():
    cfg = load_train_config(None, ["model=test-vit", "model.vision.patch_dropout=0.5", "model.embed_dim=24"])
    assert isinstance(cfg.model, CLIPConfig)
    assert cfg.model.vision.patch_dropout == 0.5 and cfg.model.embed_dim == 24
    assert cfg.model.vision.width == 32  # the rest is test-vit's


def test_image_size_and_vocab_reach_the_model():
    model = resolve_model(load_train_config(None, ["model=test-vit", "image_size=48"]), vocab_size=1000)
    assert model.vision.image_size == 48 and model.text.vocab_size == 1000


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown key 'optim.lrr'"),
        ("nope=1", "unknown key 'nope'"),
        ("optim.lr=fast", "optim.lr = 'fast' is not a valid float"),
        ("batch_size=1.5", "batch_size = 1.5 is not a valid int"),
        ("precision=fp16", "precision = 'fp16'"),
        ("optim.betas=[0.9]", "must have 2 items"),
        ("compile=maybe", "compile = 'maybe' is not a valid bool"),
        ("tokenizer=words", "tokenizer = 'words'"),
        ("model=ViT-Z-99", "unknown model name 'ViT-Z-99'"),
        ("batch_size=0", "batch_size must be >= 1"),
        ("optim", "not of the form key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(UserError, match=None) as info:
        load_train_config(None, [override])
    assert message in str(info.value)


def test_unknown_key_in_file_names_the_file_and_suggests(tmp_path):
    path = _yaml(tmp_path, "optim:\n  wieght_decay: 0.1\n")
    with pytest.raises(UserError) as info:
        load_train_config(path)
    assert str(path) in str(info.value) and "optim.weight_decay" in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_train_config(tmp_path / "none.yaml")
    with pytest.raises(UserError, match="mapping"):
        load_train_config(_yaml(tmp_path, "- a\n- b\n"))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_train_config(None, ["model=test-vit", "model.vision.patch_dropout=0.25", "optim.lr=3e-4"])
    path = write_resolved(cfg, tmp_path)
    assert load_resolved(TrainConfig, path) == cfg


def test_demo_config_loads():
    cfg = load_train_config(REPO / "configs" / "runs" / "tiny-emoji.yaml")
    assert cfg.model.vision.kind == "resnet" and cfg.model.text.context_length == 16
    assert cfg.data.train == "data/emoji/trainval.jsonl"
    assert cfg.data.caption_column == "captions" and cfg.batch_size == 128


def test_a_trained_vocabulary_needs_room_beyond_the_bytes():
    with pytest.raises(UserError, match="vocab size >= 515"):
        load_train_config(None, ["tokenizer=300"])
