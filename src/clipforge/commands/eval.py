"""Evaluate a checkpoint: zero-shot classification, retrieval, linear probe; JSON results and an HTML report.

examples:
  clipforge eval runs/demo/train/final suite.name=demo suite.emoji_root=data/emoji run_dir=runs/demo
  clipforge eval runs/demo/train/final suite.name=transfer suite.limit=1000
  clipforge eval imported/ViT-B-32 zeroshot=[photos/]                  # folder-per-class zero-shot
  clipforge eval CHECKPOINT zeroshot=[fashion-mnist] suite.templates=short
  clipforge eval CHECKPOINT retrieval=[data/emoji/heldout.jsonl]
  clipforge eval --config my-eval.yaml                                  # the same keys, from a YAML file
  clipforge eval CHECKPOINT --print-config                              # every key with its value

Keys are the fields of clipforge.eval.config.EvalConfig: checkpoint, suite.{name, emoji_root,
fashion_mnist_dir, templates, limit, probe_train_limit, batch_size, progress}, zeroshot, retrieval,
linear_probe, device, out_dir, run_dir, report.
suite.templates: openai (80), short (7), single, plain, emoji, drawing, a file, or auto (each benchmark's set
chosen on the emoji set's validation classes).
suites (suite.name): demo (emoji held-out classes, Fashion-MNIST and Animal-MNIST zero-shot), emoji (held-out
classes and held-out subgroups; the latter is zero-shot only for a model trained on train_strict.jsonl),
transfer (Fashion-MNIST and Animal-MNIST zero-shot + linear probe), full (all of them). Without a suite and
without extra benchmarks, the demo suite runs. A benchmark whose data is not installed is skipped with the
command that installs it.
Writes OUT_DIR/results.json, timings.json, report.html and eval_config.yaml (the resolved config; default
OUT_DIR: RUN_DIR/eval, else ./eval-results/CHECKPOINT_NAME; never the checkpoint directory).
"""

from __future__ import annotations

import argparse

from clipforge.commands.config_args import add_config_arguments, add_precision_argument, print_config, resolve_args
from clipforge.eval.config import EvalConfig

POSITIONALS = ("checkpoint",)
RETIRED = {
    "--suite": "suite.name={}", "--classes-from-folders": "zeroshot=[{}]", "--zeroshot": "zeroshot=[{}]",
    "--retrieval": "retrieval=[{}]", "--linear-probe": "linear_probe=[{}]", "--templates": "suite.templates={}",
    "--emoji-root": "suite.emoji_root={}", "--fashion-mnist-dir": "suite.fashion_mnist_dir={}",
    "--limit": "suite.limit={}", "--probe-train-limit": "suite.probe_train_limit={}",
    "--batch-size": "suite.batch_size={}", "--device": "device={}", "--out-dir": "out_dir={}",
    "--run-dir": "run_dir={}", "--no-report": "report=false",
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, POSITIONALS)
    add_precision_argument(parser)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_args(EvalConfig, args, POSITIONALS)
    if args.print_config:
        print_config(cfg)
        return 0
    from clipforge.eval import job  # deferred: imports torch and the evaluators

    job.run_eval(cfg)
    out = job.out_dir(cfg)
    print(f"results: {out / 'results.json'}")
    if cfg.report:
        print(f"report:  {out / 'report.html'}")
    return 0
