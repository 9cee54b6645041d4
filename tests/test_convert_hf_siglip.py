"""Parity with transformers' SiglipModel and Siglip2Model (the reference), tiny random weights, both directions,
and the folder's tokenizer: our ids equal AutoTokenizer's (padding and truncation included)."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from clipforge.checkpoint import save_checkpoint
from clipforge.convert.common import build_model
from clipforge.convert.hf import export_hf, import_hf
from clipforge.errors import UserError
from clipforge.pipeline import load

transformers = pytest.importorskip("transformers")

FP32_TOL = 1e-5
VOCAB = 300
CONTEXT = 12
TEXTS = ["a photo of a cat", "A Photo of TWO dogs, running!", "", "  spaces   everywhere ",
         "a much longer caption that certainly runs past the twelve tokens of this tiny context window",
         "unseen wordz qqq", "émoji 🙂 and ünïcode"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def make_tokenizer(folder, tokenizer_class: str = "PreTrainedTokenizerFast") -> None:
    """A small SentencePiece-style Unigram tokenizer (pad 0, eos 1, unk 2), "$A </s>" as SigLIP's appends eos."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    corpus = ["a photo of a cat", "a photo of two dogs", "running cats and dogs", "a caption about photos"] * 20
    trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    settings = {"tokenizer_class": tokenizer_class, "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                "model_max_length": CONTEXT}  # fmt: skip
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))


def make_siglip(tmp_path, kind: str = "siglip", vision_act: str = "gelu_pytorch_tanh", seed: int = 0):
    torch.manual_seed(seed)
    text = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=CONTEXT, projection_size=48)  # fmt: skip
    vision = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=3, patch_size=8,
                  hidden_act=vision_act)  # fmt: skip
    if kind == "siglip":
        cfg = transformers.SiglipConfig(text_config=text, vision_config={**vision, "image_size": 32})
        model = transformers.SiglipModel(cfg)
    else:
        cfg = transformers.Siglip2Config(text_config=text, vision_config={**vision, "num_patches": 16})
        model = transformers.Siglip2Model(cfg)
    cfg._attn_implementation = "eager"  # the plain-math path: an independent reference for our SDPA path
    model = model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    folder = tmp_path / f"hf-{kind}"
    model.save_pretrained(folder)
    make_tokenizer(folder)
    return model, folder


def inputs(seed: int = 1, batch: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, VOCAB, (batch, CONTEXT), generator=g)


def patches(pixels: torch.Tensor, p: int = 8) -> torch.Tensor:
    """Siglip2's input layout: (B, N, p * p * C) patches in (row, column, channel) order."""
    b, c, h, w = pixels.shape
    x = pixels.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # (B, gh, gw, p, p, C)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def hf_features(model, pixels, ids):
    with torch.no_grad():
        if isinstance(model, transformers.Siglip2Model):
            grid = pixels.shape[-1] // 8
            kwargs = dict(pixel_values=patches(pixels), pixel_attention_mask=torch.ones(len(pixels), grid * grid,
                          dtype=torch.long), spatial_shapes=torch.tensor([[grid, grid]] * len(pixels)))  # fmt: skip
        else:
            kwargs = dict(pixel_values=pixels)
        img = model.get_image_features(**kwargs)
        txt = model.get_text_features(input_ids=ids)
    return getattr(img, "pooler_output", img), getattr(txt, "pooler_output", txt)


def max_abs(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("kind", ["siglip", "siglip2"])
def test_import_matches_transformers(tmp_path, kind):
    hf, folder = make_siglip(tmp_path, kind)
    imported = import_hf(folder)
    cfg = imported.config.model
    assert (cfg.vision.pool, cfg.vision.proj, cfg.text.pool, cfg.text.causal) == ("map", "none", "last", False)
    ours = build_model(imported)
    pixels, ids = inputs()
    ref_img, ref_txt = hf_features(hf, pixels, ids)
    with torch.no_grad():
        img, txt = ours.encode_image(pixels), ours.encode_text(ids)
    d_img, d_txt = max_abs(img, ref_img), max_abs(txt, ref_txt)
    print(f"\nparity import {kind}->clipforge fp32: image max-abs {d_img:.3g}, text max-abs {d_txt:.3g}")
    assert d_img <= FP32_TOL and d_txt <= FP32_TOL
    assert ref_img.abs().max() > 0.1 and ref_txt.abs().max() > 0.1
    assert torch.equal(ours.logit_scale, hf.logit_scale.reshape(()))
    assert torch.equal(ours.logit_bias, hf.logit_bias.reshape(()))
    assert imported.config.preprocess.resize_mode == "squash" and imported.config.preprocess.mean == (0.5, 0.5, 0.5)


def test_export_matches_transformers_and_round_trips(tmp_path):
    hf, folder = make_siglip(tmp_path, vision_act="gelu")
    imported = import_hf(folder)
    ours = build_model(imported)
    out = export_hf(ours.state_dict(), imported.config, tmp_path / "exported", tokenizer_json=imported.tokenizer_json)
    back = transformers.SiglipModel.from_pretrained(out, attn_implementation="eager").eval()
    pixels, ids = inputs()
    with torch.no_grad():
        img, txt = ours.encode_image(pixels), ours.encode_text(ids)
    ref_img, ref_txt = hf_features(back, pixels, ids)
    d_img, d_txt = max_abs(img, ref_img), max_abs(txt, ref_txt)
    print(f"\nparity export clipforge->siglip fp32: image max-abs {d_img:.3g}, text max-abs {d_txt:.3g}")
    assert d_img <= FP32_TOL and d_txt <= FP32_TOL
    original, exported = hf.state_dict(), back.state_dict()
    assert set(original) == set(exported)
    for key in original:
        assert torch.equal(original[key], exported[key]), key
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["image_processor_type"] == "SiglipImageProcessor" and "crop_size" not in processor


@pytest.mark.parametrize("tokenizer_class", ["PreTrainedTokenizerFast", "Siglip2Tokenizer"])
def test_tokenizer_ids_equal_autotokenizer(tmp_path, tokenizer_class):
    """Siglip2Tokenizer lower-cases on load: the imported pipeline must do what transformers does, not the file."""
    _, folder = make_siglip(tmp_path)
    make_tokenizer(folder, tokenizer_class)
    imported = import_hf(folder)
    assert imported.config.tokenizer.kind == "hf" and imported.tokenizer_json is not None
    save_checkpoint(build_model(imported), imported.config, tmp_path / "ckpt", tokenizer_json=imported.tokenizer_json)
    ours = load(tmp_path / "ckpt").tokenizer(TEXTS)
    ref = transformers.AutoTokenizer.from_pretrained(str(folder))
    want = ref(TEXTS, padding="max_length", truncation=True, max_length=CONTEXT, return_tensors="pt")["input_ids"]
    assert ours.shape == (len(TEXTS), CONTEXT)
    assert torch.equal(ours, want), f"\nours {ours.tolist()}\nwant {want.tolist()}"
    assert (ours[4] != ref.pad_token_id).all() and ours[4, -1] == ref.eos_token_id  # truncated, ends with eos
    print(f"\ntokenizer ids [{tokenizer_class}]: {len(TEXTS)} texts identical to AutoTokenizer's")


def test_vocabulary_mismatch_fails_before_writing(tmp_path):
    _, folder = make_siglip(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["vocab_size"] = 10  # the tokenizer has more ids than that
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"tokenizer has \d+ ids but the model's text embedding only 10"):
        import_hf(folder)


def test_unsupported_family_names_it_and_the_supported_ones(tmp_path):
    folder = tmp_path / "blip"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "blip", "architectures": ["BlipModel"]}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match=r"model_type 'blip' \(BlipModel\) is not supported") as info:
        import_hf(folder)
    assert "siglip (SiglipModel)" in info.value.hint and "clip (CLIPModel)" in info.value.hint
