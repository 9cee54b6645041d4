"""Serve an index over HTTP: a JSON API and a search page at / (FastAPI + uvicorn).

Listens on 127.0.0.1 by default; pass --host 0.0.0.0 only on a trusted network (there is no authentication).
Queries are embedded with the checkpoint recorded in the index. --concepts enables POST /moderate with the
thresholds of a concepts YAML (e.g. the calibrated OUT/concepts.yaml written by 'clipforge moderate').

examples:
  clipforge serve --index runs/photos-index
  clipforge serve --index runs/photos-index --port 8080 --concepts runs/mod/concepts.yaml
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="index directory from 'clipforge index'")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--concepts", default=None, help="concepts YAML with thresholds, for POST /moderate")
    parser.add_argument("--device", default="cpu", help="where the query model runs (default cpu)")


def build(index: str, concepts: str | None = None, device: str = "cpu"):  # noqa: ANN201 - FastAPI app
    """The app for an index directory (loads the recorded checkpoint)."""
    from clipforge.index.search import Searcher
    from clipforge.serve.app import create_app

    searcher = Searcher.open(index, device=device)
    moderator = None
    if concepts:
        from clipforge.index.moderate import Moderator, read_concepts

        probability = searcher.concept_probabilities if searcher.probability_kind() == "sigmoid" else None
        moderator = Moderator(read_concepts(concepts), searcher.embed_texts, probability)
    return create_app(searcher, moderator)


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from rich.console import Console

    app = build(args.index, args.concepts, args.device)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        Console().print(f"[yellow]listening on {args.host}: reachable from other machines, without auth[/yellow]")
    Console().print(f"serving {args.index} at http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
