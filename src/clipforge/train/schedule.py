"""Learning-rate schedule: linear warmup, then cosine decay to ``min_lr`` (Loshchilov & Hutter 2017).

A pure function of the step, so resuming needs only the step counter.
"""

from __future__ import annotations

import math

import torch


def lr_at(step: int, *, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    Args:
        step: the step about to be taken, 0 .. total_steps - 1.
        base_lr: peak rate, reached at the last warmup step.
        warmup_steps: steps of linear warmup: (step + 1) / warmup_steps * base_lr.
        total_steps: length of the run; the cosine reaches ``min_lr`` at step ``total_steps - 1``.
        min_lr: floor of the decay.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps <= 1:
        return base_lr
    progress = min(1.0, (step - warmup_steps) / (decay_steps - 1))  # 0 at the first post-warmup step, 1 at the last
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set ``lr`` on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
