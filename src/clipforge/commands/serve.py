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

from clipforge.commands.config_args import PRECISION_HELP, PRECISIONS
from clipforge.data.config import DEFAULT_MAX_PIXELS
from clipforge.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="index directory from 'clipforge index'")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--concepts", default=None, help="concepts YAML with thresholds, for POST /moderate")
    parser.add_argument("--device", default="cpu", help="where the query model runs (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help=PRECISION_HELP)
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"decoding budget per uploaded image, width x height (default {DEFAULT_MAX_PIXELS})")


def run(args: argparse.Namespace) -> int:
    # Checked before the model loads, so a typo costs nothing (uvicorn would fail only after loading).
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a TCP port", hint="use a port between 1024 and 65535, e.g. 8000")
    if args.max_pixels < 1:
        raise UserError(f"--max-pixels {args.max_pixels} must be at least 1", hint="the default is 40000000")
    # Deferred with the work: these import torch, faiss and fastapi, which `clipforge --help` must not wait for.
    import uvicorn
    from rich.console import Console

    from clipforge.serve.app import app_for_index
    from clipforge.serve.guard import LOOPBACK_HOSTS

    app = app_for_index(args.index, args.concepts, args.device, args.precision, host=args.host,
                        max_pixels=args.max_pixels)
    if args.host not in LOOPBACK_HOSTS:
        Console().print(f"[yellow]listening on {args.host}: reachable from other machines, without auth[/yellow]")
    Console().print(f"serving {args.index} at http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
