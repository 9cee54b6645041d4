"""Results as JSON and as one self-contained HTML report (inline CSS and SVG, images as base64).

The report opens offline in any browser and reads like a paper's appendix: the results tables first (the
numbers one would cite, one table per task), then the training curves from a run's ``metrics.jsonl``, accuracy
per benchmark against chance, confusion matrices, zero-shot examples, a retrieval grid (top-5 images for sample
captions, top-5 captions for sample images), and last how it was run (seeds, steps, settings, config).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image

from clipforge.data.tables import read_json_lines
from clipforge.errors import UserError
from clipforge.eval import svg
from clipforge.eval.datasets import spaced_indices
from clipforge.eval.linear_probe import ProbeResult
from clipforge.eval.retrieval import RetrievalResult
from clipforge.eval.suite import SuiteResult
from clipforge.eval.zeroshot import ZeroShotResult
from clipforge.utils.io import atomic_write_text

log = logging.getLogger(__name__)

MAX_CONFUSION_CLASSES = 25  # beyond this a heat map is unreadable: list the most confused pairs instead
SAMPLES = 4  # sample queries per retrieval direction
THUMB = 72  # thumbnail side in pixels
CURVE_NEXT = ("logit_scale", "lr")
NOT_CURVES = {"step", "epoch", "time", "timestamp", "wall", "elapsed"}  # x-like keys, not plotted
SUBTITLE_KEYS = ("checkpoint", "suite", "train model", "train steps", "train seed")  # the line under the title

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#222}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 10px}h3{font-size:14px;margin:14px 0 6px}
.sub{color:#666;font-size:13px}
section{background:#fff;border:1px solid #e3e6eb;border-radius:8px;padding:16px 20px;margin:16px 0}
table{border-collapse:collapse;font-size:13px}td,th{padding:4px 10px;border-bottom:1px solid #eef0f3;text-align:left}
th{color:#555;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:16px}.skip{color:#a15c00}
svg.chart.line,svg.chart.bars{width:100%;height:auto;display:block}
table.results{width:100%;margin-bottom:6px}table.results th.num{text-align:right}
table.facts th{width:32%;vertical-align:top}table.facts td{overflow-wrap:anywhere}
.grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.row{display:flex;gap:10px;align-items:center;margin:8px 0}.query{width:220px;font-size:13px}
.cell{text-align:center;font-size:11px;width:84px}
.cell img{width:72px;height:72px;image-rendering:pixelated;border:3px solid #e3e6eb;border-radius:4px;background:#fff}
.cell.hit img{border-color:#2a9d4b}.texts{font-size:12px;margin:0;padding-left:18px}.texts li.hit{color:#1e7b3a;font-weight:600}
.ex{width:112px}.ph{display:inline-block;width:72px;height:72px;background:#eee;border-radius:4px}
pre{background:#f7f8fa;padding:10px;border-radius:6px;font-size:12px;overflow:auto;max-height:400px}
"""


def read_metrics_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a training run's metrics file; lines that are not JSON objects with a ``step`` are skipped, counted."""
    return read_json_lines(path, lambda row: isinstance(row.get("step"), (int, float)), "no_step")


def write_results_json(path: str | Path, result: SuiteResult, meta: dict[str, Any] | None = None) -> Path:
    """Write ``result.to_json()`` (plus ``meta``) atomically as indented JSON."""
    data = result.to_json()
    if meta:
        data["meta"] = meta
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")
    return Path(path)


def write_timings_json(path: str | Path, result: SuiteResult, timings: dict[str, float]) -> Path:
    """Write the seconds each benchmark took (``benchmarks``) and the run's other ``timings`` atomically."""
    data = {"benchmarks": {k: round(v, 3) for k, v in result.seconds.items()}, **timings}
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return Path(path)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _data_uri(image: Any) -> str | None:
    """A PNG data URI of a PIL image's thumbnail; None for anything else (e.g. a tensor in tests)."""
    if not isinstance(image, Image.Image):
        return None
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumb(images: Any, index: int, caption: str, hit: bool) -> str:
    uri = None
    if images is not None:
        try:
            uri = _data_uri(images.load(index))
        except (OSError, ValueError, UserError):
            uri = None
    img = f'<img src="{uri}" alt="">' if uri else '<span class="ph"></span>'
    return f'<div class="cell{" hit" if hit else ""}">{img}<div>{escape(caption)}</div></div>'


def _curves(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k not in NOT_CURVES and k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    # Loss first, then in-training evaluations, temperature and learning rate; throughput figures last.
    keys.sort(key=lambda k: (0 if k == "loss" else 1 if k.startswith("eval") else 2 if k in CURVE_NEXT else 3, k))
    charts = []
    for key in keys[:9]:
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        charts.append(svg.line_chart(pts, key))
    return f'<div class="charts">{"".join(charts)}</div>' if charts else "<p>no numeric metrics found</p>"


# The numbers one would cite, per task: (column heading, metric key, shown as a percentage).
RESULT_COLUMNS: dict[type, tuple[str, tuple[tuple[str, str, bool], ...]]] = {
    ZeroShotResult: ("Zero-shot classification", (
        ("images", "n_images", False), ("classes", "n_classes", False), ("top-1", "top1", True),
        ("top-5", "top5", True), ("mean per class", "mean_per_class", True))),
    RetrievalResult: ("Retrieval", (
        ("images", "n_images", False), ("captions", "n_texts", False),
        ("image→text R@1", "image_to_text_R@1", True), ("R@5", "image_to_text_R@5", True),
        ("R@10", "image_to_text_R@10", True), ("text→image R@1", "text_to_image_R@1", True),
        ("R@5 ", "text_to_image_R@5", True), ("R@10 ", "text_to_image_R@10", True))),
    ProbeResult: ("Linear probe", (
        ("train images", "n_train", False), ("test images", "n_test", False), ("accuracy", "accuracy", True),
        ("validation accuracy", "val_accuracy", True), ("L2", "l2", False))),
}


def _cell(value: Any, pct: bool) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return '<td class="num">—</td>'
    shown = _pct(value) if pct else (f"{int(value):,}" if float(value).is_integer() else f"{value:g}")
    return f'<td class="num">{shown}</td>'


def _results_tables(result: SuiteResult) -> str:
    """One table per task (rows: benchmarks; columns: its headline metrics), then the skipped benchmarks."""
    out = []
    for kind, (heading, columns) in RESULT_COLUMNS.items():
        rows = []
        for key, detail in result.details.items():
            if not isinstance(detail, kind):
                continue
            m = detail.metrics()
            extra = _cell(1 / m["n_classes"], True) if kind is ZeroShotResult else ""
            cells = "".join(_cell(m.get(metric), pct) for _, metric, pct in columns)
            rows.append(f"<tr><td>{escape(key.split('.', 1)[1])}</td>{cells}{extra}</tr>")
        if rows:
            heads = "".join(f'<th class="num">{escape(h.strip())}</th>' for h, _, _ in columns)
            heads += '<th class="num">chance</th>' if kind is ZeroShotResult else ""
            out.append(f"<h3>{heading}</h3><table class='results'><tr><th>benchmark</th>{heads}</tr>"
                       f"{''.join(rows)}</table>")
    if result.skipped:
        items = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in result.skipped.items())
        out.append(f'<h3>Skipped</h3><ul class="skip">{items}</ul>')
    return "".join(out) or "<p>no benchmark ran</p>"


def _benchmarks(result: SuiteResult) -> str:
    """The headline score of every benchmark as bars against chance, the time each took, and the data sources."""
    bars = []
    for key, detail in result.details.items():
        m = detail.metrics()
        name = key.split(".", 1)[1]
        if isinstance(detail, ZeroShotResult):
            bars.append((f"zero-shot top-1 · {name}", m["top1"], 1 / m["n_classes"]))
        elif isinstance(detail, RetrievalResult):
            bars.append((f"text→image R@5 · {name}", m["text_to_image_R@5"], min(1.0, 5 / m["n_images"])))
            bars.append((f"image→text R@5 · {name}", m["image_to_text_R@5"], None))
        elif isinstance(detail, ProbeResult):
            bars.append((f"linear probe · {name}", m["accuracy"], None))
    chart = svg.bar_chart(bars) if bars else ""
    if any(b[2] is not None for b in bars):
        chart += '<p class="sub">Dark ticks: chance level (zero-shot 1/classes, text→image R@5 5/images).</p>'
    times = " · ".join(f"{escape(k)} {v:.1f} s" for k, v in result.seconds.items())
    if times:
        chart += f'<p class="sub">Time per benchmark: {times}</p>'
    sources = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in result.sources.items())
    return f'{chart}<h3>Data sources</h3><ul class="sub">{sources}</ul>'


def _confusion(name: str, res: ZeroShotResult) -> str:
    conf = res.confusion().tolist()
    per_class = res.per_class_accuracy()
    if len(res.classnames) <= MAX_CONFUSION_CLASSES:
        acc = "".join(
            f"<tr><td>{escape(c)}</td><td class='num'>{'—' if a is None else _pct(a)}</td></tr>"
            for c, a in zip(res.classnames, per_class, strict=True)
        )
        return (
            f"<h3>{escape(name)}</h3><div class='grid'>{svg.confusion_matrix(conf, res.classnames)}"
            f"<table><tr><th>class</th><th>accuracy</th></tr>{acc}</table></div>"
        )
    pairs = sorted(
        ((conf[i][j], i, j) for i in range(len(conf)) for j in range(len(conf)) if i != j and conf[i][j]),
        key=lambda t: (-t[0], t[1], t[2]),
    )[:10]
    body = "".join(
        f"<tr><td>{escape(res.classnames[i])}</td><td>{escape(res.classnames[j])}</td><td class='num'>{n}</td></tr>"
        for n, i, j in pairs
    )
    return (
        f"<h3>{escape(name)} — {len(res.classnames)} classes: most frequent confusions</h3>"
        f"<table><tr><th>true</th><th>predicted</th><th>images</th></tr>{body}</table>"
    )


def _zeroshot_examples(name: str, res: ZeroShotResult, n: int = 8) -> str:
    cells = []
    for row in spaced_indices(len(res.labels), n):
        true = int(res.labels[row])
        top = res.ranking[row, :3].tolist()
        preds = "".join(
            f'<li class="{"hit" if c == true else ""}">{escape(res.classnames[c])}</li>' for c in top
        )
        image = _thumb(res.images, int(res.image_indices[row]), res.classnames[true], top[0] == true)
        cells.append(f'<div class="ex">{image}<ol class="texts">{preds}</ol></div>')
    return f"<h3>{escape(name)}: true class under each image, top-3 predictions below</h3><div class='grid'>{''.join(cells)}</div>"


def _retrieval_grid(name: str, res: RetrievalResult) -> str:
    pos = res.positives
    out = [f"<h3>{escape(name)}: top-5 images for sample captions (green: an image it describes)</h3>"]
    for image_index in spaced_indices(len(res.image_ranks), SAMPLES):
        t = int(pos[:, image_index].nonzero()[0, 0])  # the image's first caption
        cells = "".join(
            _thumb(res.images, j, f"#{r + 1}", bool(pos[t, j])) for r, j in enumerate(res.top_images(t))
        )
        out.append(f'<div class="row"><div class="query">“{escape(res.texts[t])}”</div>{cells}</div>')
    out.append(f"<h3>{escape(name)}: top-5 captions for sample images (green: the image's own captions)</h3>")
    for image_index in spaced_indices(len(res.image_ranks), SAMPLES):
        texts = "".join(
            f'<li class="{"hit" if pos[t, image_index] else ""}">{escape(res.texts[t])}</li>'
            for t in res.top_texts(image_index)
        )
        query = _thumb(res.images, image_index, "query", False)
        out.append(f'<div class="row">{query}<ol class="texts">{texts}</ol></div>')
    return "".join(out)


def _fact(value: Any) -> str | None:
    """A Run-table value as text: None and empty values are left out (no "limit None"), mappings become
    "key value · key value" without their unset entries, numbers lose float noise."""
    if value is None or value == "" or value == {} or value == []:
        return None
    if isinstance(value, dict):
        parts = [f"{k} {v}" for k, v in ((k, _fact(v)) for k, v in value.items()) if v is not None]
        return " · ".join(parts) or None
    if isinstance(value, (list, tuple)):
        return ", ".join(str(_fact(v)) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return str(value)


def _kv_table(meta: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(shown)}</td></tr>"
                   for k, shown in ((k, _fact(v)) for k, v in meta.items()) if shown is not None)
    return f"<table class='facts'>{rows}</table>"


def run_title(checkpoint: str | Path | None, run_dir: str | Path | None = None) -> str:
    """The report's title: the training run's name, not its checkpoint folder's ("final").

    A run directory names the run; a checkpoint inside a run (RUN/final, RUN/checkpoints/step_N.pt) is named
    after RUN, with the checkpoint when it is not the final one; any other checkpoint by its own name.
    """
    if run_dir:
        run = Path(run_dir).resolve().name
        ckpt = Path(checkpoint).name if checkpoint else ""
        return f"{run} ({ckpt})" if ckpt and ckpt != "final" and Path(checkpoint).parent.name != run else run
    if not checkpoint:
        return "clipforge evaluation"
    path = Path(checkpoint).resolve()
    if path.parent.name == "checkpoints":
        return f"{path.parent.parent.name} ({path.stem})"
    if path.name == "final":
        return path.parent.name
    return path.name


def render_report(
    result: SuiteResult,
    *,
    title: str = "clipforge evaluation",
    meta: dict[str, Any] | None = None,
    metrics_rows: list[dict[str, Any]] | None = None,
    run_config: dict[str, Any] | None = None,
) -> str:
    """The report as one HTML string.

    Args:
        result: what the suite computed (metrics plus each evaluator's full result).
        title: page heading (``run_title`` names the run).
        meta: key facts shown at the top (checkpoint, seed, steps, suite, wall time, ...).
        metrics_rows: a training run's metrics.jsonl rows, for the training curves.
        run_config: the resolved training config, shown as JSON.
    """
    body = [f"<h1>{escape(title)}</h1>"]
    if meta:
        facts = [(k, None if isinstance(meta.get(k), dict) else _fact(meta.get(k))) for k in SUBTITLE_KEYS]
        line = " · ".join(f"{k.removeprefix('train ')} {v}" for k, v in facts if v is not None)
        body.append(f'<p class="sub">clipforge evaluation · {escape(line)}</p>')
    body.append(f'<section id="results"><h2>Results</h2>{_results_tables(result)}</section>')
    if metrics_rows:
        body.append(f'<section id="curves"><h2>Training curves</h2>{_curves(metrics_rows)}</section>')
    body.append(f'<section id="benchmarks"><h2>Accuracy per benchmark</h2>{_benchmarks(result)}</section>')
    zs = {k: d for k, d in result.details.items() if isinstance(d, ZeroShotResult)}
    if zs:
        confusion = "".join(_confusion(k, d) for k, d in zs.items())
        body.append(f'<section id="confusion"><h2>Confusion matrices</h2>{confusion}</section>')
        examples = "".join(_zeroshot_examples(k, d) for k, d in zs.items() if d.images is not None)
        if examples:
            body.append(f'<section id="examples"><h2>Zero-shot examples</h2>{examples}</section>')
    ret = {k: d for k, d in result.details.items() if isinstance(d, RetrievalResult)}
    if ret:
        grids = "".join(_retrieval_grid(k, d) for k, d in ret.items())
        body.append(f'<section id="retrieval"><h2>Retrieval</h2>{grids}</section>')
    if meta:
        body.append(f'<section id="run"><h2>Run</h2>{_kv_table(meta)}</section>')
    if run_config:
        text = escape(json.dumps(run_config, indent=2, default=str))
        body.append(f'<section id="config"><h2>Training config</h2><pre>{text}</pre></section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def write_report(path: str | Path, result: SuiteResult, **kwargs: Any) -> Path:
    """Render the report (see ``render_report`` for the keyword arguments) and write it atomically."""
    atomic_write_text(path, render_report(result, **kwargs))
    return Path(path)
