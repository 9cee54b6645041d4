"""CPU inference: clipforge in every precision against OpenCLIP 3.3.0's and transformers' fp32 model code.

    PYTHONPATH=src python benchmarks/cpu_inference.py            # ViT-B/32, batch 8, 1 thread, 5 rounds
    PYTHONPATH=src python benchmarks/cpu_inference.py --smoke    # test-vit: the whole script in seconds

One set of random weights (speed does not depend on their values; ``randomize`` makes every tensor
non-trivial) is loaded into all of them: clipforge's CLIP, OpenCLIP's CLIP (its model code read from the wheel
in .whl/, as tests/convert_reference.py does) through the OpenAI key layout, and transformers' CLIPModel
through the Hugging Face layout. Rounds alternate between the models, so load from other processes on a
shared machine hits all of them alike; the ratios (medians, one process) are the figures to read.

Measured: image tower and text tower throughput (8 captions of everyday length; each implementation gets the
same 77-token ids, and clipforge trims them to the longest caption, which the causal mask allows), the
cosine of each one's features to OpenCLIP fp32's, and ``clipforge embed`` of a folder of JPEGs end to end
(decode and preprocessing in a worker process, the model in this one) in images/s per precision.
The ratios use the fastest clipforge precision whose minimum cosine to OpenCLIP fp32 is >= 0.999; ``auto`` is
the per-tower choice ``clipforge.load(precision="auto")`` makes for these weights (int8 with as many leading
blocks left in bf16 or fp32 as the gate needs), timed like the others. ``--onnxruntime`` adds the ONNX export in
onnxruntime, fp32 and dynamically quantized int8. With ``--checkpoint DIR`` (a trained clipforge checkpoint) the demo suite's
zero-shot top-1 is also compared between fp32 and that precision; ``--zero-shot-only --checkpoint DIR --name N``
runs only that comparison (fp32, bf16, int8, int8-image, auto) and writes N.json / N.md:

    PYTHONPATH=src python benchmarks/cpu_inference.py --zero-shot-only --checkpoint runs/demo/train/final \
        --name cpu_inference_zeroshot_demo

Writes benchmarks/results/cpu_inference.json and .md.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the OpenCLIP reference loader lives with the tests

from convert_reference import openclip_model_module, randomize  # noqa: E402

from clipforge.checkpoint import PipelineConfig, save_checkpoint  # noqa: E402
from clipforge.convert.common import export_state  # noqa: E402
from clipforge.convert.hf import config_to_hf, hf_rules  # noqa: E402
from clipforge.convert.openai import openai_rules  # noqa: E402
from clipforge.data.config import PreprocessConfig  # noqa: E402
from clipforge.data.sources import open_source  # noqa: E402
from clipforge.index.embed import embed_collection  # noqa: E402
from clipforge.model.clip import CLIP  # noqa: E402
from clipforge.model.config import CLIPConfig  # noqa: E402
from clipforge.model.registry import get_config  # noqa: E402
from clipforge.pipeline import load  # noqa: E402
from clipforge.precision import MIN_COSINE, PROBE_TEXTS, apply_precision, convert, probe_inputs  # noqa: E402
from clipforge.text.config import TokenizerConfig  # noqa: E402
from clipforge.text.tokenizer import build_tokenizer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODES = ("fp32", "bf16", "int8", "int8-image", "auto")
Encoder = Callable[[torch.Tensor], torch.Tensor]


def reference_models(cfg: CLIPConfig, ours: CLIP) -> dict[str, tuple[Encoder, Encoder]]:
    """OpenCLIP's and transformers' CLIP holding ``ours``'s weights: name -> (encode_image, encode_text)."""
    from transformers import CLIPConfig as HFConfig  # deferred: optional reference, slow to import
    from transformers import CLIPModel

    oc = openclip_model_module()
    v, t = cfg.vision, cfg.text
    vision = oc.CLIPVisionCfg(layers=v.layers, width=v.width, head_width=v.head_width, patch_size=v.patch_size,
                              image_size=v.image_size)  # fmt: skip
    text = oc.CLIPTextCfg(context_length=t.context_length, vocab_size=t.vocab_size, width=t.width, heads=t.heads,
                          layers=t.layers)  # fmt: skip
    open_clip = oc.CLIP(cfg.embed_dim, vision, text, quick_gelu=v.act == "quick_gelu").eval()
    open_clip.load_state_dict(export_state(ours.state_dict(), openai_rules(cfg)))
    hf = CLIPModel(HFConfig(**config_to_hf(cfg), attn_implementation="sdpa")).eval()
    missing, unexpected = hf.load_state_dict(export_state(ours.state_dict(), hf_rules(cfg)), strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)

    def hf_image(px: torch.Tensor) -> torch.Tensor:
        out = hf.get_image_features(pixel_values=px)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def hf_text(ids: torch.Tensor) -> torch.Tensor:
        out = hf.get_text_features(input_ids=ids)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    return {"open_clip_fp32": (open_clip.encode_image, open_clip.encode_text), "transformers_fp32": (hf_image, hf_text)}


def _timed(fn: Encoder, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    y = fn(x)
    return time.perf_counter() - start, y


@torch.inference_mode()
def tower_speeds(encoders: dict[str, tuple[Encoder, Encoder]], pixels: torch.Tensor, ids: torch.Tensor,
                 rounds: int) -> dict[str, dict]:  # fmt: skip
    """Interleaved rounds over every model: seconds per batch of each tower, and the features of the last round."""
    times = {name: {"image": [], "text": []} for name in encoders}
    feats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for enc_image, enc_text in encoders.values():  # warm-up: first-call allocations, lazy kernel choices
        enc_image(pixels), enc_text(ids)
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", flush=True)
        for name, (enc_image, enc_text) in encoders.items():
            ti, img = _timed(enc_image, pixels)
            tt, txt = _timed(enc_text, ids)
            times[name]["image"].append(ti)
            times[name]["text"].append(tt)
            feats[name] = (F.normalize(img.float(), dim=-1), F.normalize(txt.float(), dim=-1))
    ref_img, ref_txt = feats["open_clip_fp32"]
    batch = pixels.shape[0]
    return {
        name: {
            "image_per_s": batch / statistics.median(t["image"]), "text_per_s": batch / statistics.median(t["text"]),
            "image_seconds": t["image"], "text_seconds": t["text"],
            "cosine_image": float((feats[name][0] * ref_img).sum(-1).min()),
            "cosine_text": float((feats[name][1] * ref_txt).sum(-1).min()),
        }
        for name, t in times.items()
    }  # fmt: skip


def onnxruntime_encoders(ours: CLIP, work: Path, threads: int) -> dict[str, tuple[Encoder, Encoder]]:
    """The model exported with ``clipforge export --to onnx`` code, run by onnxruntime with ``threads`` threads:
    fp32, and int8 (``onnxruntime.quantization.quantize_dynamic``, int8 weights per channel, every MatMul)."""
    import onnxruntime as ort  # deferred: optional (the onnx extra)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from clipforge.convert.onnx import IMAGE_FILE, TEXT_FILE, export_onnx

    export_onnx(copy.deepcopy(ours), work, work / "onnx")
    (work / "onnx-int8").mkdir()
    for file in (IMAGE_FILE, TEXT_FILE):
        quantize_dynamic(work / "onnx" / file, work / "onnx-int8" / file, per_channel=True, weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    out = {}
    for name, folder in (("onnxruntime_fp32", "onnx"), ("onnxruntime_int8", "onnx-int8")):
        image = ort.InferenceSession(str(work / folder / IMAGE_FILE), options, providers=["CPUExecutionProvider"])
        text = ort.InferenceSession(str(work / folder / TEXT_FILE), options, providers=["CPUExecutionProvider"])
        out[name] = (lambda px, s=image: torch.from_numpy(s.run(None, {"pixels": px.numpy()})[0]),
                     lambda ids, s=text: torch.from_numpy(s.run(None, {"token_ids": ids.numpy()})[0]))  # fmt: skip
    return out


def write_jpegs(folder: Path, n: int, size: tuple[int, int] = (640, 480), seed: int = 0) -> Path:
    """``n`` photo-sized JPEGs (smooth colour fields plus noise, so decoding does real work)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        base = np.stack([np.sin(xx / (20 + 7 * c + i) + c) * np.cos(yy / (30 + 5 * c)) for c in range(3)], -1)
        img = (127 + 100 * base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i:04d}.jpg", quality=90)
    return folder


def embed_speeds(ckpt: Path, folder: Path, precisions: list[str], rounds: int, batch: int, workers: int,
                 work: Path) -> dict[str, dict]:  # fmt: skip
    """``embed_collection`` of ``folder`` (fresh output each time), interleaved over precisions: images/s."""
    pipelines = {p: load(ckpt, precision=p) for p in precisions}
    collection = open_source(str(folder), "image", "caption")
    times: dict[str, list[float]] = {p: [] for p in precisions}
    n = 0
    for r in range(rounds):
        for p, pipeline in pipelines.items():
            start = time.perf_counter()
            result = embed_collection(pipeline, collection, work / f"{p}-{r}", fingerprint={"bench": "cpu"},
                                      batch_size=batch, workers=workers, progress=False)  # fmt: skip
            times[p].append(time.perf_counter() - start)
            n = result.embedded
    return {p: {"images_per_s": n / statistics.median(t), "seconds": t, "images": n} for p, t in times.items()}


def zero_shot_check(ckpt: str, precisions: list[str]) -> dict:
    """Demo-suite zero-shot top-1 of a trained checkpoint in fp32 and in each of ``precisions``, the largest
    drop from fp32 per precision (points), and the probe checks ``precision=auto`` ran on it."""
    from clipforge.eval.config import EvalConfig, SuiteConfig  # deferred: only with --checkpoint
    from clipforge.eval.job import run_eval

    out: dict = {"checkpoint": ckpt, "top1": {}, "max_drop_points": {}}
    for p in dict.fromkeys(["fp32", *precisions]):
        with tempfile.TemporaryDirectory() as d:
            result = run_eval(EvalConfig(checkpoint=ckpt, out_dir=d, report=False, precision=p,
                                         suite=SuiteConfig(name="", progress=False)))  # fmt: skip
        out["top1"][p] = {k: float(v) for k, v in result.metrics.items() if k.startswith("zeroshot.") and
                          k.endswith(".top1")}  # fmt: skip
        out["max_drop_points"][p] = max((100 * (out["top1"]["fp32"][k] - v) for k, v in out["top1"][p].items()),
                                        default=0.0)  # fmt: skip
    pipeline = load(ckpt, precision="auto")
    out["auto"] = {"precision": pipeline.precision, "checks": [c.to_json() for c in pipeline.precision_checks]}
    return out


def best_mode(towers: dict[str, dict]) -> str:
    """The fastest clipforge mode (image + text seconds) whose cosines to OpenCLIP fp32 reach MIN_COSINE."""

    def seconds(m: str) -> float:
        t = towers[f"clipforge_{m}"]
        return 1 / t["image_per_s"] + 1 / t["text_per_s"]

    ok = [m for m in MODES if min(towers[f"clipforge_{m}"]["cosine_image"], towers[f"clipforge_{m}"]["cosine_text"])
          >= MIN_COSINE]  # fmt: skip
    return min(ok or ["fp32"], key=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViT-B-32-quickgelu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=64, help="JPEGs in the end-to-end embed folder")
    parser.add_argument("--workers", type=int, default=1, help="decoding workers for the end-to-end embed")
    parser.add_argument("--checkpoint", default=None, help="a trained checkpoint for the zero-shot comparison")
    parser.add_argument("--smoke", action="store_true", help="test-vit, 2 rounds, 16 images (CI)")
    parser.add_argument("--onnxruntime", action="store_true", help="also time the ONNX export in onnxruntime")
    parser.add_argument("--init", choices=["randomized", "default"], default="randomized",
                        help="randomized: every tensor perturbed (tests/convert_reference.randomize), a deep random "
                        "net that amplifies rounding; default: the model's own initialization")  # fmt: skip
    parser.add_argument("--name", default="cpu_inference", help="results file stem")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--zero-shot-only", action="store_true",
                        help="only the zero-shot comparison of --checkpoint in every precision (no timing)")
    args = parser.parse_args()
    if args.zero_shot_only:
        return zero_shot_only(args)
    if args.smoke:
        args.model, args.rounds, args.images, args.batch = "test-vit", 2, 16, 4
    torch.set_num_threads(args.threads)
    cfg = get_config(args.model)
    torch.manual_seed(0)
    ours = randomize(CLIP(cfg), seed=0) if args.init == "randomized" else CLIP(cfg).eval()
    encoders = reference_models(cfg, ours)
    tokenizer = build_tokenizer(TokenizerConfig(kind="openai", context_length=cfg.text.context_length))
    auto: dict = {}
    for mode in MODES:
        if mode == "auto":  # the per-tower choice clipforge.load(precision="auto") makes for these weights
            model, auto["precision"], checks = apply_precision(copy.deepcopy(ours), mode, tokenizer)
            auto["checks"] = [c.to_json() for c in checks]
        else:
            model = convert(copy.deepcopy(ours), mode).eval()
        encoders[f"clipforge_{mode}"] = (model.encode_image, model.encode_text)
    onnx_dir = Path(tempfile.mkdtemp(prefix="clipforge-onnx-"))
    if args.onnxruntime:
        encoders.update(onnxruntime_encoders(ours, onnx_dir, args.threads))
    pixels, _ = probe_inputs(ours, tokenizer)
    pixels = pixels[: args.batch]
    ids = tokenizer(list(PROBE_TEXTS)[: args.batch])  # (B, 77): every implementation gets the same ids
    towers = tower_speeds(encoders, pixels, ids, args.rounds)
    print("towers done; end-to-end embed next", flush=True)
    best = best_mode(towers)
    ref = towers["open_clip_fp32"]
    mine = towers[f"clipforge_{best}"]
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        ckpt = save_checkpoint(ours, PipelineConfig(cfg, TokenizerConfig(kind="openai", context_length=cfg.text.context_length),
                                                    PreprocessConfig(image_size=cfg.vision.image_size)), work / "ckpt")  # fmt: skip
        folder = write_jpegs(work / "jpegs", args.images)
        embed = embed_speeds(ckpt, folder, sorted({"fp32", best}), max(2, args.rounds // 2), args.batch, args.workers,
                             work)  # fmt: skip
    result = {
        "model": args.model, "init": args.init, "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
        "best_precision": best, "auto": auto,
        "ratios": {
            "image_vs_open_clip_fp32": mine["image_per_s"] / ref["image_per_s"],
            "text_vs_open_clip_fp32": mine["text_per_s"] / ref["text_per_s"],
            "clipforge_fp32_image_vs_open_clip_fp32": towers["clipforge_fp32"]["image_per_s"] / ref["image_per_s"],
            "clipforge_fp32_text_vs_open_clip_fp32": towers["clipforge_fp32"]["text_per_s"] / ref["text_per_s"],
            "embed_best_vs_fp32": embed[best]["images_per_s"] / embed["fp32"]["images_per_s"],
        },
        "goals": {"image_vs_open_clip_fp32": 3.0, "text_vs_open_clip_fp32": 2.0, "min_cosine": 0.999},
        "min_cosine": min(mine["cosine_image"], mine["cosine_text"]),
        "towers": towers,
        "embed_jpeg_folder": {"workers": args.workers, **embed},
        "zero_shot": zero_shot_check(args.checkpoint, [best, "int8", "int8-image", "auto"]) if args.checkpoint else None,
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "note": "shared 2-core machine (other jobs running); interleaved rounds in one process, medians",
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.name}_smoke" if args.smoke else args.name
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(render(result) + "\n")
    print(render(result))


def zero_shot_only(args: argparse.Namespace) -> None:
    """``--zero-shot-only``: the demo suite's top-1 of ``--checkpoint`` in fp32 and every other precision."""
    if not args.checkpoint:
        raise SystemExit("--zero-shot-only needs --checkpoint DIR")
    torch.set_num_threads(args.threads)
    result = zero_shot_check(args.checkpoint, ["bf16", "int8", "int8-image", "auto"])
    lines = [f"# Zero-shot top-1 by precision: {args.checkpoint} (demo suite)", "",
             "| precision | " + " | ".join(result["top1"]["fp32"]) + " | largest drop from fp32 (points) |",
             "|---|" + "---|" * (len(result["top1"]["fp32"]) + 1)]  # fmt: skip
    for p, top in result["top1"].items():
        lines.append(f"| {p} | " + " | ".join(f"{100 * v:.2f}%" for v in top.values())
                     + f" | {result['max_drop_points'][p]:.2f} |")  # fmt: skip
    lines += ["", f"precision=auto chose {result['auto']['precision']} for this checkpoint.", ""]
    out = Path(args.out)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


def render(r: dict) -> str:
    lines = [f"# CPU inference: {r['model']} ({r.get('init', 'randomized')} weights), batch {r['batch']}, "
             f"{r['threads']} thread(s), {r['rounds']} interleaved rounds",
             "", f"{r['note']}; torch {r['torch']}, CPU capability {r['cpu_capability']}.", "",
             "| model | image/s | text/s | min cosine to OpenCLIP fp32 (image / text) |", "|---|---|---|---|"]  # fmt: skip
    for name, t in r["towers"].items():
        lines.append(f"| {name} | {t['image_per_s']:.2f} | {t['text_per_s']:.2f} | "
                     f"{t['cosine_image']:.6f} / {t['cosine_text']:.6f} |")  # fmt: skip
    ratios = r["ratios"]
    if r.get("auto"):
        kept = [f"{c['tower']} {c['precision']}" + (f" (first {c['head_blocks']} blocks {c['head']})" if c["head_blocks"] else "")
                + f" cos {c['min_cosine']:.5f}{'' if c['passed'] else ' (fails)'}" for c in r["auto"]["checks"]]  # fmt: skip
        lines += ["", f"`precision=auto` chose **{r['auto']['precision']}** from its probe checks: " + "; ".join(kept) + "."]
    lines += ["", f"Best clipforge precision within cosine 0.999: **{r['best_precision']}**.",
              f"- image vs OpenCLIP fp32: **{ratios['image_vs_open_clip_fp32']:.2f}x** (goal 3.0)",
              f"- text vs OpenCLIP fp32: **{ratios['text_vs_open_clip_fp32']:.2f}x** (goal 2.0)",
              f"- min cosine: {r['min_cosine']:.6f} (goal 0.999)",
              f"- clipforge fp32 vs OpenCLIP fp32: image {ratios['clipforge_fp32_image_vs_open_clip_fp32']:.2f}x, "
              f"text {ratios['clipforge_fp32_text_vs_open_clip_fp32']:.2f}x", "",
              f"End-to-end `embed` of a JPEG folder (640x480, decoded in {r['embed_jpeg_folder']['workers']} worker):"]
    for p, e in r["embed_jpeg_folder"].items():
        if isinstance(e, dict):
            lines.append(f"- {p}: {e['images_per_s']:.2f} images/s ({e['images']} images)")
    zs = r.get("zero_shot")
    if zs:
        lines += ["", f"Zero-shot top-1 on the demo suite, trained checkpoint {zs['checkpoint']}: largest drop from fp32 "
                  "(points, goal <= 0.5): " + ", ".join(f"{p} {d:+.2f}" for p, d in zs["max_drop_points"].items() if p != "fp32"),
                  f"(`precision=auto` chose {zs['auto']['precision']} for it: "
                  + "; ".join(f"{c['tower']} {c['precision']} cos {c['min_cosine']:.5f}" for c in zs["auto"]["checks"]) + ").",
                  "", "| precision | " + " | ".join(zs["top1"]["fp32"]) + " |", "|---" * (len(zs["top1"]["fp32"]) + 1) + "|"]
        lines += [f"| {p} | " + " | ".join(f"{100 * v:.2f}" for v in t.values()) + " |" for p, t in zs["top1"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
