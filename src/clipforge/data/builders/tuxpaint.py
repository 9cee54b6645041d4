"""Tux Paint's stamps (Debian ``tuxpaint-stamps-default``): ~950 drawings, each with a real English sentence.

A stamp is ``<name>.png`` or ``<name>.svg`` beside ``<name>.txt``, whose first line is the English description
("A US 25 cent piece ($.25) called a quarter.") and whose other lines are translations (``xx.utf8=...``).
The class label is the file name ("quarter" from 025quarter), the group the top folder ("animals"), the
subgroup the first two folders ("animals/birds"). Images are fitted into a transparent square.
Same output layout and split as ``clipforge data emoji``.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import re
from pathlib import Path

import resvg_py
from PIL import Image

from clipforge.data.builders.emoji import _article
from clipforge.data.builders.splits import check_existing, write_split_tables
from clipforge.errors import UserError
from clipforge.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/usr/share/tuxpaint/stamps"
INSTALL = "apt-get install -y tuxpaint-stamps-default"
_TRANSLATION = re.compile(r"^[A-Za-z_@]+\.utf8=")


def english_description(txt: Path) -> str:
    """The first line that is not a translation (``xx.utf8=...``), stripped; "" if none."""
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip() and not _TRANSLATION.match(line):
            return line.strip()
    return ""


def label_of(stem: str) -> str:
    """'025quarter' -> 'quarter', 'j_outline' -> 'j outline', 'gift2' -> 'gift'."""
    words = re.sub(r"[_\-]+", " ", re.sub(r"^\d+|\d+$", "", stem)).strip()
    return words or stem


def _fit(task: tuple[str, str, int]) -> str | None:
    """Render/resize one stamp into a transparent size x size square (in a worker); error text instead of raising."""
    src, dst, size = task
    try:
        if src.endswith(".svg"):
            data = bytes(resvg_py.svg_to_bytes(svg_path=src, width=size))
            img = Image.open(io.BytesIO(data)).convert("RGBA")
        else:
            with Image.open(src) as raw:
                img = raw.convert("RGBA")
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
        buf = io.BytesIO()
        canvas.save(buf, "PNG")
        atomic_write_bytes(dst, buf.getvalue())
    except Exception as exc:  # one bad stamp must not stop the build; it is counted
        return f"{src}: {exc}"
    return None


def build_tuxpaint(
    out: str | Path, root: str | Path = DEFAULT_ROOT, *, size: int = 128, limit: int | None = None, workers: int = 2
) -> dict:
    """Write the stamps as images + split tables into ``out``; returns stats.json's content.

    Args:
        out: output folder (images already there are reused).
        root: the stamps folder of the Debian package.
        size: image side in pixels.
        limit: only the first ``limit`` stamps in path order (quick tests).
        workers: processes for rendering and resizing.
    """
    out, root = Path(out), Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: Tux Paint stamps not found", hint=f"run: {INSTALL}")
    if (old := check_existing(out, size, limit, "tuxpaint")) is not None:
        return old
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, tasks, no_image, no_text = [], [], 0, 0
    for txt in sorted(root.rglob("*.txt")):
        image = next((p for p in (txt.with_suffix(".png"), txt.with_suffix(".svg")) if p.is_file()), None)
        text = english_description(txt)
        if image is None or not text:
            no_image += image is None
            no_text += not text
            continue
        rel = txt.relative_to(root)
        parts = rel.parent.parts
        label = label_of(txt.stem)
        name = "-".join((*parts, txt.stem))
        dst = out / "images" / f"{name}.png"
        if not dst.exists():
            tasks.append((str(image), str(dst), size))
        subgroup = "/".join(parts[:2]) if parts else None
        caps = [text, label, f"a drawing of {label}", f"{_article(label)} {label} stamp", f"clip art of {label}"]
        rows.append(
            {
                "image": f"images/{name}.png",
                "captions": list(dict.fromkeys(caps)),
                "label": label,
                "group": parts[0] if parts else None,
                "subgroup": subgroup,
                "source": str(rel),
            }
        )
        if limit is not None and len(rows) >= limit:
            break
    errors = []
    if tasks:
        with multiprocessing.get_context("fork").Pool(max(workers, 1)) as pool:
            errors = [e for e in pool.imap_unordered(_fit, tasks, chunksize=8) if e]
    for err in errors:
        log.warning("tuxpaint: could not convert %s", err)
    failed = {str(Path(e.split(":", 1)[0]).relative_to(root).with_suffix(".txt")) for e in errors}
    rows = [r for r in rows if r["source"] not in failed]
    extra = {
        "without_image": no_image,
        "without_text": no_text,
        "render_failed": len(errors),
        "size": size,
        "limit": limit,
        "source": "Debian tuxpaint-stamps-default",
        "license": "GPL-2 (see /usr/share/doc/tuxpaint-stamps-default/copyright)",
    }
    return write_split_tables(out, rows, extra)
