"""Embed an image collection into an embedding directory (Parquet metadata + .npy vectors).

SRC is a folder of images (recursive; a sidecar NAME.txt is the caption), a pairs table (CSV, TSV, JSONL,
Parquet with image and caption columns), or WebDataset .tar shards. Re-running resumes: images whose path
and content hash are already in --out are skipped. Bad images are skipped, logged and counted.

examples:
  clipforge embed runs/tiny/ckpt photos/ --out runs/photos-emb
  torchrun --nproc_per_node=2 -m clipforge embed runs/tiny/ckpt pairs.parquet --out runs/emb
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="clipforge checkpoint directory")
    parser.add_argument("src", help="folder, pairs table (.csv/.tsv/.jsonl/.parquet) or .tar shards")
    parser.add_argument("--out", required=True, help="embedding directory to create or resume")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="decoding worker processes per rank (default 2)")
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                        help="stored vector precision (default float16: half the size, cosine error ~1e-3)")
    parser.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")
    parser.add_argument("--image-column", default="image", help="image column of a pairs table")
    parser.add_argument("--caption-column", default="caption", help="caption column of a pairs table")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="decoding budget per image in pixels (default 40 million); larger ones are skipped")


def run(args: argparse.Namespace) -> int:
    import torch.distributed as dist
    from rich.console import Console

    from clipforge.data.config import DEFAULT_MAX_PIXELS
    from clipforge.data.sources import open_source
    from clipforge.dist.env import destroy_distributed, init_distributed
    from clipforge.index.embed import embed_collection
    from clipforge.index.manifest import checkpoint_fingerprint
    from clipforge.pipeline import load

    # Under torchrun this joins the process group (RANK/WORLD_SIZE/LOCAL_RANK); a plain run is rank 0 of 1.
    world = init_distributed(None if args.device is None else args.device.partition(":")[0])
    # A single process honours an explicit "cuda:N"; under torchrun each rank uses its LOCAL_RANK device.
    device = args.device if args.device and not world.distributed else world.device
    rank = world.rank
    try:
        collection = open_source(args.src, args.image_column, args.caption_column)
        pipeline = load(args.checkpoint, device=device)
        result = embed_collection(
            pipeline, collection, args.out, fingerprint=checkpoint_fingerprint(args.checkpoint), rank=rank,
            world=world.world_size, batch_size=args.batch_size, workers=args.workers, dtype=args.dtype,
            device=device, barrier=dist.barrier if world.distributed else None,
            max_pixels=DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels,
        )
    finally:
        if world.distributed:
            destroy_distributed()
    if rank == 0 and result.manifest is not None:
        m = result.manifest
        skipped = ", ".join(f"{v} {k}" for k, v in sorted(result.skipped.items())) or "none"
        Console().print(f"embedded {result.embedded} new images on rank 0 (skipped: {skipped}); "
                        f"{args.out} holds {m.count} x {m.dim} {m.dtype} vectors")
        if m.skipped:
            Console().print(f"[yellow]bad images skipped in this run (all ranks): {m.skipped}[/yellow]")
    return 0
