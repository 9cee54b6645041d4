"""The demo job: every stage goes through the same public Python entry points a user calls.

Stages: build the pip-only emoji set and the named icon sets -> train a tiny CLIP from scratch -> embed every
emoji and build a FAISS index -> the fixed search queries, scored by precision@5 -> zero-shot evaluation
(held-out emoji classes, Fashion-MNIST and Animal-MNIST when installed; prompt sets chosen on validation
classes) with results.json and an HTML report. Each stage reuses its output when it is already there.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.table import Table

import clipforge
from clipforge.checkpoint import CONFIG_FILE
from clipforge.data.builders.emoji import build_emoji
from clipforge.data.sources import open_source
from clipforge.demo.config import DEMO_CONFIG_FILE, DemoConfig, demo_train_config
from clipforge.demo.queries import load_queries, score_queries
from clipforge.demo.threads import ThreadChooser
from clipforge.errors import UserError
from clipforge.eval.runner import RESULTS_FILE, evaluate_and_report
from clipforge.eval.suite import SuiteConfig
from clipforge.index.build import build_store, read_embeddings
from clipforge.index.embed import embed_collection
from clipforge.index.manifest import checkpoint_fingerprint
from clipforge.index.search import Searcher
from clipforge.train.trainer import FINAL_DIR, run_training
from clipforge.utils.configs import RESOLVED_CONFIG_FILE, to_dict, write_resolved
from clipforge.utils.io import atomic_write_text

log = logging.getLogger(__name__)


def _stage(console: Any, title: str) -> float:
    console.rule(f"[bold]{title}")
    return time.perf_counter()


def build_data(cfg: DemoConfig) -> Path:
    """The emoji set (and the icon sets the config names) in ``cfg.data_dir()``."""
    data = cfg.data_dir()
    build_emoji(data, limit=cfg.images or None, icons=cfg.icons, icon_limit=cfg.icons_per_set or None)
    return data


def train(cfg: DemoConfig, train_cfg: Any, cuda: bool) -> tuple[Path, dict[str, Any]]:
    """Train, or reuse a finished run whose resolved config equals this one; returns the final model and facts."""
    run_dir = Path(train_cfg.run_dir)
    final, saved = run_dir / FINAL_DIR, run_dir / RESOLVED_CONFIG_FILE
    finished = not cfg.fresh and (final / CONFIG_FILE).is_file() and saved.is_file()
    if finished and yaml.safe_load(saved.read_text()) == yaml.safe_load(yaml.safe_dump(to_dict(train_cfg))):
        log.info("reusing the finished training run in %s", run_dir)
        return final, {"reused": True}
    chooser = ThreadChooser() if cfg.threads == 0 and not cuda else None
    start = time.perf_counter()
    result = run_training(train_cfg, resume=None if cfg.fresh else "latest", on_step=chooser)
    if result.final_dir is None:
        raise UserError("training produced no final model")
    info: dict[str, Any] = {"steps": result.step, "samples_per_s": round(result.samples_per_s, 1),
                            "skipped_steps": result.skipped_steps,
                            "train_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    if chooser is not None:
        info["threads"] = chooser.choices
    return result.final_dir, info


def _collection(data: Path, out: Path) -> Path:
    """One table of every emoji image (all splits) captioned with its label, for search."""
    rows = []
    for split in ("train.jsonl", "val.jsonl", "heldout.jsonl"):
        if not (data / split).is_file():
            continue  # a set built before the validation split has none
        source = open_source(data / split, extra_columns=("label",))
        for item in source.items:
            rows.append(json.dumps({"image": str(source.file(item)), "caption": item.fields["label"]}))
    path = out / "collection.jsonl"
    atomic_write_text(path, "\n".join(rows) + "\n")
    return path


def build_index(pipeline: Any, final: Path, data: Path, out: Path) -> Path:
    """Embed the emoji collection (resuming what is there) and index it exactly; returns the index folder."""
    emb, index = out / "embeddings", out / "index"
    collection = open_source(_collection(data, out), "image", "caption")
    embed_collection(pipeline, collection, emb, fingerprint=checkpoint_fingerprint(final), workers=0)
    store, report = build_store(read_embeddings(emb))
    store.save(index)
    log.info("indexed %d images in %s", report.count, index)
    return index


def run_queries(cfg: DemoConfig, pipeline: Any, index: Path, console: Any) -> dict[str, Any]:
    """Score every fixed query by precision@5 and print the first ``cfg.shown_queries`` searches."""
    searcher = Searcher.open(index, pipeline)
    hits: dict[str, list[Any]] = {}

    def search(text: str, k: int) -> list[str]:
        hits[text] = searcher.text_to_image(text, k)
        return [h.caption or "" for h in hits[text]]

    queries = load_queries(cfg.queries)
    scored = score_queries(search, queries)
    for row in scored["queries"][: cfg.shown_queries]:
        table = Table(title=f"search {row['query']!r}: precision@5 {row['precision']:.1f}")
        for column in ("rank", "label", "score", "relevant"):
            table.add_column(column)
        relevant = next(q.relevant for q in queries if q.text == row["query"])
        for rank, hit in enumerate(hits[row["query"]], start=1):
            table.add_row(str(rank), hit.caption or "", f"{hit.score:.3f}", "yes" if hit.caption in relevant else "")
        console.print(table)
    return scored


def evaluate(cfg: DemoConfig, pipeline: Any, final: Path, data: Path, run_dir: Path,
             meta: dict[str, Any]) -> dict[str, Any]:
    """The demo suite with prompt sets chosen on validation classes; writes OUT/results.json and report.html."""
    suite_cfg = SuiteConfig(name="demo", emoji_root=str(data), templates=cfg.templates,
                            limit=cfg.eval_limit or None, progress=True)  # fmt: skip
    evaluate_and_report(pipeline, suite_cfg, cfg.out, checkpoint=str(final), run_dir=run_dir, extra_meta=meta)
    return json.loads((Path(cfg.out) / RESULTS_FILE).read_text())


def _search_meta(scored: dict[str, Any]) -> dict[str, Any]:
    """The queries' precision for the report's Run table: the mean, then one row per query."""
    meta: dict[str, Any] = {f"search precision@{scored['k']} ({len(scored['queries'])} queries)": round(scored["mean"], 3)}
    for row in scored["queries"]:
        meta[f"precision@{scored['k']} · {row['query']}"] = f"{row['precision']:.1f}  ({', '.join(row['top'])})"
    return meta


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every stage; returns the results written to OUT/results.json (with ``search`` and ``demo`` added)."""
    console = Console()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_resolved(cfg, out, DEMO_CONFIG_FILE)
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    timings: dict[str, float] = {}

    t = _stage(console, "1/5 data: the pip-only emoji set and named icon sets, rendered with resvg")
    data = build_data(cfg)
    timings["data_seconds"] = time.perf_counter() - t

    t = _stage(console, "2/5 train: a tiny CLIP from scratch" + (" on the GPU" if cuda else " on the CPU"))
    train_cfg = demo_train_config(cfg, data, cuda)
    final, train_info = train(cfg, train_cfg, cuda)
    timings["train_stage_seconds"] = time.perf_counter() - t
    pipeline = clipforge.load(final)

    t = _stage(console, "3/5 embed and index every emoji")
    index = build_index(pipeline, final, data, out)
    timings["index_seconds"] = time.perf_counter() - t

    t = _stage(console, "4/5 search: twenty fixed everyday queries, precision@5")
    scored = run_queries(cfg, pipeline, index, console)
    timings["search_seconds"] = time.perf_counter() - t

    t = _stage(console, "5/5 evaluate: zero-shot on classes never seen in training")
    demo_meta = {**train_info, "recipe": cfg.recipe, "config": json.dumps(to_dict(cfg))}
    results = evaluate(cfg, pipeline, final, data, Path(train_cfg.run_dir),
                       {"demo": demo_meta, **_search_meta(scored)})
    timings["eval_seconds"] = time.perf_counter() - t

    results["search"] = scored
    results["demo"] = {**demo_meta, "timings": {k: round(v, 1) for k, v in timings.items()}}
    atomic_write_text(out / RESULTS_FILE, json.dumps(results, indent=1) + "\n")
    _summary(console, cfg, results, final, index, timings)
    return results


def _summary(console: Any, cfg: DemoConfig, results: dict[str, Any], final: Path, index: Path,
             timings: dict[str, float]) -> None:
    zs, chosen = results.get("zeroshot", {}), results.get("templates", {})
    lines = []
    for name, r in zs.items():
        if isinstance(r, dict) and "top1" in r:
            prompts = chosen.get(f"zeroshot.{name}", {}).get("templates", "")
            lines.append(f"  {name}: top-1 {100 * r['top1']:.1f}% of {r['n_classes']:.0f} classes"
                         + (f" (prompt set '{prompts}', chosen on validation classes)" if prompts else ""))
    for name, why in (results.get("skipped") or {}).items():
        lines.append(f"  {name}: skipped ({why})")
    search = results["search"]
    out = Path(cfg.out)
    console.rule("[bold]done")
    console.print("Zero-shot accuracy:\n" + "\n".join(lines))
    console.print(f"Search: precision@{search['k']} {100 * search['mean']:.0f}% over {len(search['queries'])} "
                  f"fixed queries (per query in {out / 'results.json'})")
    console.print(
        "Stage times: " + ", ".join(f"{k.replace('_seconds', '')} {v:.0f}s" for k, v in timings.items()) + "\n"
        f"Model:    {final}   (clipforge.load('{final}'))\n"
        f"Results:  {out / 'results.json'}\n"
        f"Report:   {out / 'report.html'}\n"
        f"Index:    {index}\n"
        f"Search:   clipforge search {index} --text 'a red heart' -k 5\n"
        f"Serve it: clipforge serve --index {index}   then open http://127.0.0.1:8000/"
    )
