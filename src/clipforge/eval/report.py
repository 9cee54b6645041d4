"""Results as JSON and as one self-contained HTML report (inline CSS and SVG, images as base64).

The report opens offline in any browser: training curves from a run's ``metrics.jsonl``, accuracy per
benchmark, confusion matrices, zero-shot examples and a retrieval grid (top-5 images for sample captions,
top-5 captions for sample images), and the run's seeds, steps and config when given.
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

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#222}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 10px}h3{font-size:14px;margin:14px 0 6px}
.sub{color:#666;font-size:13px}
section{background:#fff;border:1px solid #e3e6eb;border-radius:8px;padding:16px 20px;margin:16px 0}
table{border-collapse:collapse;font-size:13px}td,th{padding:4px 10px;border-bottom:1px solid #eef0f3;text-align:left}
th{color:#555;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:12px}.skip{color:#a15c00}
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
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return None
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


def _benchmarks(result: SuiteResult) -> str:
    bars, rows = [], []
    for key, detail in result.details.items():
        m = detail.metrics()
        task, name = key.split(".", 1)
        if isinstance(detail, ZeroShotResult):
            chance = 1 / m["n_classes"]
            bars.append((f"zero-shot top-1 · {name}", m["top1"], chance))
            main = (
                f"top-1 {_pct(m['top1'])} · top-5 {_pct(m['top5'])} · mean per class {_pct(m['mean_per_class'])} "
                f"· chance {_pct(chance)}"
            )
            size = f"{int(m['n_images'])} images, {int(m['n_classes'])} classes"
        elif isinstance(detail, RetrievalResult):
            bars.append((f"text→image R@5 · {name}", m["text_to_image_R@5"], min(1.0, 5 / m["n_images"])))
            bars.append((f"image→text R@5 · {name}", m["image_to_text_R@5"], None))
            main = " · ".join(
                f"{d} R@{k} {_pct(m[f'{p}_R@{k}'])}"
                for p, d in (("image_to_text", "i→t"), ("text_to_image", "t→i"))
                for k in (1, 5, 10)
            )
            size = f"{int(m['n_images'])} images, {int(m['n_texts'])} captions"
        elif isinstance(detail, ProbeResult):
            bars.append((f"linear probe · {name}", m["accuracy"], None))
            main = f"accuracy {_pct(m['accuracy'])} · L2 {m['l2']:g} (validation {_pct(m['val_accuracy'])})"
            size = f"{int(m['n_train'])} train, {int(m['n_test'])} test images"
        else:
            continue
        seconds = result.seconds.get(key, float("nan"))
        rows.append(
            f"<tr><td>{escape(task)}</td><td>{escape(name)}</td><td>{main}</td><td>{size}</td>"
            f'<td class="num">{seconds:.1f}s</td></tr>'
        )
    skipped = "".join(
        f'<tr class="skip"><td colspan="5">skipped {escape(k)}: {escape(v)}</td></tr>' for k, v in result.skipped.items()
    )
    table = (
        "<table><tr><th>task</th><th>benchmark</th><th>result</th><th>data</th><th>time</th></tr>"
        f"{''.join(rows)}{skipped}</table>"
    )
    sources = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in result.sources.items())
    chart = svg.bar_chart(bars) if bars else ""
    if any(b[2] is not None for b in bars):
        chart += '<p class="sub">Dark ticks: chance level (zero-shot 1/classes, text→image R@5 5/images).</p>'
    return f'{chart}{table}<h3>Data sources</h3><ul class="sub">{sources}</ul>'


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


def _kv_table(meta: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in meta.items())
    return f"<table>{rows}</table>"


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
        title: page heading.
        meta: key facts shown at the top (checkpoint, seed, steps, suite, wall time, ...).
        metrics_rows: a training run's metrics.jsonl rows, for the training curves.
        run_config: the resolved training config, shown as JSON.
    """
    body = [f"<h1>{escape(title)}</h1>"]
    if meta:
        body.append(f'<section id="run"><h2>Run</h2>{_kv_table(meta)}</section>')
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
