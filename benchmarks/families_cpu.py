"""CPU image-tower throughput of two registered models, measured side by side (interleaved, one process).

    python benchmarks/families_cpu.py --models ViT-B-16-SigLIP ViT-B-16 --threads 1 --batch 4 --rounds 5

Random weights (speed does not depend on their values), fp32, inference mode. Rounds alternate between the
models so that load from other processes on a shared machine affects both alike; the ratio is the figure to
read. Writes benchmarks/results/families_cpu.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from clipforge.model.clip import CLIP
from clipforge.model.registry import get_config

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs=2, default=["ViT-B-16-SigLIP", "ViT-B-16"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {name: CLIP(get_config(name)).eval() for name in args.models}
    times: dict[str, list[float]] = {name: [] for name in args.models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            size = model.cfg.vision.image_size
            model.encode_image(torch.randn(args.batch, 3, size, size))
        for _ in range(args.rounds):
            for name, model in models.items():
                size = model.cfg.vision.image_size
                pixels = torch.randn(args.batch, 3, size, size)
                start = time.perf_counter()
                model.encode_image(pixels)
                times[name].append(time.perf_counter() - start)
    rows = {name: {"image_size": models[name].cfg.vision.image_size,
                   "images_per_s": args.batch / statistics.median(t), "seconds_per_batch": t} for name, t in times.items()}  # fmt: skip
    a, b = args.models
    result = {"models": rows, "ratio": rows[a]["images_per_s"] / rows[b]["images_per_s"], "threads": args.threads,
              "batch": args.batch, "rounds": args.rounds, "torch": torch.__version__,
              "note": "shared 2-core machine, other jobs running; interleaved rounds, median per model"}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "families_cpu.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| model | image size | images/s (median) |", "|---|---|---|"]
    lines += [f"| {n} | {r['image_size']} | {r['images_per_s']:.2f} |" for n, r in rows.items()]
    lines.append(f"\nratio {a} / {b}: {result['ratio']:.3f} ({args.threads} thread(s), batch {args.batch}, "
                 f"{args.rounds} interleaved rounds; {result['note']})")  # fmt: skip
    (RESULTS / "families_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
