"""Reading table files (CSV, TSV, JSON lines, Parquet) into rows, with one rule for text and one for bad rows.

Text: every text file is UTF-8 (a leading byte-order mark is allowed). A file that is not is a UserError naming
the line and byte, with the command that converts it; bytes are never guessed at, shown as ``b'...'`` or
replaced by U+FFFD.

Bad rows: a line that is not a JSON object, or a CSV/TSV record with more or fewer fields than the header,
is skipped and counted as ``malformed`` (``skips.SkipStats``: one log line with the first line numbers).
A file with no usable row at all is a UserError.

``clipforge.data.sources`` builds image sources on these rows; ``read_json_lines`` serves JSON-lines files
that are not image sources (a training run's metrics.jsonl).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from clipforge.data.skips import SkipStats
from clipforge.errors import UserError

log = logging.getLogger(__name__)

TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".parquet")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass
class Table:
    """The rows of one table file.

    Attributes:
        path: the file.
        columns: column names in file order (for JSON lines: every key seen, in first-seen order).
        rows: one dict per usable row.
        where: per row, where it came from ("line 3", "row 7"), for messages.
        skipped: rows left out, by reason.
    """

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]]
    where: list[str]
    skipped: SkipStats = field(default_factory=SkipStats)


def not_utf8_error(path: Path) -> UserError:
    """The UserError for a text file that is not UTF-8: which line and byte, and how to convert it."""
    line_no, detail = 0, "invalid UTF-8"
    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        for line_no, raw in enumerate(fh, 1):  # line_no is used after the loop
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                detail = f"byte 0x{raw[exc.start]:02x} at line {line_no}, column {exc.start + 1}"
                break
    guess = "UTF-16" if head in _UTF16_BOMS else "LATIN1"
    return UserError(
        f"{path}: not UTF-8 text ({detail}); clipforge reads text files as UTF-8 only",
        hint=f"convert it, e.g. iconv -f {guess} -t UTF-8 '{path}' > fixed{path.suffix}",
    )


def open_text(path: Path) -> IO[str]:
    """``path`` opened for reading as strict UTF-8 (BOM dropped); missing files are a UserError."""
    try:
        return open(path, encoding="utf-8-sig", errors="strict", newline="")
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise UserError(f"{path}: is a directory, not a table file") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc


def read_text(path: str | Path) -> str:
    """The whole text of a small UTF-8 file (a caption sidecar); UserError when it is not UTF-8."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise not_utf8_error(path) from None


def _json_objects(path: Path, skipped: SkipStats) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, object) for each line of a JSON-lines file that holds a JSON object; blank lines are ignored."""
    with open_text(path) as fh:
        try:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    skipped.add("malformed", f"line {line_no}")
                    continue
                if isinstance(obj, dict):
                    yield f"line {line_no}", obj
                else:
                    skipped.add("malformed", f"line {line_no}")
        except UnicodeDecodeError:
            raise not_utf8_error(path) from None


def _csv_records(path: Path, delimiter: str, skipped: SkipStats) -> tuple[list[str], list[tuple[str, dict]]]:
    with open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader, None)
            if not header:
                raise UserError(f"{path}: empty table (no header line)", hint="the first line names the columns")
            records = []
            for fields in reader:
                if not fields:  # csv yields [] for a blank line
                    continue
                if len(fields) != len(header):
                    skipped.add("malformed", f"line {reader.line_num}")
                    continue
                records.append((f"line {reader.line_num}", dict(zip(header, fields, strict=True))))
        except UnicodeDecodeError:
            raise not_utf8_error(path) from None
        except csv.Error as exc:
            raise UserError(f"{path}: line {reader.line_num}: unreadable CSV ({exc})",
                            hint="check the quoting, or save the table again as UTF-8 CSV/TSV") from exc
    return header, records


def _parquet(path: Path, select: Callable[[list[str]], list[str]] | None) -> tuple[list[str], list[dict]]:
    try:
        columns = list(pq.read_schema(path).names)
        wanted = select(columns) if select else columns
        table = pq.read_table(path, columns=wanted)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: cannot read Parquet table ({exc})", hint="check that the file is complete") from exc
    return columns, table.to_pylist()


def read_table(path: str | Path, select: Callable[[list[str]], list[str]] | None = None) -> Table:
    """All usable rows of a CSV/TSV/JSONL/Parquet file; the format comes from the extension.

    Args:
        path: the table file.
        select: ``columns -> the columns to keep``; for Parquet only those are read from disk.

    Raises:
        UserError: a missing file, an unknown extension, text that is not UTF-8, or no usable row.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    skipped = SkipStats()
    if suffix == ".parquet":
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        columns, rows = _parquet(path, select)
        where = [f"row {i + 1}" for i in range(len(rows))]
    elif suffix == ".jsonl":
        pairs = list(_json_objects(path, skipped))
        columns = list(dict.fromkeys(k for _, obj in pairs for k in obj))
        where, rows = [w for w, _ in pairs], [obj for _, obj in pairs]
    elif suffix in (".csv", ".tsv"):
        columns, records = _csv_records(path, "\t" if suffix == ".tsv" else ",", skipped)
        where, rows = [w for w, _ in records], [r for _, r in records]
    else:
        raise UserError(f"{path}: unknown table format", hint=f"use one of {', '.join(TABLE_EXTENSIONS)}")
    skipped.log(log, str(path))
    if not rows:
        raise UserError(f"{path}: no usable rows (skipped: {skipped.summary()})",
                        hint="a header line and one row per image (JSON lines: one object per line)")
    if select is not None and suffix != ".parquet":
        keep = select(columns)
        rows = [{k: r.get(k) for k in keep} for r in rows]
    return Table(path, columns, rows, where, skipped)


def read_json_lines(path: str | Path, keep: Callable[[dict[str, Any]], bool], rejected: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file for which ``keep`` holds; other lines are skipped and counted.

    Args:
        path: the file (blank lines ignored); not UTF-8 is a UserError.
        keep: accepts a parsed object.
        rejected: the skip reason for objects ``keep`` refuses (e.g. "no_step").
    """
    path = Path(path)
    skipped = SkipStats()
    rows = []
    for where, obj in _json_objects(path, skipped):
        if keep(obj):
            rows.append(obj)
        else:
            skipped.add(rejected, where)
    skipped.log(log, str(path))
    return rows
