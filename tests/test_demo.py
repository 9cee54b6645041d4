"""The demo end to end, shortened (fewer images and steps) but through the same code path as `make demo`."""

from __future__ import annotations

import json

import pytest

from clipforge.demo.config import demo_train_config, load_demo_config
from clipforge.demo.job import run_demo, train


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    cfg = load_demo_config(None, [f"out={out}", "device=cpu"], quick=True)
    results = run_demo(cfg)

    saved = json.loads((out / "results.json").read_text())
    assert saved["zeroshot"] == results["zeroshot"]
    assert 0.0 <= saved["zeroshot"]["emoji_heldout"]["top1"] <= 1.0
    chosen = saved["templates"]["zeroshot.emoji_heldout"]
    assert "val.jsonl" in chosen["chosen_on"] and chosen["templates"] == max(
        chosen["val_top1"], key=chosen["val_top1"].get
    )
    if "fashion_mnist" in saved["zeroshot"]:
        assert 0.0 <= saved["zeroshot"]["fashion_mnist"]["top1"] <= 1.0
    else:  # Debian's dataset-fashion-mnist is not installed: a skip with its install hint, not a failure
        assert "apt-get install dataset-fashion-mnist" in saved["skipped"]["zeroshot.fashion_mnist"]
    search = saved["search"]
    assert len(search["queries"]) == 20 and 0.0 <= search["mean"] <= 1.0
    assert all(len(q["top"]) == 5 for q in search["queries"])
    assert saved["meta"]["search precision@5 (20 queries)"] == round(search["mean"], 3)
    assert (out / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert "precision@5 · a red heart" in (out / "report.html").read_text()
    assert (out / "index").is_dir() and any((out / "index").iterdir())
    assert (out / "train" / "final" / "model.safetensors").is_file()
    # The recipe trains on every non-test emoji class (train + validation classes), without icon sets.
    assert demo_train_config(cfg, out / "emoji", cuda=False).data.train == str(out / "emoji" / "trainval.jsonl")
    assert not (out / "emoji" / "icons.jsonl").exists()

    # A second run reuses the finished training run instead of training again.
    final, info = train(cfg, demo_train_config(cfg, out / "emoji", cuda=False), cuda=False)
    assert info == {"reused": True}
    assert final == out / "train" / "final"
