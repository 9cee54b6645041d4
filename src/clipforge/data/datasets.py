"""The torch datasets behind build_loader: how an epoch is ordered, cut across ranks and workers, and decoded.

Every item a worker produces is a whole Batch, so a batch is read by exactly one worker and the DataLoader
only moves finished batches between processes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from clipforge.data.sources import Source, iter_shard
from clipforge.data.teacher import REINFORCED_MEMBERS, ReinforcedError, TeacherInputs, TeacherPrep, read_reinforced
from clipforge.data.transforms import BadImageError, ImageTooLarge, TrainTransform, load_image
from clipforge.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class Batch:
    pixels: torch.Tensor  # (B, 3, H, W) float32, normalized
    token_ids: torch.Tensor  # (B, L) int64
    indices: torch.Tensor  # (B,) int64 global sample indices (for tests of coverage and for debugging)
    skipped: dict[str, int] = field(default_factory=dict)  # samples of this batch left out, by reason
    teacher: TeacherInputs | None = None  # distillation: the teacher's views or stored embeddings


def seed_of(*parts: int) -> int:
    """A 63-bit seed mixed from non-negative integers (numpy's SeedSequence hashing: nearby inputs decorrelate)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    """The epoch's sample order: a permutation of range(n) drawn from (seed, epoch), or range(n)."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed_of(seed, epoch)))


def rank_batch_ranges(n: int, rank: int, world_size: int, batch_size: int, train: bool) -> tuple[list[range], int]:
    """Positions (in the epoch order) of each of this rank's batches, and how many samples sit out (tail).

    Global batch g covers positions [g*W*B, (g+1)*W*B); rank r takes the r-th block of B. The final partial
    global batch of m samples is split into W near-equal parts (sizes differ by at most 1). In training with
    m < W some ranks would get an empty batch, so those m samples sit out the epoch (returned as the tail
    count for this rank); in evaluation such ranks just yield one batch fewer.
    """
    step = world_size * batch_size
    full, rem = divmod(n, step)
    ranges = [range(g * step + rank * batch_size, g * step + (rank + 1) * batch_size) for g in range(full)]
    if rem:
        base, extra = divmod(rem, world_size)
        size = base + (1 if rank < extra else 0)
        start = full * step + rank * base + min(rank, extra)
        if train and world_size > 1 and base == 0:
            return ranges, size
        if size:
            ranges.append(range(start, start + size))
    return ranges, 0


@dataclass(frozen=True)
class RawSample:
    index: int  # global sample index
    image: str | bytes  # a path, or encoded bytes from a shard
    captions: tuple[str, ...]
    name: str  # for messages
    caption_error: str | None = None  # why the captions could not be read (e.g. "caption_encoding")
    extra: dict[str, bytes] = field(default_factory=dict)  # further shard members (reinforcement data)


class _BatchMaker:
    """Decode, transform and tokenize a list of raw samples into a Batch, skipping and counting bad ones."""

    def __init__(
        self,
        tokenizer: Callable[[list[str]], torch.Tensor],
        transform: TrainTransform,
        seed: int,
        epoch: int,
        caption_sampling: str,
        max_pixels: int,
        teacher: TeacherPrep | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.transform = transform
        self.seed = seed
        self.epoch = epoch
        self.caption_sampling = caption_sampling
        self.max_pixels = max_pixels
        self.teacher = teacher

    def __call__(self, samples: Sequence[RawSample]) -> Batch:
        pixels, texts, indices, skipped = [], [], [], {}
        views, stored = [], []  # the teacher's views (online teacher), its stored embeddings (reinforced)

        def skip(reason: str) -> None:
            skipped[reason] = skipped.get(reason, 0) + 1

        for s in samples:
            if not s.captions:
                log.warning("skipping %s: %s", s.name, "caption file is not UTF-8" if s.caption_error else "no caption")
                skip(s.caption_error or "empty_caption")
                continue
            try:
                img = load_image(s.image, s.name, self.transform.cfg.fill_color, self.max_pixels)
            except FileNotFoundError:
                log.warning("skipping %s: file not found", s.name)
                skip("missing")
                continue
            except ImageTooLarge as exc:
                log.warning("skipping %s", exc)
                skip("too_large")
                continue
            except BadImageError as exc:
                log.warning("skipping %s", exc)
                skip("corrupt")
                continue
            try:
                reinforced = read_reinforced(s.extra, len(s.captions))
            except ReinforcedError as exc:
                log.warning("skipping %s: %s", s.name, exc)
                skip("bad_reinforcement")
                continue
            gen = torch.Generator().manual_seed(seed_of(self.seed, self.epoch, s.index))
            pick = 0
            if self.caption_sampling == "random" and len(s.captions) > 1:
                pick = int(torch.randint(len(s.captions), (1,), generator=gen))
            if reinforced is None:
                aug = self.transform.sample(img, gen)
            else:  # one of the stored views, with the teacher's embeddings of it and of the caption
                k = int(torch.randint(len(reinforced.augmentations), (1,), generator=gen))
                aug = reinforced.augmentations[k]
                stored.append((reinforced.image[k], reinforced.text[pick]))
            texts.append(s.captions[pick])
            pixels.append(self.transform.apply(img, aug))
            if self.teacher is not None:
                views.append((self.teacher.view(img, aug), s.captions[pick]))
            indices.append(s.index)
        size = self.transform.cfg.image_size
        if not texts:
            return Batch(
                torch.empty(0, 3, size, size), self.tokenizer([""])[:0], torch.empty(0, dtype=torch.int64), skipped
            )
        batch = Batch(torch.stack(pixels), self.tokenizer(texts), torch.tensor(indices, dtype=torch.int64), skipped)
        if views or stored:
            batch.teacher = self._teacher_inputs(views, stored, len(texts))
        return batch

    def _teacher_inputs(self, views: list, stored: list, n: int) -> TeacherInputs:
        inputs = TeacherInputs()
        if views:
            inputs.pixels = torch.stack([v for v, _ in views])  # (B, 3, h, w)
            inputs.token_ids = self.teacher.tokenizer([t for _, t in views])  # (B, L')
        if stored:
            if len(stored) != n:  # a batch mixing plain and reinforced samples has no teacher row for some
                raise UserError(f"{n - len(stored)} of {n} samples of a batch are not reinforced",
                                hint="train on shards written by 'clipforge data reinforce' only")
            inputs.image_features = torch.stack([i for i, _ in stored])  # (B, E)
            inputs.text_features = torch.stack([t for _, t in stored])  # (B, E)
        return inputs


class TableBatches(Dataset):
    """Map-style: item b is this rank's b-th batch of the epoch (folders and tables)."""

    def __init__(self, source: Source, order: torch.Tensor, ranges: list[range], **maker_args) -> None:
        self.source = source
        self.order = order.tolist()
        self.ranges = ranges
        self.make = _BatchMaker(**maker_args)

    def __len__(self) -> int:
        return len(self.ranges)

    def __getitem__(self, b: int) -> Batch:
        samples = []
        for pos in self.ranges[b]:
            i = self.order[pos]
            item = self.source.items[i]
            path = str(self.source.file(item))
            samples.append(RawSample(i, path, item.captions, path, item.caption_error))
        return self.make(samples)


@dataclass(frozen=True)
class ShardPlan:
    """Which shards each worker role of this rank reads this epoch, and how many batches each role makes.

    Args:
        roles: per worker role, a list of (url, global index of the shard's first sample, sample count, shard id).
        role_batches: batches each role yields (ceil(samples / batch_size)).
    """

    roles: tuple[tuple[tuple[str, int, int, int], ...], ...]
    role_batches: tuple[int, ...]
    batch_size: int
    num_samples: int
    shuffle: bool

    @property
    def num_batches(self) -> int:
        return sum(self.role_batches)

    @staticmethod
    def build(
        urls: list[str],
        counts: list[int],
        rank: int,
        world_size: int,
        workers: int,
        batch_size: int,
        train: bool,
        seed: int,
        epoch: int,
    ) -> ShardPlan:
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
        order = epoch_order(len(urls), seed, epoch, train).tolist()
        mine = order[rank::world_size]  # split by rank first, then by worker
        roles = tuple(tuple((urls[s], offsets[s], counts[s], s) for s in mine[w::workers]) for w in range(workers))
        role_batches = tuple(math.ceil(sum(c for _, _, c, _ in r) / batch_size) for r in roles)
        return ShardPlan(roles, role_batches, batch_size, int(sum(counts)), train)

    def resume_point(self, skip_batches: int) -> tuple[list[int], int]:
        """Batches each role already produced after ``skip_batches``, and the role that produces the next one.

        The DataLoader asks its workers in turn (0, 1, ..., skipping exhausted ones), so the uninterrupted
        order is a round robin over the roles; replaying it tells where each role stopped.
        """
        left, done = list(self.role_batches), [0] * len(self.role_batches)
        role, k = 0, min(skip_batches, self.num_batches)
        while k > 0:
            if left[role] > 0:
                left[role] -= 1
                done[role] += 1
                k -= 1
            role = (role + 1) % len(left)
        return done, role


class ShardBatches(IterableDataset):
    """Iterable: each DataLoader worker reads its own shards (see ShardPlan) and batches its own stream."""

    def __init__(self, plan: ShardPlan, caption_field: str, skip_batches: int = 0, **maker_args) -> None:
        self.plan = plan
        self.caption_field = caption_field
        self.skips, self.rotation = plan.resume_point(skip_batches)
        self.make = _BatchMaker(**maker_args)

    def _samples(self, role: int) -> Iterator[RawSample]:
        for url, offset, _count, shard_id in self.plan.roles[role]:
            samples = iter_shard(url, self.caption_field, REINFORCED_MEMBERS)
            items = list(enumerate(samples)) if self.plan.shuffle else enumerate(samples)
            if self.plan.shuffle:  # within-shard order, from (seed, epoch, shard): one shard in memory per worker
                gen = torch.Generator().manual_seed(seed_of(self.make.seed, self.make.epoch, shard_id, 1))
                items = [items[i] for i in torch.randperm(len(items), generator=gen).tolist()]
            for pos, s in items:
                yield RawSample(offset + pos, s.image, s.captions, f"{Path(url).name}:{s.key}", s.caption_error, s.extra)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        workers = len(self.plan.roles)
        role = ((info.id if info else 0) + self.rotation) % workers
        skip, produced, pending = self.skips[role], 0, []
        for sample in self._samples(role):
            pending.append(sample)
            if len(pending) == self.plan.batch_size:
                if produced >= skip:
                    yield self.make(pending)
                produced, pending = produced + 1, []
        if pending and produced >= skip:
            yield self.make(pending)
