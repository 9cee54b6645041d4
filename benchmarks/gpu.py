"""One command for a GPU machine: clipforge against OpenCLIP 3.3.0's model code, side by side in one process.

    PYTHONPATH=src python benchmarks/gpu.py                 # on a CUDA machine: the full set below
    PYTHONPATH=src python benchmarks/gpu.py --smoke         # anywhere (CPU): tiny configs, end to end, seconds

Measured, each pair interleaved (clipforge step, OpenCLIP step, ...) so clocks and other load hit both alike:
- training steps, bf16 autocast, AdamW, InfoNCE: ViT-B/16 at batch 256 and ViT-B/32 at batch 1024, each
  eager and torch.compile'd; samples/s, peak memory, and MFU from the counted FLOPs
  (clipforge.train.flops: matmul FLOPs of both towers x 3) over the device's bf16 peak;
- image embedding, bf16 autocast, inference mode: ViT-B/16 and ViT-L/14 at batch 256, images/s.
Both sides get the same weights (OpenCLIP's loaded from ours through the OpenAI key layout) and the same
inputs; the OpenCLIP side computes the same InfoNCE from its features. OpenCLIP's model code is read from its
wheel in .whl/ as tests/convert_reference.py does (no torchvision needed).

Writes benchmarks/results/gpu-<device>.json with ``ratios``: train_vit_b16_bs256_vs_open_clip_compiled,
train_vit_b32_bs1024_vs_open_clip_compiled (clipforge / OpenCLIP samples/s), embed_vit_b16_vs_open_clip
(images/s) and peak_mem_vit_b16_vs_open_clip (clipforge / OpenCLIP bytes, lower is better). ``--smoke``
runs the same code on test-vit with tiny batches and the aot_eager compile backend (inductor's first compile
costs a minute on CPU) and writes gpu-<device>-smoke.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the OpenCLIP reference loader lives with the tests

from convert_reference import openclip_model_module, randomize  # noqa: E402

from clipforge.convert.common import export_state  # noqa: E402
from clipforge.convert.openai import openai_rules  # noqa: E402
from clipforge.model.clip import CLIP  # noqa: E402
from clipforge.model.config import CLIPConfig  # noqa: E402
from clipforge.model.registry import get_config  # noqa: E402
from clipforge.train.flops import flops_per_sample, peak_flops  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# name -> (model, batch); the smoke run swaps in test-vit and tiny batches
TRAIN = {"vit_b16_bs256": ("ViT-B-16", 256), "vit_b32_bs1024": ("ViT-B-32", 1024)}
EMBED = {"vit_b16": ("ViT-B-16", 256), "vit_l14": ("ViT-L-14", 256)}
Step = Callable[[], None]


def open_clip_twin(cfg: CLIPConfig, ours: CLIP) -> torch.nn.Module:
    """OpenCLIP's CLIP for ``cfg`` holding ``ours``'s weights."""
    oc = openclip_model_module()
    v, t = cfg.vision, cfg.text
    vision = oc.CLIPVisionCfg(layers=v.layers, width=v.width, head_width=v.head_width, patch_size=v.patch_size,
                              image_size=v.image_size)  # fmt: skip
    text = oc.CLIPTextCfg(context_length=t.context_length, vocab_size=t.vocab_size, width=t.width, heads=t.heads,
                          layers=t.layers)  # fmt: skip
    model = oc.CLIP(cfg.embed_dim, vision, text, quick_gelu=v.act == "quick_gelu")
    model.load_state_dict(export_state(ours.state_dict(), openai_rules(cfg)))
    return model


def info_nce(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over the batch, in fp32 (both sides use this same loss)."""
    image, text = F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)
    logits = scale.float() * image @ text.T  # (B, B)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def train_step(model: torch.nn.Module, forward: Callable, opt: torch.optim.Optimizer, pixels: torch.Tensor,
               ids: torch.Tensor, device: torch.device) -> Step:  # fmt: skip
    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            image, text, scale = forward(model, pixels, ids)
        info_nce(image, text, scale).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _ours_forward(model, pixels, ids):
    out = model(pixels, ids)
    return out.image_features, out.text_features, out.logit_scale


def _theirs_forward(model, pixels, ids):
    return model.encode_image(pixels), model.encode_text(ids), model.logit_scale.exp()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_pair(steps: dict[str, Step], rounds: int, device: torch.device) -> dict[str, dict]:
    """Interleaved rounds of each step (after one warm-up, which also compiles): seconds and peak memory."""
    out: dict[str, dict] = {name: {"seconds": [], "peak_bytes": None} for name in steps}
    for name, step in steps.items():  # warm-up + peak memory of one step on its own
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        step()
        _sync(device)
        if device.type == "cuda":
            out[name]["peak_bytes"] = torch.cuda.max_memory_allocated(device)
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            _sync(device)
            out[name]["seconds"].append(time.perf_counter() - start)
    return out


def bench_train(name: str, batch: int, device: torch.device, rounds: int, backend: str,
                peak: float | None) -> dict:  # fmt: skip
    cfg = get_config(name)
    torch.manual_seed(0)
    ours = randomize(CLIP(cfg), seed=0).to(device).train()
    theirs = open_clip_twin(cfg, ours.cpu()).to(device).train()
    ours = ours.to(device)
    size = cfg.vision.image_size
    pixels = torch.randn(batch, 3, size, size, device=device)
    ids = torch.randint(1, cfg.text.vocab_size - 2, (batch, cfg.text.context_length), device=device)
    ids[:, min(20, cfg.text.context_length - 1)] = cfg.text.vocab_size - 1  # end-of-text after a typical caption
    fused = device.type in ("cuda", "cpu")
    steps = {}
    for compiled in (False, True):
        for side, model, forward in (("clipforge", ours, _ours_forward), ("open_clip", theirs, _theirs_forward)):
            m = copy.deepcopy(model)
            opt = torch.optim.AdamW(m.parameters(), lr=1e-5, fused=fused)
            run = torch.compile(m, backend=backend) if compiled else m
            steps[f"{side}_{'compiled' if compiled else 'eager'}"] = train_step(run, forward, opt, pixels, ids, device)
    timings = timed_pair(steps, rounds, device)
    flops = flops_per_sample(cfg)
    rows = {}
    for key, t in timings.items():
        per_s = batch / statistics.median(t["seconds"])
        rows[key] = {"samples_per_s": per_s, "peak_bytes": t["peak_bytes"], "seconds": t["seconds"],
                     "mfu": per_s * flops / peak if peak else None}  # fmt: skip
    return {"model": name, "batch": batch, "flops_per_sample": flops, **rows}


@torch.inference_mode()
def bench_embed(name: str, batch: int, device: torch.device, rounds: int) -> dict:
    cfg = get_config(name)
    torch.manual_seed(0)
    ours = randomize(CLIP(cfg), seed=0).eval()
    theirs = open_clip_twin(cfg, ours).eval().to(device)
    ours = ours.to(device)
    size = cfg.vision.image_size
    pixels = torch.randn(batch, 3, size, size, device=device)

    def embed(model: torch.nn.Module) -> Step:
        def step() -> None:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                F.normalize(model.encode_image(pixels).float(), dim=-1)

        return step

    timings = timed_pair({"clipforge": embed(ours), "open_clip": embed(theirs)}, rounds, device)
    return {"model": name, "batch": batch,
            **{k: {"images_per_s": batch / statistics.median(t["seconds"]), "peak_bytes": t["peak_bytes"],
                   "seconds": t["seconds"]} for k, t in timings.items()}}  # fmt: skip


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny configs on any device (CI)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cpu")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))  # fmt: skip
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    train, embed, rounds, backend = TRAIN, EMBED, args.rounds, "inductor"
    if args.smoke:
        train = {k: ("test-vit", 8) for k in TRAIN}
        embed = {k: ("test-vit", 4) for k in EMBED}
        rounds, backend = 2, "aot_eager"
    peak = peak_flops(device, "bf16")
    results = {"train": {}, "embed": {}}
    for key, (name, batch) in train.items():
        results["train"][key] = bench_train(name, batch, device, rounds, backend, peak)
        print(f"train {key}: " + ", ".join(f"{k} {v['samples_per_s']:.1f}/s" for k, v in results["train"][key].items()
                                           if isinstance(v, dict)), flush=True)  # fmt: skip
    for key, (name, batch) in embed.items():
        results["embed"][key] = bench_embed(name, batch, device, rounds)
        print(f"embed {key}: clipforge {results['embed'][key]['clipforge']['images_per_s']:.1f}/s, "
              f"open_clip {results['embed'][key]['open_clip']['images_per_s']:.1f}/s", flush=True)
    tr, em = results["train"], results["embed"]
    ratios = {
        "train_vit_b16_bs256_vs_open_clip_compiled": _ratio(tr["vit_b16_bs256"]["clipforge_compiled"]["samples_per_s"],
                                                            tr["vit_b16_bs256"]["open_clip_compiled"]["samples_per_s"]),
        "train_vit_b32_bs1024_vs_open_clip_compiled": _ratio(tr["vit_b32_bs1024"]["clipforge_compiled"]["samples_per_s"],
                                                             tr["vit_b32_bs1024"]["open_clip_compiled"]["samples_per_s"]),
        "embed_vit_b16_vs_open_clip": _ratio(em["vit_b16"]["clipforge"]["images_per_s"],
                                             em["vit_b16"]["open_clip"]["images_per_s"]),
        "peak_mem_vit_b16_vs_open_clip": _ratio(tr["vit_b16_bs256"]["clipforge_compiled"]["peak_bytes"],
                                                tr["vit_b16_bs256"]["open_clip_compiled"]["peak_bytes"]),
    }  # fmt: skip
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    tag = dev_name.lower().replace(" ", "-") + ("-smoke" if args.smoke else "")
    result = {"device": dev_name, "smoke": args.smoke, "compile_backend": backend, "rounds": rounds,
              "peak_bf16_flops": peak, "torch": torch.__version__, "ratios": ratios, **results}  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"gpu-{tag}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(ratios, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
