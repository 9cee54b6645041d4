"""Property tests of the table readers: random bytes, encodings, column names and captions."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipforge.data.sources import open_source
from clipforge.data.tables import read_table
from clipforge.errors import UserError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")
# Any text a file can hold (no lone surrogates, which no encoding can write).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n"), min_size=1, max_size=12)


def _write(path: Path, columns: list[str], rows: list[list]) -> None:
    """Write rows in the format of ``path``'s extension (lists become JSON text in CSV/TSV, as documented)."""
    suffix = path.suffix
    if suffix == ".parquet":
        pq.write_table(pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)}), path)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(columns, r, strict=True))) + "\n" for r in rows), encoding="utf-8")
    else:
        buf = io.StringIO()
        # The default "\r\n" terminator also makes the writer quote a lone "\r" inside a field.
        writer = csv.writer(buf, delimiter="\t" if suffix == ".tsv" else ",")
        writer.writerow(columns)
        writer.writerows([[json.dumps(v) if isinstance(v, list) else v for v in r] for r in rows])
        path.write_bytes(buf.getvalue().encode("utf-8"))


@SETTINGS
@given(data=st.binary(max_size=300), suffix=st.sampled_from(FORMATS))
def test_random_bytes_are_rows_or_a_user_error(tmp_path, data, suffix):
    path = tmp_path / f"t{suffix}"
    path.write_bytes(data)
    try:
        table = read_table(path)
    except UserError as exc:
        assert str(path) in str(exc)
        return
    assert table.rows and len(table.rows) == len(table.where)
    try:
        source = open_source(path)
    except UserError:
        return
    assert all(isinstance(c, str) and c and "\ufffd" not in c for it in source.items for c in it.captions)


@SETTINGS
@given(
    names=st.lists(NAMES, min_size=2, max_size=2, unique=True),
    captions=st.lists(st.lists(TEXT, max_size=3), min_size=1, max_size=4),
    suffix=st.sampled_from(FORMATS),
)
def test_captions_round_trip_whatever_the_column_names(tmp_path, names, captions, suffix):
    image_col, caption_col = names
    path = tmp_path / f"t{suffix}"
    rows = [[f"img{i}.png", caps] for i, caps in enumerate(captions)]
    _write(path, [image_col, caption_col], rows)
    source = open_source(path, image_column=image_col, caption_field=caption_col)
    assert [it.path for it in source.items] == [f"img{i}.png" for i in range(len(captions))]
    assert [list(it.captions) for it in source.items] == [[c.strip() for c in caps if c.strip()] for caps in captions]


@SETTINGS
@given(caption=TEXT, encoding=st.sampled_from(["latin-1", "cp1252", "utf-16", "utf-8", "shift_jis"]),
       suffix=st.sampled_from((".csv", ".tsv", ".jsonl")))
def test_encodings_decode_as_utf8_or_fail_clearly(tmp_path, caption, encoding, suffix):
    path = tmp_path / f"t{suffix}"
    _write(path, ["image", "caption"], [["x.png", caption]])
    text = path.read_bytes().decode("utf-8")
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        return  # this encoding cannot hold the caption
    path.write_bytes(data)
    try:
        expected = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        with pytest.raises(UserError, match="not UTF-8"):
            open_source(path)
        return
    try:
        source = open_source(path)
    except UserError:
        assert expected != text  # only a file that is not what was written may fail (e.g. UTF-16 as UTF-8)
        return
    got = [c for it in source.items for c in it.captions]
    assert all("b'" not in c or "b'" in caption for c in got)
    if expected == text:
        assert got == ([caption.strip()] if caption.strip() else [])
