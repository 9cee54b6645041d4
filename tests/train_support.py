"""Shared pieces of the training tests: a tiny synthetic pair set and a deterministic loader over it.

The synthetic set lets the trainer's own logic (resume, accumulation, NaN handling, checkpoints) be tested
in seconds; tests that need real files use ``write_png_pairs`` and the real ``build_loader``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from clipforge.data.loader import Batch
from clipforge.train.config import CheckpointConfig, LogConfig, OptimConfig, TrainConfig


class PairSet(torch.utils.data.Dataset):
    """``n`` fixed (image, text) pairs: random pixels and random token ids ending in end-of-text."""

    def __init__(self, n: int, image_size: int = 32, context: int = 16, vocab: int = 49408, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.pixels = torch.randn(n, 3, image_size, image_size, generator=g)
        lengths = torch.randint(3, context, (n,), generator=g)
        ids = torch.randint(1, vocab - 2, (n, context), generator=g)
        ar = torch.arange(context)
        ids = torch.where(ar[None] < lengths[:, None], ids, torch.zeros_like(ids))
        ids[torch.arange(n), lengths] = vocab - 1  # end-of-text is the highest id
        ids[:, 0] = vocab - 2  # start-of-text
        self.token_ids = ids

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.pixels[i], self.token_ids[i], i


def _collate(items: list) -> Batch:
    px, ids, idx = zip(*items, strict=True)
    return Batch(torch.stack(px), torch.stack(ids), torch.tensor(idx))


class SyntheticLoader:
    """One epoch over ``data``: order a function of (seed, epoch), rank-sharded, first ``skip`` batches skipped."""

    def __init__(self, data: PairSet, batch_size: int, epoch: int, seed: int, skip: int, workers: int,
                 rank: int = 0, world_size: int = 1) -> None:
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
        # Global batch g covers positions [g*W*B, (g+1)*W*B) of the order; rank r takes the r-th block of B
        # (the real loader's layout), so W ranks see exactly the single-process batches between them.
        self.n_batches = len(order) // (world_size * batch_size)
        mine = [order[g * world_size * batch_size + rank * batch_size + i]
                for g in range(skip, self.n_batches) for i in range(batch_size)]
        self.loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(data, mine), batch_size=batch_size, shuffle=False, num_workers=workers,
            collate_fn=_collate, drop_last=True,
        )

    def __iter__(self):
        return iter(self.loader)

    def __len__(self) -> int:
        return self.n_batches


def synthetic_factory(data: PairSet, batch_size: int, seed: int = 0, workers: int = 0, rank: int = 0,
                      world_size: int = 1):
    def factory(epoch: int, skip: int) -> SyntheticLoader:
        return SyntheticLoader(data, batch_size, epoch, seed, skip, workers, rank, world_size)

    return factory


def tiny_config(run_dir: Path, **overrides) -> TrainConfig:
    """test-vit, fp32 on CPU, no progress bar or TensorBoard: a run of a few steps takes about a second."""
    base = TrainConfig(
        model="test-vit",
        batch_size=16,
        steps=8,
        device="cpu",
        seed=0,
        run_dir=str(run_dir),
        optim=OptimConfig(lr=1e-3, warmup_steps=2, weight_decay=0.1),
        checkpoint=CheckpointConfig(every_steps=0, keep_last=2),
        log=LogConfig(every_steps=1, tensorboard=False, progress=False),
    )
    return dataclasses.replace(base, **overrides)


def write_png_pairs(root: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    """``n`` small PNG files with two captions each, listed in ``root/train.jsonl`` (image + captions columns)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        path = root / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        lines.append(json.dumps({"image": path.name, "captions": [f"picture number {i}", f"thing {i % 7}"]}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root / "train.jsonl"
