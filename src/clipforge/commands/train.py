"""Train a CLIP model from a YAML run config, with key=value overrides.

example:
  clipforge train configs/runs/tiny-emoji.yaml
  clipforge train configs/runs/tiny-emoji.yaml optim.lr=1e-3 steps=200 run_dir=runs/try2
  clipforge train configs/runs/tiny-emoji.yaml --resume latest      # continue run_dir's newest checkpoint
  torchrun --nproc_per_node=8 -m clipforge train configs/runs/big.yaml precision=bf16

Keys are the fields of clipforge.train.config.TrainConfig, dotted for nested ones (optim.lr, data.train,
model=tiny-vit or model.vision.patch_dropout=0.5). The resolved config is written to RUN_DIR/config.yaml,
metrics to RUN_DIR/metrics.jsonl, checkpoints to RUN_DIR/checkpoints/ and the final model to RUN_DIR/final
(load it with clipforge.load).
"""

from __future__ import annotations

import argparse

from clipforge.commands.config_args import print_config
from clipforge.train.config import load_train_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="run config YAML (e.g. configs/runs/tiny-emoji.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=1e-3")
    parser.add_argument(
        "--resume", metavar="latest|PATH", default=None,
        help="continue from run_dir's newest checkpoint ('latest'), a step_*.pt file, or a run directory",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    cfg = load_train_config(args.config, args.overrides)
    if args.print_config:
        print_config(cfg)
        return 0
    from clipforge.train.trainer import run_training  # deferred: imports torch and the whole training stack

    result = run_training(cfg, resume=args.resume)
    if result.final_dir is not None:
        print(f"trained {result.step} steps ({result.skipped_steps} skipped), "
              f"{result.samples_per_s:.1f} samples/s; final model: {result.final_dir}")
    return 0
