"""Flag images whose similarity to a concept text passes the concept's threshold.

Concepts come from a YAML file:
  concepts:
    - name: weapon
      prompts: ["a photo of a weapon", "a photo of a gun"]
      threshold: 0.24            # optional when --labelled calibrates it

With --labelled (a CSV with columns path,concept,label; label 1 or 0; paths relative to the CSV), each
concept's threshold becomes the lowest one reaching --precision on that set; when the precision cannot be
reached the report says so and the YAML threshold (if any) is kept. Writes OUT/report.json, OUT/report.csv
(flagged items with scores) and OUT/concepts.yaml (the thresholds used; 'clipforge serve --concepts' reads it).

examples:
  clipforge moderate runs/tiny/ckpt uploads/ --concepts concepts.yaml --labelled labelled.csv --out runs/mod
  clipforge moderate runs/tiny/ckpt runs/photos-emb --concepts runs/mod/concepts.yaml --out runs/mod2
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="clipforge checkpoint directory")
    parser.add_argument("src", help="images to check: folder, pairs table, shards, or an embedding directory")
    parser.add_argument("--concepts", required=True, help="concepts YAML (names, prompts, optional thresholds)")
    parser.add_argument("--labelled", default=None, help="CSV path,concept,label for threshold calibration")
    parser.add_argument("--precision", type=float, default=0.9, help="precision to calibrate for (default 0.9)")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from clipforge.errors import UserError
    from clipforge.index.moderate import read_concepts
    from clipforge.index.moderate_run import calibrate_from_csv, moderate_collection, write_report
    from clipforge.index.search import Searcher
    from clipforge.pipeline import load

    if not 0 < args.precision <= 1:
        raise UserError(f"--precision must be in (0, 1], got {args.precision}")
    console = Console()
    concepts = read_concepts(args.concepts)
    pipeline = load(args.checkpoint, device=args.device)
    embed_texts = Searcher.text_embedder(pipeline)
    opts = {"batch_size": args.batch_size, "workers": args.workers, "device": args.device}
    calibrations = {}
    if args.labelled:
        concepts, calibrations = calibrate_from_csv(pipeline, concepts, Path(args.labelled), args.precision, **opts)
        for cal in calibrations.values():
            colour = "green" if cal.reachable else "yellow"
            at = f"threshold {cal.threshold:.4f}" if cal.threshold is not None else "no threshold"
            console.print(f"[{colour}]{cal.concept}: {at}, precision {cal.precision:.3f}, recall {cal.recall:.3f} "
                          f"({cal.positives} positive / {cal.negatives} negative): {cal.note}[/{colour}]")
    missing = [c.name for c in concepts if c.threshold is None]
    if missing:
        console.print(f"[yellow]no threshold for {missing}: these concepts are scored but flag nothing[/yellow]")
    rows, total, skipped = moderate_collection(pipeline, args.checkpoint, args.src, concepts, embed_texts, **opts)
    write_report(Path(args.out), concepts, calibrations, rows, total, skipped, args.precision)
    console.print(f"flagged {len({r['path'] for r in rows})} of {total} images ({len(rows)} concept matches); "
                  f"report in {args.out}/report.json and report.csv")
    return 0
