"""Each source kind: folder + sidecar captions, CSV/TSV/JSONL/Parquet tables, WebDataset shards (and writing them)."""

from __future__ import annotations

import csv
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_helpers import make_jsonl, write_image
from PIL import Image

from clipforge.cli import main
from clipforge.data.pairs import is_shard_spec, read_folder, read_pairs, read_rows, read_table
from clipforge.data.shards import expand_shards, iter_shard, shard_counts
from clipforge.errors import UserError


def test_folder_with_sidecar_captions(tmp_path):
    write_image(tmp_path / "b" / "cat.png", 1)
    (tmp_path / "b" / "cat.txt").write_text("a cat\n\n  a small cat  \n")
    write_image(tmp_path / "a.jpg", 2)
    write_image(tmp_path / "nocaption.png", 3)
    (tmp_path / "notes.txt").write_text("not a caption of anything")
    table = read_folder(tmp_path)
    names = [p.rsplit("/", 1)[-1] for p in table.images]
    assert names == ["a.jpg", "cat.png", "nocaption.png"]  # sorted by relative path: a.jpg, b/cat.png, ...
    assert table.captions == ((), ("a cat", "a small cat"), ())


def test_csv_tsv_with_caption_lists_and_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    write_image(tmp_path / "sub" / "x.png", 1)
    rows = [{"path": "sub/x.png", "text": json.dumps(["one", "two"])}, {"path": "sub/y.png", "text": "single"}]
    for ext, delim in ((".csv", ","), (".tsv", "\t")):
        path = tmp_path / f"t{ext}"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "text"], delimiter=delim)
            writer.writeheader()
            writer.writerows(rows)
        table = read_table(path, image_column="path", caption_column="text")
        assert table.images[0] == str((tmp_path / "sub" / "x.png").resolve())
        assert table.captions == (("one", "two"), ("single",))


def test_parquet_and_jsonl(tmp_path):
    write_image(tmp_path / "i.png", 1)
    pq.write_table(pa.table({"img": ["i.png", "i.png"], "caps": [["p", " q "], []]}), tmp_path / "t.parquet")
    table = read_pairs(str(tmp_path / "t.parquet"), image_column="img", caption_column="caps")
    assert table.captions == (("p", "q"), ())
    jsonl = make_jsonl(tmp_path / "j", 3, captions_per_image=2)
    table = read_pairs(str(jsonl))  # default caption column "caption" falls back to "captions"
    assert table.captions[2] == ("c2-0", "c2-1") and len(read_rows(jsonl)) == 3


def test_bad_tables_give_clear_errors(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"image": "a.png", "caption": "x"}\n{broken\n')
    with pytest.raises(UserError, match=r"t.jsonl:2"):
        read_table(tmp_path / "t.jsonl")
    (tmp_path / "u.jsonl").write_text('{"picture": "a.png", "caption": "x"}\n')
    with pytest.raises(UserError, match="no column 'image'"):
        read_table(tmp_path / "u.jsonl")
    with pytest.raises(UserError, match="not found"):
        read_pairs(str(tmp_path / "missing.csv"))


def test_shard_command_writes_readable_resized_shards(tmp_path):
    src = tmp_path / "photos"
    for i in range(7):
        write_image(src / f"{i}.png", i, size=(40, 30))
        (src / f"{i}.txt").write_text(f"photo {i}\nanother caption {i}\n")
    (src / "bad.png").write_bytes(b"")
    (src / "bad.txt").write_text("bad")
    out = tmp_path / "shards"
    assert main(["data", "shard", str(src), str(out), "--resize", "12", "--shard-size", "3", "--format", "png"]) == 0
    urls = expand_shards(str(out))
    assert [u.rsplit("/", 1)[-1] for u in urls] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert shard_counts(urls) == [3, 3, 1]
    index = json.loads((out / "shards.json").read_text())
    assert index["total"] == 7 and index["skipped"] == {"corrupt": 1}
    samples = [s for u in urls for s in iter_shard(u)]
    assert [s.captions for s in samples][0] == ("photo 0", "another caption 0")
    import io

    with Image.open(io.BytesIO(samples[0].image)) as img:
        assert img.size == (16, 12)  # shortest side 30 -> 12, aspect kept
    assert is_shard_spec(str(out)) and is_shard_spec(str(out / "shard-{000000..000002}.tar"))
    assert expand_shards(str(out / "shard-{000000..000001}.tar")) == urls[:2]


def test_shards_with_json_captions_and_no_index(tmp_path):
    import io

    path = tmp_path / "hand.tar"
    with tarfile.open(path, "w") as tar:
        for key, members in {
            "k1": {"jpg": _jpeg(), "json": json.dumps({"caption": "from json"}).encode()},
            "k2": {"webp": _jpeg("WEBP"), "txt": b"from txt"},
            "k3": {"json": b"{}"},  # no image: not a sample
        }.items():
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    assert shard_counts([str(path)]) == [2]
    assert [s.captions for s in iter_shard(str(path))] == [("from json",), ("from txt",)]


def _jpeg(fmt: str = "JPEG") -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("name, data", [("bad.parquet", b"not parquet at all"), ("bad.csv", b"image,caption\n\xff\xfe,x\n"),
                                        ("bad.jsonl", b'{"image": "\xff"}\n')])
def test_unreadable_table_is_a_user_error(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(UserError, match=name):
        read_rows(tmp_path / name)
