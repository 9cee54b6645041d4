"""Named icon sets from PyPI, rendered like the emoji: many more concepts (words) for the demo's training set.

Sources (each a pinned wheel; a missing one is skipped with a log line):

- ``mdi``: material-design-icons-pack (Pictogrammers' Material Design Icons, Apache 2.0): ~7,400 icons named by
  slug, e.g. ``account-arrow-down-outline``.
- ``fontawesome``: fontawesomefree (Font Awesome Free icons, CC BY 4.0): solid and regular SVGs with labels,
  search terms and categories (brand logos are left out: they name companies, not things).
- ``lucide``: python-lucide (Lucide icons, ISC): ~1,900 icons with tags and categories.
- ``tabler``: pytablericons (Tabler Icons, MIT): ~5,200 outline and filled icons whose SVG header lists tags
  and a category. Its Python module imports pygame, so the SVG files are read without importing it.

Captions come from each icon's name, tags and category. The emoji set's held-out and validation classes stay
unseen: an icon whose name matches one of those labels (case, punctuation, style words such as "outline" and
a plural "s" ignored) is left out, and so is any tag that matches one. Output, inside the emoji set's folder::

    OUT/icons/<source>/<key>.png     RGBA, SIZE x SIZE, the drawing centred with a margin
    OUT/icons.jsonl                  {"image", "captions", "label", "group": "icons", "subgroup": None, "source"}
    OUT/icons.json                   counts per source, what was excluded, versions
    OUT/ATTRIBUTION-icons.txt        each set's licence notice
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path

import material_design_icons_pack as mdi
import resvg_py
import yaml
from PIL import Image
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from clipforge.errors import UserError
from clipforge.utils.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

SOURCES = ("mdi", "fontawesome", "lucide", "tabler")
# Words that name a drawing style, not a thing; dropped from names ("heart-outline" is a heart).
STYLE_WORDS = frozenset({"outline", "outlined", "filled", "solid", "regular", "variant"})
MAX_TAGS = 6  # tags kept per icon: enough words, without letting one icon's long tag list dominate its captions
MARGIN = 0.1  # the share of the side left blank around an icon (emoji artwork has a margin of about this size)
TEMPLATES = ("{n}", "{n} icon", "a drawing of {n}", "{a} {n} symbol", "a picture of {n}")


@dataclass(frozen=True)
class Icon:
    """One icon: ``source``/``key`` name its file; ``name`` is its label; ``svg`` its markup."""

    source: str
    key: str
    name: str
    tags: tuple[str, ...]
    category: str | None
    style: str | None
    svg: str


def name_key(text: str) -> str:
    """The form two names are compared in: lowercase words, style words and a plural "s" dropped.

    ``"Hearts (outline)"`` and ``"heart"`` give the same key.
    """
    words = re.sub(r"[^0-9a-z]+", " ", text.lower()).split()
    words = [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]
    return " ".join(w for w in words if w not in STYLE_WORDS)


def _clean_name(slug: str) -> tuple[str, str | None]:
    """``"heart-outline"`` -> ``("heart", "outline")``; hyphens and underscores become spaces."""
    words = re.split(r"[-_\s]+", slug.strip().lower())
    style = next((w for w in words if w in STYLE_WORDS), None)
    name = " ".join(w for w in words if w and w not in STYLE_WORDS)
    return name or slug, style


def _package_dir(module: str) -> Path:
    spec = util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(module)
    return Path(next(iter(spec.submodule_search_locations)))


def _licence(dist: str, names: Iterable[str] = ("LICENSE", "LICENSE.txt")) -> str:
    """The licence file a wheel ships in its dist-info, verbatim."""
    files = metadata.files(dist) or []
    for f in files:
        if f.name in names and "dist-info" in str(f.parent):
            return f.read_text(encoding="utf-8")
    return ""


def _mdi() -> tuple[list[Icon], str, str]:
    icons = []
    for attr, value in sorted(vars(mdi).items()):
        if not attr.isupper() or not hasattr(value, "slug") or value.deprecated:
            continue
        name, style = _clean_name(value.slug)
        icons.append(Icon("mdi", value.slug, name, (), None, style, value.svg))
    notice = "Material Design Icons (Pictogrammers), from material-design-icons-pack\n" + _licence(
        "material-design-icons-pack"
    )
    return icons, notice, metadata.version("material-design-icons-pack")


def _fontawesome() -> tuple[list[Icon], str, str]:
    root = _package_dir("fontawesomefree") / "static" / "fontawesomefree"
    meta = json.loads((root / "metadata" / "icons.json").read_text(encoding="utf-8"))
    categories: dict[str, str] = {}
    for cat in (yaml.safe_load((root / "metadata" / "categories.yml").read_text(encoding="utf-8")) or {}).values():
        for icon in cat.get("icons", []):
            categories.setdefault(icon, cat.get("label", ""))
    icons = []
    for slug, entry in sorted(meta.items()):
        for style in ("solid", "regular"):  # brand logos left out (see the module docstring)
            path = root / "svgs" / style / f"{slug}.svg"
            if style not in entry.get("free", []) or not path.is_file():
                continue
            name, _ = _clean_name(str(entry.get("label") or slug))
            terms = tuple(str(t) for t in (entry.get("search") or {}).get("terms", []) if t)
            icons.append(Icon("fontawesome", f"{style}-{slug}", name, terms, categories.get(slug),
                              "outline" if style == "regular" else None, path.read_text(encoding="utf-8")))
    notice = "Font Awesome Free icons (CC BY 4.0), from fontawesomefree\n" + (root / "LICENSE.txt").read_text()
    return icons, notice, metadata.version("fontawesomefree")


def _lucide() -> tuple[list[Icon], str, str]:
    db = _package_dir("lucide") / "data" / "lucide-icons.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        tags: dict[str, list[str]] = {}
        for name, tag in con.execute("SELECT name, tag FROM icon_tags ORDER BY rowid"):
            tags.setdefault(name, []).append(tag)
        cats: dict[str, str] = {}
        for name, cat in con.execute("SELECT name, category FROM icon_categories ORDER BY rowid"):
            cats.setdefault(name, cat)
        rows = con.execute("SELECT name, svg FROM icons ORDER BY name").fetchall()
    icons = []
    for slug, svg in rows:
        name, style = _clean_name(slug)
        icons.append(Icon("lucide", slug, name, tuple(tags.get(slug, ())), cats.get(slug), style, svg))
    notice = ("Lucide icons (ISC License, Copyright (c) Lucide Contributors), from python-lucide\n"
              + _licence("python-lucide"))
    return icons, notice, metadata.version("python-lucide")


_TABLER_HEADER = re.compile(r"<!--(.*?)-->", re.S)


def _tabler() -> tuple[list[Icon], str, str]:
    root = _package_dir("pytablericons") / "icons"
    icons = []
    for style in ("outline", "filled"):
        for path in sorted((root / style).glob("*.svg")):
            text = path.read_text(encoding="utf-8")
            head = _TABLER_HEADER.match(text.lstrip())
            info = {}
            if head:
                try:
                    info = yaml.safe_load(head.group(1)) or {}
                except yaml.YAMLError:
                    info = {}
            name, _ = _clean_name(path.stem)
            tags = tuple(str(t) for t in info.get("tags", []) or [] if t)
            svg = text[head.end():] if head else text
            icons.append(Icon("tabler", f"{style}-{path.stem}", name, tags, info.get("category"),
                              "filled" if style == "filled" else None, svg))
    return icons, "Tabler Icons, from pytablericons\n" + _licence("pytablericons"), metadata.version("pytablericons")


LOADERS: dict[str, Callable[[], tuple[list[Icon], str, str]]] = {
    "mdi": _mdi, "fontawesome": _fontawesome, "lucide": _lucide, "tabler": _tabler,
}  # fmt: skip


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def captions_for(icon: Icon, excluded: set[str]) -> list[str]:
    """Captions from the icon's name, style, tags (those not matching an excluded label) and category.

    Args:
        icon: the icon.
        excluded: ``name_key`` forms of the labels no caption may name.
    """
    n = icon.name
    caps = [t.format(n=n, a=_article(n)) for t in TEMPLATES]
    if icon.style:
        caps.append(f"{n}, {icon.style} icon")
    kept = [t for t in dict.fromkeys(t.strip().lower() for t in icon.tags) if t and name_key(t) not in excluded]
    # Each tag rides with the name: a bare tag ("photo", "arrow") would be the caption of hundreds of icons,
    # false negatives for each other in a contrastive batch.
    caps += [f"{n}, {tag}" for tag in kept[:MAX_TAGS]]
    if kept:
        caps.append(f"{_article(n)} {n} icon: " + ", ".join(kept[:MAX_TAGS]))
    if icon.category:
        cat = str(icon.category).replace("-", " ").lower()
        caps.append(f"{n}, {_article(cat)} {cat} icon")
    return list(dict.fromkeys(caps))


def _render(task: tuple[str, str, int]) -> str | None:
    """Render SVG markup to a SIZE x SIZE PNG with a margin (in a worker); returns an error instead of raising."""
    svg, out, size = task
    inner = max(8, round(size * (1 - 2 * MARGIN)))
    try:
        drawing = Image.open(io.BytesIO(bytes(resvg_py.svg_to_bytes(svg_string=svg, width=inner, height=inner))))
        canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        offset = (size - inner) // 2
        canvas.paste(drawing.convert("RGBA"), (offset, offset))
        buf = io.BytesIO()
        canvas.save(buf, format="PNG", optimize=False)
        atomic_write_bytes(out, buf.getvalue())
    except Exception as exc:  # one bad SVG must not stop the build; it is counted and reported
        return f"{out}: {exc}"
    return None


def _render_all(tasks: list[tuple[str, str, int]], workers: int) -> list[str]:
    todo = [t for t in tasks if not Path(t[1]).is_file() or Path(t[1]).stat().st_size == 0]
    log.info("icons: %d images to render, %d reused", len(todo), len(tasks) - len(todo))
    if not todo:
        return []
    errors = []
    columns = (TextColumn("rendering icons"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with Progress(*columns, TimeRemainingColumn()) as bar:
        task = bar.add_task("render", total=len(todo))
        with multiprocessing.get_context("fork").Pool(max(workers, 1)) as pool:
            for err in pool.imap_unordered(_render, todo, chunksize=32):
                bar.advance(task)
                if err:
                    errors.append(err)
    return errors


def build_icons(
    out: str | Path,
    excluded_labels: Iterable[str],
    sources: Iterable[str] = SOURCES,
    size: int = 64,
    limit: int | None = None,
    workers: int = 2,
) -> dict:
    """Render the icon sets into ``out`` and write ``icons.jsonl``; returns ``icons.json``'s content.

    Re-running with the same settings reuses the table; images already rendered are reused either way.

    Args:
        out: the emoji set's folder (icons go to ``out/icons``).
        excluded_labels: labels that must stay unseen (the emoji set's held-out and validation classes).
        sources: which of ``SOURCES`` to use.
        size: image side in pixels (the emoji set's).
        limit: at most this many icons per source (quick tests).
        workers: rendering processes.
    """
    out, sources = Path(out), tuple(sources)
    unknown = [s for s in sources if s not in LOADERS]
    if unknown:
        raise UserError(f"unknown icon set(s) {', '.join(unknown)}", hint=f"choose from {', '.join(SOURCES)}")
    excluded = {name_key(label) for label in excluded_labels}
    settings = {"sources": list(sources), "size": size, "limit": limit, "excluded": len(excluded)}
    stats_path = out / "icons.json"
    if stats_path.is_file() and (out / "icons.jsonl").is_file():
        old = json.loads(stats_path.read_text())
        if old.get("settings") == settings:
            log.info("icon sets already built in %s; reusing them", out)
            return old
    rows, tasks, notices, per_source = [], [], [], {}
    for source in sources:
        try:
            icons, notice, version = LOADERS[source]()
        except ModuleNotFoundError as exc:
            log.warning("icons: skipping %s (%s is not installed; pip install -e . installs it)", source, exc.name)
            per_source[source] = {"skipped": f"{exc.name} not installed"}
            continue
        kept = [i for i in icons if name_key(i.name) not in excluded and name_key(i.name)]
        kept = kept[:limit] if limit is not None else kept
        folder = out / "icons" / source
        folder.mkdir(parents=True, exist_ok=True)
        for icon in kept:
            image = f"icons/{source}/{icon.key}.png"
            tasks.append((icon.svg, str(out / image), size))
            rows.append({"image": image, "captions": captions_for(icon, excluded), "label": icon.name,
                         "group": "icons", "subgroup": None, "source": source})
        notices.append(notice.strip())
        per_source[source] = {"version": version, "icons": len(icons), "kept": len(kept),
                              "excluded_by_name": len(icons) - len([i for i in icons if name_key(i.name) not in excluded])}
    errors = _render_all(tasks, workers)
    for err in errors:
        log.warning("icons: could not render %s", err)
    failed = {str(Path(e.split(": ", 1)[0]).relative_to(out)) for e in errors}
    rows = [r for r in rows if r["image"] not in failed]
    atomic_write_text(out / "icons.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    atomic_write_text(out / "ATTRIBUTION-icons.txt", "\n\n----\n\n".join(notices) + "\n")
    stats = {"settings": settings, "images": len(rows), "labels": len({r["label"] for r in rows}),
             "render_failed": len(errors), "sources": per_source}
    atomic_write_text(stats_path, json.dumps(stats, indent=1) + "\n")
    log.info("icons: %d images of %d names from %s", stats["images"], stats["labels"], ", ".join(sources))
    return stats


__all__ = ["Icon", "SOURCES", "build_icons", "captions_for", "name_key"]
