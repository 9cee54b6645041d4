"""Run the main job end to end: emoji + icon data -> train a tiny CLIP -> index -> search -> evaluate.

example:
  clipforge demo                          # what `make demo` runs (docs/demo.md: its measured wall time)
  clipforge demo out=runs/demo2 train=[seed=1]   # a second demo beside the first, another seed
  clipforge demo --quick                  # a shortened run through the same code path (CI, smoke tests)
  clipforge demo device=cuda fresh=true   # on the GPU, retraining even if OUT holds a finished run
  clipforge demo --print-config           # the resolved config (clipforge.demo.config.DemoConfig), then exit

Keys are the fields of clipforge.demo.config.DemoConfig (defaults <- optional YAML <- key=value); `train`
takes TrainConfig overrides applied after the packaged recipe (clipforge/demo/configs/tiny-emoji.yaml).
Re-running reuses what is already built (the data set, a finished training run, embeddings, the index).
Results: OUT/results.json and OUT/report.html; the resolved config: OUT/demo_config.yaml (`clipforge demo
OUT/demo_config.yaml` runs the same demo again); the searchable index: OUT/index
(serve it with `clipforge serve --index OUT/index`).
"""

from __future__ import annotations

import argparse

from clipforge.commands.config_args import print_config
from clipforge.errors import UserError

RETIRED = {"--out": "out={}", "--device": "device={}", "--fresh": "fresh=true"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", nargs="*", metavar="[CONFIG.yaml] KEY=VALUE",
                        help="an optional DemoConfig YAML, then overrides such as out=runs/demo2")
    parser.add_argument("--quick", action="store_true", help="tiny data subset and a few steps: a smoke test")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    from clipforge.demo.config import load_demo_config  # deferred: reads the icon sets' names (PIL, packages)

    items = list(args.items)
    yaml_path = items.pop(0) if items and "=" not in items[0] else None
    if any("=" not in item for item in items):
        raise UserError(f"expected key=value overrides after the config file, got {items}",
                        hint="e.g. clipforge demo out=runs/demo2 train=[seed=1]")
    cfg = load_demo_config(yaml_path, items, quick=args.quick)
    if args.print_config:
        print_config(cfg)
        return 0
    from clipforge.demo.job import run_demo  # deferred: imports torch and every stage

    run_demo(cfg)
    return 0
