"""The demo end to end, shortened (fewer images and steps) but through the same code path as `make demo`."""

from __future__ import annotations

import json

import pytest

from clipforge.demo.job import DemoOptions, _train, _train_config, run_demo


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    opts = DemoOptions(out=str(out), quick=True, device="cpu")
    results = run_demo(opts)

    saved = json.loads((out / "results.json").read_text())
    assert saved["zeroshot"] == results["zeroshot"]
    for name in ("emoji_heldout", "fashion_mnist"):
        top1 = saved["zeroshot"][name]["top1"]
        assert 0.0 <= top1 <= 1.0
    assert (out / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert (out / "index").is_dir() and any((out / "index").iterdir())
    assert (out / "train" / "final" / "model.safetensors").is_file()

    # A second run reuses the finished training run instead of training again.
    cfg = _train_config(opts, out / "emoji", cuda=False)
    final, info = _train(opts, cfg)
    assert info == {"reused": True}
    assert final == out / "train" / "final"
