"""Run benchmarks on a pipeline and write ``results.json`` + ``report.html``: what ``clipforge eval`` and the
demo both call.

    from clipforge.eval.runner import evaluate_and_report
    from clipforge.eval.suite import SuiteConfig
    result = evaluate_and_report(pipeline, SuiteConfig(name="demo", emoji_root="data/emoji"), "runs/demo",
                                 checkpoint="runs/demo/train/final", run_dir="runs/demo")
    result.metrics["zeroshot.emoji_heldout.top1"]
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from clipforge.errors import UserError
from clipforge.eval import report, suite
from clipforge.eval.datasets import jsonl_labels
from clipforge.pipeline import Pipeline
from clipforge.utils.configs import to_dict

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
TIMINGS_FILE = "timings.json"
RUN_CONFIG_FILES = ("config.yaml", "config.json", "resolved_config.yaml", "resolved_config.json")
META_KEYS = ("seed", "steps", "max_steps", "epochs", "model", "batch_size")  # shown at the top of the report


def read_run_dir(run_dir: str | Path | None) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
    """A training run's metrics rows (``metrics.jsonl``) and resolved config (``config.yaml``), when present.

    Args:
        run_dir: the training run directory, or None.
    """
    if not run_dir:
        return None, None
    root = Path(run_dir)
    if not root.is_dir():
        raise UserError(f"run directory {run_dir} does not exist", hint="pass the directory 'clipforge train' wrote")
    metrics = root / "metrics.jsonl"
    rows = report.read_metrics_jsonl(metrics) if metrics.is_file() else None
    for name in RUN_CONFIG_FILES:
        path = root / name
        if path.is_file():
            if path.suffix == ".json":
                return rows, json.loads(path.read_text())

            loaded = yaml.safe_load(path.read_text())
            return rows, loaded if isinstance(loaded, dict) else None
    return rows, None


def _find(config: dict[str, Any], key: str) -> Any:
    """``config[key]`` at the top level or one section down (e.g. ``train.steps``)."""
    if key in config:
        return config[key]
    for value in config.values():
        if isinstance(value, dict) and key in value and not isinstance(value[key], dict):
            return value[key]
    return None


def _labels(path: Path) -> set[str]:
    return jsonl_labels(path)


def leak_check(
    benchmarks: list[suite.Benchmark], cfg: suite.SuiteConfig, run_config: dict[str, Any] | None
) -> dict[str, str]:
    """For zero-shot benchmarks on labelled JSONL files: how many of their classes the training table also has.

    A held-out benchmark is only zero-shot if the answer is 0 (e.g. the subgroup split needs a model trained
    on ``train_strict.jsonl``). Returns ``{"classes also in training data · KEY": "k of n"}``; empty when the
    run's training data is not a readable JSONL file.
    """
    data = (run_config or {}).get("data")
    train = data.get("train") if isinstance(data, dict) else None
    if not train or not str(train).endswith(".jsonl") or not Path(train).is_file():
        return {}
    seen = _labels(Path(train))
    out = {}
    for bench in benchmarks:
        dataset = getattr(bench.make(cfg), "dataset", None)
        if bench.task != "zeroshot" or dataset is None or dataset.kind != "jsonl" or not Path(dataset.path).is_file():
            continue
        labels = _labels(Path(dataset.path))
        overlap = len(labels & seen)
        out[f"classes also in training data · {bench.key}"] = f"{overlap} of {len(labels)}"
        if overlap:
            log.warning("%s: %d of %d classes also occur in the training data %s: not zero-shot",
                        bench.key, overlap, len(labels), train)  # fmt: skip
    return out


def _template_meta(result: suite.SuiteResult) -> dict[str, str]:
    """One report row per zero-shot benchmark: its prompt set, what it was chosen on, each candidate's score."""
    out = {}
    for key, t in result.templates.items():
        scores = ", ".join(f"{name} {100 * v:.1f}%" for name, v in (t.get("val_top1") or {}).items())
        out[f"prompt set · {key}"] = f"{t['templates']} — {t['chosen_on']}" + (f"; val top-1: {scores}" if scores else "")
    return out


def print_table(result: suite.SuiteResult) -> None:
    """The metrics as a rich table, then one line per skipped benchmark."""
    table = Table(title="clipforge eval")
    for col in ("benchmark", "metric", "value"):
        table.add_column(col)
    for key, value in result.metrics.items():
        bench, metric = key.rsplit(".", 1)
        if metric.startswith("n_"):
            shown = f"{value:.0f}"
        elif metric == "l2":
            shown = f"{value:g}"
        else:
            shown = f"{100 * value:.2f}%"
        table.add_row(bench, metric, shown)
    console = Console()
    console.print(table)
    for key, reason in result.skipped.items():
        console.print(f"[yellow]skipped {key}[/]: {reason}")


def evaluate_and_report(
    pipeline: Pipeline,
    cfg: suite.SuiteConfig,
    out_dir: str | Path,
    *,
    benchmarks: list[suite.Benchmark] | None = None,
    checkpoint: str = "",
    run_dir: str | Path | None = None,
    html: bool = True,
    show: bool = True,
    extra_meta: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> suite.SuiteResult:
    """Run the suite ``cfg.name`` (or ``benchmarks``), write OUT_DIR/results.json, timings.json and report.html.

    results.json holds what was measured and how (scores, skips, sources, run facts), so the same config on
    the same checkpoint writes the same file; timings.json holds the seconds, which vary from run to run.

    Args:
        pipeline: the loaded checkpoint.
        cfg: suite settings.
        out_dir: where the two files go.
        benchmarks: run these instead of the named suite.
        checkpoint: shown in the report.
        run_dir: a training run directory: its curves, seed, steps and config go in the report.
        html: also write the HTML report.
        show: print the results table.
        extra_meta: more facts for the report's Run table and results.json ``meta``.
        timings: more durations for timings.json and the report (e.g. the model's load time).
    """
    start = time.perf_counter()
    if benchmarks is None:
        result = suite.run_suite(pipeline, cfg)
    else:
        result = suite.run_benchmarks(pipeline, benchmarks, cfg)
    wall = time.perf_counter() - start
    if show:
        print_table(result)
    rows, run_config = read_run_dir(run_dir)
    meta: dict[str, Any] = {"checkpoint": checkpoint, "suite": cfg.name, "templates": cfg.templates,
                            "limit": cfg.limit}  # fmt: skip
    times = {"suite wall seconds": round(wall, 2), **(timings or {})}
    for key in META_KEYS:
        value = _find(run_config, key) if run_config else None
        if value is not None:
            meta[f"train {key}"] = value
    if rows:
        meta["train last logged step"] = int(max(r["step"] for r in rows))
    meta.update(leak_check(benchmarks if benchmarks is not None else suite.SUITES[cfg.name], cfg, run_config))
    meta.update(_template_meta(result))
    meta.update(extra_meta or {})
    meta["suite config"] = json.dumps(to_dict(cfg))
    out = Path(out_dir)
    path = report.write_results_json(out / RESULTS_FILE, result, meta)
    report.write_timings_json(out / TIMINGS_FILE, result, times)
    log.info("results: %s", path)
    if html:
        title = report.run_title(checkpoint, run_dir)
        page = report.write_report(
            out / "report.html", result, meta={**meta, "suite config": to_dict(cfg), **times}, metrics_rows=rows, run_config=run_config,
            title=title,
        )
        log.info("report: %s", page)
    return result
