"""Training throughput of the tiny CPU config (tiny-vit, 64 px, global batch 128), variants side by side.

Runs the real trainer (``run_training``) for a few steps per variant, all in one process and interleaved
round by round, so a shared machine's load affects every variant alike; reports the median samples/s over
the steps after the first (warm-up) and ratios to the baseline. Data are in-memory tensors (no decoding), so
this measures the model step: forward, loss, backward, clipping and the fused AdamW update.

    PYTHONPATH=src:tests python benchmarks/train_throughput.py [--steps 8] [--rounds 2]

Writes benchmarks/results/train_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from train_support import PairSet, synthetic_factory, tiny_config

from clipforge.model.registry import get_config
from clipforge.train.trainer import run_training

RESULTS = Path(__file__).parent / "results"


def variants() -> dict[str, dict]:
    base = get_config("tiny-vit")
    small_vocab = dataclasses.replace(base, text=dataclasses.replace(base.text, vocab_size=4096))
    dropped = dataclasses.replace(small_vocab, vision=dataclasses.replace(small_vocab.vision, patch_dropout=0.5))
    return {
        "tiny-vit, OpenAI vocab (49,408), 2 threads": dict(model=base, threads=2),
        "tiny-vit, trained vocab 4,096, 2 threads": dict(model=small_vocab, threads=2),
        "tiny-vit, OpenAI vocab (49,408), 1 thread": dict(model=base, threads=1),
        "tiny-vit, trained vocab 4,096, 1 thread": dict(model=small_vocab, threads=1),
        "vocab 4,096 + GradCache accum 2, 1 thread": dict(model=small_vocab, accum_freq=2, threads=1),
        "vocab 4,096 + patch dropout 0.5, 1 thread": dict(model=dropped, threads=1),
    }


def measure(name: str, kw: dict, steps: int, data: dict[int, PairSet]) -> list[float]:
    vocab = kw["model"].text.vocab_size
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = tiny_config(Path(tmp), steps=steps, batch_size=128, **kw)
        run_training(cfg, loader_factory=synthetic_factory(data[vocab], 128),
                     on_step=lambda step, m: times.append(time.perf_counter()))
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]  # the first step (warm-up) is not timed
    return [128 / g for g in gaps]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    data = {v: PairSet(256, image_size=64, context=32, vocab=v) for v in (49408, 4096)}
    rates: dict[str, list[float]] = {name: [] for name in variants()}
    for _ in range(args.rounds):
        for name, kw in variants().items():
            rates[name] += measure(name, kw, args.steps, data)
    base = statistics.median(next(iter(rates.values())))
    rows = [{"variant": n, "samples_per_s": statistics.median(r), "ratio": statistics.median(r) / base,
             "min": min(r), "max": max(r)} for n, r in rates.items()]
    meta = {"batch": 128, "image_size": 64, "steps": args.steps, "rounds": args.rounds,
            "torch": torch.__version__, "note": "shared 2-core machine (6 other users): absolute numbers vary with load"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = ["| variant | samples/s (median) | min | max | vs first row |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['samples_per_s']:.1f} | {r['min']:.1f} | {r['max']:.1f} | {r['ratio']:.2f}x |"
              for r in rows]
    text = "\n".join(lines) + f"\n\n{json.dumps(meta)}\n"
    (RESULTS / "train_throughput.md").write_text("# Tiny-config training throughput (CPU)\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
