"""Weight-conversion parity: max-abs difference of image/text features, per tower, direction and dtype.

References: transformers' CLIPModel (HF import and export) and, when its wheel is in .whl/ (see
tests/convert_reference.py), OpenCLIP's own model code (OpenAI-layout import, ViT and ModifiedResNet).
Random weights, at two sizes: the unit-test size and ViT-B/32 widths with 2 layers per tower.

    PYTHONPATH=src python benchmarks/convert_parity.py
writes benchmarks/results/convert_parity.{json,md}.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the OpenCLIP reference loader lives with the tests

from clipforge.convert.common import build_model  # noqa: E402
from clipforge.convert.hf import export_hf, import_hf  # noqa: E402
from clipforge.convert.openai import import_openai  # noqa: E402

SIZES = {
    # name: (vision width, heads, image, patch, text width, text heads, context, embed)
    "tiny": (48, 3, 32, 8, 32, 4, 16, 24),
    "B-32 widths, 2 layers": (768, 12, 224, 32, 512, 8, 77, 512),
}


def _perturb(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.add_(torch.randn(t.shape, generator=g) * 0.05)


def _inputs(image: int, context: int, vocab: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(4, 3, image, image, generator=g)
    ids = torch.zeros(4, context, dtype=torch.long)
    for row, n in enumerate([context, 2, 7, context // 2]):
        ids[row, : n - 1] = torch.randint(1, vocab - 2, (n - 1,), generator=g)
        ids[row, n - 1] = vocab - 1
    return pixels, ids


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def hf_rows(tmp: Path) -> list[dict]:
    import transformers

    rows = []
    for size, (vw, vh, image, patch, tw, th, ctx, embed) in SIZES.items():
        for act in ("quick_gelu", "gelu"):
            torch.manual_seed(0)
            cfg = transformers.CLIPConfig(
                text_config=dict(vocab_size=49408, hidden_size=tw, intermediate_size=4 * tw, num_hidden_layers=2,
                                 num_attention_heads=th, max_position_embeddings=ctx, hidden_act=act),
                vision_config=dict(hidden_size=vw, intermediate_size=4 * vw, num_hidden_layers=2,
                                   num_attention_heads=vh, image_size=image, patch_size=patch, hidden_act=act),
                projection_dim=embed,
            )  # fmt: skip
            cfg._attn_implementation = "eager"
            hf = transformers.CLIPModel(cfg).eval()
            _perturb(hf, 0)
            folder = tmp / f"hf-{size}-{act}".replace(" ", "_").replace(",", "")
            hf.save_pretrained(folder)
            imported = import_hf(folder)
            ours = build_model(imported)
            back_dir = export_hf(ours.state_dict(), imported.config, folder.with_name(folder.name + "-export"))
            back = transformers.CLIPModel.from_pretrained(back_dir, attn_implementation="eager").eval()
            pixels, ids = _inputs(image, ctx, 49408)
            with torch.no_grad():
                ref_i, ref_t = hf.get_image_features(pixel_values=pixels), hf.get_text_features(input_ids=ids)
                ref_i, ref_t = getattr(ref_i, "pooler_output", ref_i), getattr(ref_t, "pooler_output", ref_t)
                our_i, our_t = ours.encode_image(pixels), ours.encode_text(ids)
                exp_i = back.get_image_features(pixel_values=pixels)
                exp_t = back.get_text_features(input_ids=ids)
                exp_i, exp_t = getattr(exp_i, "pooler_output", exp_i), getattr(exp_t, "pooler_output", exp_t)
                low = build_model(imported).to(torch.bfloat16)
                low_i, low_t = low.encode_image(pixels), low.encode_text(ids)
            for direction, dtype, img, txt in [
                ("import HF -> clipforge", "fp32", _diff(our_i, ref_i), _diff(our_t, ref_t)),
                ("export clipforge -> HF", "fp32", _diff(exp_i, our_i), _diff(exp_t, our_t)),
                ("import HF -> clipforge", "bf16 vs fp32 ref", _diff(low_i, ref_i), _diff(low_t, ref_t)),
            ]:
                rows.append({"reference": "transformers CLIPModel (eager)", "direction": direction, "size": size,
                             "activation": act, "dtype": dtype, "image_max_abs": img, "text_max_abs": txt,
                             "image_scale": ref_i.abs().max().item(), "text_scale": ref_t.abs().max().item()})  # fmt: skip
    return rows


def openclip_rows(tmp: Path) -> list[dict]:
    from convert_reference import wheel_path

    if not wheel_path().is_file():
        print(f"OpenCLIP wheel not at {wheel_path()}: skipping the OpenCLIP reference rows")
        return []
    from convert_reference import _load

    oc = _load(str(wheel_path()))
    rows = []
    towers = {
        "ViT": oc.CLIPVisionCfg(layers=2, width=768, head_width=64, patch_size=32, image_size=224),
        "ModifiedResNet": oc.CLIPVisionCfg(layers=[1, 1, 1, 1], width=64, image_size=224),
    }
    for tower, vision_cfg in towers.items():
        torch.manual_seed(0)
        text_cfg = oc.CLIPTextCfg(context_length=77, vocab_size=49408, width=512, heads=8, layers=2)
        ref = oc.CLIP(512, vision_cfg, text_cfg, quick_gelu=True).eval()
        _perturb(ref, 0)
        torch.save(ref.state_dict(), tmp / f"{tower}.pt")
        ours = build_model(import_openai(tmp / f"{tower}.pt"))
        pixels, ids = _inputs(224, 77, 49408)
        with torch.no_grad():
            ref_i, ref_t = ref.encode_image(pixels), ref.encode_text(ids)
            d_i, d_t = _diff(ours.encode_image(pixels), ref_i), _diff(ours.encode_text(ids), ref_t)
        rows.append({"reference": "OpenCLIP 3.3.0 model code", "direction": f"import OpenAI layout ({tower})",
                     "size": "B widths, 2 layers / RN [1,1,1,1] w64", "activation": "quick_gelu", "dtype": "fp32",
                     "image_max_abs": d_i, "text_max_abs": d_t, "image_scale": ref_i.abs().max().item(),
                     "text_scale": ref_t.abs().max().item()})  # fmt: skip
    return rows


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = hf_rows(Path(tmp)) + openclip_rows(Path(tmp))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "convert_parity.json").write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    lines = ["| reference | direction | size | act | dtype | image max-abs | text max-abs | feature scale (img/txt) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['reference']} | {r['direction']} | {r['size']} | {r['activation']} | {r['dtype']} | "
                     f"{r['image_max_abs']:.2e} | {r['text_max_abs']:.2e} | "
                     f"{r['image_scale']:.2f} / {r['text_scale']:.2f} |")  # fmt: skip
    (out / "convert_parity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
