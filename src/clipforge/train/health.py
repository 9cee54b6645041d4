"""A training step's NaN/inf bookkeeping and metrics, kept on the device so a step never waits for it.

Reading ``float(loss)`` or ``bool(torch.isfinite(loss))`` after every step would stall the host until the
device finished the step (five such waits per step before this module existed; see docs/performance.md).
Here the finite check, the skipped-step counters and the loss history stay device tensors; the fused AdamW
kernel skips its update when handed ``found_inf`` (the same path ``torch.amp.GradScaler`` uses), and the host
reads everything back in one transfer on log steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch


class StepHealth:
    """Device-side counters of non-finite steps.

    A step is skipped when its loss or gradient norm is not finite, and also, once ``max_bad_steps`` bad steps
    came in a row, every later step (``diverged`` latches), so the weights stay as they were when the run
    diverged until the host sees the latch at the next log step and stops the run.

    Args:
        device: where the step's tensors live.
        max_bad_steps: bad steps in a row that count as diverged.
    """

    def __init__(self, device: torch.device, max_bad_steps: int) -> None:
        self.max_bad_steps = max_bad_steps
        self.bad_in_row = torch.zeros((), dtype=torch.int64, device=device)
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)
        self.diverged = torch.zeros((), dtype=torch.bool, device=device)

    def update(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
        """Record one step; returns a 0-d bool tensor: apply this step's update."""
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        apply = finite & ~self.diverged
        self.skipped += (~apply).long()
        self.bad_in_row = torch.where(finite, torch.zeros_like(self.bad_in_row), self.bad_in_row + 1)
        self.diverged |= self.bad_in_row >= self.max_bad_steps
        return apply

    def read(self) -> tuple[int, int, bool]:
        """(bad_in_row, skipped, diverged) on the host: one transfer, so one wait for the device."""
        bad, skipped, diverged = torch.stack([self.bad_in_row, self.skipped, self.diverged.long()]).tolist()
        return bad, skipped, bool(diverged)

    def restore(self, bad_in_row: int, skipped: int) -> None:
        self.bad_in_row.fill_(bad_in_row)
        self.skipped.fill_(skipped)
        self.diverged.fill_(bad_in_row >= self.max_bad_steps)


def skip_or_step(optimizer: torch.optim.Optimizer, apply: torch.Tensor) -> None:
    """``optimizer.step()`` if ``apply``, without reading ``apply`` on the host when the optimizer can skip itself.

    The fused AdamW kernel takes ``found_inf`` (1.0 = skip: parameters, moments and step count stay as they
    were). Any other optimizer needs the decision on the host: one wait per step.
    """
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = (~apply).float()  # read by torch's Adam/AdamW step for the fused kernel
        optimizer.step()
    elif bool(apply):
        optimizer.step()


class LazyMetrics(Mapping[str, float]):
    """A step's metrics as floats, read from the device only when a value is looked up (one wait per read)."""

    def __init__(self, values: dict[str, torch.Tensor | float]) -> None:
        self._values = values

    def __getitem__(self, key: str) -> float:
        return float(self._values[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class PendingLosses:
    """Per-step losses held on the device until ``flush`` moves them all to the host in one transfer."""

    def __init__(self) -> None:
        self._steps: list[int] = []
        self._values: list[torch.Tensor] = []

    def add(self, step: int, loss: torch.Tensor) -> None:
        self._steps.append(step)
        self._values.append(loss.detach().float().reshape(()))

    def flush(self, into: dict[int, float]) -> None:
        if self._values:
            into.update(zip(self._steps, torch.stack(self._values).tolist(), strict=True))
        self._steps, self._values = [], []
