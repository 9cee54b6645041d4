"""Flag images whose similarity to a concept text passes the concept's threshold.

Concepts come from a YAML file:
  concepts:
    - name: weapon
      prompts: ["a photo of a weapon", "a photo of a gun"]
      threshold: 0.24            # optional when labelled= calibrates it

With labelled=CSV (columns path,concept,label; label 1 or 0; paths relative to the CSV), each concept's
threshold becomes the lowest one reaching the requested precision on that set; when the precision cannot be
reached the report says so and the YAML threshold (if any) is kept. Writes OUT/report.json, OUT/report.csv
(flagged items with scores), OUT/concepts.yaml (the thresholds used; 'clipforge serve --concepts' reads it)
and OUT/moderate_config.yaml (the resolved config).

examples:
  clipforge moderate runs/tiny/ckpt uploads/ concepts=concepts.yaml labelled=labelled.csv out=runs/mod
  clipforge moderate runs/tiny/ckpt runs/photos-emb concepts=runs/mod/concepts.yaml out=runs/mod2

Keys are the fields of clipforge.index.config.ModerateConfig: checkpoint, src, concepts, labelled,
precision, out, batch_size, workers, device.
"""

from __future__ import annotations

import argparse

from clipforge.commands.config_args import add_config_arguments, print_config, resolve_args
from clipforge.index.config import ModerateConfig

POSITIONALS = ("checkpoint", "src")
RETIRED = {
    "--concepts": "concepts={}", "--labelled": "labelled={}", "--precision": "precision={}", "--out": "out={}",
    "--batch-size": "batch_size={}", "--workers": "workers={}", "--device": "device={}",
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, POSITIONALS)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_args(ModerateConfig, args, POSITIONALS)
    if args.print_config:
        print_config(cfg)
        return 0
    from rich.console import Console  # deferred with the job: `clipforge --help` stays instant

    from clipforge.index.jobs import run_moderate  # deferred: imports torch

    console = Console()
    result = run_moderate(cfg)
    for cal in result.calibrations.values():
        colour = "green" if cal.reachable else "yellow"
        at = f"threshold {cal.threshold:.4f}" if cal.threshold is not None else "no threshold"
        console.print(f"[{colour}]{cal.concept}: {at}, precision {cal.precision:.3f}, recall {cal.recall:.3f} "
                      f"({cal.positives} positive / {cal.negatives} negative): {cal.note}[/{colour}]")
    if result.unthresholded:
        console.print(f"[yellow]no threshold for {result.unthresholded}: these concepts are scored but flag "
                      f"nothing[/yellow]")
    console.print(f"flagged {len({r['path'] for r in result.rows})} of {result.total} images "
                  f"({len(result.rows)} concept matches); report in {cfg.out}/report.json and report.csv")
    return 0
