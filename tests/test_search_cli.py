"""The search/index CLI end to end: JSON output, image->text, --add and --delete."""

from __future__ import annotations

import json

import pytest
from search_helpers import build_demo, draw

from clipforge.cli import main
from clipforge.index.config import EmbedConfig, IndexConfig
from clipforge.utils.configs import load_resolved


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("cli"))


def run_json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)["results"]


def test_search_modes(demo, capsys):
    idx, img = str(demo["idx"]), str(demo["col"] / "a" / "img005.png")
    text = run_json(capsys, ["search", idx, "--text", "a triangle", "-k", "4", "--json"])
    assert len(text) == 4 and {"id", "path", "score"} <= set(text[0])
    same = run_json(capsys, ["search", idx, "--image", img, "-k", "2", "--json"])
    assert same[0]["path"] == "a/img005.png"
    labels = run_json(capsys, ["search", idx, "--image", img, "--labels", "cat,dog", "--json"])
    assert {x["label"] for x in labels} == {"cat", "dog"}
    caps = run_json(capsys, ["search", idx, "--image", img, "--captions-from", idx, "-k", "3", "--json"])
    assert len(caps) == 3 and all("caption" in c for c in caps)
    assert main(["search", idx, "--text", "a triangle"]) == 0  # the table form
    assert "score" in capsys.readouterr().out


def test_search_errors(demo, capsys):
    idx = str(demo["idx"])
    assert main(["search", idx, "--text", "x", "-k", "0"]) == 2
    assert main(["search", idx, "--text", "  "]) == 2
    assert main(["search", idx, "--image", str(demo["col"] / "missing.png")]) == 2
    assert main(["search", str(demo["col"]), "--text", "x"]) == 2
    assert "not an index directory" in capsys.readouterr().err


def test_add_and_delete(demo, tmp_path, capsys):
    idx = tmp_path / "idx"
    assert main(["index", str(demo["emb"]), str(idx)]) == 0
    assert load_resolved(IndexConfig, idx / "index_config.yaml") == IndexConfig(str(demo["emb"]), str(idx))
    assert load_resolved(EmbedConfig, demo["emb"] / "embed_config.yaml").workers == 0
    assert main(["index", f"out={idx}", "--delete", "0,1"]) == 0
    assert json.loads((idx / "index.json").read_text())["count"] == 10
    draw((1, 1, 1), "circle", seed=5).save(demo["col"] / "extra.png")
    assert main(["embed", str(demo["ckpt"]), str(demo["col"]), str(demo["emb"]), "workers=0"]) == 0
    capsys.readouterr()
    assert main(["index", str(demo["emb"]), str(idx), "--add"]) == 0
    assert "added 3, removed 0" in capsys.readouterr().out  # 0, 1 come back from the embeddings, plus extra.png
    hits = run_json(capsys, ["search", str(idx), "--image", str(demo["col"] / "extra.png"), "-k", "1", "--json"])
    assert hits[0]["path"] == "extra.png"
    assert main(["index", f"out={idx}", "--delete", "x"]) == 2
