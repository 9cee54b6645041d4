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
from pathlib import Path

from clipforge.errors import UserError


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


def run(args: argparse.Namespace) -> int:
    # Deferred with the work: these import torch and faiss, which `clipforge --help` must not wait for.
    from rich.console import Console
    from rich.table import Table

    from clipforge.data.transforms import load_image
    from clipforge.index.search import Searcher, check_k
    from clipforge.index.store import load_store

    check_k(args.k)
    if (args.labels or args.captions_from) and not args.image:
        raise UserError("--labels and --captions-from rank texts for an --image query")
    searcher = Searcher.open(args.index, device=args.device)
    image = None
    if args.image:
        path = Path(args.image)
        if not path.is_file():
            raise UserError(f"{path}: no such image file")
        image = load_image(path.read_bytes(), str(path))
    if args.text is not None:
        rows = [h.to_json() for h in searcher.text_to_image(args.text, args.k)]
    elif args.labels:
        rows = [s.to_json() for s in searcher.classify(image, args.labels.split(","))[: args.k]]
    elif args.captions_from:
        if Path(args.captions_from).resolve() != Path(args.index).resolve():
            other = load_store(args.captions_from)
            if other.manifest["checkpoint"].get("config_sha256") != searcher.store.manifest["checkpoint"].get(
                "config_sha256"
            ):
                raise UserError(f"{args.captions_from} was built with another model than {args.index}")
            searcher = Searcher(other, searcher.pipeline)
        rows = [h.to_json() for h in searcher.image_to_captions(image, args.k)]
    else:
        rows = [h.to_json() for h in searcher.image_to_image(image, args.k)]
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
