"""Loader throughput on the emoji set: samples/s by worker count and image size, table vs WebDataset shards.

Run: PYTHONPATH=src python benchmarks/data_loader.py [--limit 1500] [--out benchmarks/results]
Writes data_loader.json and data_loader.md. All cases run in one process, one after another, so the ratios
are comparable on a shared machine even when absolute numbers move.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def _tokenizer(texts: list[str]) -> torch.Tensor:
    # Stand-in for the CLIP tokenizer (cost excluded on purpose: this measures decode + transform + batching).
    return torch.zeros(len(texts), 77, dtype=torch.int64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=1500)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from clipforge.data.builders.emoji import build_emoji
    from clipforge.data.config import DataConfig, PreprocessConfig
    from clipforge.data.loader import build_loader
    from clipforge.data.shards import write_shards
    from clipforge.data.sources import open_source
    from clipforge.dist.env import World

    tmp = Path(tempfile.mkdtemp())
    build_emoji(tmp / "emoji", size=64, limit=args.limit)
    table = tmp / "emoji" / "train.jsonl"
    shards = tmp / "shards"
    write_shards(open_source(table, caption_field="captions"), shards, shard_size=250, image_format="png")
    results = []
    for source, spec in (("jsonl", table), ("shards", shards)):
        for image_size in (64, 224):
            for workers in (0, 2):
                cfg = DataConfig(train=str(spec), caption_column="captions", workers=workers, random_resized_crop=True)
                loader = build_loader(
                    cfg,
                    tokenizer=_tokenizer,
                    preprocess=PreprocessConfig(image_size=image_size),
                    world=World(),
                    batch_size=64,
                    train=True,
                    epoch=0,
                    seed=0,
                )
                start = time.perf_counter()
                n = sum(b.indices.numel() for b in loader)
                secs = time.perf_counter() - start
                results.append(
                    {
                        "source": source,
                        "image_size": image_size,
                        "workers": workers,
                        "samples": n,
                        "seconds": round(secs, 3),
                        "samples_per_s": round(n / secs, 1),
                    }
                )
                print(results[-1])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_loader.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["| source | image size | workers | samples | samples/s |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['source']} | {r['image_size']} | {r['workers']} | {r['samples']} | {r['samples_per_s']} |"
        for r in results
    ]
    (out / "data_loader.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
