"""`clipforge train` end to end on real files: trained vocabulary, final model loadable with clipforge.load."""

from __future__ import annotations

import json

import torch
from train_support import write_png_pairs

import clipforge
from clipforge.cli import main

CONFIG = """
model: test-vit
tokenizer: 600
data:
  train: {train}
  caption_column: captions
  workers: 0
batch_size: 8
steps: 4
device: cpu
optim:
  lr: 1.0e-3
  warmup_steps: 1
checkpoint:
  every_steps: 2
  keep_last: 1
log:
  every_steps: 2
  tensorboard: false
  progress: false
"""


def test_train_command_writes_a_loadable_model(tmp_path, capsys):
    table = write_png_pairs(tmp_path / "data", 24)
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(train=table))
    run_dir = tmp_path / "run"
    assert main(["train", str(config), f"run_dir={run_dir}", "optim.lr=2e-3"]) == 0
    assert "final model" in capsys.readouterr().out
    assert "lr: 0.002" in (run_dir / "config.yaml").read_text()  # the resolved config, override included
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [2, 4]

    pipe = clipforge.load(run_dir / "final")
    assert pipe.config.tokenizer.kind == "file"
    assert pipe.config.model.text.vocab_size == pipe.config.tokenizer.vocab_size <= 600
    ids = pipe.tokenizer(["picture number 3", "thing 5"])
    assert ids.shape == (2, pipe.config.model.text.context_length)
    from PIL import Image

    pixels = pipe.preprocess(Image.open(tmp_path / "data" / "img003.png")).unsqueeze(0)
    with torch.no_grad():
        assert pipe.model.encode_image(pixels).shape == (1, pipe.config.model.embed_dim)
        assert pipe.model.encode_text(ids).shape == (2, pipe.config.model.embed_dim)

    # Resuming a finished run is a no-op; the vocabulary is reused, not retrained.
    vocab = (run_dir / "tokenizer.json").read_text()
    assert main(["train", str(config), f"run_dir={run_dir}", "optim.lr=2e-3", "--resume", "latest"]) == 0
    assert (run_dir / "tokenizer.json").read_text() == vocab


def test_train_command_reports_config_errors_in_one_line(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("optim:\n  lr: 1.0e-3\n")
    assert main(["train", str(config), "optim.warmup=5"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'optim.warmup'" in err and "optim.warmup_steps" in err
