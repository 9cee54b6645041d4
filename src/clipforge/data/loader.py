"""Training/eval data loading: every rank and worker reads a disjoint part of each epoch.

Contract used by the trainer (train/) and the evaluators (eval/):

    loader = build_loader(cfg, tokenizer=tok, preprocess=pp_cfg, world=world, batch_size=B,
                          train=True, epoch=e, seed=s, skip_batches=k)
    for batch in loader:            # batch: Batch
        batch.pixels     # (B', 3, H, W) float32, B' <= B when bad samples were skipped
        batch.token_ids  # (B', context_length) int64
    loader.stats         # SkipStats: counts of skipped items by reason, for the per-epoch summary

The order of an epoch is a pure function of (seed, epoch), so a resumed run that skips the first
``skip_batches`` batches of the epoch sees exactly the batches the uninterrupted run saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import torch

    from clipforge.data.config import DataConfig, PreprocessConfig
    from clipforge.dist.env import World


@dataclass
class Batch:
    pixels: torch.Tensor  # (B, 3, H, W) float32, normalized
    token_ids: torch.Tensor  # (B, L) int64
    indices: torch.Tensor  # (B,) int64 global sample indices (for tests of coverage and for debugging)


@dataclass
class SkipStats:
    """Items skipped this epoch, by reason ("corrupt", "missing", "empty_caption", ...)."""

    counts: dict[str, int] = field(default_factory=dict)


class Loader:
    """An epoch's batches for this rank. Iterating yields Batch; ``stats`` holds skip counts after the epoch."""

    stats: SkipStats
    num_samples: int  # samples in the whole dataset (all ranks)

    def __iter__(self) -> Iterator[Batch]:
        raise NotImplementedError

    def __len__(self) -> int:  # batches this rank will yield this epoch (upper bound for iterable sources)
        raise NotImplementedError


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
) -> Loader:
    """Build this rank's loader for one epoch (see the module docstring). ``batch_size`` is per rank."""
    raise NotImplementedError  # implemented on the data branch
