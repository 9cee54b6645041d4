"""Reparameterization on the CPU: image-feature error and speed of the folded MobileCLIP towers, side by side.

    PYTHONPATH=src python benchmarks/mobileclip_reparam.py [--names ...] [--batch 8] [--rounds 5]

For each name: a model with random weights, random BatchNorm statistics and layer scales near 0.1 (so that every
folded branch matters), in eval mode; ``reparameterize`` folds it. Both forms encode the same images; the max
abs difference is recorded, and the latency of ``encode_image`` is timed in interleaved rounds (training form,
folded form, training form, ...; one thread, after a warm-up) so that a shared machine's load hits both alike.
Writes benchmarks/results/mobileclip_reparam.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from clipforge.model.clip import CLIP
from clipforge.model.mobileclip_reparam import reparameterize
from clipforge.model.registry import get_config
from clipforge.utils.io import atomic_write_text

NAMES = ["tiny-mobileclip", "MobileCLIP2-S0", "MobileCLIP-S1", "MobileCLIP-S2", "MobileCLIP2-S3"]
RESULTS = Path(__file__).parent / "results"


def randomized(name: str, seed: int = 0) -> CLIP:
    torch.manual_seed(seed)
    model = CLIP(get_config(name))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "layer_scale" in pname:
                p.copy_(0.1 + 0.05 * torch.randn(p.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
    return model.eval()


@torch.inference_mode()
def seconds(model: CLIP, pixels: torch.Tensor) -> float:
    start = time.perf_counter()
    model.encode_image(pixels)
    return time.perf_counter() - start


def measure(name: str, batch: int, rounds: int) -> dict:
    model = randomized(name)
    fused = reparameterize(model)
    size = model.cfg.vision.image_size
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        a, b = model.encode_image(pixels), fused.encode_image(pixels)
    seconds(model, pixels), seconds(fused, pixels)  # warm-up
    times = {"training form": [], "reparameterized": []}
    for _ in range(rounds):
        times["training form"].append(seconds(model, pixels))
        times["reparameterized"].append(seconds(fused, pixels))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "name": name, "image_size": size, "batch": batch,
        "params_training_form": sum(p.numel() for p in model.visual.parameters()),
        "params_reparameterized": sum(p.numel() for p in fused.visual.parameters()),
        "max_abs_diff": (a - b).abs().max().item(), "feature_max_abs": a.abs().max().item(),
        "seconds_training_form": med["training form"], "seconds_reparameterized": med["reparameterized"],
        "speedup": med["training form"] / med["reparameterized"],
        "images_per_s_training_form": batch / med["training form"],
        "images_per_s_reparameterized": batch / med["reparameterized"], "times": times,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", nargs="*", default=NAMES)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [measure(name, args.batch, args.rounds) for name in args.names]
    meta = {"threads": 1, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "note": "shared 2-core machine: the two forms are timed in alternation, so load hits both alike"}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "mobileclip_reparam.json", json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = ["# MobileCLIP reparameterization on the CPU (fp32, 1 thread, encode_image, median of interleaved rounds)",
             "", "| model | image | batch | max abs diff (feature scale) | training form img/s | reparameterized img/s | "
             "speed-up | vision params |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['name']} | {r['image_size']} | {r['batch']} | {r['max_abs_diff']:.1e} "
                     f"({r['feature_max_abs']:.2f}) | {r['images_per_s_training_form']:.1f} | "
                     f"{r['images_per_s_reparameterized']:.1f} | {r['speedup']:.2f}x | "
                     f"{r['params_training_form'] / 1e6:.2f}M -> {r['params_reparameterized'] / 1e6:.2f}M |")  # fmt: skip
    lines += ["", json.dumps(meta)]
    atomic_write_text(RESULTS / "mobileclip_reparam.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
