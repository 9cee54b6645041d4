"""The one data layer: folders + sidecars, CSV/TSV/JSONL/Parquet tables, WebDataset shards, with one set of rules."""

from __future__ import annotations

import csv
import io
import json
import logging
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_helpers import make_jsonl, write_image
from PIL import Image

from clipforge.cli import main
from clipforge.data.sources import (
    expand_shards,
    is_shard_spec,
    iter_shard,
    open_source,
    read_bytes,
    shard_counts,
)
from clipforge.data.tables import read_json_lines, read_table
from clipforge.errors import UserError


def _captions(source):
    return [it.captions for it in source.items]


def test_folder_with_sidecar_captions(tmp_path):
    write_image(tmp_path / "b" / "cat.png", 1)
    (tmp_path / "b" / "cat.txt").write_text("a cat\n\n  a small cat  \n")
    write_image(tmp_path / "a.jpg", 2)
    write_image(tmp_path / "nocaption.png", 3)
    (tmp_path / "notes.txt").write_text("not a caption of anything")
    source = open_source(tmp_path)
    assert source.kind == "folder" and [it.path for it in source.items] == ["a.jpg", "b/cat.png", "nocaption.png"]
    assert _captions(source) == [(), ("a cat", "a small cat"), ()]
    assert source.file(source.items[1]) == (tmp_path / "b" / "cat.png").resolve()


def test_latin1_sidecar_is_never_replacement_characters(tmp_path, caplog):
    """Item 9: a Latin-1 sidecar used to become U+FFFD silently; now the rule is UTF-8, and the image says why."""
    write_image(tmp_path / "cafe.png", 1)
    (tmp_path / "cafe.txt").write_bytes("un café crème".encode("latin-1"))
    write_image(tmp_path / "ok.png", 2)
    (tmp_path / "ok.txt").write_text("un café crème", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="clipforge.data"):
        source = open_source(tmp_path)
    bad, good = source.items
    assert bad.captions == () and bad.caption_error == "caption_encoding"
    assert good.captions == ("un café crème",) and good.caption_error is None
    assert any("cafe.txt: not UTF-8 text (byte 0xe9 at line 1, column 7)" in r.getMessage() for r in caplog.records)
    assert all("\ufffd" not in c for it in source.items for c in it.captions)


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
        source = open_source(path, image_column="path", caption_field="text")
        assert source.file(source.items[0]) == (tmp_path / "sub" / "x.png").resolve()
        assert _captions(source) == [("one", "two"), ("single",)]


def test_parquet_jsonl_and_the_caption_fallback(tmp_path):
    write_image(tmp_path / "i.png", 1)
    pq.write_table(pa.table({"img": ["i.png", "i.png"], "caps": [["p", " q "], []]}), tmp_path / "t.parquet")
    assert _captions(open_source(tmp_path / "t.parquet", image_column="img", caption_field="caps")) == [("p", "q"), ()]
    jsonl = make_jsonl(tmp_path / "j", 3, captions_per_image=2)
    source = open_source(jsonl)  # the default caption column "caption" falls back to "captions"
    assert source.items[2].captions == ("c2-0", "c2-1") and len(source) == 3


def test_captions_column_in_every_table_type(tmp_path):
    """Item 5: what `clipforge data emoji` writes (a `captions` list) gives captions in every format."""
    for i in range(2):
        write_image(tmp_path / f"{i}.png", i)
    rows = [{"image": "0.png", "captions": ["a cat", "kitty"]}, {"image": "1.png", "captions": ["a dog"]}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.table({"image": ["0.png", "1.png"], "captions": [["a cat", "kitty"], ["a dog"]]}),
                   tmp_path / "t.parquet")
    (tmp_path / "t.csv").write_text('image,captions\n0.png,"[""a cat"", ""kitty""]"\n1.png,"[""a dog""]"\n')
    for name in ("t.jsonl", "t.parquet", "t.csv"):
        assert _captions(open_source(tmp_path / name)) == [("a cat", "kitty"), ("a dog",)], name


def test_non_utf8_table_is_a_clear_error_everywhere(tmp_path):
    """Item 4: a Latin-1 CSV is one clear error (never ``b'caf\\xe9'`` captions) for every verb."""
    write_image(tmp_path / "x.png", 1)
    path = tmp_path / "t.csv"
    path.write_bytes("image,caption\nx.png,café\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"t.csv: not UTF-8 text \(byte 0xe9 at line 2, column 10\)") as err:
        open_source(path)
    assert "iconv -f LATIN1 -t UTF-8" in err.value.hint
    path.write_bytes("image,caption\nx.png,café\n".encode("utf-16"))
    with pytest.raises(UserError, match="not UTF-8") as err:
        open_source(path)
    assert "UTF-16" in err.value.hint
    path.write_bytes("\ufeffimage,caption\nx.png,café\n".encode())  # a UTF-8 byte-order mark is fine
    assert _captions(open_source(path)) == [("café",)]


def test_bad_rows_are_skipped_and_counted_with_one_line(tmp_path, caplog):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", i)
    (tmp_path / "t.jsonl").write_text(
        '{"image": "0.png", "caption": "x"}\n{broken\n[1, 2]\n{"caption": "no image"}\n\n{"image": "1.png"}\n'
    )
    with caplog.at_level(logging.WARNING, logger="clipforge.data"):
        source = open_source(tmp_path / "t.jsonl")
    assert [it.path for it in source.items] == ["0.png", "1.png"]
    assert source.skipped.counts == {"malformed": 2, "no_image": 1}
    assert any("skipped 3 (malformed: 2, e.g. line 2, line 3; no_image: 1, e.g. line 4)" in r.getMessage()
               for r in caplog.records)
    (tmp_path / "t.csv").write_text("image,caption\n0.png,a\n1.png,b,extra\n,c\n2.png\n")
    source = open_source(tmp_path / "t.csv")
    assert [it.path for it in source.items] == ["0.png"] and source.skipped.counts == {"malformed": 2, "no_image": 1}


def test_bad_tables_give_clear_errors(tmp_path):
    (tmp_path / "u.jsonl").write_text('{"picture": "a.png", "caption": "x"}\n')
    with pytest.raises(UserError, match="no column 'image'"):
        open_source(tmp_path / "u.jsonl")
    (tmp_path / "v.jsonl").write_text("{broken\n")
    with pytest.raises(UserError, match="no usable rows"):
        open_source(tmp_path / "v.jsonl")
    with pytest.raises(UserError, match="no such table file"):
        open_source(tmp_path / "missing.csv")
    (tmp_path / "t.json").write_text("[]")
    with pytest.raises(UserError, match="unknown source type .json"):
        open_source(tmp_path / "t.json")
    (tmp_path / "w.csv").write_text("image\nx.png\n")
    with pytest.raises(UserError, match="no caption column"):
        open_source(tmp_path / "w.csv", require_captions=True)
    assert open_source(tmp_path / "w.csv").items[0].captions == ()  # embedding: captions are optional


@pytest.mark.parametrize("name, data", [("bad.parquet", b"not parquet at all"), ("bad.csv", b"image,caption\n\xff\xfe,x\n"),
                                        ("bad.jsonl", b'{"image": "\xff"}\n')])
def test_unreadable_table_is_a_user_error(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(UserError, match=name):
        read_table(tmp_path / name)


def test_json_lines_reader_skips_and_counts(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss"\n{"loss": 1}\n{"step": 3}\n')
    with caplog.at_level(logging.WARNING, logger="clipforge.data"):
        rows = read_json_lines(path, lambda r: "step" in r, "no_step")
    assert [r["step"] for r in rows] == [1, 3]
    assert any("skipped 2 (malformed: 1, e.g. line 2; no_step: 1, e.g. line 3)" in r.getMessage()
               for r in caplog.records)


def test_shard_command_writes_readable_resized_shards(tmp_path):
    src = tmp_path / "photos"
    for i in range(7):
        write_image(src / f"{i}.png", i, size=(40, 30))
        (src / f"{i}.txt").write_text(f"photo {i}\nanother caption {i}\n")
    (src / "bad.png").write_bytes(b"")
    (src / "bad.txt").write_text("bad")
    out = tmp_path / "shards"
    assert main(["data", "shard", str(src), str(out), "--resize", "12", "--shard-size", "3", "--format", "png"]) == 0
    urls = expand_shards(out)
    assert [u.rsplit("/", 1)[-1] for u in urls] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert shard_counts(urls) == [3, 3, 1]
    (out / "shards.json").rename(tmp_path / "index.json")
    assert shard_counts(urls) == [3, 3, 1]  # counted from the tars when there is no index
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["total"] == 7 and index["skipped"] == {"corrupt": 1}
    samples = [s for u in urls for s in iter_shard(u)]
    assert [s.captions for s in samples][0] == ("photo 0", "another caption 0")
    with Image.open(io.BytesIO(samples[0].image)) as img:
        assert img.size == (16, 12)  # shortest side 30 -> 12, aspect kept
    assert is_shard_spec(out) and is_shard_spec(str(out / "shard-{000000..000002}.tar"))
    assert expand_shards(str(out / "shard-{000000..000001}.tar")) == urls[:2]
    # The listing (embedding) and the stream (training) agree on every sample and caption.
    listed = open_source(out)
    assert listed.kind == "shards" and [it.captions for it in listed.items] == [s.captions for s in samples]
    assert read_bytes(listed.root, listed.items[3].path) == samples[3].image


def _tar(path, samples):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in samples:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _jpeg(fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, fmt)
    return buf.getvalue()


def test_shard_rules_are_the_same_for_listing_and_streaming(tmp_path):
    path = _tar(tmp_path / "hand.tar", [
        ("k1.jpg", _jpeg()), ("k1.json", json.dumps({"caption": "from json"}).encode()),
        ("k2.webp", _jpeg("WEBP")), ("k2.txt", b"from txt\nsecond"),
        ("k3.json", b"{}"),  # no image: not a sample
        ("d/k4.PNG", _jpeg("PNG")), ("d/k4.json", json.dumps({"captions": ["a", "b"]}).encode()),  # .PNG counts
        ("k5.bmp", _jpeg("BMP")), ("k5.txt", "café".encode("latin-1")),  # not UTF-8: no captions, and why
        ("k6.tif", _jpeg("TIFF")), ("k6.json", json.dumps({"text": "tiff text"}).encode()),
    ])
    expected = [("from json",), ("from txt", "second"), ("a", "b"), (), ("tiff text",)]
    assert shard_counts([str(path)]) == [5]
    streamed = list(iter_shard(str(path)))
    assert [s.captions for s in streamed] == expected
    assert [s.caption_error for s in streamed] == [None, None, None, "caption_encoding", None]
    listed = open_source(path)
    assert [it.captions for it in listed.items] == expected and listed.skipped.counts == {"no_image": 1}
    assert [it.path for it in listed.items][2] == "hand.tar#d/k4.PNG"
    assert read_bytes(listed.root, listed.items[2].path) == streamed[2].image


def test_what_counts_as_shards(tmp_path):
    _tar(tmp_path / "s" / "a" / "x.tar", [("k.jpg", _jpeg())])
    assert is_shard_spec(tmp_path / "s") and len(open_source(tmp_path / "s")) == 1  # found recursively
    write_image(tmp_path / "s" / "photo.png", 1)
    assert not is_shard_spec(tmp_path / "s") and open_source(tmp_path / "s").kind == "folder"
    assert is_shard_spec(tmp_path / "s" / "a" / "x.tar")
    with pytest.raises(UserError, match="missing"):
        expand_shards(str(tmp_path / "s" / "a" / "{x,y}.tar"))
    (tmp_path / "broken.tar").write_bytes(b"\0" * 100 + b"garbage")
    with pytest.raises(UserError, match="broken.tar: unreadable tar shard"):
        open_source(tmp_path / "broken.tar")


def test_embed_and_train_read_the_same_captions(tmp_path):
    """Items 4 and 5 at the verb level: embed stores what train reads (the emoji `captions` list, UTF-8 text)."""
    import pyarrow.parquet as pq
    from search_helpers import make_checkpoint

    from clipforge.data.config import DataConfig, PreprocessConfig
    from clipforge.data.loader import build_loader
    from clipforge.dist.env import World

    for i in range(2):
        write_image(tmp_path / "col" / f"{i}.png", i)
    rows = [{"image": "0.png", "captions": ["a cat", "kitty"]}, {"image": "1.png", "captions": ["a dog"]}]
    table = tmp_path / "col" / "t.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ckpt = make_checkpoint(tmp_path / "ckpt")
    assert main(["embed", str(ckpt), str(table), str(tmp_path / "emb"), "workers=0"]) == 0
    assert pq.read_table(tmp_path / "emb" / "metadata.parquet").column("caption").to_pylist() == ["a cat", "a dog"]
    seen = []
    loader = build_loader(DataConfig(train=str(table), workers=0), tokenizer=lambda t: (seen.extend(t), _ids(t))[1],
                          preprocess=PreprocessConfig(image_size=8), world=World(), batch_size=2, train=False,
                          epoch=0, seed=0)
    assert sum(b.indices.numel() for b in loader) == 2 and seen == ["a cat", "a dog"]
    latin = tmp_path / "col" / "latin.csv"
    latin.write_bytes("image,caption\n0.png,café\n1.png,ok\n".encode("latin-1"))
    assert main(["embed", str(ckpt), str(latin), str(tmp_path / "emb2"), "workers=0"]) == 2
    assert not (tmp_path / "emb2" / "metadata.parquet").exists()


def _ids(texts):
    import torch

    return torch.zeros(len(texts), 4, dtype=torch.int64)
