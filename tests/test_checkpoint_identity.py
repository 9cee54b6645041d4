"""Checkpoints are identified by their config and weights; non-finite weights and vectors are refused;
``index --add`` updates an index from its own collection only (real FAISS, through the CLI)."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from search_helpers import make_checkpoint, make_collection

import clipforge
from clipforge.checkpoint import IDENTITY_KEY, read_config, read_identity
from clipforge.cli import main
from clipforge.errors import UserError
from clipforge.index.search import Searcher
from clipforge.model.clip import CLIP


def one_line_error(capsys) -> str:
    """The CLI's error: one 'error:' line, then one hint line."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("  hint: "), lines
    return lines[0]


def tree_digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Two checkpoints of one architecture (seeds 0 and 1: 'step 300' and 'final'), a collection, its index."""
    tmp = tmp_path_factory.mktemp("identity")
    paths = {"a": make_checkpoint(tmp / "a", seed=0), "b": make_checkpoint(tmp / "b", seed=1),
             "col": make_collection(tmp / "col", 8), "other_col": make_collection(tmp / "other_col", 3)}
    for name, ckpt, col in (("emb", "a", "col"), ("emb_b", "b", "col"), ("emb_other", "a", "other_col")):
        paths[name] = tmp / name
        assert main(["embed", str(paths[ckpt]), str(paths[col]), str(paths[name]), "workers=0"]) == 0
    paths["idx"] = tmp / "idx"
    assert main(["index", str(paths["emb"]), str(paths["idx"])]) == 0
    return paths


def test_identity_is_written_once_and_covers_the_weights(two, tmp_path):
    a, b = (json.loads((two[k] / "config.json").read_text()) for k in ("a", "b"))
    assert read_config(two["a"]) == read_config(two["b"])  # the same architecture and preprocessing...
    assert a[IDENTITY_KEY] != b[IDENTITY_KEY]  # ...but other weights
    again = make_checkpoint(tmp_path / "again", seed=0)  # the same weights written again: the same identity
    assert json.loads((again / "config.json").read_text())[IDENTITY_KEY] == a[IDENTITY_KEY]
    assert clipforge.load(two["a"]).identity == a[IDENTITY_KEY]


def test_old_checkpoint_identity_is_computed_on_load(two, tmp_path, caplog):
    """A checkpoint written before identities existed gets the identity it would have had, computed and logged."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.safetensors").write_bytes((two["a"] / "model.safetensors").read_bytes())
    raw = json.loads((two["a"] / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({k: v for k, v in raw.items() if k != IDENTITY_KEY}))
    with caplog.at_level(logging.INFO, logger="clipforge.checkpoint"):
        assert read_identity(old) == raw[IDENTITY_KEY]
    assert "records no identity" in caplog.text
    assert clipforge.load(old).identity == raw[IDENTITY_KEY]


def test_embed_resume_refuses_other_weights_of_the_same_architecture(two, capsys):
    """Resuming an embedding directory with other weights would mix two models' vectors in it."""
    assert main(["embed", str(two["b"]), str(two["col"]), str(two["emb"]), "workers=0"]) == 2
    assert "holds embeddings from another checkpoint" in one_line_error(capsys)


def test_search_and_serve_refuse_changed_weights(two, tmp_path):
    """The index records checkpoint a; if a's directory now holds other weights, queries would be embedded by
    another model: Searcher (search and serve) refuses."""
    index = json.loads((two["idx"] / "index.json").read_text())
    assert index["checkpoint"]["identity"] == json.loads((two["a"] / "config.json").read_text())[IDENTITY_KEY]
    with pytest.raises(UserError, match="does not match the one that built this index"):
        Searcher.open(two["idx"], pipeline=clipforge.load(two["b"]))
    moved = tmp_path / "idx"
    moved.mkdir()
    for f in two["idx"].iterdir():
        (moved / f.name).write_bytes(f.read_bytes())
    index["checkpoint"]["path"] = str(two["b"])  # the recorded path now holds other weights
    (moved / "index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match="does not match"):
        Searcher.open(moved)


def test_add_refuses_other_weights_and_other_collection(two, capsys):
    """Issue: 'added 1, removed 8', exit 0, with another folder's embeddings. Now refused; the index is
    byte-identical afterwards."""
    before = tree_digest(two["idx"])
    assert main(["index", str(two["emb_b"]), str(two["idx"]), "--add"]) == 2
    assert "vectors of two models cannot share an index" in one_line_error(capsys)
    assert main(["index", str(two["emb_other"]), str(two["idx"]), "--add"]) == 2
    assert "--add updates an index from the same collection only" in one_line_error(capsys)
    assert tree_digest(two["idx"]) == before
    # The same collection still updates (nothing new: added 0, removed 0).
    assert main(["index", str(two["emb"]), str(two["idx"]), "--add"]) == 0


def test_legacy_directories_fall_back_to_the_config_hash(two, tmp_path, caplog):
    """An embedding directory recorded before identities compares by config hash, with a warning saying so."""
    legacy = tmp_path / "emb"
    legacy.mkdir()
    for f in two["emb"].iterdir():
        if f.is_file():
            (legacy / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((legacy / "embed.json").read_text())
    del manifest["checkpoint"]["identity"]
    (legacy / "embed.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        assert main(["index", str(legacy), str(two["idx"]), "--add"]) == 0
    assert "only the model config is compared" in caplog.text


def _poison(ckpt, out, value: float):
    state = load_file(str(ckpt / "model.safetensors"))
    name = sorted(k for k in state if state[k].is_floating_point())[3]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = value
    out.mkdir()
    save_file(state, str(out / "model.safetensors"))
    (out / "config.json").write_text((ckpt / "config.json").read_text())
    return name


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(two, tmp_path, value, capsys):
    bad = tmp_path / "bad"
    name = _poison(two["a"], bad, value)
    with pytest.raises(UserError, match=f"tensor {name} holds 1 non-finite"):
        clipforge.load(bad)
    assert main(["embed", str(bad), str(two["col"]), str(tmp_path / "emb"), "workers=0"]) == 2
    assert f"tensor {name} holds 1 non-finite (NaN/inf) values" in one_line_error(capsys)
    assert not (tmp_path / "emb" / "embed.json").exists()


def test_index_refuses_non_finite_vectors(two, tmp_path, capsys):
    emb = tmp_path / "emb"
    emb.mkdir()
    for f in two["emb"].iterdir():
        if f.is_file():
            (emb / f.name).write_bytes(f.read_bytes())
    vectors = np.load(emb / "image_emb.npy")
    vectors[2] = np.nan
    np.save(emb / "image_emb.npy", vectors)
    assert main(["index", str(emb), str(tmp_path / "idx")]) == 2
    assert "1 of 8 embeddings are not finite (NaN/inf)" in one_line_error(capsys)
    assert not (tmp_path / "idx").exists()


def test_embed_refuses_nan_vectors(two, tmp_path, monkeypatch, capsys):
    """A model that yields NaN for some images (finite weights, e.g. an overflow in fp16) is refused, not stored."""
    real = CLIP.encode_image

    def half_nan(self, pixels):
        out = real(self, pixels)
        out[0] = torch.nan
        return out

    monkeypatch.setattr(CLIP, "encode_image", half_nan)
    assert main(["embed", str(two["a"]), str(two["col"]), str(tmp_path / "emb"), "workers=0"]) == 2
    assert "non-finite (NaN/inf) embedding" in one_line_error(capsys)
