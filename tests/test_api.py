"""The OpenCLIP-style Python API: list_models, list_pretrained, create, the zero-shot helper, --version."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image

import clipforge
from clipforge.checkpoint import save_checkpoint
from clipforge.errors import UserError
from clipforge.eval.templates import get_templates
from clipforge.eval.zeroshot import class_embeddings


def test_lists():
    assert "ViT-B-32" in clipforge.list_models() and "tiny-vit" in clipforge.list_models()
    assert "openai/clip-vit-base-patch32" in clipforge.list_pretrained()


def test_create_brings_the_models_own_sizes():
    pipe = clipforge.create("tiny-vit")
    cfg = pipe.config
    assert cfg.preprocess.image_size == cfg.model.vision.image_size == 64  # not PipelineConfig's 224 default
    assert cfg.tokenizer.context_length == cfg.model.text.context_length
    pixels = pipe.preprocess(Image.new("RGB", (100, 80), (200, 30, 30)))
    assert pixels.shape == (3, 64, 64)
    tokens = pipe.tokenizer(["a photo of a cat"])
    assert tokens.shape == (1, cfg.model.text.context_length)
    with torch.inference_mode():
        assert pipe.model.encode_image(pixels[None]).shape == pipe.model.encode_text(tokens).shape


def test_create_errors():
    with pytest.raises(UserError, match="nope"):
        clipforge.create("nope")


def test_create_with_pretrained_checks_the_architecture(tmp_path):
    pipe = clipforge.create("tiny-vit")
    save_checkpoint(pipe.model, pipe.config, tmp_path / "ckpt")
    loaded = clipforge.create("tiny-vit", pretrained=str(tmp_path / "ckpt"))
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(),
                                                   pipe.model.state_dict().values(), strict=True))
    with pytest.raises(UserError, match="another architecture"):
        clipforge.create("tiny-resnet", pretrained=str(tmp_path / "ckpt"))


def test_zero_shot_classifier_is_the_benchmarks_scoring():
    torch.manual_seed(0)
    pipe = clipforge.create("tiny-vit")
    names = ["cat", "dog", "red car"]
    clf = clipforge.zero_shot_classifier(pipe, names, templates="short")
    assert torch.allclose(clf.weights, class_embeddings(pipe, names, get_templates("short")))
    probs = clf.probabilities(Image.new("RGB", (64, 64), (10, 200, 10)))
    assert sorted(probs) == sorted(names) and abs(sum(probs.values()) - 1) < 1e-5
    values = list(probs.values())
    assert values == sorted(values, reverse=True)  # best first
    custom = clipforge.zero_shot_classifier(pipe, names, templates=["a photo of a {}."])
    assert not torch.allclose(custom.weights, clf.weights)


def test_version():
    out = subprocess.run([sys.executable, "-m", "clipforge", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"clipforge {clipforge.__version__}"
