import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from eval_toy import COLORS, color_pipeline, write_color_emoji_set

from clipforge.cli import main
from clipforge.eval import datasets, report, suite
from clipforge.eval.datasets import DatasetConfig, SourceMissing, load_classification


def _no_animal_mnist(monkeypatch):
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)


def test_emoji_suite_exact_and_missing_sources_skip_with_hint(tmp_path, monkeypatch):
    write_color_emoji_set(tmp_path / "emoji")
    _no_animal_mnist(monkeypatch)
    cfg = suite.SuiteConfig(name="full", emoji_root=str(tmp_path / "emoji"), fashion_mnist_dir=str(tmp_path / "none"))
    result = suite.run_suite(color_pipeline(), cfg)
    m = result.metrics
    assert m["zeroshot.emoji_heldout.top1"] == 1.0
    assert m["zeroshot.emoji_heldout.n_classes"] == 5
    assert m["retrieval.emoji_heldout.image_to_text_R@1"] == 1.0
    assert m["retrieval.emoji_heldout.text_to_image_R@1"] == 1.0
    assert m["retrieval.emoji_heldout_subgroups.n_texts"] == 10  # the malformed row was skipped
    assert set(result.skipped) == {
        "zeroshot.fashion_mnist", "linear_probe.fashion_mnist", "zeroshot.animal_mnist", "linear_probe.animal_mnist"
    }  # fmt: skip
    assert "apt-get install dataset-fashion-mnist" in result.skipped["zeroshot.fashion_mnist"]
    assert "pip install --no-deps animal-mnist==0.4" in result.skipped["zeroshot.animal_mnist"]
    assert all("\n" not in reason for reason in result.skipped.values())
    nested = result.to_json()
    assert nested["zeroshot"]["emoji_heldout"]["top1"] == 1.0
    assert "emoji" in nested["sources"]["zeroshot.emoji_heldout"]


def test_missing_emoji_set_is_a_skip(tmp_path):
    cfg = suite.SuiteConfig(name="emoji", emoji_root=str(tmp_path / "nowhere"))
    result = suite.run_suite(color_pipeline(), cfg)
    assert result.metrics == {}
    assert "clipforge data emoji" in result.skipped["zeroshot.emoji_heldout"]


def test_folder_classes_and_limit(tmp_path):
    from PIL import Image

    for name in ("blue", "red", "white"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (10, 10), COLORS[name]).save(tmp_path / name / f"{i}.png")
    (tmp_path / "white" / "broken.png").write_bytes(b"not a png")
    cfg = suite.SuiteConfig(templates="single")
    result = suite.run_benchmarks(color_pipeline(), [suite.folder_benchmark(str(tmp_path))], cfg)
    key = f"zeroshot.{tmp_path.name}"
    assert result.metrics[f"{key}.top1"] == 1.0
    assert result.metrics[f"{key}.n_images"] == 9  # the broken file is skipped and counted in the log
    data = load_classification(DatasetConfig(kind="folders", path=str(tmp_path), limit=4))
    assert data.classnames == ["blue", "red", "white"] and len(data.labels) == 4
    assert sorted(set(data.labels)) == [0, 1, 2]  # evenly spaced: every class keeps a share


def test_suite_feature_cache_embeds_each_image_set_once(tmp_path):
    from clipforge.eval import zeroshot

    write_color_emoji_set(tmp_path / "emoji")
    pipe = color_pipeline()
    calls = []
    encode = pipe.model.encode_image
    pipe.model.encode_image = lambda x: calls.append(len(x)) or encode(x)
    cfg = zeroshot.ZeroShotConfig(DatasetConfig(kind="jsonl", path=str(tmp_path / "emoji" / "heldout.jsonl")))
    cache = {}
    first = zeroshot.run_detailed(pipe, cfg, cache).metrics()
    second = zeroshot.run_detailed(pipe, cfg, cache).metrics()
    assert calls == [5] and first == second


def test_idx_reader_and_fashion_mnist_names(tmp_path):
    import gzip
    import struct

    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBBIII", 0, 8, 3, 2, 28, 28) + images.tobytes())
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBBI", 0, 8, 1, 2) + bytes([9, 0]))
    data = load_classification(DatasetConfig(kind="fashion-mnist", path=str(tmp_path)))
    assert data.labels == [9, 0] and data.classnames[0] == "T-shirt/top" and data.classnames[9] == "Ankle boot"
    assert np.array_equal(np.asarray(data.images.load(0))[..., 0], images[0])
    with pytest.raises(SourceMissing, match="Fashion-MNIST"):
        load_classification(DatasetConfig(kind="fashion-mnist", path=str(tmp_path), split="train"))


@pytest.mark.skipif(not Path(datasets.FASHION_MNIST_DIR).is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split():
    images, labels = datasets.fashion_mnist("", "test")
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10


def test_animal_mnist_split_reads_pickles_without_import():
    try:
        datasets.animal_mnist_files()
    except SourceMissing:
        pytest.skip("animal-mnist not installed")
    images, labels = datasets.animal_mnist("test")
    assert images.shape == (2000, 28, 28) and np.bincount(labels).tolist() == [200] * 10
    train_images, _ = datasets.animal_mnist("train")
    assert len(train_images) == 8000
    import sys

    assert "tensorflow" not in sys.modules


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.ids, self.errors = [], set(), []

    def handle_starttag(self, tag, attrs):
        if tag not in {"meta", "img", "br", "rect", "line", "circle", "polyline", "link"}:
            self.stack.append(tag)
        self.ids.update(v for k, v in attrs if k == "id")

    def handle_startendtag(self, tag, attrs):
        self.ids.update(v for k, v in attrs if k == "id")

    def handle_endtag(self, tag):
        if tag in {"rect", "line", "circle", "polyline"}:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_report_is_valid_self_contained_html_with_every_section(tmp_path):
    write_color_emoji_set(tmp_path / "emoji")
    cfg = suite.SuiteConfig(name="emoji", emoji_root=str(tmp_path / "emoji"))
    result = suite.run_suite(color_pipeline(), cfg)
    result.skipped["zeroshot.fashion_mnist"] = "Fashion-MNIST not found; install it"
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0, "lr": 0.1}\nnot json\n{"step": 2, "loss": 1.5, "note": "x"}\n')
    rows = report.read_metrics_jsonl(metrics)
    assert [r["step"] for r in rows] == [1, 2]
    path = report.write_report(tmp_path / "r.html", result, meta={"seed": 0, "steps": 2}, metrics_rows=rows,
                               run_config={"seed": 0, "model": "tiny-vit"})  # fmt: skip
    html = path.read_text()
    parser = _Tags()
    parser.feed(html)
    assert parser.errors == [] and parser.stack == []
    assert {"run", "curves", "benchmarks", "confusion", "examples", "retrieval", "config"} <= parser.ids
    assert "<script" not in html and not re.search(r'(src|href)="(?!data:)', html)  # nothing external
    assert html.count("data:image/png;base64,") >= 5 * 2 * 4  # thumbnails in the retrieval grids
    assert "zeroshot.fashion_mnist: Fashion-MNIST not found" in html and "tiny-vit" in html and ">loss<" in html


def test_cli_suite_writes_results_and_report(tmp_path, monkeypatch):
    write_color_emoji_set(tmp_path / "emoji")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 10, "loss": 1.0}\n')
    train = tmp_path / "train.jsonl"
    train.write_text('{"image": "images/0000.png", "captions": ["red"], "label": "red"}\n')
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "0000.png").write_bytes((tmp_path / "emoji" / "images" / "0000.png").read_bytes())
    (run_dir / "config.yaml").write_text(f"seed: 3\nsteps: 10\ndata:\n  train: {train}\n")
    monkeypatch.setattr("clipforge.eval.job.load", lambda ckpt, device, precision="fp32": color_pipeline())
    _no_animal_mnist(monkeypatch)
    out = tmp_path / "out"
    rc = main(["eval", str(tmp_path / "ckpt"), "suite.name=demo", f"suite.emoji_root={tmp_path / 'emoji'}",
               f"suite.fashion_mnist_dir={tmp_path / 'none'}", f"out_dir={out}", f"run_dir={run_dir}"])  # fmt: skip
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["zeroshot"]["emoji_heldout"]["top1"] == 1.0
    assert results["meta"]["train seed"] == 3 and results["meta"]["train steps"] == 10 and "animal" in results["skipped"]["zeroshot.animal_mnist"]
    assert results["meta"]["classes also in training data · zeroshot.emoji_heldout"] == "1 of 5"  # leak shown
    assert "seed" in (out / "report.html").read_text()
    assert main(["eval", "suite.name=nope", str(tmp_path)]) == 2


def test_encode_texts_keeps_input_order_when_batching_by_length():
    import torch

    from clipforge.eval.features import encode_texts

    pipe = color_pipeline()
    texts = ["red green blue", "red", "green blue", "cyan", "white black red yellow", "magenta red"]
    batched = encode_texts(pipe, texts, batch_size=2)
    one_by_one = torch.cat([encode_texts(pipe, [t]) for t in texts])
    assert torch.allclose(batched, one_by_one, atol=1e-6)


def test_zeroshot_hook_for_a_jsonl_dataset(tmp_path):
    from clipforge.eval.zeroshot import make_zeroshot_hook_for

    write_color_emoji_set(tmp_path / "emoji")
    hook = make_zeroshot_hook_for(DatasetConfig(kind="jsonl", path=str(tmp_path / "emoji" / "heldout.jsonl")))
    assert hook(color_pipeline()) == {"zeroshot.top1": 1.0, "zeroshot.top5": 1.0, "zeroshot.mean_per_class": 1.0}
