"""Search an index: text->image, image->image, or image->text (a label list or the indexed captions).

examples:
  clipforge search runs/photos-index --text "a red car" -k 5
  clipforge search runs/photos-index --image query.jpg --json
  clipforge search runs/photos-index --image query.jpg --labels "cat,dog,car"
  clipforge search runs/photos-index --image query.jpg --captions-from runs/photos-index
"""

from __future__ import annotations

import argparse
import json

from clipforge.commands.config_args import PRECISION_HELP, PRECISIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", help="index directory from 'clipforge index'")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="text query: find matching images")
    what.add_argument("--image", help="image query: find similar images (or texts with --labels/--captions-from)")
    to_text = parser.add_mutually_exclusive_group()
    to_text.add_argument("--labels", help='image->text: rank these comma-separated labels ("cat,dog,car")')
    to_text.add_argument("--captions-from", metavar="INDEX", help="image->text: rank the captions of this index")
    parser.add_argument("-k", type=int, default=10, help="results to show (1..100, default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--device", default="cpu", help="where the query model runs (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help=PRECISION_HELP)


def run(args: argparse.Namespace) -> int:
    # Deferred with the work: the job imports torch and faiss, and rich's tables take a while to import;
    # `clipforge --help` must not wait for either.
    from rich.console import Console
    from rich.table import Table

    from clipforge.index.jobs import run_search

    labels = args.labels.split(",") if args.labels else None
    rows = run_search(args.index, text=args.text, image=args.image, labels=labels, captions_from=args.captions_from,
                      k=args.k, device=args.device, precision=args.precision)  # fmt: skip
    if args.json:
        print(json.dumps({"results": rows}, indent=2))
        return 0
    table = Table(title=f"top {len(rows)}")
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["id", "path", "score"]
    for column in columns:
        table.add_column(column, justify="right" if column in ("score", "prob", "id") else "left")
    for row in rows:
        cells = (row.get(c, "") for c in columns)
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in cells))
    Console().print(table)
    return 0
