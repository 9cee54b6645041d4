"""Choosing torch's thread count during training from measured step times.

A fixed count is fragile on a shared machine: two intra-op threads on two busy cores wait on each other at
every parallel region (once 26 samples/s against 440 on an idle machine), while one thread leaves an idle
core unused. ``ThreadChooser`` is a training ``on_step`` callback: every ``period`` steps it times ``window``
steps at each candidate count and keeps the fastest until the next probe, so the run follows the load. Between
probes it watches the step time: when the last ``window`` steps take more than ``slack`` times what the chosen
count took in its probe (other jobs arrived), it probes again at once instead of waiting out the period.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


def candidate_counts(cores: int | None = None) -> tuple[int, ...]:
    """1, half the cores and all of them (deduplicated): the counts worth comparing.

    Args:
        cores: CPUs this process may use (default: its affinity mask).
    """
    n = cores or len(os.sched_getaffinity(0))
    return tuple(sorted({1, max(1, n // 2), n}))


class ThreadChooser:
    """``on_step(step, metrics)`` callback that keeps torch on the fastest measured thread count.

    Args:
        candidates: thread counts to compare.
        window: steps timed per candidate in a probe (the first step after a switch is not timed).
        period: steps between the starts of two probes.
        slack: re-probe early when the median of the last ``window`` steps exceeds this multiple of the
            chosen count's probe time.
        set_threads: applies a count (``torch.set_num_threads``; tests pass a recorder).
        clock: seconds (``time.perf_counter``).
    """

    def __init__(
        self,
        candidates: tuple[int, ...] = (),
        window: int = 6,
        period: int = 200,
        slack: float = 1.5,
        set_threads: Callable[[int], None] = torch.set_num_threads,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.candidates = candidates or candidate_counts()
        self.window, self.period, self.slack = window, period, slack
        self.set_threads, self.clock = set_threads, clock
        self.current = self.candidates[-1]
        self.choices: list[dict] = []  # one entry per probe: step, seconds per step of each count, chosen count
        self._plan: list[tuple[int, bool]] = []  # (count, timed) for each coming step of the probe
        self._running: tuple[int, bool] | None = None  # what the step now running was planned as
        self._times: dict[int, list[float]] = {}
        self._last: float | None = None
        self._probe_start = 0
        self._baseline: float | None = None  # the chosen count's seconds per step in the last probe
        self._recent: list[float] = []  # seconds of the steps since that probe

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        """Called after each optimizer step: time it, then pick the count the next step runs with."""
        now = self.clock()
        elapsed, self._last = (None if self._last is None else now - self._last), now
        if len(self.candidates) < 2:
            return
        if self._running is not None:
            count, timed = self._running
            if timed and elapsed is not None:
                self._times.setdefault(count, []).append(elapsed)
            self._running = None
            if not self._plan:
                self._finish(step)
        elif elapsed is not None:
            self._recent = [*self._recent[-(self.window - 1):], elapsed]
        if not self._plan and (not self.choices or step - self._probe_start >= self.period or self._slowed()):
            # Each count: one step to settle after the switch (not timed), then `window` timed steps.
            self._plan = [(c, i > 0) for c in self.candidates for i in range(self.window + 1)]
            self._times, self._probe_start = {}, step
        if self._plan:
            self._running = self._plan.pop(0)
            self._switch(self._running[0])

    def _slowed(self) -> bool:
        """The last ``window`` steps ran more than ``slack`` times slower than the chosen count's probe."""
        if self._baseline is None or len(self._recent) < self.window:
            return False
        return statistics.median(self._recent) > self.slack * self._baseline

    def _switch(self, count: int) -> None:
        if count != self.current:
            self.set_threads(count)
            self.current = count

    def _finish(self, step: int) -> None:
        per_step = {c: statistics.median(t) for c, t in self._times.items() if t}
        best = min(per_step, key=lambda c: per_step[c]) if per_step else self.current
        self._switch(best)
        self._baseline, self._recent = per_step.get(best), []
        self.choices.append({"step": step, "seconds_per_step": {str(c): round(s, 4) for c, s in per_step.items()},
                             "threads": best})
        log.info("threads: %d (seconds per step: %s)", best,
                 ", ".join(f"{c} threads {s:.3f}" for c, s in per_step.items()))  # fmt: skip
