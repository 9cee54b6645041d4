"""Moderation: threshold calibration to a precision, concept files, and the CLI report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from search_helpers import build_demo

from clipforge.cli import main
from clipforge.errors import UserError
from clipforge.index.config import ModerateConfig
from clipforge.index.moderate import Concept, Moderator, calibrate, read_concepts
from clipforge.utils.configs import load_resolved


def test_calibrate_picks_lowest_threshold_reaching_precision():
    scores = np.array([0.10, 0.20, 0.30, 0.35, 0.40, 0.50, 0.60])
    labels = np.array([0, 0, 1, 0, 1, 1, 1], bool)
    cal = calibrate("c", scores, labels, precision=0.75)
    # t=0.30: 4 of 5 flagged are positive (0.8 >= 0.75); t=0.20 gives 4/6. The lowest reaching it is 0.30.
    assert cal.reachable and cal.threshold == pytest.approx(0.30)
    assert cal.precision == pytest.approx(0.8) and cal.recall == 1.0
    strict = calibrate("c", scores, labels, precision=1.0)
    assert strict.threshold == pytest.approx(0.40) and strict.recall == 0.75


def test_calibrate_unreachable_is_reported():
    scores = np.array([0.9, 0.1, 0.5])
    labels = np.array([0, 1, 0], bool)
    cal = calibrate("weapon", scores, labels, precision=0.9)
    assert not cal.reachable and cal.threshold is None and "unreachable" in cal.note
    none = calibrate("weapon", scores, np.zeros(3, bool), precision=0.9)
    assert not none.reachable and "no positive" in none.note


def test_read_concepts_validates(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("concepts:\n  - name: weapon\n    prompts: [a photo of a weapon, a gun]\n    threshold: 0.3\n"
                    "  - name: cat\n")
    concepts = read_concepts(good)
    assert concepts[0] == Concept("weapon", ("a photo of a weapon", "a gun"), 0.3)
    assert concepts[1].prompts == ("a photo of a cat",) and concepts[1].threshold is None
    for text, needle in [("foo: 1", "concepts"), ("concepts:\n  - prompts: [x]", "name"),
                         ("concepts:\n  - name: a\n    threshold: high", "number"),
                         ("concepts:\n  - name: a\n  - name: a", "unique")]:
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(UserError, match=needle):
            read_concepts(tmp_path / "bad.yaml")


def test_moderator_judges_against_thresholds():
    embed = lambda texts: np.array([[1.0, 0.0] if "a" in t else [0.0, 1.0] for t in texts], np.float32)
    m = Moderator([Concept("a", ("a",), 0.5), Concept("b", ("b",), 0.5), Concept("c", ("a",), None)], embed)
    verdict = m.judge(np.array([0.8, 0.6], np.float32))
    assert verdict["flagged"] and [c["flagged"] for c in verdict["concepts"]] == [True, True, False]
    assert not m.judge(np.array([0.0, -1.0]))["flagged"]


def test_moderate_cli_calibrates_and_reports(tmp_path):
    demo = build_demo(tmp_path, n=12, bad=0)
    col = demo["col"]
    (tmp_path / "concepts.yaml").write_text("concepts:\n  - name: square\n    prompts: [a photo of a square]\n"
                                            "  - name: dragon\n    prompts: [a dragon]\n    threshold: 0.99\n")
    # Label every image for "square" (sidecar captions say which shape it is); "dragon" has no positives.
    rows = [("path", "concept", "label")]
    for png in sorted(col.rglob("*.png")):
        rows.append((f"col/{png.relative_to(col).as_posix()}", "square", "1" if "square" in png.with_suffix(".txt").read_text() else "0"))
        rows.append((f"col/{png.relative_to(col).as_posix()}", "dragon", "0"))
    with open(tmp_path / "labelled.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    out = tmp_path / "report"
    assert main(["moderate", str(demo["ckpt"]), str(col), f"concepts={tmp_path / 'concepts.yaml'}",
                 f"labelled={tmp_path / 'labelled.csv'}", "precision=0.5", f"out={out}", "workers=0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert load_resolved(ModerateConfig, out / "moderate_config.yaml").precision == 0.5
    cal = report["calibration"]["square"]
    assert cal["reachable"] and cal["precision"] >= 0.5
    assert report["calibration"]["dragon"]["reachable"] is False
    square = next(c for c in report["concepts"] if c["name"] == "square")
    assert square["threshold"] == pytest.approx(cal["threshold"])
    assert report["images"] == 12
    flagged = [r for r in report["flagged"] if r["concept"] == "square"]
    assert flagged and all(r["score"] >= cal["threshold"] - 1e-6 for r in flagged)  # scores rounded to 6 places
    with open(out / "report.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(report["flagged"])
    assert read_concepts(out / "concepts.yaml")[0].threshold == pytest.approx(cal["threshold"])
    # An embedding directory is accepted as the source: same keys, nothing re-embedded.
    assert main(["moderate", str(demo["ckpt"]), str(demo["emb"]), f"concepts={out / 'concepts.yaml'}",
                 f"out={tmp_path / 'report2'}"]) == 0
    again = json.loads((tmp_path / "report2" / "report.json").read_text())
    # Stored vectors are float16 (~1e-3 off): the image that set the threshold sits exactly on it, so compare
    # the flags away from the boundary.
    clear = lambda rows: {r["path"] for r in rows if abs(r["score"] - r["threshold"]) > 2e-3}
    assert clear(again["flagged"]) == clear(report["flagged"]) and len(clear(report["flagged"])) >= 2
