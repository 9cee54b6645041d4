"""The model families' parity table: per family and direction, the max-abs feature difference (fp32) against the
reference it was measured with; parameter counts against OpenCLIP's for every registered name; tokenizer ids.

References:
  import OpenCLIP  tests/reference/fixtures (tiny random instances built by OpenCLIP 3.3.0 + timm 1.0.31 itself,
                   their state dicts, inputs and features; see tests/reference/README.md)
  import HF        transformers' CLIPModel / SiglipModel / Siglip2Model (eager attention), tiny random weights
  export HF        the exported folder loaded by transformers: from_pretrained on the same tensors, and
                   AutoModel + AutoProcessor from a PIL image and a string against clipforge's own pipeline
  counts           tests/reference/fixtures/param_counts.json (open_clip.create_model(name), every name)
  tokenizer        AutoTokenizer on an HF folder; OpenCLIP's HFTokenizer (canonicalize) from the 3.3.0 wheel

    .venv/bin/python benchmarks/families_parity.py
writes benchmarks/results/families_parity.{json,md}.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the reference loaders and tiny-model builders live with the tests

import test_convert_hf as hf_clip  # noqa: E402
import test_convert_hf_siglip as hf_siglip  # noqa: E402
import test_convert_timm as timm_fixtures  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from test_convert_hf_roundtrip import clip_checkpoint, features_through_transformers, photo  # noqa: E402
from test_convert_mobileclip import NAMES as MOBILE_NAMES  # noqa: E402
from test_convert_mobileclip import fixture_config  # noqa: E402
from test_convert_open_clip_tokenizer import make_tokenizer, open_clip_tokenizer_module  # noqa: E402
from test_registry import COUNTS, n_params  # noqa: E402

from clipforge.checkpoint import save_checkpoint  # noqa: E402
from clipforge.convert.common import build_model  # noqa: E402
from clipforge.convert.export import export_checkpoint  # noqa: E402
from clipforge.convert.hf import export_hf, import_hf  # noqa: E402
from clipforge.convert.open_clip import config_from_open_clip, import_open_clip  # noqa: E402
from clipforge.pipeline import load  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIXTURES = ROOT / "tests" / "reference" / "fixtures"
OPENCLIP_REF = "OpenCLIP 3.3.0 + timm 1.0.31 (fixture)"
TEXTS = hf_siglip.TEXTS + ["a photo of a cat.", "snake_case_words and  spaces ", "&amp; entities &lt;b&gt;"]


def _d(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def _row(family: str, direction: str, reference: str, image: float, text: float, note: str = "") -> dict:
    return {"family": family, "direction": direction, "reference": reference, "image_max_abs": image,
            "text_max_abs": text, "note": note}  # fmt: skip


def open_clip_rows() -> list[dict]:
    rows = []
    for name in timm_fixtures.NAMES:
        model, meta = timm_fixtures.imported(FIXTURES / name)
        io = load_file(str(FIXTURES / name / "io.safetensors"))
        with torch.no_grad():
            img, txt = model.encode_image(io["pixels"]), model.encode_text(io["token_ids"])
        rows.append(_row(meta["imitates"], "import OpenCLIP", OPENCLIP_REF, _d(img, io["image_features"]),
                         _d(txt, io["text_features"]), f"fixture {name}"))  # fmt: skip
    for name in MOBILE_NAMES:
        meta = json.loads((FIXTURES / name / "meta.json").read_text())
        model = build_model(import_open_clip(FIXTURES / name / "model.safetensors", fixture_config(name)))
        io = load_file(str(FIXTURES / name / "io.safetensors"))
        with torch.no_grad():
            img, txt = model.encode_image(io["pixels"]), model.encode_text(io["token_ids"])
        rows.append(_row(meta["imitates"], "import OpenCLIP", OPENCLIP_REF, _d(img, io["image_features"]),
                         _d(txt, io["text_features"]), f"fixture {name}"))  # fmt: skip
    return rows


def hf_rows(tmp: Path) -> list[dict]:
    rows = []
    for kind, family in (("siglip", "SigLIP"), ("siglip2", "SigLIP 2 (NaFlex at its grid)")):
        ref, folder = hf_siglip.make_siglip(tmp / kind, kind)
        imported = import_hf(folder)
        ours = build_model(imported)
        pixels, ids = hf_siglip.inputs()
        ref_img, ref_txt = hf_siglip.hf_features(ref, pixels, ids)
        with torch.no_grad():
            img, txt = ours.encode_image(pixels), ours.encode_text(ids)
        rows.append(_row(family, "import HF", f"transformers {type(ref).__name__} (eager)", _d(img, ref_img),
                         _d(txt, ref_txt)))  # fmt: skip
        # SigLIP 2 exports as a SiglipModel too (its fixed-resolution form: patch embedding as a convolution).
        out = export_hf(ours.state_dict(), imported.config, tmp / f"{kind}-export", imported.tokenizer_json)
        back = hf_siglip.transformers.SiglipModel.from_pretrained(out, attn_implementation="eager").eval()
        exp_img, exp_txt = hf_siglip.hf_features(back, pixels, ids)
        rows.append(_row(family, "export HF", "transformers SiglipModel.from_pretrained (eager)",
                         _d(exp_img, img), _d(exp_txt, txt), "same tensors"))  # fmt: skip
        if kind == "siglip":
            ckpt = save_checkpoint(ours, imported.config, tmp / "siglip-ckpt", tokenizer_json=imported.tokenizer_json)
            rows.append(_processor_row(family, ckpt, tmp / "siglip-hf", "max_length"))
    ref, folder = hf_clip.make_hf(tmp / "clip", act="gelu")
    imported = import_hf(folder)
    ours = build_model(imported)
    pixels, ids = hf_clip.inputs()
    ref_img, ref_txt = hf_clip.hf_features(ref, pixels, ids)
    with torch.no_grad():
        img, txt = ours.encode_image(pixels), ours.encode_text(ids)
    rows.append(_row("CLIP / big plain ViTs", "import HF", "transformers CLIPModel (eager)", _d(img, ref_img),
                     _d(txt, ref_txt)))  # fmt: skip
    out = export_hf(ours.state_dict(), imported.config, tmp / "clip-export")
    back = hf_clip.transformers.CLIPModel.from_pretrained(out, attn_implementation="eager").eval()
    exp_img, exp_txt = hf_clip.hf_features(back, pixels, ids)
    rows.append(_row("CLIP / big plain ViTs", "export HF", "transformers CLIPModel.from_pretrained (eager)",
                     _d(exp_img, img), _d(exp_txt, txt), "same tensors"))  # fmt: skip
    rows.append(_processor_row("CLIP / big plain ViTs", clip_checkpoint(tmp / "clip-rt"), tmp / "clip-hf", True))
    return rows


def _processor_row(family: str, ckpt: Path, out: Path, padding) -> dict:
    export_checkpoint(ckpt, out, to="hf")
    pipeline = load(ckpt)
    texts = ["a photo of a cat", "Two DOGS,  running on the beach!"]
    ref_img, ref_txt, batch, _ = features_through_transformers(out, photo(), texts, padding)
    with torch.no_grad():
        pixels = pipeline.preprocess(photo()).unsqueeze(0).expand(len(texts), -1, -1, -1)
        img, txt = pipeline.model.encode_image(pixels), pipeline.model.encode_text(pipeline.tokenizer(texts))
    note = f"57x41 PIL image + 2 strings; pixel max-abs {_d(batch['pixel_values'], pixels):.3g}"
    return _row(family, "export HF", "transformers AutoModel + AutoProcessor", _d(img, ref_img), _d(txt, ref_txt), note)


def count_rows() -> list[dict]:
    return [{"name": n, "clipforge": n_params(n), "open_clip": COUNTS[n]} for n in sorted(COUNTS)]


def tokenizer_rows(tmp: Path) -> list[dict]:
    from transformers import AutoTokenizer

    rows = []
    for cls in ("PreTrainedTokenizerFast", "Siglip2Tokenizer"):
        _, folder = hf_siglip.make_siglip(tmp / cls)
        hf_siglip.make_tokenizer(folder, cls)
        imported = import_hf(folder)
        save_checkpoint(build_model(imported), imported.config, tmp / f"{cls}-ckpt", tokenizer_json=imported.tokenizer_json)
        ours = load(tmp / f"{cls}-ckpt").tokenizer(TEXTS)
        want = AutoTokenizer.from_pretrained(str(folder))(TEXTS, padding="max_length", truncation=True,
                                                         max_length=hf_siglip.CONTEXT, return_tensors="pt")["input_ids"]  # fmt: skip
        rows.append({"against": f"AutoTokenizer ({cls}), SigLIP HF folder",
                     "identical": [bool(torch.equal(a, b)) for a, b in zip(ours, want, strict=True)]})  # fmt: skip
    folder = make_tokenizer(tmp / "oc-tok")
    fixture = FIXTURES / "siglip_b16"
    model = config_from_open_clip(json.loads((fixture / "config.json").read_text()), "siglip_b16",
                                                json.loads((fixture / "meta.json").read_text())["timm_kwargs"]).model  # fmt: skip
    imported = import_open_clip(fixture / "model.safetensors", model, tokenizer=folder)
    save_checkpoint(build_model(imported), imported.config, tmp / "oc-ckpt", tokenizer_json=imported.tokenizer_json)
    ours = load(tmp / "oc-ckpt").tokenizer(TEXTS)

    module = open_clip_tokenizer_module(tmp / "oc-wheel")
    want = module.HFTokenizer(str(folder), context_length=64, clean="canonicalize")(TEXTS)
    rows.append({"against": "OpenCLIP 3.3.0 HFTokenizer (clean=canonicalize), convert --from open_clip --tokenizer",
                 "identical": [bool(torch.equal(a, b)) for a, b in zip(ours, want, strict=True)]})  # fmt: skip
    return rows


def write(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "families_parity.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    lines = ["# Model families: parity, parameter counts, tokenizer", "",
             "fp32 max-abs difference of unnormalized features (tiny random weights).", "",
             "| family | direction | reference | image max-abs | text max-abs | note |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["parity"]:
        lines.append(f"| {r['family']} | {r['direction']} | {r['reference']} | {r['image_max_abs']:.2g} | "
                     f"{r['text_max_abs']:.2g} | {r['note']} |")  # fmt: skip
    counts = result["param_counts"]
    equal = sum(c["clipforge"] == c["open_clip"] for c in counts)
    lines += ["", f"## Parameter counts: {equal} of {len(counts)} registered names equal OpenCLIP 3.3.0's", "",
              "| name | clipforge | OpenCLIP | equal |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {c['name']} | {c['clipforge']:,} | {c['open_clip']:,} | {c['clipforge'] == c['open_clip']} |"
              for c in counts]  # fmt: skip
    lines += ["", f"## Tokenizer ids ({len(TEXTS)} texts, padded and truncated to the context)", "",
              "| compared with | identical |", "|---|---|"]  # fmt: skip
    lines += [f"| {t['against']} | {sum(t['identical'])} of {len(t['identical'])} |" for t in result["tokenizer"]]
    lines += ["", "texts: " + " / ".join(repr(t) for t in TEXTS)]
    (RESULTS / "families_parity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"parity": open_clip_rows() + hf_rows(Path(tmp)), "param_counts": count_rows(),
                  "tokenizer": tokenizer_rows(Path(tmp)), "texts": TEXTS, "torch": torch.__version__}  # fmt: skip
    write(result)


if __name__ == "__main__":
    main()
