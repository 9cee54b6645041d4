"""``clipforge export --to hf`` end to end: transformers' AutoModel + AutoProcessor, given a PIL image and a string,
reproduce clipforge's features (its own preprocess and tokenizer on the same inputs); the exported folder imports
back with the same tokenizer and preprocessing. CLIPModel (OpenAI vocabulary) and SiglipModel (an imported
SentencePiece-style tokenizer)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from PIL import Image
from test_convert_hf_siglip import make_siglip

from clipforge.checkpoint import PipelineConfig, save_checkpoint
from clipforge.cli import main
from clipforge.convert import import_weights
from clipforge.convert.common import build_model
from clipforge.convert.hf import import_hf
from clipforge.data.config import PreprocessConfig
from clipforge.model.clip import CLIP
from clipforge.model.registry import get_config
from clipforge.pipeline import load
from clipforge.text.config import TokenizerConfig
from clipforge.text.tokenizer import train_tokenizer

transformers = pytest.importorskip("transformers")

FP32_TOL = 1e-5
TEXTS = ["a photo of a cat", "Two DOGS,  running on the beach!", "a much longer caption that runs past the sixteen "
         "tokens of this tiny context window, so it is truncated"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def photo(width: int = 57, height: int = 41) -> Image.Image:
    """A non-square RGB image with detail everywhere, so resize, crop and the filter all matter."""
    g = torch.Generator().manual_seed(3)
    pixels = (torch.rand(height, width, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


def clip_checkpoint(tmp_path, trained_vocab: bool = False):
    """A random test-vit CLIP (32 px, resize shortest side + centre crop), perturbed; OpenAI's vocabulary, or one
    trained by clipforge (tokenizer kind "file", as the tiny-emoji recipe's 2,048 ids)."""
    torch.manual_seed(0)
    cfg = get_config("test-vit")
    tokenizer_json = None
    tokenizer = TokenizerConfig(context_length=cfg.text.context_length)
    if trained_vocab:
        corpus = ["a photo of a cat", "two dogs running on the beach", "a red circle", "a long caption"] * 30
        trained = train_tokenizer(corpus, 600, context_length=cfg.text.context_length)
        cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, vocab_size=trained.vocab_size))
        tokenizer = TokenizerConfig(kind="file", context_length=cfg.text.context_length, vocab_size=trained.vocab_size)
        tokenizer_json = trained.to_json()
    model = CLIP(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    config = PipelineConfig(model=cfg, tokenizer=tokenizer, preprocess=PreprocessConfig(image_size=cfg.vision.image_size))
    return save_checkpoint(model, config, tmp_path / "ckpt", tokenizer_json=tokenizer_json)


def make_checkpoint(tmp_path, family: str):
    if family == "siglip":
        return siglip_checkpoint(tmp_path)
    return clip_checkpoint(tmp_path, trained_vocab=family == "clip-trained-vocab")


def siglip_checkpoint(tmp_path):
    _, folder = make_siglip(tmp_path, vision_act="gelu")
    imported = import_hf(folder)
    return save_checkpoint(build_model(imported), imported.config, tmp_path / "ckpt", tokenizer_json=imported.tokenizer_json)


def features_through_transformers(folder, image, texts, padding):
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    processor = transformers.AutoProcessor.from_pretrained(folder)
    batch = processor(text=texts, images=[image] * len(texts), return_tensors="pt", padding=padding, truncation=True)
    with torch.no_grad():
        img = model.get_image_features(pixel_values=batch["pixel_values"])
        txt = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"))
    return getattr(img, "pooler_output", img), getattr(txt, "pooler_output", txt), batch, processor


FAMILIES = ["clip", "clip-trained-vocab", "siglip"]


@pytest.mark.parametrize("family", FAMILIES)
def test_automodel_and_autoprocessor_reproduce_clipforge_features(tmp_path, family):
    ckpt = make_checkpoint(tmp_path, family)
    out = tmp_path / "hf"
    assert main(["export", "--to", "hf", str(ckpt), "--out", str(out)]) == 0
    for name in ("config.json", "model.safetensors", "processor_config.json", "preprocessor_config.json",
                 "tokenizer.json", "tokenizer_config.json"):  # fmt: skip
        assert (out / name).is_file(), name
    pipeline = load(ckpt)
    image = photo()
    # SigLIP reads the last position of a non-causal tower, so padding is part of its input (as for OpenCLIP's
    # and big_vision's SigLIP tokenizers); CLIP's causal tower reads the first end-of-text and is indifferent.
    padding = "max_length" if family == "siglip" else True
    ref_img, ref_txt, batch, processor = features_through_transformers(out, image, TEXTS, padding)
    with torch.no_grad():
        pixels = pipeline.preprocess(image).unsqueeze(0).expand(len(TEXTS), -1, -1, -1)
        ids = pipeline.tokenizer(TEXTS)
        img, txt = pipeline.model.encode_image(pixels), pipeline.model.encode_text(ids)
    d_pix = (batch["pixel_values"] - pixels).abs().max().item()
    d_img, d_txt = (img - ref_img).abs().max().item(), (txt - ref_txt).abs().max().item()
    print(f"\nHF round trip [{family}] AutoModel+AutoProcessor vs clipforge fp32: pixels max-abs {d_pix:.3g}, "
          f"image features {d_img:.3g}, text features {d_txt:.3g}")  # fmt: skip
    assert d_pix <= 1e-6 and d_img <= FP32_TOL and d_txt <= FP32_TOL
    assert ref_img.abs().max() > 0.1 and ref_txt.abs().max() > 0.1
    if family == "siglip":
        assert torch.equal(batch["input_ids"], ids)
    else:  # unpadded rows: each row's ids equal clipforge's up to its end-of-text
        for row, n in enumerate(batch["attention_mask"].sum(1).tolist()):
            assert batch["input_ids"][row, :n].tolist() == ids[row, :n].tolist()
        assert len(processor.tokenizer) == pipeline.tokenizer.vocab_size
    assert type(processor).__name__ == ("SiglipProcessor" if family == "siglip" else "CLIPProcessor")


@pytest.mark.parametrize("family", FAMILIES)
def test_exported_folder_imports_back_with_its_tokenizer_and_preprocessing(tmp_path, family):
    ckpt = make_checkpoint(tmp_path, family)
    out = tmp_path / "hf"
    assert main(["export", "--to", "hf", str(ckpt), "--out", str(out)]) == 0
    original = load(ckpt)
    back = import_weights("hf", out)
    assert back.config.preprocess == original.config.preprocess
    assert back.config.tokenizer == original.config.tokenizer  # a trained vocabulary comes back as kind "file"
    save_checkpoint(build_model(back), back.config, tmp_path / "back", tokenizer_json=back.tokenizer_json)
    assert torch.equal(load(tmp_path / "back").tokenizer(TEXTS), original.tokenizer(TEXTS))


def test_processor_config_json_is_read_when_it_is_the_only_file(tmp_path):
    """transformers 5 writes processor_config.json only: mean/std 0.5 must not fall back to CLIP's."""
    ckpt = clip_checkpoint(tmp_path)
    out = tmp_path / "hf"
    assert main(["export", "--to", "hf", str(ckpt), "--out", str(out)]) == 0
    (out / "preprocessor_config.json").unlink()
    nested = json.loads((out / "processor_config.json").read_text())
    nested["image_processor"].update(image_mean=[0.5] * 3, image_std=[0.5] * 3)
    (out / "processor_config.json").write_text(json.dumps(nested))
    prep = import_hf(out).config.preprocess
    want = load(ckpt).config.preprocess
    assert prep == dataclasses.replace(want, mean=(0.5,) * 3, std=(0.5,) * 3)
