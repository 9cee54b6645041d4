"""Every error a careless user met in the issue is one 'error:' line plus one hint line, with exit status 2."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from search_helpers import build_demo, draw

from clipforge.cli import main
from clipforge.errors import UserError
from clipforge.index.store import load_store
from clipforge.train.state import load_train_state


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("errors")
    paths = build_demo(tmp, n=27, bad=0)
    paths["png"] = tmp / "picture.png"
    draw((1, 2, 3), "circle").save(paths["png"])
    paths["file"] = tmp / "a-file.txt"
    paths["file"].write_text("x")
    paths["garbage"] = tmp / "garbage.safetensors"
    paths["garbage"].write_bytes(b"not a safetensors file" * 4)
    return paths


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("  hint: "), lines
    return lines[0]


CASES = {
    # case id: (argv built from the demo paths, text the error line must contain)
    "config-is-a-png": (lambda d: ["eval", str(d["ckpt"]), "--config", str(d["png"])], "is not a text file"),
    "config-is-a-dir": (lambda d: ["eval", str(d["ckpt"]), "--config", str(d["col"])], "is a directory"),
    "eval-batch-size-0": (lambda d: ["eval", str(d["ckpt"]), "suite.batch_size=0", f"zeroshot=[{d['col']}]"],
                          "batch_size must be >= 1, got 0"),
    "ivf-nlist-over-count": (lambda d: ["index", str(d["emb"]), str(d["col"].parent / "i1"), "kind=ivf",
                                        "nlist=1000"], "nlist=1000 lists need at least 1000 vectors"),
    "nprobe-0": (lambda d: ["index", str(d["emb"]), str(d["col"].parent / "i2"), "kind=ivf", "nprobe=0"],
                 "nprobe must be >= 1, got 0"),
    "index-out-is-a-file": (lambda d: ["index", str(d["emb"]), str(d["file"])], "is a file, not a directory"),
    "eval-out-is-a-file": (lambda d: ["eval", str(d["ckpt"]), f"zeroshot=[{d['col']}]", f"out_dir={d['file']}"],
                           "is a file, not a directory"),
    "moderate-out-is-a-file": (lambda d: ["moderate", str(d["ckpt"]), str(d["col"]), f"concepts={d['file']}",
                                          f"out={d['file']}"], "is a file, not a directory"),
    "serve-port-99999": (lambda d: ["serve", "--index", str(d["idx"]), "--port", "99999"], "is not a TCP port"),
    "eval-retrieval-missing": (lambda d: ["eval", str(d["ckpt"]), "retrieval=[/nonexistent.jsonl]"],
                               "retrieval: /nonexistent.jsonl does not exist"),
    "eval-zeroshot-missing": (lambda d: ["eval", str(d["ckpt"]), "zeroshot=[/nonexistent]"],
                              "zeroshot: /nonexistent does not exist"),
    "convert-garbage-safetensors": (lambda d: ["convert", "--from", "openai", str(d["garbage"]), "--out",
                                               str(d["col"].parent / "conv"), "--config", "test-vit"],
                                    "garbage.safetensors: not a readable safetensors file"),
    "embed-garbage-weights": (lambda d: ["embed", str(d["bad_ckpt"]), str(d["col"]), str(d["file"].parent / "e2"),
                                         "workers=0"], "model.safetensors: not a readable safetensors file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_error_is_one_line_with_a_hint(demo, case, capsys):
    if "bad_ckpt" not in demo:  # a checkpoint whose weights file is garbage
        bad = demo["ckpt"].parent / "bad_ckpt"
        bad.mkdir()
        (bad / "config.json").write_bytes((demo["ckpt"] / "config.json").read_bytes())
        (bad / "model.safetensors").write_bytes(demo["garbage"].read_bytes())
        demo["bad_ckpt"] = bad
    argv, needle = CASES[case]
    assert main(argv(demo)) == 2
    assert needle in one_line_error(capsys)


def test_resume_from_a_png_is_one_line(demo):
    """torch.load's page of weights_only advice is not shown: one line saying what --resume takes."""
    with pytest.raises(UserError) as info:
        load_train_state(demo["png"])
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and "not a clipforge training state" in lines[0] and "--resume takes" in lines[1]
    assert "weights_only" not in str(info.value)


def test_search_with_queries_of_the_wrong_width(demo, capsys):
    """FAISS only asserts on a width mismatch; the store says what is wrong."""
    store = load_store(demo["idx"])
    with pytest.raises(UserError, match="queries of width 8 cannot search an index of 16-d vectors"):
        store.search(np.zeros((1, 8), np.float32), 3)
    with pytest.raises(UserError, match="vectors of width 8 cannot join an index of 16-d vectors"):
        store.add(np.zeros((1, 8), np.float32), {}, None)


def test_eval_does_not_write_into_the_checkpoint(demo, tmp_path, monkeypatch):
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in demo["ckpt"].rglob("*") if p.is_file()}
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(demo["ckpt"]), f"zeroshot=[{demo['col']}]", "report=false"]) == 0
    assert (tmp_path / "eval-results" / "ckpt" / "results.json").is_file()
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in demo["ckpt"].rglob("*") if p.is_file()}
    assert after == before
