"""The one way clipforge skips bad input: count it by reason, keep a few examples, log one line.

Every reader and loader (tables, shards, training batches, embedding, evaluation) skips a bad row or item
instead of failing, adds it here under a short reason ("malformed", "no_image", "corrupt", "missing",
"empty_caption", "too_large", ...), and reports the counts in one log line and in its result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

EXAMPLES_PER_REASON = 3


@dataclass
class SkipStats:
    """Skipped items by reason, with the first few examples of each (file names, line numbers).

    Attributes:
        counts: reason -> number skipped.
        examples: reason -> up to EXAMPLES_PER_REASON descriptions of skipped items.
    """

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, example: str | None = None, n: int = 1) -> None:
        """Count ``n`` items skipped for ``reason``; ``example`` says which (kept for the first few)."""
        self.counts[reason] = self.counts.get(reason, 0) + n
        if example is not None:
            seen = self.examples.setdefault(reason, [])
            if len(seen) < EXAMPLES_PER_REASON:
                seen.append(example)

    def update(self, counts: dict[str, int]) -> None:
        """Add counts gathered elsewhere (another worker, rank or batch)."""
        for reason, n in counts.items():
            self.add(reason, n=n)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """``"3 (malformed: 2, e.g. line 4; no_image: 1)"``, or ``"none"``."""
        if not self.counts:
            return "none"
        parts = []
        for reason, n in sorted(self.counts.items()):
            eg = self.examples.get(reason)
            parts.append(f"{reason}: {n}" + (f", e.g. {', '.join(eg)}" if eg else ""))
        return f"{self.total} ({'; '.join(parts)})"

    def log(self, logger: logging.Logger, where: str) -> None:
        """One warning line naming ``where`` when anything was skipped; nothing otherwise."""
        if self.counts:
            logger.warning("%s: skipped %s", where, self.summary())
