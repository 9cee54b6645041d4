"""Embedding collections: metadata, resume, bad images, tables and shards, ranks, path safety."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from search_helpers import draw, make_checkpoint, make_collection

import clipforge
import clipforge.index.embed as embed_mod
from clipforge.data.sources import open_source, read_bytes
from clipforge.errors import UserError
from clipforge.index.embed import embed_collection
from clipforge.index.manifest import checkpoint_fingerprint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt")


@pytest.fixture(scope="module")
def pipeline(ckpt):
    import clipforge

    return clipforge.load(ckpt)


def run_embed(pipeline, ckpt, src, out, **kw):
    return embed_collection(pipeline, open_source(src), out, fingerprint=checkpoint_fingerprint(ckpt),
                            workers=0, batch_size=4, progress=False, **kw)


def read_out(out: Path):
    meta = pq.read_table(out / "metadata.parquet").to_pydict()
    return meta, np.load(out / "image_emb.npy"), np.load(out / "text_emb.npy"), json.loads((out / "embed.json").read_text())


def test_embed_folder_metadata_and_bad_images(tmp_path, pipeline, ckpt):
    col = make_collection(tmp_path / "col", 10, bad=2)
    result = run_embed(pipeline, ckpt, col, tmp_path / "emb")
    assert result.embedded == 10 and result.skipped == {"corrupt": 2}
    meta, image, text, manifest = read_out(tmp_path / "emb")
    assert manifest["count"] == 10 and manifest["skipped"] == {"corrupt": 2} and manifest["dtype"] == "float16"
    assert image.dtype == np.float16 and image.shape == (10, 16)
    np.testing.assert_allclose(np.linalg.norm(image.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert meta["id"] == list(range(10)) and meta["path"] == sorted(meta["path"])
    assert meta["width"][0] == 48 and meta["height"][0] == 48 and len(meta["sha256"][0]) == 32
    assert meta["caption"][0].startswith("a ")
    assert np.all(np.abs(np.linalg.norm(text.astype(np.float32), axis=1) - 1) < 2e-3)
    # The stored vector is what the model gives for that image.
    import torch
    from PIL import Image

    with torch.no_grad():
        ref = pipeline.model.encode_image(pipeline.preprocess(Image.open(col / meta["path"][3]).convert("RGB"))[None])
    ref = (ref / ref.norm()).numpy()[0]
    np.testing.assert_allclose(image[3].astype(np.float32), ref, atol=2e-3)


def test_resume_skips_done_and_reembeds_changed(tmp_path, pipeline, ckpt):
    col = make_collection(tmp_path / "col", 8)
    out = tmp_path / "emb"
    run_embed(pipeline, ckpt, col, out, dtype="float32")
    meta0, image0, _, _ = read_out(out)
    again = run_embed(pipeline, ckpt, col, out, dtype="float32")
    assert again.embedded == 0 and again.skipped == {"done": 8}
    # Change one file and add one: only those two are embedded; the changed one gets a new id.
    changed = meta0["path"][2]
    draw((0, 0, 0), "circle", seed=99).save(col / changed)
    draw((9, 9, 9), "square", seed=98).save(col / "b" / "new.png")
    third = run_embed(pipeline, ckpt, col, out, dtype="float32")
    assert third.embedded == 2 and third.skipped == {"done": 7}
    meta, image, _, manifest = read_out(out)
    assert manifest["count"] == 9 and manifest["next_id"] == 10
    row = meta["path"].index(changed)
    assert meta["id"][row] not in meta0["id"]
    same = meta["path"].index(meta0["path"][0])
    np.testing.assert_array_equal(image[same], image0[0])


def test_interrupted_run_resumes_from_parts(tmp_path, pipeline, ckpt, monkeypatch):
    col = make_collection(tmp_path / "col", 12)
    out = tmp_path / "emb"
    calls = {"n": 0}
    real = embed_mod._encode

    def crash_after_two(*args):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(embed_mod, "_encode", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_embed(pipeline, ckpt, col, out, flush_every=4)
    monkeypatch.setattr(embed_mod, "_encode", real)
    assert len(list((out / "parts").glob("*.parquet"))) == 2  # two batches of 4 were flushed
    result = run_embed(pipeline, ckpt, col, out)
    assert result.embedded == 4 and result.skipped == {"done": 8}
    assert read_out(out)[3]["count"] == 12


def test_other_checkpoint_refused(tmp_path, pipeline, ckpt):
    col = make_collection(tmp_path / "col", 2)
    run_embed(pipeline, ckpt, col, tmp_path / "emb")
    other = make_checkpoint(tmp_path / "other", embed_dim=8)
    with pytest.raises(UserError, match="another checkpoint"):
        embed_collection(pipeline, open_source(col), tmp_path / "emb", fingerprint=checkpoint_fingerprint(other))


def test_two_ranks_match_one(tmp_path, pipeline, ckpt):
    col = make_collection(tmp_path / "col", 9, bad=1)
    run_embed(pipeline, ckpt, col, tmp_path / "one")
    # Rank 1 finishes first, then rank 0 merges both (what the barrier guarantees under torchrun).
    r1 = run_embed(pipeline, ckpt, col, tmp_path / "two", rank=1, world=2)
    r0 = run_embed(pipeline, ckpt, col, tmp_path / "two", rank=0, world=2)
    assert r0.embedded + r1.embedded == 9
    one, two = read_out(tmp_path / "one"), read_out(tmp_path / "two")
    assert one[0] == two[0] and two[3]["skipped"] == {"corrupt": 1}
    np.testing.assert_array_equal(one[1], two[1])
    assert not list((tmp_path / "two" / "parts").iterdir())


def test_tables_and_shards(tmp_path, pipeline, ckpt):
    col = make_collection(tmp_path / "col", 4, captions=False)
    rels = sorted(p.relative_to(col).as_posix() for p in col.rglob("*.png"))
    (col / "pairs.csv").write_text("image,caption\n" + "".join(f"{r},caption {i}\n" for i, r in enumerate(rels)))
    (col / "pairs.jsonl").write_text("".join(json.dumps({"image": r, "caption": [f"c{i}", "x"]}) + "\n"
                                             for i, r in enumerate(rels)))
    for name in ("pairs.csv", "pairs.jsonl"):
        c = open_source(col / name)
        assert [it.path for it in c.items] == rels and c.items[0].caption in ("caption 0", "c0")
    with pytest.raises(UserError, match="no column"):
        open_source(col / "pairs.csv", image_column="img")
    # Captions are read as training reads them: a JSON list in a CSV cell, one caption per sidecar line.
    (col / "lists.csv").write_text("image,caption\n" + "".join(f'{r},"[""first {i}"", ""second""]"\n'
                                                               for i, r in enumerate(rels)))
    assert open_source(col / "lists.csv").items[1].caption == "first 1"
    (col / Path(rels[0]).with_suffix(".txt")).write_text("line one\nline two\n")
    assert open_source(col).items[0].caption == "line one"
    shard = tmp_path / "shards" / "shard-000000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tar:
        for i, r in enumerate(rels):
            tar.add(col / r, arcname=f"{i:04d}.png")
            txt = tmp_path / f"{i}.txt"
            txt.write_text(f"shard caption {i}\nanother caption\n")
            tar.add(txt, arcname=f"{i:04d}.txt")
    c = open_source(shard.parent)
    assert c.kind == "shards" and len(c.items) == 4 and c.items[1].caption == "shard caption 1"
    assert read_bytes(c.root, c.items[0].path) == (col / rels[0]).read_bytes()
    result = run_embed(pipeline, ckpt, shard.parent, tmp_path / "emb")
    assert result.embedded == 4


def test_paths_never_escape_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.txt").write_text("x")
    for bad in ("../secret.txt", str(tmp_path / "secret.txt"), "a/../../secret.txt"):
        with pytest.raises(UserError, match="outside"):
            read_bytes(tmp_path / "root", bad)


def test_torchrun_two_processes(tmp_path, ckpt):
    """Two real ranks under torchrun (gloo): disjoint work, one merged directory equal to a single run."""
    col = make_collection(tmp_path / "col", 6)
    script = tmp_path / "entry.py"
    script.write_text(
        "import sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from clipforge.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", str(script), "embed", str(ckpt), str(col), str(tmp_path / "emb"),
           "workers=0", "device=cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = pq.read_table(tmp_path / "emb" / "metadata.parquet").to_pydict()
    assert meta["id"] == list(range(6)) and len(set(meta["path"])) == 6


def test_gpu_ready_loader_path_on_cpu(tmp_path):
    """The batches come stacked from the workers (pinned on CUDA only) and the vectors equal the model's."""
    assert embed_mod.loader_options(torch.device("cuda")) == {"pin_memory": True}
    assert embed_mod.loader_options(torch.device("cpu")) == {"pin_memory": False}
    rows = [{"status": "ok", "pixels": torch.ones(3, 4, 4), "item": 1}, {"status": "corrupt", "item": 2},
            {"status": "ok", "pixels": torch.zeros(3, 4, 4), "item": 3}]  # fmt: skip
    stacked = embed_mod.collate_rows(rows)
    assert stacked["pixels"].shape == (2, 3, 4, 4) and stacked["pixels"][0].eq(1).all()
    assert [r["item"] for r in stacked["rows"]] == [1, 2, 3] and all("pixels" not in r for r in stacked["rows"])
    assert embed_mod.collate_rows([{"status": "done", "item": 4}])["pixels"] is None
    pipeline = clipforge.load(make_checkpoint(tmp_path / "ckpt"))
    col = make_collection(tmp_path / "col", 5)
    paths, vectors, _ = embed_mod.embed_in_memory(pipeline, open_source(str(col)), batch_size=2, workers=1,
                                                  progress=False)  # fmt: skip
    with torch.inference_mode():
        ref = torch.stack([pipeline.preprocess(Image.open(col / p).convert("RGB")) for p in paths])
        want = torch.nn.functional.normalize(pipeline.model.encode_image(ref), dim=-1).numpy()
    np.testing.assert_allclose(vectors, want, atol=1e-5)
