"""One ``clipforge eval`` run from its EvalConfig: load the checkpoint, run the benchmarks, write the results.

    from clipforge.eval.config import EvalConfig, SuiteConfig
    from clipforge.eval.job import run_eval
    result = run_eval(EvalConfig(checkpoint="runs/demo/train/final", suite=SuiteConfig(name="transfer", limit=500)))

OUT_DIR receives results.json (scores, skips, sources, run facts: the same for the same config and checkpoint),
timings.json (seconds per benchmark, model load and suite wall time), report.html, and eval_config.yaml, the
resolved config, which ``clipforge eval --config OUT_DIR/eval_config.yaml`` runs again.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from clipforge.errors import UserError
from clipforge.eval import prompt_select, retrieval, suite, zeroshot
from clipforge.eval.config import EVAL_CONFIG_FILE, EvalConfig, SuiteConfig
from clipforge.eval.datasets import DatasetConfig
from clipforge.eval.runner import evaluate_and_report
from clipforge.eval.templates import get_templates
from clipforge.pipeline import Pipeline, load
from clipforge.utils.configs import write_resolved
from clipforge.utils.io import check_out_dir


def suite_config(cfg: EvalConfig) -> SuiteConfig:
    """The suite settings with the name resolved: ``demo`` when nothing else is asked for, else ``custom``.

    Raises:
        UserError: for an unknown suite name.
    """
    name = cfg.suite.name
    if not name:
        name = "custom" if (cfg.zeroshot or cfg.retrieval or cfg.linear_probe) else "demo"
    elif name not in suite.SUITES:
        raise UserError(f"unknown suite {name!r}", hint=f"suite.name is one of {', '.join(suite.SUITES)}")
    return dataclasses.replace(cfg.suite, name=name)


def benchmarks(cfg: EvalConfig) -> list[suite.Benchmark]:
    """The benchmarks ``cfg`` asks for: the named suite's, then the extra zero-shot, retrieval and probe ones."""
    name = suite_config(cfg).name
    chosen = list(suite.SUITES[name]) if name in suite.SUITES else []
    limit = cfg.suite.limit
    for src in cfg.zeroshot:
        if src == "fashion-mnist":
            chosen.append(suite.FASHION_ZS)
        elif src == "animal-mnist":
            chosen.append(suite.ANIMAL_ZS)
        elif Path(src).is_dir():
            chosen.append(suite.folder_benchmark(src))
        else:
            data = DatasetConfig(kind="jsonl", path=src, limit=limit)
            make = lambda c, data=data: zeroshot.ZeroShotConfig(data, c.templates, c.batch_size, c.progress)
            chosen.append(suite.Benchmark("zeroshot", Path(src).stem, f"labelled rows of {src}", make))
    for src in cfg.retrieval:
        data = DatasetConfig(kind="jsonl", path=src, limit=limit)
        make = lambda c, data=data: retrieval.RetrievalConfig(data, c.batch_size, c.progress)
        chosen.append(suite.Benchmark("retrieval", Path(src).stem, f"captions of {src}", make))
    for src in cfg.linear_probe:
        chosen.append(suite.FASHION_PROBE if src == "fashion-mnist" else suite.ANIMAL_PROBE)
    return chosen


def out_dir(cfg: EvalConfig) -> Path:
    """Where the results go: ``cfg.out_dir``, else RUN_DIR/eval, else ./eval-results/<checkpoint name>.

    Never inside the checkpoint directory by default: a checkpoint is an artifact that is copied, hashed
    (its identity) and shared, and results written into it would travel with it.
    """
    if cfg.out_dir:
        return Path(cfg.out_dir)
    if cfg.run_dir:
        return Path(cfg.run_dir) / "eval"
    name = Path(cfg.checkpoint.rstrip("/")).name or "checkpoint"
    return Path("eval-results") / "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def check_sources(cfg: EvalConfig) -> None:
    """Refuse a benchmark path the user named that does not exist (instead of evaluating nothing and exiting 0).

    Raises:
        UserError: naming the key and the missing path.
    """
    named = [("zeroshot", s) for s in cfg.zeroshot if s not in ("fashion-mnist", "animal-mnist")]
    for key, src in [*named, *(("retrieval", s) for s in cfg.retrieval)]:
        if not Path(src).exists():
            what = "a .jsonl of labelled images or a folder of class folders" if key == "zeroshot" else \
                "a .jsonl of {image, captions} rows"
            raise UserError(f"{key}: {src} does not exist", hint=f"{key}=[PATH] takes {what}")


def run_eval(cfg: EvalConfig, pipeline: Pipeline | None = None) -> suite.SuiteResult:
    """Evaluate ``cfg.checkpoint`` and write results.json, timings.json, report.html and eval_config.yaml.

    Args:
        cfg: the run's config (checkpoint, benchmarks, suite settings, output directory).
        pipeline: an already loaded model to evaluate instead of loading ``cfg.checkpoint`` (which is then
            only the name shown in the report).

    Raises:
        UserError: without a checkpoint, for an unknown suite, or a bad template set (before the model loads).
    """
    if not cfg.checkpoint:
        raise UserError("no checkpoint to evaluate", hint="clipforge eval CHECKPOINT [KEY=VALUE ...]")
    settings = suite_config(cfg)
    if settings.templates != prompt_select.AUTO:
        get_templates(settings.templates)  # a bad template file is reported before the model loads
    check_sources(cfg)
    chosen = benchmarks(cfg)
    out = check_out_dir(out_dir(cfg), "out_dir")
    start = time.perf_counter()
    if pipeline is None:
        pipeline = load(cfg.checkpoint, device=cfg.device, precision=cfg.precision)
    load_seconds = time.perf_counter() - start
    result = evaluate_and_report(
        pipeline, settings, out, benchmarks=chosen, checkpoint=cfg.checkpoint, run_dir=cfg.run_dir or None,
        html=cfg.report, extra_meta={"device": cfg.device, "precision": pipeline.precision}, timings={"model load seconds": round(load_seconds, 2)},
    )  # fmt: skip
    write_resolved(cfg, out, EVAL_CONFIG_FILE)
    return result
