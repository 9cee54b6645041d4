"""Training/eval data loading: every rank and worker reads a disjoint part of each epoch.

Contract used by the trainer (train/) and the evaluators (eval/):

    loader = build_loader(cfg, tokenizer=tok, preprocess=pp_cfg, world=world, batch_size=B,
                          train=True, epoch=e, seed=s, skip_batches=k)
    for batch in loader:            # batch: Batch
        batch.pixels     # (B', 3, H, W) float32, B' <= B when bad samples were skipped
        batch.token_ids  # (B', context_length) int64
        batch.teacher    # None, or distillation inputs: the teacher's views (build_loader(teacher=...)) or
                         # its stored embeddings (shards written by `clipforge data reinforce`)
    loader.stats         # SkipStats: counts of skipped items by reason, for the per-epoch summary

The order of an epoch is a pure function of (seed, epoch), so a resumed run that skips the first
``skip_batches`` batches of the epoch sees exactly the batches the uninterrupted run saw.

How an epoch is cut (folders and tables; see clipforge.data.datasets for the details):
- The epoch order is a permutation of all N samples drawn from (seed, epoch) (identity when ``train`` is
  False). It is cut into global batches of ``world_size * batch_size``; rank r takes the r-th slice of each.
- The last, partial global batch is split as evenly as possible over the ranks, so every rank steps the
  same number of times (DDP needs that) and nothing is duplicated. With one process nothing is ever dropped.
  With several, when fewer samples than ranks are left over in training, those (< world_size) samples sit
  out this epoch, counted as "tail" in SkipStats; a new permutation next epoch picks different ones.
- Each batch is read by exactly one DataLoader worker (the workers take whole batches in turn).
- A sample's random crop and caption choice come from a generator seeded by (seed, epoch, sample index).
- Skipped samples (corrupt, missing, empty_caption) shrink their batch: B' may be < B, even 0.

WebDataset shards: the shard list is permuted by (seed, epoch), rank r takes shards r, r+W, ...; worker w of
that rank takes every num_workers-th of those. Each worker batches its own stream (so up to ``workers``
partial batches per rank per epoch). Resume is exact: shard sizes come from shards.json (or are counted),
so the loader knows which worker produced each of the first ``skip_batches`` batches, skips those without
decoding them, and rotates the workers' roles so the remaining batches arrive in the original order. Ranks
can get different numbers of batches when shards differ in size: write equal shards (``clipforge data
shard``), a shard count divisible by world_size × workers, for DDP runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from clipforge.data import datasets
from clipforge.data.datasets import Batch
from clipforge.data.skips import SkipStats
from clipforge.data.sources import expand_shards, is_shard_spec, open_source, shard_counts
from clipforge.data.transforms import train_transform

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from clipforge.data.config import DataConfig, PreprocessConfig
    from clipforge.data.teacher import TeacherPrep
    from clipforge.dist.env import World

__all__ = ["Batch", "Loader", "SkipStats", "build_loader"]
log = logging.getLogger(__name__)


class Loader:
    """An epoch's batches for this rank. Iterating yields Batch; ``stats`` holds skip counts after the epoch."""

    stats: SkipStats
    num_samples: int  # samples in the whole dataset (all ranks)

    def __init__(self, dataloader, num_batches: int, num_samples: int, epoch: int, rank: int, initial: SkipStats):
        self._dataloader = dataloader
        self._num_batches = num_batches
        self._initial = initial
        self.num_samples = num_samples
        self.epoch = epoch
        self.rank = rank
        self.stats = SkipStats(dict(initial.counts))

    def __iter__(self) -> Iterator[Batch]:
        self.stats = SkipStats(dict(self._initial.counts))
        seen = 0
        for batch in self._dataloader:
            self.stats.update(batch.skipped)
            seen += int(batch.indices.numel())
            yield batch
        log.info("epoch %d rank %d: %d samples loaded, skipped: %s", self.epoch, self.rank, seen, self.stats.summary())

    def __len__(self) -> int:  # batches this rank will yield this epoch (upper bound for iterable sources)
        return self._num_batches


def _identity(batch):
    return batch


def build_loader(
    cfg: DataConfig,
    *,
    tokenizer: Callable[[list[str]], torch.Tensor],
    preprocess: PreprocessConfig,
    world: World,
    batch_size: int,
    train: bool,
    epoch: int,
    seed: int,
    skip_batches: int = 0,
    teacher: TeacherPrep | None = None,
) -> Loader:
    """Build this rank's loader for one epoch (see the module docstring). ``batch_size`` is per rank.

    Args:
        cfg: source and loading options (``cfg.train`` names the source).
        tokenizer: ``list[str] -> LongTensor (B, L)``; called inside workers, so it must pickle.
        preprocess: image size and normalization (the checkpoint's PreprocessConfig).
        world: this process's rank and world size.
        batch_size: samples per batch on this rank.
        train: shuffle, random caption and (if configured) random resized crop; False gives the fixed order,
            the first caption and the eval transform.
        epoch, seed: the epoch order and all per-sample randomness are functions of these.
        skip_batches: batches of this epoch already consumed (resume); the loader starts after them.
        teacher: an online teacher's preprocessing and tokenizer: every batch then carries each sample's view
            and caption prepared for the teacher too (``Batch.teacher``, see clipforge.data.teacher).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    transform = train_transform(
        preprocess,
        random_resized_crop=bool(train and cfg.random_resized_crop),
        crop_scale=tuple(cfg.crop_scale),
        silhouette_p=cfg.silhouette if train else 0.0,
    )
    sampling = cfg.caption_sampling if train else "first"
    common = dict(tokenizer=tokenizer, transform=transform, seed=seed, epoch=epoch, caption_sampling=sampling,
                  max_pixels=cfg.max_pixels, teacher=teacher)
    initial = SkipStats()
    if is_shard_spec(cfg.train):
        urls = expand_shards(cfg.train)
        plan = datasets.ShardPlan.build(
            urls, shard_counts(urls), world.rank, world.world_size, max(cfg.workers, 1), batch_size, train, seed, epoch
        )
        dataset = datasets.ShardBatches(plan, cfg.caption_column, skip_batches=skip_batches, **common)
        sampler = None
        num_batches = max(plan.num_batches - skip_batches, 0)
        num_samples = plan.num_samples
    else:
        table = open_source(cfg.train, cfg.image_column, cfg.caption_column, require_captions=True)
        initial.update(table.skipped.counts)  # rows of the table that name no image, malformed lines
        ranges, tail = datasets.rank_batch_ranges(len(table), world.rank, world.world_size, batch_size, train)
        if tail:
            initial.add("tail", n=tail)
        dataset = datasets.TableBatches(table, datasets.epoch_order(len(table), seed, epoch, train), ranges, **common)
        sampler = list(range(min(skip_batches, len(ranges)), len(ranges)))
        num_batches = len(sampler)
        num_samples = len(table)
    device = getattr(world, "device", None)
    dataloader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=_identity,
        pin_memory=getattr(device, "type", "cpu") == "cuda",
    )
    return Loader(dataloader, num_batches, num_samples, epoch, world.rank, initial)
