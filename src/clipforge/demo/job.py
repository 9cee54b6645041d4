"""The demo job: every stage goes through the same public entry points a user calls.

Stages: build the pip-only emoji set -> train a tiny CLIP from scratch -> zero-shot evaluation (held-out
emoji classes, Fashion-MNIST when Debian's package is there) with an HTML report -> embed the collection and
build a FAISS index -> three example searches. Each stage reuses its output when it is already there.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipforge.errors import UserError

log = logging.getLogger(__name__)

# Example searches printed at the end: classes of the held-out split and ordinary words.
QUERIES = ("a red heart", "a smiling cat", "a fast car")
REPO_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "runs" / "tiny-emoji.yaml"
# Small enough to finish in about a minute on 2 cores, large enough to exercise every stage.
QUICK_OVERRIDES = ("steps=12", "batch_size=32", "tokenizer=600", "checkpoint.every_steps=6", "log.every_steps=4")
QUICK_IMAGES = 160
# With a GPU the same recipe runs longer on a larger batch, in bf16.
GPU_OVERRIDES = ("batch_size=512", "precision=bf16", "data.workers=8")


@dataclass(frozen=True)
class DemoOptions:
    """Args: out: demo directory; data: emoji set directory; quick: smoke-test sizes; device: auto/cpu/cuda;
    fresh: retrain even when a finished run is there."""

    out: str = "runs/demo"
    data: str = "data/emoji"
    quick: bool = False
    device: str = "auto"
    fresh: bool = False


def _stage(console: Any, title: str) -> float:
    console.rule(f"[bold]{title}")
    return time.perf_counter()


def _ensure_data(opts: DemoOptions) -> Path:
    from clipforge.data.builders.emoji import build_emoji

    data = Path(opts.data)
    if opts.quick and opts.data == DemoOptions.data:
        data = Path(opts.out) / "emoji"  # never let a smoke test's subset stand in for the full set
    build_emoji(data, limit=QUICK_IMAGES if opts.quick else None)
    return data


def _train_config(opts: DemoOptions, data: Path, cuda: bool) -> Any:
    from clipforge.train.config import load_train_config

    if not REPO_CONFIG.is_file():
        raise UserError(f"the demo's run config {REPO_CONFIG} is missing", hint="run the demo from a clipforge checkout")
    overrides = [f"data.train={data / 'train.jsonl'}", f"run_dir={Path(opts.out) / 'train'}", f"device={opts.device}"]
    if opts.quick:
        overrides += QUICK_OVERRIDES
    elif cuda:
        overrides += GPU_OVERRIDES
    return load_train_config(REPO_CONFIG, overrides)


def _train(opts: DemoOptions, cfg: Any) -> tuple[Path, dict[str, Any]]:
    """Train, or reuse a finished run whose resolved config equals this one."""
    import yaml

    from clipforge.train.trainer import run_training
    from clipforge.utils.configs import to_dict

    run_dir = Path(cfg.run_dir)
    final = run_dir / "final"
    saved = run_dir / "config.yaml"
    finished = not opts.fresh and (final / "config.json").is_file() and saved.is_file()
    if finished and yaml.safe_load(saved.read_text()) == yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False)):
        log.info("reusing the finished training run in %s", run_dir)
        return final, {"reused": True}
    start = time.perf_counter()
    result = run_training(cfg, resume=None if opts.fresh else "latest")
    if result.final_dir is None:
        raise UserError("training produced no final model")
    info = {"steps": result.step, "samples_per_s": round(result.samples_per_s, 1),
            "skipped_steps": result.skipped_steps, "train_seconds": round(time.perf_counter() - start, 1)}
    return result.final_dir, info


def _evaluate(opts: DemoOptions, final: Path, data: Path, run_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    import clipforge
    from clipforge.eval.runner import evaluate_and_report
    from clipforge.eval.suite import SuiteConfig

    pipeline = clipforge.load(final)
    suite_cfg = SuiteConfig(name="demo", emoji_root=str(data), limit=64 if opts.quick else None, progress=True)
    evaluate_and_report(pipeline, suite_cfg, opts.out, checkpoint=str(final), run_dir=run_dir, extra_meta=meta)
    return json.loads((Path(opts.out) / "results.json").read_text())


def _collection(data: Path, out: Path) -> Path:
    """One table of every emoji image (training and held-out) captioned with its name, for image->text search."""
    from clipforge.data.sources import open_source
    from clipforge.utils.io import atomic_write_text

    rows = []
    for split in ("train.jsonl", "heldout.jsonl"):
        source = open_source(data / split, extra_columns=("label",))
        for item in source.items:
            rows.append(json.dumps({"image": str(source.file(item)), "caption": item.fields["label"]}))
    path = out / "collection.jsonl"
    atomic_write_text(path, "\n".join(rows) + "\n")
    return path


def _cli(*argv: str) -> None:
    from clipforge.cli import main

    code = main(list(argv))
    if code != 0:
        raise UserError(f"'clipforge {' '.join(argv)}' failed (exit {code})")


def run_demo(opts: DemoOptions) -> dict[str, Any]:
    """Run every stage; returns the results written to OUT/results.json."""
    import torch
    from rich.console import Console

    console = Console()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = opts.device == "cuda" or (opts.device == "auto" and torch.cuda.is_available())
    timings: dict[str, float] = {}

    t = _stage(console, "1/5 data: the pip-only emoji set (OpenMoji SVGs rendered, named by the emoji package)")
    data = _ensure_data(opts)
    timings["data_seconds"] = time.perf_counter() - t

    t = _stage(console, "2/5 train: a tiny CLIP from scratch" + (" on the GPU" if cuda else " on the CPU"))
    cfg = _train_config(opts, data, cuda)
    final, train_info = _train(opts, cfg)
    timings["train_stage_seconds"] = time.perf_counter() - t

    t = _stage(console, "3/5 evaluate: zero-shot on classes never seen in training")
    meta = {"demo": {**train_info, "config": str(REPO_CONFIG.name), "quick": opts.quick}}
    results = _evaluate(opts, final, data, Path(cfg.run_dir), meta)
    timings["eval_seconds"] = time.perf_counter() - t

    t = _stage(console, "4/5 embed and index the whole collection")
    emb, index = out / "embeddings", out / "index"
    _cli("embed", str(final), str(_collection(data, out)), "--out", str(emb), "--workers", "0")
    _cli("index", str(emb), "--out", str(index))
    timings["index_seconds"] = time.perf_counter() - t

    _stage(console, "5/5 search")
    for query in QUERIES:
        console.print(f"[bold]clipforge search {index} --text {query!r} -k 5")
        _cli("search", str(index), "--text", query, "-k", "5")

    _summary(console, opts, results, final, index, timings)
    return results


def _summary(console: Any, opts: DemoOptions, results: dict[str, Any], final: Path, index: Path,
             timings: dict[str, float]) -> None:
    zs = results.get("zeroshot", {})
    lines = [f"  {name}: top-1 {100 * r['top1']:.1f}%" for name, r in zs.items() if isinstance(r, dict) and "top1" in r]
    for name, why in (results.get("skipped") or {}).items():
        lines.append(f"  {name}: skipped ({why})")
    out = Path(opts.out)
    console.rule("[bold]done")
    console.print("Zero-shot accuracy:\n" + "\n".join(lines))
    console.print(
        "Stage times: " + ", ".join(f"{k.replace('_seconds', '')} {v:.0f}s" for k, v in timings.items()) + "\n"
        f"Model:    {final}   (clipforge.load('{final}'))\n"
        f"Results:  {out / 'results.json'}\n"
        f"Report:   {out / 'report.html'}\n"
        f"Index:    {index}\n"
        f"Serve it: clipforge serve --index {index}   then open http://127.0.0.1:8000/"
    )
