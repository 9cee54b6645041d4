"""Train a CLIP model from a YAML run config, with key=value overrides.

example:
  clipforge train configs/runs/tiny-emoji.yaml
  clipforge train configs/runs/tiny-emoji.yaml optim.lr=1e-3 steps=200 run_dir=runs/try2
  clipforge train configs/runs/tiny-emoji.yaml model=ViT-B-32 --print-config   # the model brings its sizes
  clipforge train --resume runs/tiny-emoji steps=1500     # continue a run with its saved config, 300 more steps
  clipforge train configs/runs/tiny-emoji.yaml --resume latest    # continue run_dir's newest checkpoint if any
  torchrun --nproc_per_node=8 -m clipforge train configs/runs/big.yaml precision=bf16

Keys are the fields of clipforge.train.config.TrainConfig, dotted for nested ones (optim.lr, data.train,
model=tiny-vit or model.vision.patch_dropout=0.5). A model chosen on the command line brings its own image
size, text context and tokenizer (the recipe's apply to the recipe's model); set image_size= or tokenizer=
after it to keep others. The resolved config is written to RUN_DIR/config.yaml, metrics to
RUN_DIR/metrics.jsonl, checkpoints to RUN_DIR/checkpoints/ and the final model to RUN_DIR/final (load it with
clipforge.load). A resumed run reads RUN_DIR/config.yaml; key=value after --resume changes it (steps=...).
"""

from __future__ import annotations

import argparse
import json
import sys

from clipforge.commands.config_args import print_config, split_items
from clipforge.train.config import config_for_resume, load_train_config
from clipforge.train.model_defaults import describe

CONFIG_KEY = "config="  # what split_items calls the run config YAML, the one plain word


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "items", nargs="*", metavar="ARG",
        help="the run config YAML (e.g. configs/runs/tiny-emoji.yaml; optional with --resume RUN_DIR), "
        "then KEY=VALUE overrides, e.g. optim.lr=1e-3",
    )  # fmt: skip
    parser.add_argument(
        "--resume", metavar="latest|PATH", default=None,
        help="continue from run_dir's newest checkpoint ('latest'; a fresh start when there is none), a run "
        "directory (its saved config.yaml and newest checkpoint) or a step_*.pt file",
    )  # fmt: skip
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    overrides = split_items(args.items, ["config"])
    config = _take_config(overrides)
    yaml_path, overrides = config_for_resume(config, overrides, args.resume)
    cfg = load_train_config(yaml_path, overrides)
    if args.print_config:
        sys.stdout.write(f"# {describe(cfg)}\n")
        print_config(cfg)
        return 0
    from clipforge.train.trainer import run_training  # deferred: imports torch and the whole training stack

    result = run_training(cfg, resume=args.resume)
    if result.final_dir is not None:
        print(f"trained {result.step} steps ({result.skipped_steps} skipped), "
              f"{result.samples_per_s:.1f} samples/s; final model: {result.final_dir}")
    return 0


def _take_config(overrides: list[str]) -> str | None:
    """Remove the ``config="PATH"`` item ``split_items`` made of the leading plain word (it comes first)."""
    if overrides and overrides[0].startswith(CONFIG_KEY):
        return json.loads(overrides.pop(0)[len(CONFIG_KEY):])
    return None
