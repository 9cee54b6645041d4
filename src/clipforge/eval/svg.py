"""Small inline SVG charts for the offline HTML report (no JavaScript, no external files)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

ACCENT = "#2f6fde"
GRID = "#e3e6eb"
TEXT = "#444"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: multiples of 1, 2 or 5 x 10^k (Heckbert, "Nice numbers for graph
    labels", Graphics Gems 1990), about ``count`` of them; the first is <= lo and the last >= hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def _decimals(step: float) -> int:
    """Decimals that tell ticks ``step`` apart (2.5 x 10^k steps need one more than 1, 2 or 5 x 10^k)."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    scaled = step * 10**decimals
    return decimals + (1 if abs(scaled - round(scaled)) > 1e-6 else 0)


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Tick values as people write them, one format per axis: 1,200 (not 1.2e+03), 0.085 with as many decimals
    as the step needs, 12k / 1.5M when every tick is a round thousand / million, 2e-05 only for tiny values."""
    if len(ticks) < 2:
        return [f"{v:g}" for v in ticks]
    step, top = ticks[1] - ticks[0], max(abs(v) for v in ticks)
    if top < 1e-3:
        d = max(0, _decimals(step / 10 ** math.floor(math.log10(top))))
        return ["0" if v == 0 else f"{v:.{d}e}" for v in ticks]
    for unit, suffix in ((1e6, "M"), (1e3, "k")):
        if top >= 10 * unit or (top >= unit and step >= unit):
            return ["0" if v == 0 else f"{v / unit:,.{_decimals(step / unit)}f}{suffix}" for v in ticks]
    return ["0" if v == 0 else f"{v:,.{_decimals(step)}f}" for v in ticks]


def line_chart(points: Sequence[tuple[float, float]], title: str, width: int = 520, height: int = 240) -> str:
    """A line chart of (x, y) points on round-numbered axes; it scales to its container's width (viewBox).

    Args:
        points: (step, value) pairs; non-finite values are dropped.
        title: shown above the plot.
        width, height: the drawing's size in pixels at 100 % (the SVG itself takes the width it is given).
    """
    pts = [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    left, right, top, bottom = 58, 16, 28, 34
    w, h = width - left - right, height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="chart line">']
    parts.append(f'<text x="{left}" y="17" font-size="13" font-weight="600" fill="{TEXT}">{escape(title)}</text>')
    if not pts:
        parts.append(f'<text x="{left}" y="{top + h / 2}" font-size="12" fill="#999">no data</text></svg>')
        return "".join(parts)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    yt, xt = nice_ticks(y0, y1), nice_ticks(x0, x1, 6)
    y0, y1 = yt[0], yt[-1]
    x0, x1 = xt[0], xt[-1]

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * w

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * h

    for value, label in zip(yt, tick_labels(yt), strict=True):
        y = py(value)
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="{TEXT}">'
                     f"{label}</text>")
    for value, label in zip(xt, tick_labels(xt), strict=True):
        x = px(value)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + h}" y2="{top + h + 4}" stroke="#999"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + h + 16}" font-size="11" text-anchor="middle" fill="{TEXT}">'
                     f"{label}</text>")
    parts.append(f'<text x="{left + w}" y="{height - 2}" font-size="11" text-anchor="end" fill="#888">step</text>')
    coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
    if len(pts) == 1:
        parts.append(f'<circle cx="{px(xs[0]):.1f}" cy="{py(ys[0]):.1f}" r="3" fill="{ACCENT}"/>')
    else:
        parts.append(f'<polyline fill="none" stroke="{ACCENT}" stroke-width="1.6" points="{coords}"/>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    items: Sequence[tuple[str, float, float | None]], width: int = 1000, bar_height: int = 22
) -> str:
    """Horizontal bars for values in 0..1 (accuracies, recalls), labelled with percentages; full width (viewBox).

    Args:
        items: (label, value, chance) triples; chance (or None) is drawn as a dark tick on the bar.
        width: SVG width in pixels.
        bar_height: height of each bar row.
    """
    label_w, value_w = 300, 56
    w = width - label_w - value_w
    height = bar_height * len(items) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="chart bars">']
    for i, (label, value, chance) in enumerate(items):
        y = 4 + i * bar_height
        frac = min(max(value, 0.0), 1.0)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_height * 0.65:.1f}" font-size="12" text-anchor="end" '
            f'fill="{TEXT}">{escape(label)}</text>'
        )
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{bar_height - 6}" fill="{GRID}" rx="2"/>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{w * frac:.1f}" height="{bar_height - 6}" fill="{ACCENT}" rx="2"/>'
        )
        parts.append(
            f'<text x="{label_w + w + 6}" y="{y + bar_height * 0.65:.1f}" font-size="12" fill="{TEXT}">'
            f"{100 * value:.1f}%</text>"
        )
        if chance is not None:
            x = label_w + w * min(max(chance, 0.0), 1.0)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y + 1}" y2="{y + bar_height - 1}" stroke="#222" '
                f'stroke-width="2"><title>chance {100 * chance:.1f}%</title></line>'
            )
    parts.append("</svg>")
    return "".join(parts)


def confusion_matrix(counts: Sequence[Sequence[int]], classnames: Sequence[str], cell: int = 30) -> str:
    """A heat map of a confusion matrix normalized per true class (rows), with counts in the cells.

    Args:
        counts: C×C counts, rows = true class, columns = predicted class.
        classnames: the C class names.
        cell: cell side in pixels.
    """
    c = len(classnames)
    label_w, label_h = 120, 100
    size_w, size_h = label_w + c * cell + 70, label_h + c * cell + 24  # room for the last slanted label
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size_w}" height="{size_h}" class="chart">']
    for i, row in enumerate(counts):
        total = sum(row)
        y = label_h + i * cell
        parts.append(
            f'<text x="{label_w - 6}" y="{y + cell * 0.62:.1f}" font-size="11" text-anchor="end" fill="{TEXT}">'
            f"{escape(classnames[i])}</text>"
        )
        for j, n in enumerate(row):
            frac = n / total if total else 0.0
            x = label_w + j * cell
            # White → accent blue as the row fraction grows.
            r, g, b = (int(255 + (t - 255) * frac) for t in (47, 111, 222))
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgb({r},{g},{b})" stroke="#fff">'
                f"<title>true {escape(classnames[i])}, predicted {escape(classnames[j])}: {n}</title></rect>"
            )
            if n:
                colour = "#fff" if frac > 0.5 else TEXT
                parts.append(
                    f'<text x="{x + cell / 2}" y="{y + cell * 0.62:.1f}" font-size="10" text-anchor="middle" '
                    f'fill="{colour}">{n}</text>'
                )
    for j, name in enumerate(classnames):
        x = label_w + j * cell + cell * 0.6
        parts.append(
            f'<text x="{x:.1f}" y="{label_h - 6}" font-size="11" fill="{TEXT}" '
            f'transform="rotate(-45 {x:.1f} {label_h - 6})">{escape(name)}</text>'
        )
    parts.append(
        f'<text x="{label_w + c * cell / 2}" y="{size_h - 6}" font-size="11" text-anchor="middle" fill="#888">'
        "rows: true class · columns: predicted class</text></svg>"
    )
    return "".join(parts)
