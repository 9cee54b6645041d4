"""What a run shows and records: a live rich bar on a terminal, one plain line per log step elsewhere (nohup,
SLURM, CI logs), metrics JSONL and TensorBoard scalars (main rank only)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from clipforge.utils.io import atomic_write_text

METRICS_FILE = "metrics.jsonl"


class Meter:
    """Throughput and data-wait over the window since the last ``window()`` call."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.samples = 0
        self.wait = 0.0
        self.steps = 0

    def add(self, samples: int, wait_s: float) -> None:
        self.samples += samples
        self.wait += wait_s
        self.steps += 1

    def window(self) -> dict[str, float]:
        """samples/s and the percentage of wall time spent waiting for data, then start a new window."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {"samples_per_s": self.samples / elapsed, "data_wait_pct": 100.0 * self.wait / elapsed}
        self.reset()
        return out


class Reporter:
    """Progress bar + metrics.jsonl + TensorBoard for the main rank; every method is a no-op elsewhere.

    Args:
        run_dir: where ``metrics.jsonl`` and ``tensorboard/`` go.
        total_steps: length of the run (for the bar and ETA).
        start_step: steps already done (after a resume).
        enabled: False on ranks other than 0.
        progress: show progress: a live bar when ``stream`` is a terminal, else one line per log step (a bar
            off a terminal shows nothing until the end).
        tensorboard: write TensorBoard scalars.
        stream: where progress goes (stdout).
    """

    def __init__(
        self, run_dir: Path, total_steps: int, start_step: int, enabled: bool, progress: bool, tensorboard: bool,
        stream: TextIO | None = None,
    ) -> None:  # fmt: skip
        self.enabled = enabled
        self.path = run_dir / METRICS_FILE
        self._bar = None
        self._task = None
        self._tb = None
        self._stream = stream or sys.stdout
        self._total, self._start_step, self._started = total_steps, start_step, time.perf_counter()
        self._lines = progress and not self._stream.isatty()
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.path, start_step)
        if tensorboard:
            # Deferred on purpose: TensorBoard's writer takes over a second to import and is optional (log.tensorboard).
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        if progress and not self._lines:
            self._bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                refresh_per_second=4,
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=total_steps, completed=start_step, info="")

    def advance(self, step: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Append one JSONL line, write TensorBoard scalars and refresh the bar's text."""
        if not self.enabled:
            return
        record = {"step": step, "time": time.time(), **metrics}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key.replace(".", "/"), value, step)
        if self._bar is not None and "loss" in metrics:
            self._bar.update(self._task, completed=step, info=format_info(metrics))
        if self._lines and "loss" in metrics:
            print(self.line(step, metrics), file=self._stream, flush=True)

    def line(self, step: int, metrics: dict[str, Any]) -> str:
        """The plain progress line: step/total, the bar's text, and the ETA from this run's pace so far."""
        done = step - self._start_step
        elapsed = time.perf_counter() - self._started
        eta = format_duration((self._total - step) * elapsed / done) if done > 0 else "?"
        width = len(str(self._total))
        return f"step {step:>{width}}/{self._total}  {format_info(metrics)}  ETA {eta}"

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text)
        elif self._lines:
            print(text, file=self._stream, flush=True)
        else:
            logging.getLogger("clipforge.train").info(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self._tb is not None:
            self._tb.close()


def truncate_metrics(path: Path, last_step: int) -> int:
    """Keep only the metrics.jsonl lines of steps up to ``last_step`` (the checkpoint a run resumes from).

    The steps after it are computed again after a resume; their old lines would repeat them. A line cut short by
    a kill is dropped as well. Returns how many lines were removed.
    """
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            dropped += 1
            continue
        if isinstance(step, int) and step <= last_step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))
    return dropped


def format_info(m: dict[str, Any]) -> str:
    """The bar's text: loss, logit scale, samples/s, data wait and MFU ('n/a' without a known peak)."""
    mfu = m.get("mfu")
    mfu_text = f"{100 * mfu:.1f}%" if isinstance(mfu, float) else "n/a"
    return (
        f"loss {m['loss']:.4f}  scale {m.get('logit_scale', 0):.1f}  {m.get('samples_per_s', 0):.1f} samples/s  "
        f"data wait {m.get('data_wait_pct', 0):.0f}%  MFU {mfu_text}"
    )


def format_duration(seconds: float) -> str:
    """``42s``, ``4m12s``, ``2h05m``: short enough for a log line."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
