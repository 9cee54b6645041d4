"""Image sources: the one place that lists a collection and reads its captions (train, embed, eval, moderate).

A source is one of:
  - folder:  images (IMAGE_EXTENSIONS) searched recursively, sorted by relative path; ``<stem>.txt`` beside an
             image holds its captions, one per non-blank line.
  - table:   a CSV/TSV/JSONL/Parquet file (``clipforge.data.tables``) with an image-path column and a caption
             column. Relative paths resolve against the table's folder.
  - shards:  WebDataset tar shards: one ``.tar``, a brace pattern (``d/shard-{000000..000009}.tar``), or a
             folder holding ``.tar`` files and no images (searched recursively). A sample's image is its
             member whose extension is in IMAGE_EXTENSIONS; its captions come from its ``txt`` member (one
             per line), else from its ``json`` member (the caption field, as for a table row).

The rules every consumer shares:
  - Caption field: the configured column; when a table has no such column, "caption", "captions", "text",
    "texts" are tried in that order. A cell holds one caption or a list of them (in CSV/TSV a JSON list
    written as text, ``["a cat", "a kitten"]``); blank captions are dropped.
  - Text is UTF-8 (``tables``): a table that is not is a UserError; a caption file (sidecar, shard member)
    that is not leaves its image without captions and with ``caption_error`` set, which consumers count.
  - Rows that cannot become items (no image path, malformed lines) are skipped and counted in
    ``Source.skipped`` with one log line (``skips.SkipStats``).
Every item is addressed by ``Item.path`` relative to ``Source.root`` ("sub/cat.jpg", or
"shard-000001.tar#key.jpg" for a shard member); ``read_bytes`` reads it back and refuses any path that leaves
the root, so an index can never be used to read arbitrary files.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from braceexpand import braceexpand

from clipforge.data.shards import read_index, tar_samples
from clipforge.data.skips import SkipStats
from clipforge.data.tables import TABLE_EXTENSIONS, read_table, read_text
from clipforge.errors import UserError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CAPTION_FALLBACKS = ("caption", "captions", "text", "texts")
TAR_SEP = "#"
_IMAGE_EXTS = tuple(e[1:] for e in IMAGE_EXTENSIONS)  # shard member extensions: no leading dot
_CAPTION_EXTS = ("txt", "json")
SOURCE_HINT = "give a folder of images, a .csv/.tsv/.jsonl/.parquet table, or .tar shards"


@dataclass(frozen=True, slots=True)
class Item:
    """One image of a source.

    Attributes:
        path: relative to the source root ("a/cat.jpg", or "shard.tar#key.jpg" inside a shard).
        captions: its captions, blank ones dropped (may be empty).
        caption_error: why its captions could not be read (e.g. the sidecar is not UTF-8), else None.
        fields: the extra columns asked for (``open_source(extra_columns=...)``), e.g. {"label": "cat"}.
    """

    path: str
    captions: tuple[str, ...] = ()
    caption_error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def caption(self) -> str | None:
        """The first caption (the one that describes the image in embeddings), or None."""
        return self.captions[0] if self.captions else None


@dataclass(frozen=True)
class Source:
    """The items of a source and the root every item path is relative to.

    Attributes:
        spec: what the user gave (for messages).
        kind: "folder", "table" or "shards".
        root: absolute folder; ``root / item.path`` is the image file (for shards: the tar, then the member).
        items: the images, in a fixed order.
        shards: the tar files (kind "shards"), in order.
        skipped: rows that could not become items, by reason.
    """

    spec: str
    kind: Literal["folder", "table", "shards"]
    root: Path
    items: tuple[Item, ...]
    shards: tuple[str, ...] = ()
    skipped: SkipStats = field(default_factory=SkipStats)

    def __len__(self) -> int:
        return len(self.items)

    def file(self, item: Item) -> Path:
        """The image file of a folder or table item (absolute)."""
        return self.root / item.path


# --- caption rules ----------------------------------------------------------------------------------------


def split_caption_text(text: str) -> tuple[str, ...]:
    """Caption text (a sidecar or a shard's txt member) -> captions: one per non-blank line."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


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
            if not isinstance(cell, list):
                return (text,)
        else:
            return (text,) if text else ()
    if isinstance(cell, list | tuple):
        return tuple(str(c).strip() for c in cell if c is not None and not isinstance(c, dict) and str(c).strip())
    if isinstance(cell, dict):
        return ()
    return (str(cell),)


def caption_column(columns: list[str], wanted: str) -> str | None:
    """The column captions come from: ``wanted`` if present, else the first of CAPTION_FALLBACKS, else None."""
    if wanted in columns:
        return wanted
    return next((name for name in CAPTION_FALLBACKS if name in columns), None)


def _sidecar_captions(image: Path) -> tuple[tuple[str, ...], str | None]:
    sidecar = image.with_suffix(".txt")
    if not sidecar.is_file():
        return (), None
    try:
        return split_caption_text(read_text(sidecar)), None
    except UserError as exc:
        log.warning("%s", str(exc).split("\n")[0])
        return (), "caption_encoding"


def _member_captions(sample_members: dict[str, tuple[str, bytes | None]], column: str, where: str):
    """(captions, caption_error) of a shard sample from its txt member, else its json member."""
    if "txt" in sample_members:
        data = sample_members["txt"][1] or b""
        try:
            return split_caption_text(data.decode("utf-8-sig")), None
        except UnicodeDecodeError:
            log.warning("%s: txt member is not UTF-8 text; the image has no captions", where)
            return (), "caption_encoding"
    if "json" in sample_members:
        try:
            meta = json.loads((sample_members["json"][1] or b"").decode("utf-8-sig"))
        except UnicodeDecodeError:
            log.warning("%s: json member is not UTF-8 text; the image has no captions", where)
            return (), "caption_encoding"
        except json.JSONDecodeError:
            log.warning("%s: json member is not valid JSON; the image has no captions", where)
            return (), "malformed_caption"
        if not isinstance(meta, dict):
            return (), "malformed_caption"
        name = caption_column(list(meta), column)
        return (cell_captions(meta.get(name)) if name else ()), None
    return (), None


# --- listing ----------------------------------------------------------------------------------------------


def list_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (recursive), sorted by path relative to it."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def is_shard_spec(spec: str | Path) -> bool:
    """True when ``spec`` names WebDataset shards: a .tar file, a .tar brace pattern, or a folder of shards."""
    spec = str(spec)
    name = Path(spec).name
    if "{" in name and ".tar" in name:
        return True
    p = Path(spec)
    if p.is_file():
        return p.suffix.lower() == ".tar"
    if not p.is_dir():
        return False
    has_tar = False
    for f in p.rglob("*"):
        suffix = f.suffix.lower()
        if suffix in IMAGE_EXTENSIONS and f.is_file():
            return False  # a folder with images is an image folder, whatever else it holds
        has_tar = has_tar or (suffix == ".tar" and f.is_file())
    return has_tar


def expand_shards(spec: str | Path) -> list[str]:
    """The tar files of a shard spec (see ``is_shard_spec``), in order.

    Raises:
        UserError: when no shard is found or some named by a pattern are missing.
    """
    spec = str(spec)
    p = Path(spec)
    if p.is_dir():
        urls = sorted(str(t) for t in p.rglob("*.tar") if t.is_file())
    else:
        urls = list(braceexpand(spec))
    if not urls:
        raise UserError(f"{spec}: no .tar shards found", hint=SOURCE_HINT)
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise UserError(f"{spec}: {len(missing)} shard(s) missing, e.g. {missing[0]}")
    return urls


@dataclass(frozen=True)
class ShardSample:
    """One sample streamed from a shard: its key, image member name and bytes, and captions."""

    key: str
    member: str
    image: bytes
    captions: tuple[str, ...]
    caption_error: str | None = None
    extra: dict[str, bytes] = field(default_factory=dict, compare=False)  # members asked for by extension


def _image_member(members: dict[str, tuple[str, bytes | None]]) -> str | None:
    return next((ext for ext in members if ext in _IMAGE_EXTS), None)


def iter_shard(url: str, caption_field: str = "caption", extra: tuple[str, ...] = ()) -> Iterator[ShardSample]:
    """The samples of one shard that have an image member, in file order (images read into memory).

    Args:
        url: the tar file.
        caption_field: the json member's caption field (CAPTION_FALLBACKS when absent).
        extra: extensions of further members to return in ``ShardSample.extra`` (e.g. reinforcement data).
    """
    without = 0
    for sample in tar_samples(url, lambda ext: True):
        ext = _image_member(sample.members)
        if ext is None:
            without += 1
            continue
        captions, error = _member_captions(sample.members, caption_field, f"{url}#{sample.key}")
        name, data = sample.members[ext]
        more = {e: sample.members[e][1] or b"" for e in extra if e in sample.members}
        yield ShardSample(sample.key, name, data or b"", captions, error, more)
    if without:
        log.info("%s: %d keys without an image member are not samples", url, without)


def shard_counts(urls: list[str]) -> list[int]:
    """Samples (keys with an image member) per shard: from ``shards.json`` beside them when present, else counted."""
    known: dict[str, int] = {}
    for folder in {Path(u).parent for u in urls}:
        known.update(read_index(folder))
    counts = []
    for u in urls:
        if u in known:
            counts.append(known[u])
        else:
            counts.append(sum(1 for s in tar_samples(u, lambda ext: False) if _image_member(s.members)))
    return counts


def _shard_source(spec: str, caption_field: str) -> Source:
    urls = expand_shards(spec)
    root = Path(os.path.commonpath([str(Path(u).resolve().parent) for u in urls]))
    items, skipped = [], SkipStats()
    for url in urls:
        rel = Path(url).resolve().relative_to(root).as_posix()
        for sample in tar_samples(url, lambda ext: ext in _CAPTION_EXTS):
            ext = _image_member(sample.members)
            if ext is None:
                skipped.add("no_image", f"{rel}{TAR_SEP}{sample.key}")
                continue
            captions, error = _member_captions(sample.members, caption_field, f"{rel}{TAR_SEP}{sample.key}")
            items.append(Item(f"{rel}{TAR_SEP}{sample.members[ext][0]}", captions, error))
    skipped.log(log, spec)
    if not items:
        raise UserError(f"{spec}: the shards hold no images ({', '.join(_IMAGE_EXTS)} members)")
    return Source(spec, "shards", root, tuple(items), tuple(urls), skipped)


def _folder_source(spec: str) -> Source:
    root = Path(spec).resolve()
    images = list_images(root)
    if not images:
        raise UserError(f"{spec}: no images found ({', '.join(IMAGE_EXTENSIONS)})", hint=SOURCE_HINT)
    items = []
    for image in images:
        captions, error = _sidecar_captions(image)
        items.append(Item(image.relative_to(root).as_posix(), captions, error))
    return Source(spec, "folder", root, tuple(items))


def _image_cell(cell: Any) -> str | None:
    if isinstance(cell, str) and cell.strip():
        return cell.strip()
    if isinstance(cell, int) and not isinstance(cell, bool):
        return str(cell)
    return None


def _table_source(spec: str, image_column: str, caption_field: str, extra: tuple[str, ...],
                  require_captions: bool) -> Source:
    path = Path(spec)
    found: dict[str, str | None] = {}

    def select(columns: list[str]) -> list[str]:
        if image_column not in columns:
            raise UserError(f"{path}: no column {image_column!r} (columns: {', '.join(map(str, columns))})",
                            hint="name the image column (image_column / --image-column)")
        found["caption"] = caption_column(columns, caption_field)
        return [c for c in dict.fromkeys([image_column, found["caption"], *extra]) if c in columns]

    table = read_table(path, select)
    cap = found["caption"]
    if cap is None and require_captions:
        raise UserError(f"{path}: no caption column ({caption_field!r} or {', '.join(CAPTION_FALLBACKS)})",
                        hint="name the caption column (caption_column / --caption-column)")
    if cap is not None and cap != caption_field:
        log.info("%s: no column %r; captions come from %r", path, caption_field, cap)
    base = path.parent.resolve()
    skipped, rows = table.skipped, []
    resolved: dict[str, str] = {}  # each folder resolved once (symlinks, ".."): tables can list millions of rows
    for row, where in zip(table.rows, table.where, strict=True):
        ref = _image_cell(row.get(image_column))
        if ref is None:
            skipped.add("no_image", where)
            continue
        full = os.path.join(base, ref)
        folder, name = os.path.split(full)
        if folder not in resolved:
            resolved[folder] = os.path.realpath(folder)
        captions = cell_captions(row.get(cap)) if cap else ()
        rows.append((os.path.join(resolved[folder], name), captions, {k: row.get(k) for k in extra}))
    if skipped.counts:
        skipped.log(log, str(path))
    if not rows:
        raise UserError(f"{path}: no row names an image (skipped: {skipped.summary()})")
    # Absolute image paths may live elsewhere: the root is the deepest folder holding the table and every image.
    root = Path(os.path.commonpath([str(base), *resolved.values()]))
    items = tuple(Item(Path(os.path.relpath(p, root)).as_posix(), c, None, f) for p, c, f in rows)
    return Source(spec, "table", root, items, (), skipped)


def open_source(
    spec: str | Path,
    image_column: str = "image",
    caption_field: str = "caption",
    *,
    extra_columns: tuple[str, ...] = (),
    require_captions: bool = False,
) -> Source:
    """List the images of a folder, table or shards, with their captions (see the module docstring).

    Args:
        spec: a folder, a table file, a .tar, a brace pattern of .tar files, or a folder of shards.
        image_column: the table column of image paths.
        caption_field: the table column (or shard json field) of captions; CAPTION_FALLBACKS when absent.
        extra_columns: table columns to keep in ``Item.fields`` (e.g. "label"); absent ones give None.
        require_captions: a table without any caption column is a UserError (training needs captions).

    Raises:
        UserError: a missing or unknown source, a table without the image column or not UTF-8, no images.
    """
    spec = str(spec)
    p = Path(spec)
    if is_shard_spec(spec):
        return _shard_source(spec, caption_field)
    if p.is_dir():
        return _folder_source(spec)
    if p.suffix.lower() in TABLE_EXTENSIONS:
        if not p.is_file():
            raise UserError(f"{spec}: no such table file", hint=SOURCE_HINT)
        return _table_source(spec, image_column, caption_field, tuple(extra_columns), require_captions)
    if not p.exists():
        raise UserError(f"{spec}: no such file or folder", hint=SOURCE_HINT)
    raise UserError(f"{spec}: unknown source type {p.suffix or '(no extension)'}", hint=SOURCE_HINT)


# --- reading items back -----------------------------------------------------------------------------------


def resolve_inside(root: str | Path, rel: str) -> Path:
    """``root / rel`` resolved, refusing anything (``..``, absolute paths, symlinks) that leaves ``root``.

    Raises:
        UserError: when the resolved path is outside the source root.
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
    if TAR_SEP in path and not resolve_inside(root, path).exists():
        tar_rel, _, member = path.partition(TAR_SEP)
        with tarfile.open(resolve_inside(root, tar_rel)) as tar:
            fh = tar.extractfile(member)
            if fh is None:
                raise KeyError(member)
            return fh.read()
    return resolve_inside(root, path).read_bytes()

