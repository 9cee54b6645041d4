"""Collections to embed: a folder of images, a pairs table, or WebDataset shards, as a flat list of items.

Every item is addressed by a string ``path`` relative to the collection ``root``:
  - folder:  "sub/dir/cat.jpg" (a file under root)
  - table:   the table's image cell, resolved against the table's folder when relative
  - shards:  "shard-000001.tar#key.jpg" (a member inside a tar under root)
``read_bytes(root, path)`` reads an item back (for thumbnails and resumption) and refuses any path that
leaves the collection root, so an index can never be used to read arbitrary files.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from clipforge.data.pairs import IMAGE_EXTENSIONS, cell_captions, split_caption_text
from clipforge.errors import UserError

TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
TAR_SEP = "#"


@dataclass(frozen=True)
class Item:
    """One image of a collection: ``path`` relative to the collection root, optional caption."""

    path: str
    caption: str | None = None


@dataclass(frozen=True)
class Collection:
    """The items of a source and the root every item path is relative to."""

    root: Path
    kind: str  # "folder" | "table" | "shards"
    items: list[Item]


def open_collection(src: str | Path, image_column: str = "image", caption_column: str = "caption") -> Collection:
    """List the items of ``src``: a folder (recursive), a CSV/TSV/JSONL/Parquet table, or .tar shards.

    Args:
        src: folder of images, table file, a single .tar, or a folder holding only .tar shards.
        image_column, caption_column: column names for tables (caption column optional).

    Raises:
        UserError: when ``src`` does not exist, is an unknown file type, or a table lacks the image column.
    """
    src = Path(src)
    if not src.exists():
        raise UserError(f"{src}: no such file or folder", hint="pass a folder of images, a pairs table or shards")
    if src.is_file():
        if src.suffix.lower() == ".tar":
            return Collection(src.parent.resolve(), "shards", _tar_items(src, src.name))
        if src.suffix.lower() in TABLE_EXTENSIONS:
            return _table_collection(src, image_column, caption_column)
        raise UserError(f"{src}: unknown source type", hint=f"use a folder, a .tar shard or {TABLE_EXTENSIONS}")
    root = src.resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    tars = [p for p in files if p.suffix.lower() == ".tar"]
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if tars and not images:
        items = [it for t in tars for it in _tar_items(t, t.relative_to(root).as_posix())]
        return Collection(root, "shards", items)
    items = []
    for p in images:
        sidecar = p.with_suffix(".txt")
        # One caption per line, as training reads sidecars; the first one describes the image.
        lines = split_caption_text(sidecar.read_text(encoding="utf-8", errors="replace")) if sidecar.is_file() else ()
        items.append(Item(p.relative_to(root).as_posix(), lines[0] if lines else None))
    return Collection(root, "folder", items)


def _tar_items(tar_path: Path, rel: str) -> list[Item]:
    """Images inside one WebDataset shard, with the caption from the sibling ``key.txt`` member if present."""
    try:
        with tarfile.open(tar_path) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            texts = {}
            for m in members:
                if m.name.endswith(".txt"):
                    fh = tar.extractfile(m)
                    lines = split_caption_text(fh.read().decode("utf-8", "replace")) if fh else ()
                    texts[m.name[: -len(".txt")]] = lines[0] if lines else ""
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"{tar_path}: unreadable tar shard ({exc})") from exc
    items = []
    for m in members:
        stem, dot, ext = m.name.rpartition(".")
        if dot and f".{ext.lower()}" in IMAGE_EXTENSIONS:
            items.append(Item(f"{rel}{TAR_SEP}{m.name}", texts.get(stem) or None))
    return items


def _table_collection(path: Path, image_column: str, caption_column: str) -> Collection:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pq.read_table(path)
        elif suffix in (".jsonl", ".json"):
            table = pajson.read_json(path)
        else:
            delimiter = "\t" if suffix == ".tsv" else ","
            table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{path}: cannot read table ({exc})") from exc
    if image_column not in table.column_names:
        raise UserError(
            f"{path}: no column {image_column!r} (columns: {table.column_names})",
            hint="name the image column with --image-column",
        )
    images = table.column(image_column).to_pylist()
    captions = table.column(caption_column).to_pylist() if caption_column in table.column_names else None
    base = path.parent.resolve()
    rows = []
    for i, image in enumerate(images):
        if not image:
            continue
        # A cell may hold several captions (a list, or a JSON list in CSV): the first one describes the image.
        cell = cell_captions(captions[i]) if captions else ()
        rows.append(((base / str(image)).resolve(), cell[0] if cell else None))
    # Absolute image paths may live elsewhere: the root is the deepest folder holding the table and every image.
    root = Path(os.path.commonpath([base, *(p.parent for p, _ in rows)]))
    items = [Item(p.relative_to(root).as_posix(), caption) for p, caption in rows]
    return Collection(root, "table", items)


def resolve_inside(root: Path, rel: str) -> Path:
    """``root / rel`` resolved, refusing anything (``..``, absolute paths, symlinks) that leaves ``root``.

    Raises:
        UserError: when the resolved path is outside the collection root.
    """
    root = Path(root).resolve()
    full = (root / rel).resolve()
    if not full.is_relative_to(root):
        raise UserError(f"{rel}: outside the collection root {root}")
    return full


def read_bytes(root: str | Path, path: str) -> bytes:
    """The raw bytes of an item (a file under ``root`` or a member of a tar under ``root``).

    Raises:
        UserError: for a path outside the root; OSError/KeyError when the file or member is gone.
    """
    root = Path(root)
    if TAR_SEP in path and not resolve_inside(root, path).exists():
        tar_rel, _, member = path.partition(TAR_SEP)
        with tarfile.open(resolve_inside(root, tar_rel)) as tar:
            fh = tar.extractfile(member)
            if fh is None:
                raise KeyError(member)
            return fh.read()
    return resolve_inside(root, path).read_bytes()
