"""``clipforge data`` subcommands for builders whose data comes from npm or apt, and hints for planned ones."""

from __future__ import annotations

import argparse

from clipforge.errors import UserError

# Planned sources: each command exists so users find it, and says what it would need.
PLANNED = {
    "openmoji-npm": "OpenMoji colour + black line art with tags (npm install --prefix data_cache/npm openmoji)",
    "iconify": "390k named icons in 243 sets (npm install --prefix data_cache/npm @iconify/json)",
    "openclipart": "8k clip-art drawings, titles + keywords (apt-get install -y openclipart-svg)",
}


def add_external_parsers(sub: argparse._SubParsersAction) -> None:
    """Register emoji-datasource, tuxpaint and the planned builders on the ``clipforge data`` subparsers."""
    eds = sub.add_parser("emoji-datasource", help="Google/Twitter emoji artwork from npm emoji-datasource-*")
    eds.add_argument("out", help="output folder (same layout as 'clipforge data emoji')")
    eds.add_argument("--style", choices=("google", "twitter"), default="google")
    eds.add_argument(
        "--npm-dir", default="data_cache/npm", help="npm prefix holding node_modules/ (default data_cache/npm)"
    )
    eds.add_argument("--install", action="store_true", help="run npm install if the package is missing")
    eds.add_argument("--size", type=int, default=64, help="image side in pixels (default 64, the files' own size)")
    eds.add_argument("--limit", type=int, default=None, help="only the first N images")
    eds.set_defaults(_data_run=_run_emoji_datasource)

    tux = sub.add_parser("tuxpaint", help="Tux Paint stamps with sentence captions (apt tuxpaint-stamps-default)")
    tux.add_argument("out", help="output folder (same layout as 'clipforge data emoji')")
    tux.add_argument("--root", default="/usr/share/tuxpaint/stamps", help="the stamps folder")
    tux.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    tux.add_argument("--limit", type=int, default=None, help="only the first N stamps")
    tux.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    tux.set_defaults(_data_run=_run_tuxpaint)

    for name, what in PLANNED.items():
        planned = sub.add_parser(name, help=f"(not implemented yet) {what.split(' (')[0]}")
        planned.add_argument("out", nargs="?")
        planned.set_defaults(_data_run=_planned(name, what))


def _planned(name: str, what: str):
    def run(args: argparse.Namespace) -> int:
        raise UserError(
            f"the '{name}' builder is not implemented yet: {what}",
            hint="use 'clipforge data emoji', 'emoji-datasource' or 'tuxpaint'",
        )

    return run


def _print(stats: dict) -> None:
    import json

    keys = ("images", "classes", "train_classes", "heldout_classes")
    print(json.dumps({k: stats[k] for k in keys} | {"splits": stats["splits"]}, indent=1))


def _run_emoji_datasource(args: argparse.Namespace) -> int:
    from clipforge.data.builders.emoji_datasource import build_emoji_datasource

    _print(
        build_emoji_datasource(
            args.out, args.style, args.npm_dir, size=args.size, limit=args.limit, install=args.install
        )
    )
    return 0


def _run_tuxpaint(args: argparse.Namespace) -> int:
    from clipforge.data.builders.tuxpaint import build_tuxpaint

    _print(build_tuxpaint(args.out, args.root, size=args.size, limit=args.limit, workers=args.workers))
    return 0
