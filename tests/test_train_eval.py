"""In-training evaluation from the run config: ``eval_every`` and ``eval.data`` in YAML or as key=value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_support import write_png_pairs

import clipforge
from clipforge.cli import main
from clipforge.errors import UserError
from clipforge.eval.datasets import DatasetConfig, SourceMissing, check_available
from clipforge.eval.zeroshot import make_zeroshot_hook_for
from clipforge.train.config import load_train_config
from clipforge.train.setup import config_eval_fn

CONFIG = """
model: test-vit
data:
  train: {train}
  caption_column: captions
  workers: 0
batch_size: 8
steps: 4
device: cpu
eval_every: 2
eval:
  templates: single
optim:
  lr: 1.0e-3
  warmup_steps: 1
checkpoint:
  every_steps: 0
log:
  every_steps: 1
  tensorboard: false
  progress: false
"""


def _labelled(root: Path, n: int) -> Path:
    """``n`` of the training images, each labelled "thing K" (7 classes), as an eval table."""
    rows = [json.dumps({"image": f"img{i:03d}.png", "label": f"thing {i % 7}"}) for i in range(n)]
    path = root / "labelled.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_eval_every_from_yaml_and_key_value_logs_zeroshot_metrics(tmp_path, one_thread):
    train = write_png_pairs(tmp_path / "data", 16)
    labelled = _labelled(tmp_path / "data", 14)
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(train=train))
    run_dir = tmp_path / "run"
    # eval_every from the YAML; eval.data (and a limit) as key=value overrides.
    assert main(["train", str(config), f"run_dir={run_dir}", f"eval.data={labelled}", "eval.limit=10"]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval.zeroshot.top1" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for r in evals:
        assert 0.0 <= r["eval.zeroshot.top1"] <= r["eval.zeroshot.top5"] <= 1.0
    # The last evaluation saw the final model: the same hook run on the exported checkpoint gives its numbers.
    hook = make_zeroshot_hook_for(DatasetConfig(kind="jsonl", path=str(labelled), limit=10), "single")
    with torch.no_grad():
        again = hook(clipforge.load(run_dir / "final"))
    assert again == {k.removeprefix("eval."): v for k, v in evals[-1].items() if k.startswith("eval.")}
    assert "data: " + str(labelled) in (run_dir / "config.yaml").read_text()  # the resolved config has it


def test_eval_every_without_data_is_a_config_error(tmp_path, capsys):
    train = write_png_pairs(tmp_path / "data", 4)
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(train=train))
    assert main(["train", str(config), f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "eval_every=2 has nothing to evaluate" in err and "eval.data=" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # failed before training


def test_eval_data_must_exist_and_eval_every_zero_means_none(tmp_path):
    with pytest.raises(UserError, match="eval.data=.*nope.jsonl: .* no such file or folder"):
        config_eval_fn(load_train_config(None, ["eval_every=5", f"eval.data={tmp_path / 'nope.jsonl'}"]))
    assert config_eval_fn(load_train_config(None, [f"eval.data={tmp_path}"])) is None
    assert config_eval_fn(load_train_config(None, ["eval_every=5", f"eval.data={tmp_path}"])) is not None
    missing = DatasetConfig(kind="fashion-mnist", path=str(tmp_path))  # an MNIST set that is not there fails now
    with pytest.raises(SourceMissing, match="Fashion-MNIST not found"):
        check_available(missing)
    with pytest.raises(UserError, match="eval_every"):
        load_train_config(None, ["eval_every=-1"])
    with pytest.raises(UserError, match="eval.dat"):  # a typo gets a hint
        load_train_config(None, ["eval.date=x"])
