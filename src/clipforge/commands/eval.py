"""Evaluate a checkpoint: zero-shot classification, retrieval, linear probe; JSON results and an HTML report.

examples:
  clipforge eval --suite demo runs/demo/checkpoint --emoji-root data/emoji --run-dir runs/demo
  clipforge eval --suite transfer runs/demo/checkpoint --limit 1000
  clipforge eval --classes-from-folders photos/ imported/ViT-B-32      # folder-per-class zero-shot
  clipforge eval --zeroshot fashion-mnist --templates short CHECKPOINT
  clipforge eval --retrieval data/emoji/heldout.jsonl CHECKPOINT

suites: demo (emoji held-out classes, Fashion-MNIST and Animal-MNIST zero-shot), emoji (held-out classes and
held-out subgroups; the latter is zero-shot only for a model trained on train_strict.jsonl), transfer
(Fashion-MNIST and Animal-MNIST zero-shot + linear probe), full (all of them).
A benchmark whose data is not installed is skipped with the command that installs it.
Writes OUT_DIR/results.json and OUT_DIR/report.html (default OUT_DIR: CHECKPOINT/eval).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

TASK_SOURCES = ("fashion-mnist", "animal-mnist")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="clipforge checkpoint directory (trained or imported)")
    what = parser.add_argument_group("what to evaluate (combine freely; default --suite demo)")
    what.add_argument("--suite", help="demo, emoji, transfer or full")
    what.add_argument("--classes-from-folders", metavar="DIR", help="zero-shot on DIR/<class name>/<images>")
    what.add_argument("--zeroshot", metavar="SRC", action="append", default=[],
                      help="fashion-mnist, animal-mnist, a .jsonl with labels, or a class-folder DIR")  # fmt: skip
    what.add_argument("--retrieval", metavar="JSONL", action="append", default=[],
                      help="a .jsonl of {image, captions}")  # fmt: skip
    what.add_argument("--linear-probe", metavar="SRC", action="append", default=[], choices=TASK_SOURCES,
                      help="fashion-mnist or animal-mnist")  # fmt: skip
    opts = parser.add_argument_group("settings")
    opts.add_argument("--templates", default="openai",
                      help="openai (80), short (7), single, plain, emoji, drawing, a file, or auto (each "
                      "benchmark's set chosen on the emoji set's validation classes)")
    opts.add_argument("--emoji-root", default="data/emoji", help="directory written by 'clipforge data emoji'")
    opts.add_argument("--fashion-mnist-dir", default="", help="Fashion-MNIST idx files (default: Debian's)")
    opts.add_argument("--limit", type=int, help="at most N test images per benchmark (quick runs)")
    opts.add_argument("--probe-train-limit", type=int, default=5000, help="training images per linear probe")
    opts.add_argument("--batch-size", type=int, default=128)
    opts.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    opts.add_argument("--out-dir", help="where results.json and report.html go (default CHECKPOINT/eval)")
    opts.add_argument("--run-dir", help="training run directory: its metrics.jsonl and config go in the report")
    opts.add_argument("--no-report", action="store_true", help="write results.json only")


def load_pipeline(checkpoint: str, device: str):  # a seam for tests, which use toy pipelines
    import clipforge

    return clipforge.load(checkpoint, device=device)


def _benchmarks(args: argparse.Namespace) -> list[Any]:
    from clipforge.eval import retrieval, suite, zeroshot
    from clipforge.eval.datasets import DatasetConfig

    chosen = list(suite.SUITES[args.suite]) if args.suite else []
    if args.classes_from_folders:
        chosen.append(suite.folder_benchmark(args.classes_from_folders))
    for src in args.zeroshot:
        if src == "fashion-mnist":
            chosen.append(suite.FASHION_ZS)
        elif src == "animal-mnist":
            chosen.append(suite.ANIMAL_ZS)
        elif Path(src).is_dir():
            chosen.append(suite.folder_benchmark(src))
        else:
            data = DatasetConfig(kind="jsonl", path=src, limit=args.limit)
            make = lambda c, data=data: zeroshot.ZeroShotConfig(data, c.templates, c.batch_size, c.progress)
            chosen.append(suite.Benchmark("zeroshot", Path(src).stem, f"labelled rows of {src}", make))
    for src in args.retrieval:
        data = DatasetConfig(kind="jsonl", path=src, limit=args.limit)
        make = lambda c, data=data: retrieval.RetrievalConfig(data, c.batch_size, c.progress)
        chosen.append(suite.Benchmark("retrieval", Path(src).stem, f"captions of {src}", make))
    for src in args.linear_probe:
        chosen.append(suite.FASHION_PROBE if src == "fashion-mnist" else suite.ANIMAL_PROBE)
    return chosen


def run(args: argparse.Namespace) -> int:
    from clipforge.errors import UserError
    from clipforge.eval import suite
    from clipforge.eval.runner import evaluate_and_report

    if not (args.suite or args.classes_from_folders or args.zeroshot or args.retrieval or args.linear_probe):
        args.suite = "demo"
    if args.suite and args.suite not in suite.SUITES:
        raise UserError(f"unknown suite {args.suite!r}", hint=f"choose one of {', '.join(suite.SUITES)}")
    cfg = suite.SuiteConfig(
        name=args.suite or "custom", emoji_root=args.emoji_root, fashion_mnist_dir=args.fashion_mnist_dir,
        templates=args.templates, limit=args.limit, probe_train_limit=args.probe_train_limit,
        batch_size=args.batch_size, progress=True,
    )  # fmt: skip
    from clipforge.eval.templates import get_templates

    if args.templates != "auto":
        get_templates(args.templates)  # a bad template file is reported before the model loads
    benchmarks = _benchmarks(args)
    start = time.perf_counter()
    pipeline = load_pipeline(args.checkpoint, args.device)
    load_seconds = time.perf_counter() - start
    ckpt = Path(args.checkpoint)
    out_dir = Path(args.out_dir) if args.out_dir else (ckpt / "eval" if ckpt.is_dir() else Path("eval-results"))
    evaluate_and_report(
        pipeline, cfg, out_dir, benchmarks=benchmarks, checkpoint=str(args.checkpoint), run_dir=args.run_dir,
        html=not args.no_report, extra_meta={"device": args.device, "model load seconds": round(load_seconds, 2)},
    )  # fmt: skip
    print(f"results: {out_dir / 'results.json'}")
    if not args.no_report:
        print(f"report:  {out_dir / 'report.html'}")
    return 0
