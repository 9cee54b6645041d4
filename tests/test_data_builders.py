"""The npm/apt builders on tiny stand-in package trees (the real packages are not needed in CI)."""

from __future__ import annotations

import json

from PIL import Image

from clipforge.cli import main
from clipforge.data.builders.splits import split_subgroups
from clipforge.data.builders.tuxpaint import english_description, label_of


def _png(path, color=(200, 30, 30, 255), size=(64, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", size, color).save(path)


def _fake_emoji_datasource(npm_dir):
    pkg = npm_dir / "node_modules" / "emoji-datasource-google"
    entries = [
        {
            "name": "GRINNING FACE",
            "unified": "1F600",
            "image": "1f600.png",
            "short_names": ["grinning"],
            "category": "Smileys & Emotion",
            "subcategory": "face-smiling",
        },
        {
            "name": "WAVING HAND SIGN",
            "unified": "1F44B",
            "image": "1f44b.png",
            "short_names": ["wave"],
            "category": "People & Body",
            "subcategory": "hand-fingers-open",
            "skin_variations": {"1F3FD": {"unified": "1F44B-1F3FD", "image": "1f44b-1f3fd.png"}},
        },
        {
            "name": "NOT SHIPPED",
            "unified": "1F9FF",
            "image": "1f9ff.png",
            "short_names": ["nazar"],
            "category": "Activities",
            "subcategory": "game",
        },
    ]
    for e in entries[:2]:
        _png(pkg / "img" / "google" / "64" / e["image"])
    _png(pkg / "img" / "google" / "64" / "1f44b-1f3fd.png", (120, 80, 40, 255))
    (pkg / "emoji.json").write_text(json.dumps(entries))


def test_emoji_datasource_builder(tmp_path):
    _fake_emoji_datasource(tmp_path / "npm")
    out = tmp_path / "out"
    args = ["data", "emoji-datasource", str(out), "--npm-dir", str(tmp_path / "npm"), "--size", "32"]
    assert main(args) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["images"] == 3 and stats["missing_images"] == 1 and stats["classes"] == 2
    rows = [json.loads(line) for f in ("train.jsonl", "heldout.jsonl") for line in (out / f).read_text().splitlines()]
    by_cp = {r["codepoints"]: r for r in rows}
    assert by_cp["1F600"]["label"] == "grinning face"  # the emoji package's name, as in the OpenMoji set
    assert by_cp["1F44B-1F3FD"]["label"] == by_cp["1F44B"]["label"] == "waving hand"
    assert by_cp["1F44B"]["subgroup"] == "hand-fingers-open" and "wave" in by_cp["1F44B"]["captions"]
    with Image.open(out / by_cp["1F600"]["image"]) as img:
        assert img.size == (32, 32)


def test_emoji_datasource_names_the_install_command(tmp_path, capsys):
    assert main(["data", "emoji-datasource", str(tmp_path / "o"), "--npm-dir", str(tmp_path / "none")]) == 2
    assert "npm install --prefix" in capsys.readouterr().err


def test_tuxpaint_builder(tmp_path):
    root = tmp_path / "stamps"
    for i, (folder, stem, text) in enumerate(
        [
            ("animals/birds", "robin", "A robin on a branch."),
            ("animals/mammals", "cat-2", "A sleepy cat."),
            ("food/fruit", "025apple", "A red apple."),
            ("food/fruit", "pear", ""),
        ]
    ):
        _png(root / folder / f"{stem}.png", (i * 60, 100, 100, 255), size=(40, 20))
        (root / folder / f"{stem}.txt").write_text(f"{text}\nde.utf8=Ein Bild.\n" if text else "de.utf8=Nur Deutsch.\n")
    (root / "food" / "orphan.txt").write_text("An orphan description.\n")
    out = tmp_path / "out"
    assert main(["data", "tuxpaint", str(out), "--root", str(root), "--size", "24", "--workers", "1"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["images"] == 3 and stats["without_text"] == 1 and stats["without_image"] == 1
    rows = [json.loads(line) for f in ("train.jsonl", "heldout.jsonl") for line in (out / f).read_text().splitlines()]
    cat = next(r for r in rows if r["label"] == "cat")
    assert cat["captions"][0] == "A sleepy cat." and cat["subgroup"] == "animals/mammals"
    with Image.open(out / cat["image"]) as img:
        assert img.size == (24, 24) and img.getpixel((0, 0))[3] == 0  # fitted into a transparent square
    assert main(["data", "tuxpaint", str(out), "--root", str(tmp_path / "missing")]) == 2


def test_tuxpaint_helpers(tmp_path):
    assert label_of("025quarter") == "quarter" and label_of("j_outline") == "j outline" and label_of("gift2") == "gift"
    (tmp_path / "t.txt").write_text("\nach.utf8=x\nThe letter j.\n")
    assert english_description(tmp_path / "t.txt") == "The letter j."


def test_subgroup_split_holds_out_about_a_fifth():
    subs = [f"s{i % 10}" for i in range(1000)] + [None] * 50
    held = split_subgroups(subs)
    share = sum(s in held for s in subs) / 1000
    assert 0.2 <= share < 0.3 and None not in held
