"""Embed an image collection into an embedding directory (Parquet metadata + .npy vectors).

SRC is a folder of images (recursive; a sidecar NAME.txt is the caption), a pairs table (CSV, TSV, JSONL,
Parquet with image and caption columns), or WebDataset .tar shards. Re-running resumes: images whose path
and content hash are already in OUT are skipped. Bad images are skipped, logged and counted.

examples:
  clipforge embed runs/tiny/ckpt photos/ runs/photos-emb
  clipforge embed runs/tiny/ckpt pairs.parquet out=runs/emb caption_column=text batch_size=128
  torchrun --nproc_per_node=2 -m clipforge embed runs/tiny/ckpt pairs.parquet runs/emb

Keys are the fields of clipforge.index.config.EmbedConfig: checkpoint, src, out, batch_size, workers,
dtype (float16 or float32), device (auto, cpu, cuda[:N]), image_column, caption_column, max_pixels.
The resolved config is written to OUT/embed_config.yaml.
"""

from __future__ import annotations

import argparse

from clipforge.commands.config_args import add_config_arguments, add_precision_argument, print_config, resolve_args
from clipforge.index.config import EmbedConfig

POSITIONALS = ("checkpoint", "src", "out")
RETIRED = {
    "--out": "out={}", "--batch-size": "batch_size={}", "--workers": "workers={}", "--dtype": "dtype={}",
    "--device": "device={}", "--image-column": "image_column={}", "--caption-column": "caption_column={}",
    "--max-pixels": "max_pixels={}",
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, POSITIONALS)
    add_precision_argument(parser)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_args(EmbedConfig, args, POSITIONALS)
    if args.print_config:
        print_config(cfg)
        return 0
    from rich.console import Console  # deferred with the job: `clipforge --help` stays instant

    from clipforge.index.jobs import run_embed  # deferred: imports torch

    result = run_embed(cfg)
    if result.manifest is not None:  # rank 0: the merged manifest
        m = result.manifest
        skipped = ", ".join(f"{v} {k}" for k, v in sorted(result.skipped.items())) or "none"
        Console().print(f"embedded {result.embedded} new images on rank 0 (skipped: {skipped}); "
                        f"{cfg.out} holds {m.count} x {m.dim} {m.dtype} vectors")
        if m.skipped:
            Console().print(f"[yellow]bad images skipped in this run (all ranks): {m.skipped}[/yellow]")
    return 0
