"""The configs of evaluation: ``SuiteConfig`` (benchmark settings) and ``EvalConfig`` (one ``clipforge eval`` run).

Both are plain frozen dataclasses read by ``clipforge.utils.configs`` (defaults <- YAML <- ``key=value``), so
this module imports neither torch nor the evaluators: ``clipforge eval --print-config`` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Data sources a linear probe knows how to split into training and test images.
ProbeSource = Literal["fashion-mnist", "animal-mnist"]
EVAL_CONFIG_FILE = "eval_config.yaml"  # written next to results.json: the exact config of the run


@dataclass(frozen=True)
class SuiteConfig:
    """Which suite to run and the settings every benchmark shares.

    Args:
        name: a key of ``clipforge.eval.suite.SUITES`` (``demo``, ``emoji``, ``transfer``, ``full``).
        emoji_root: the directory ``clipforge data emoji`` wrote.
        fashion_mnist_dir: Fashion-MNIST idx directory; empty means Debian's location.
        templates: prompt template set for every zero-shot benchmark, or ``auto``: each benchmark's own set,
            chosen on its validation classes (see ``eval.prompt_select``).
        limit: at most this many test images per benchmark (evenly spaced), for quick runs; None = all.
        probe_train_limit: training images per linear probe.
        batch_size: images / texts per forward pass.
        progress: show progress bars.
    """

    name: str = "demo"
    emoji_root: str = "data/emoji"
    fashion_mnist_dir: str = ""
    templates: str = "openai"
    limit: int | None = None
    probe_train_limit: int = 5000
    batch_size: int = 128
    progress: bool = False

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 or null (all images), got {self.limit}")
        for name in ("probe_train_limit", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class EvalConfig:
    """One ``clipforge eval`` run: a checkpoint, the benchmarks to run on it, and where the results go.

    Args:
        checkpoint: a clipforge checkpoint directory (trained or imported) or a pretrained name.
        suite: the named suite and the settings all benchmarks share. ``suite.name`` empty means ``demo`` when
            none of ``zeroshot``, ``retrieval``, ``linear_probe`` is given, and no named suite otherwise.
        zeroshot: more zero-shot benchmarks: ``fashion-mnist``, ``animal-mnist``, a ``.jsonl`` of labelled
            images, or a directory of class folders (``DIR/<class name>/<images>``).
        retrieval: more retrieval benchmarks: ``.jsonl`` files of ``{image, captions}`` rows.
        linear_probe: linear probes on ``fashion-mnist`` and/or ``animal-mnist``.
        device: where the model runs (``cpu``, ``cuda``, ``cuda:1``, ...).
        out_dir: where results.json, report.html and this config go; empty means RUN_DIR/eval when ``run_dir``
            is set, else ./eval-results/<checkpoint name> (never inside the checkpoint directory).
        run_dir: a training run directory whose metrics.jsonl and config go into the report; empty for none.
        report: also write report.html (results.json is always written).
        precision: the model's arithmetic: fp32, bf16, int8 (CPU) or auto (see clipforge.precision).
    """

    checkpoint: str = ""
    suite: SuiteConfig = field(default_factory=lambda: SuiteConfig(name="", progress=True))
    zeroshot: tuple[str, ...] = ()
    retrieval: tuple[str, ...] = ()
    linear_probe: tuple[ProbeSource, ...] = ()
    device: str = "cpu"
    out_dir: str = ""
    run_dir: str = ""
    report: bool = True
    precision: Literal["fp32", "bf16", "int8", "int8-image", "auto"] = "fp32"
