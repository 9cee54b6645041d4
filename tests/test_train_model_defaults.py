"""Choosing a model brings its image size, text context and tokenizer (a mismatch the user set is a warning); a
resumed run reads the config it was trained with."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from clipforge.cli import main
from clipforge.errors import UserError
from clipforge.train.config import config_for_resume, load_train_config, resolve_model

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "runs" / "tiny-emoji.yaml"


def test_a_model_on_the_command_line_brings_its_sizes_over_the_recipes(caplog):
    with caplog.at_level(logging.INFO, logger="clipforge.train"):
        cfg = load_train_config(RECIPE, ["data.train=my_pairs.csv", "model=ViT-B-32"])
    assert cfg.image_size == 224 and cfg.preprocess.image_size == 224  # not the recipe's 32 (one patch per image)
    assert cfg.tokenizer == "openai"  # not the recipe's 4,096 trained tokens
    model = resolve_model(cfg)
    assert model.vision.image_size == 224 and model.text.context_length == 77 and model.text.vocab_size == 49408
    assert "image_size 32 -> 224" in caplog.text and "tokenizer 4096 -> openai" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_recipe_keeps_its_own_sizes_silently(caplog):
    with caplog.at_level(logging.INFO, logger="clipforge.train"):
        cfg = load_train_config(RECIPE)
    assert cfg.image_size == 32 and cfg.preprocess.image_size == 32 and cfg.tokenizer == 4096
    assert resolve_model(cfg).text.context_length == 16
    assert caplog.text == ""


def test_sizes_set_beside_the_model_are_kept_with_a_warning_saying_what_they_imply(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="clipforge.train"):
        cfg = load_train_config(RECIPE, ["model=ViT-B-32", "image_size=32", "tokenizer=2048"])
    assert cfg.image_size == 32 and cfg.preprocess.image_size == 32 and cfg.tokenizer == 2048
    assert "1x1 grid of 32-px patches (1 token per image) instead of the 7x7" in caplog.text
    assert "2,048-token vocabulary" in caplog.text

    caplog.clear()  # the same in one YAML: the model and the size were chosen together
    path = tmp_path / "run.yaml"
    path.write_text("model: RN50\nimage_size: 64\npreprocess:\n  image_size: 96\n")
    with caplog.at_level(logging.WARNING, logger="clipforge.train"):
        cfg = load_train_config(path)
    assert cfg.image_size == 64 and cfg.preprocess.image_size == 64
    assert "image_size=64 with RN50: 8% of the pixels of the 224 px" in caplog.text
    assert "preprocess.image_size=96 is not used" in caplog.text


def test_a_vocabulary_the_bundled_tokenizer_cannot_fill_is_an_error_with_a_hint():
    with pytest.raises(UserError, match="32,000 ids") as info:
        load_train_config(None, ["model=ViT-B-16-SigLIP"])
    assert "tokenizer=32000" in str(info.value)
    assert load_train_config(None, ["model=ViT-B-16-SigLIP", "tokenizer=32000"]).tokenizer == 32000


def test_print_config_shows_what_will_be_trained(capsys):
    assert main(["train", str(RECIPE), "data.train=my_pairs.csv", "model=ViT-B-32", "--print-config"]) == 0
    out = capsys.readouterr().out
    header, body = out.split("\n", 1)
    assert header == ("# trains ViT-B-32: 224 px images (7x7 patches of 32 px), text context 77 tokens, "
                      "OpenAI's tokenizer (49,408 ids), embed_dim 512")  # fmt: skip
    printed = yaml.safe_load(body)
    assert printed["image_size"] == 224 and printed["preprocess"]["image_size"] == 224
    assert printed["tokenizer"] == "openai" and printed["model"] == "ViT-B-32"


def test_a_resumed_run_reads_the_config_it_was_trained_with(tmp_path, caplog):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(f"run_dir: {run}\nsteps: 4\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"run_dir: {run}\nsteps: 1\n")
    assert config_for_resume(recipe, ["steps=9"], "latest") == (recipe, ["steps=9"])  # no checkpoint yet: fresh
    (run / "checkpoints" / "step_00000004.pt").write_bytes(b"")

    saved = run / "config.yaml"
    for resume in (str(run), str(run / "checkpoints" / "step_00000004.pt")):
        assert config_for_resume(None, ["steps=9"], resume) == (saved, [f'run_dir="{run}"', "steps=9"])
    with caplog.at_level(logging.WARNING, logger="clipforge.train"):
        assert config_for_resume(recipe, ["steps=9"], "latest") == (saved, ["steps=9"])
    assert f"{recipe} is not read" in caplog.text
    assert load_train_config(*config_for_resume(None, ["steps=9"], str(run))).steps == 9
