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


def test_off_a_terminal_training_prints_one_plain_line_per_log_step(tmp_path, capsys):
    table = write_png_pairs(tmp_path / "data", 24)
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(train=table))
    run_dir = tmp_path / "run"
    assert main(["train", str(config), f"run_dir={run_dir}", "log.progress=true"]) == 0  # stdout: captured, no tty
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]  # every log.every_steps, step/total
    for line in lines:
        for part in ("loss ", "scale ", " samples/s", "data wait ", "MFU n/a", "ETA "):
            assert part in line, (part, line)
    assert lines[-1].endswith("ETA 0s") and "\x1b" not in "".join(lines)  # plain text, no bar escapes


def test_resume_from_the_run_directory_reads_its_saved_config_and_takes_overrides(tmp_path, capsys):
    table = write_png_pairs(tmp_path / "data", 24)
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(train=table))
    run_dir = tmp_path / "run"
    assert main(["train", str(config), f"run_dir={run_dir}", "optim.lr=2e-3"]) == 0
    config.write_text("steps: 1\n")  # the YAML changed since: a resumed run must not read it
    capsys.readouterr()

    assert main(["train", "--resume", str(run_dir), "steps=6"]) == 0
    out = capsys.readouterr().out
    assert f"resumed from step 4 ({run_dir / 'checkpoints' / 'step_00000004.pt'})" in out
    assert "trained 6 steps" in out
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    saved = (run_dir / "config.yaml").read_text()
    assert "steps: 6" in saved and "lr: 0.002" in saved  # the saved config, with the override after --resume

    # The YAML form: overrides after --resume latest are overrides, and the run's saved config is what is read.
    assert main(["train", str(config), f"run_dir={run_dir}", "--resume", "latest", "steps=8"]) == 0
    out = capsys.readouterr().out
    assert "resumed from step 6" in out and "trained 8 steps" in out


def test_resume_without_a_config_or_a_run_says_what_to_give(tmp_path, capsys):
    assert main(["train"]) == 2
    assert "clipforge train --resume RUN_DIR" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert f"no config.yaml in {tmp_path}" in capsys.readouterr().err
