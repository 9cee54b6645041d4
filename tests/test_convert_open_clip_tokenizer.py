"""``convert --from open_clip --tokenizer``: SigLIP names use Hugging Face SentencePiece-style tokenizers that cannot
be downloaded here. With the tokenizer given, the converted checkpoint's ids equal OpenCLIP's own HFTokenizer
(its open_clip/tokenizer.py, read from the open_clip_torch 3.3.0 wheel; canonicalize cleaning, padding and
truncation included) and its features OpenCLIP's (tests/reference fixtures). Without it, or with one that does not
fit, convert fails before anything is written; unsupported families are named with the supported ones."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import pytest
import torch
from convert_reference import wheel_path
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from clipforge.checkpoint import save_checkpoint
from clipforge.cli import main
from clipforge.convert import convert_checkpoint
from clipforge.convert.common import build_model
from clipforge.convert.open_clip import config_from_open_clip, import_open_clip
from clipforge.errors import UserError
from clipforge.pipeline import load
from clipforge.text.clean import open_clip_clean

FIXTURE = "tests/reference/fixtures/siglip_b16"
FP32_TOL = 1e-5
TEXTS = ["a photo of a cat.", "A Photo of TWO dogs, running!", "", "snake_case_words and  spaces ",
         "a much longer caption " * 12, "&amp; unseen wordz qqq", "émoji 🙂 and ünïcode"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def make_tokenizer(folder, extra: int = 0):
    """A SentencePiece-style Unigram tokenizer (pad 0, eos 1, unk 2) as SigLIP's: eos appended, right padding."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    corpus = ["a photo of a cat", "a photo of two dogs", "running cats and dogs", "snake case words and spaces"] * 20
    trainer = trainers.UnigramTrainer(vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.add_tokens([f"extra{i}" for i in range(extra)])  # a vocabulary larger than the model's
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>",
                "unk_token": "<unk>"}  # fmt: skip
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    return folder


def open_clip_tokenizer_module(tmp_path):
    """open_clip/tokenizer.py from the wheel (it imports ftfy, regex, numpy and torch only)."""
    if not wheel_path().is_file():
        pytest.skip(f"open_clip wheel not at {wheel_path()}")
    with zipfile.ZipFile(wheel_path()) as wheel:
        wheel.extract("open_clip/tokenizer.py", tmp_path / "oc")
        wheel.extract("open_clip/bpe_simple_vocab_16e6.txt.gz", tmp_path / "oc")
    spec = importlib.util.spec_from_file_location("_openclip_tokenizer", tmp_path / "oc" / "open_clip" / "tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def fixture_model():
    """The fixture's model config: its OpenCLIP config with the timm sizes it was built with (meta.json)."""
    raw = json.loads(Path(FIXTURE, "config.json").read_text())
    meta = json.loads(Path(FIXTURE, "meta.json").read_text())
    return config_from_open_clip(raw, FIXTURE, meta["timm_kwargs"]).model


def siglip_config_file(tmp_path):
    """An OpenCLIP config naming SigLIP's Hugging Face tokenizer, as every SigLIP config does (an OpenAI-style
    tower, since a config file cannot carry the fixture's timm sizes; the error comes before the weights)."""
    raw = {"embed_dim": 16, "init_logit_bias": -10,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 64, "vocab_size": 256, "width": 32, "heads": 2, "layers": 2,
                        "hf_tokenizer_name": "timm/ViT-B-16-SigLIP", "tokenizer_kwargs": {"clean": "canonicalize"}}}  # fmt: skip
    (tmp_path / "siglip.json").write_text(json.dumps(raw))
    return tmp_path / "siglip.json"


def convert(tmp_path, *extra: str) -> int:
    return main(["convert", "--from", "open_clip", f"{FIXTURE}/model.safetensors", "--config",
                 str(siglip_config_file(tmp_path)), "--out", str(tmp_path / "ckpt"), *extra])  # fmt: skip


def test_converted_siglip_tokenizes_as_open_clip_and_matches_its_features(tmp_path):
    pytest.importorskip("transformers")  # OpenCLIP's HFTokenizer runs AutoTokenizer
    folder = make_tokenizer(tmp_path / "tok")
    imported = import_open_clip(f"{FIXTURE}/model.safetensors", fixture_model(), tokenizer=folder / "tokenizer.json")
    save_checkpoint(build_model(imported), imported.config, tmp_path / "ckpt", tokenizer_json=imported.tokenizer_json)
    pipeline = load(tmp_path / "ckpt")
    cfg = pipeline.config.tokenizer
    assert (cfg.kind, cfg.clean, cfg.context_length) == ("hf", "canonicalize", 64)
    reference = open_clip_tokenizer_module(tmp_path).HFTokenizer(str(folder), context_length=64, clean="canonicalize")
    want = reference(TEXTS)
    ours = pipeline.tokenizer(TEXTS)
    assert torch.equal(ours, want), f"\nours {ours.tolist()}\nwant {want.tolist()}"
    assert (ours[4] != 0).all() and ours[4, -1] == 1  # truncated to 64, still ends with eos
    print(f"\ntokenizer ids [open_clip HFTokenizer, canonicalize]: {len(TEXTS)} texts identical")
    io = load_file(f"{FIXTURE}/io.safetensors")
    with torch.no_grad():
        d_img = (pipeline.model.encode_image(io["pixels"]) - io["image_features"]).abs().max().item()
        d_txt = (pipeline.model.encode_text(io["token_ids"]) - io["text_features"]).abs().max().item()
    assert d_img <= FP32_TOL and d_txt <= FP32_TOL


def test_open_clip_clean_modes():
    assert open_clip_clean("  A_Photo, of  a CAT! ", "canonicalize") == "a photo of a cat"
    assert open_clip_clean("  A Photo,\tof &amp; CAT ", "lower") == "a photo, of & cat"
    assert open_clip_clean("  A Photo,\tof &amp; CAT ", "whitespace") == "A Photo, of & CAT"
    assert open_clip_clean(" As Is ", "none") == " As Is "


def test_siglip_without_tokenizer_fails_before_writing(tmp_path, capsys):
    assert convert(tmp_path) == 2
    err = capsys.readouterr().err
    assert "Hugging Face tokenizer timm/ViT-B-16-SigLIP (256 ids)" in err and "--tokenizer" in err
    assert not (tmp_path / "ckpt").exists()


def test_registry_style_siglip_without_tokenizer_is_refused():
    with pytest.raises(UserError, match=r"uses its own tokenizer \(256 ids\)"):
        import_open_clip(f"{FIXTURE}/model.safetensors", fixture_model())


def test_tokenizer_with_more_ids_than_the_model_fails_before_writing(tmp_path):
    folder = make_tokenizer(tmp_path / "tok", extra=300)
    with pytest.raises(UserError, match=r"tokenizer has \d+ ids but the model's text embedding only 256"):
        convert_checkpoint("open_clip", f"{FIXTURE}/model.safetensors", tmp_path / "ckpt",
                           str(siglip_config_file(tmp_path)), tokenizer=str(folder))  # fmt: skip
    assert not (tmp_path / "ckpt").exists()


def test_tokenizer_argument_errors(tmp_path, capsys):
    (tmp_path / "spiece.model").write_bytes(b"\x00")
    assert convert(tmp_path, "--tokenizer", str(tmp_path / "spiece.model")) == 2
    assert "not a tokenizer.json" in capsys.readouterr().err
    assert convert(tmp_path, "--tokenizer", str(tmp_path / "missing")) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["convert", "--from", "hf", str(tmp_path), "--tokenizer", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--tokenizer is for --from open_clip" in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize(
    ("raw", "family"),
    [
        ({"embed_dim": 16, "vision_cfg": {"image_size": 32}, "text_cfg": {"width": 16},
          "multimodal_cfg": {"width": 16}}, "CoCa"),  # fmt: skip
        ({"embed_dim": 16, "vision_cfg": {"image_size": 32},
          "text_cfg": {"hf_model_name": "xlm-roberta-base", "hf_tokenizer_name": "xlm-roberta-base"}}, "Hugging Face"),
        ({"embed_dim": 16, "vision_cfg": {"timm_model_name": "convnext_base"}, "text_cfg": {"width": 16}}, "convnext"),
    ],
)  # fmt: skip
def test_unsupported_open_clip_family_names_it_and_the_supported_ones(raw, family):
    with pytest.raises(UserError) as info:
        config_from_open_clip(raw, "cfg.json")
    text = f"{info.value} {info.value.hint}"
    assert family in text, text
    for supported in ("SigLIP", "EVA", "Perception Encoder", "MobileCLIP"):
        assert supported in text, text
