"""(image, captions) sources: a folder with sidecar .txt captions, or a CSV/TSV/JSONL/Parquet table.

Both give a ``PairTable``: image paths (absolute) and, per image, a list of captions. Nothing is decoded
here; bad images and empty captions are found and counted when the loader reads them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipforge.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".parquet")
# Tried, in order, when the configured caption column is absent: the emoji tables use "captions".
_CAPTION_FALLBACKS = ("caption", "captions", "text", "texts")


@dataclass(frozen=True)
class PairTable:
    """Images and their captions, index-aligned.

    Args:
        images: absolute image paths.
        captions: one list of captions per image (may be empty; the loader skips and counts those).
        source: where the table came from, for messages.
    """

    images: tuple[str, ...]
    captions: tuple[tuple[str, ...], ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.images)


def split_caption_text(text: str) -> tuple[str, ...]:
    """Sidecar text -> captions: one caption per non-blank line."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def read_folder(root: str | Path) -> PairTable:
    """A folder (searched recursively) of images, each with an optional sidecar ``<stem>.txt`` of captions.

    Args:
        root: the folder. Images are sorted by relative path, so the order is the same on every machine.
    """
    root = Path(root)
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not images:
        raise UserError(f"{root}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    captions = []
    for img in images:
        txt = img.with_suffix(".txt")
        captions.append(split_caption_text(txt.read_text(encoding="utf-8", errors="replace")) if txt.exists() else ())
    return PairTable(tuple(str(p.resolve()) for p in images), tuple(captions), str(root))


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a CSV/TSV/JSONL/Parquet table as dicts (also used by evaluators for label columns).

    Args:
        path: the table file; the format comes from the extension.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise UserError(f"{path}: table not found")
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"{path}: cannot read Parquet table ({exc})") from exc
    if suffix == ".jsonl":
        rows = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text ({exc})", hint="save the table as UTF-8") from exc
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
        return rows
    if suffix in (".csv", ".tsv"):
        try:
            with path.open(encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"{path}: cannot read table ({exc})", hint="save it as UTF-8 CSV/TSV") from exc
    raise UserError(f"{path}: unknown table format", hint=f"use one of {', '.join(TABLE_EXTENSIONS)}")


def cell_captions(cell: Any) -> tuple[str, ...]:
    """A caption cell: a string, a list of strings, or (in CSV/TSV) a JSON list written as text."""
    if cell is None:
        return ()
    if isinstance(cell, str):
        text = cell.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                cell = json.loads(text)
            except json.JSONDecodeError:
                return (text,)
        else:
            return (text,) if text else ()
    if isinstance(cell, list | tuple):
        return tuple(str(c).strip() for c in cell if c is not None and str(c).strip())
    return (str(cell),)


def _pick_column(columns: list[str], wanted: str, fallbacks: tuple[str, ...], path: Path) -> str:
    if wanted in columns:
        return wanted
    for name in fallbacks:
        if name in columns:
            return name
    raise UserError(
        f"{path}: no column '{wanted}' (columns: {', '.join(columns)})", hint="set image_column/caption_column"
    )


def read_table(path: str | Path, image_column: str = "image", caption_column: str = "caption") -> PairTable:
    """A CSV/TSV/JSONL/Parquet table with an image-path column and a caption column.

    Args:
        path: the table. Relative image paths resolve against the table's directory.
        image_column: column of image paths.
        caption_column: column of captions; a cell may hold one caption or a list of them (in CSV/TSV a JSON
            list such as ``["a cat", "a kitten"]``). If the column is absent, "caption", "captions", "text",
            "texts" are tried in that order.
    """
    path = Path(path)
    rows = read_rows(path)
    if not rows:
        raise UserError(f"{path}: the table has no rows")
    columns = list(rows[0].keys())
    img_col = _pick_column(columns, image_column, (), path)
    cap_col = _pick_column(columns, caption_column, _CAPTION_FALLBACKS, path)
    base = path.parent.resolve()
    images, captions = [], []
    for row in rows:
        ref = str(row.get(img_col) or "")
        images.append(str(base / ref) if ref else "")
        captions.append(cell_captions(row.get(cap_col)))
    return PairTable(tuple(images), tuple(captions), str(path))


def is_shard_spec(spec: str) -> bool:
    """True when ``spec`` names WebDataset shards: a .tar file/pattern or a folder holding .tar files."""
    p = Path(spec)
    if spec.endswith(".tar") or ".tar" in Path(spec).name and "{" in spec:
        return True
    return p.is_dir() and any(p.glob("*.tar"))


def read_pairs(spec: str, image_column: str = "image", caption_column: str = "caption") -> PairTable:
    """Open a folder or table source (shards are read by clipforge.data.shards).

    Args:
        spec: a folder of images + .txt captions, or a table file.
        image_column, caption_column: see ``read_table``.
    """
    p = Path(spec)
    if p.is_dir():
        return read_folder(p)
    if p.suffix.lower() in TABLE_EXTENSIONS:
        return read_table(p, image_column, caption_column)
    if not p.exists():
        raise UserError(f"{spec}: data source not found", hint="give a folder, a table or WebDataset shards")
    raise UserError(f"{spec}: unknown data source kind", hint=f"a folder, {', '.join(TABLE_EXTENSIONS)} or .tar shards")
