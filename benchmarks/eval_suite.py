"""Run a benchmark suite on a checkpoint and record its figures and wall time.

    python benchmarks/eval_suite.py runs/demo/final --suite full --emoji-root data/emoji --run-dir runs/demo

Writes benchmarks/results/eval_suite_<suite>.json and .md (the headline numbers and per-benchmark seconds),
plus results.json and report.html beside them under eval_suite_<suite>/.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import clipforge
from clipforge.eval.runner import evaluate_and_report
from clipforge.eval.suite import SuiteConfig
from clipforge.utils.io import atomic_write_text

HEADLINE = {
    "zeroshot": ("top1", "top5", "mean_per_class"),
    "retrieval": ("image_to_text_R@1", "image_to_text_R@5", "text_to_image_R@1", "text_to_image_R@5"),
    "linear_probe": ("accuracy",),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--suite", default="full")
    parser.add_argument("--emoji-root", default="data/emoji")
    parser.add_argument("--templates", default="openai")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--probe-train-limit", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run-dir")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cfg = SuiteConfig(name=args.suite, emoji_root=args.emoji_root, templates=args.templates, limit=args.limit,
                      probe_train_limit=args.probe_train_limit, progress=True)  # fmt: skip
    out = Path(args.out)
    start = time.perf_counter()
    pipeline = clipforge.load(args.checkpoint)
    result = evaluate_and_report(
        pipeline, cfg, out / f"eval_suite_{args.suite}", checkpoint=args.checkpoint, run_dir=args.run_dir
    )
    wall = time.perf_counter() - start
    env = {"threads": args.threads, "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    summary = {"checkpoint": args.checkpoint, "suite": args.suite, "templates": args.templates, "limit": args.limit,
               "wall_seconds_including_load": round(wall, 1), "env": env, **result.to_json()}  # fmt: skip
    atomic_write_text(out / f"eval_suite_{args.suite}.json", json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# Evaluation suite `{args.suite}` on `{args.checkpoint}`",
        "",
        f"templates `{args.templates}`, limit {args.limit}, {args.threads} threads, wall {wall:.1f} s (with model load)",
        "",
        "| benchmark | metric | value | seconds |",
        "|---|---|---|---|",
    ]
    for key, detail in result.details.items():
        task = key.split(".", 1)[0]
        metrics = detail.metrics()
        for metric in HEADLINE[task]:
            lines.append(f"| {key} | {metric} | {100 * metrics[metric]:.2f}% | {result.seconds[key]:.1f} |")
    lines += [f"| {key} | skipped | {reason} | |" for key, reason in result.skipped.items()]
    atomic_write_text(out / f"eval_suite_{args.suite}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
