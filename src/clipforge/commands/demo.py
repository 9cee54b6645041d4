"""Run the main job end to end: emoji data -> train a tiny CLIP -> evaluate -> index -> search.

example:
  clipforge demo                      # what `make demo` runs: about 10 minutes on 2 CPU cores
  clipforge demo --out runs/demo2     # a second demo beside the first
  clipforge demo --quick              # a shortened run through the same code path (CI, smoke tests)

Re-running reuses what is already built (the data set, a finished training run, embeddings, the index).
Results: OUT/results.json and OUT/report.html; the searchable index: OUT/index
(serve it with `clipforge serve --index OUT/index`).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="demo directory (default runs/demo)")
    parser.add_argument("--data", default="data/emoji", help="where the emoji set is built (default data/emoji)")
    parser.add_argument("--quick", action="store_true", help="tiny data subset and a few steps: a smoke test")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: CUDA when present")
    parser.add_argument("--fresh", action="store_true", help="retrain even if OUT already holds a finished run")


def run(args: argparse.Namespace) -> int:
    from clipforge.demo.job import DemoOptions, run_demo

    run_demo(DemoOptions(out=args.out, data=args.data, quick=args.quick, device=args.device, fresh=args.fresh))
    return 0
