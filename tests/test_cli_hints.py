"""Hints that point the right way: a run directory given for a checkpoint, a folder given to convert, a global
--debug, and a Hugging Face name looked up without a network (answered in well under a second, not after the
hub client's retries)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from clipforge.cli import main
from clipforge.errors import UserError
from clipforge.pretrained import hub_reachable, resolve_pretrained


def _run_dir(root, finished: bool):
    (root / "checkpoints").mkdir(parents=True)
    (root / "config.yaml").write_text("steps: 2\n")
    if finished:
        (root / "final").mkdir()
        (root / "final" / "config.json").write_text("{}")
    return root


def test_eval_of_a_run_directory_points_at_its_final_model(tmp_path, capsys):
    run = _run_dir(tmp_path / "run", finished=True)
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"its model is {run / 'final'}" in err and "convert foreign weights" not in err

    unfinished = _run_dir(tmp_path / "unfinished", finished=False)
    assert main(["eval", str(unfinished)]) == 2
    assert f"clipforge train --resume {unfinished}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: None, "no weights file in it"),
        (lambda d: (d / "ViT-B-32.pt").write_bytes(b""), "pass one of its files, e.g. {d}/ViT-B-32.pt"),
        (lambda d: (d / "config.json").write_text(json.dumps({"model_type": "clip"})), "convert --from hf {d}"),
        (lambda d: [(d / n).write_text("{}") for n in ("config.json", "model.safetensors")], "already a clipforge"),
        (lambda d: _run_dir(d / "x", True) and None, None),
    ],
)
def test_convert_of_a_folder_says_what_the_folder_is(tmp_path, capsys, make, expected):
    folder = tmp_path / "src"
    folder.mkdir()
    make(folder)
    if expected is None:  # a training run: its final model
        folder = folder / "x"
        expected = f"its model {folder}/final is a clipforge checkpoint already"
    assert main(["convert", "--from", "openai", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert expected.format(d=folder) in err and "no such file" not in err


@pytest.mark.parametrize("argv", [["--debug", "eval", "nothere"], ["eval", "nothere", "--debug"]])
def test_debug_before_or_after_the_verb_shows_the_traceback(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "known pretrained name" in err
    assert main(["eval", "nothere"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_an_unreachable_hub_is_detected_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    started = time.perf_counter()
    with pytest.raises(UserError, match="not available offline .the hub is not reachable") as info:
        resolve_pretrained("openai/clip-vit-base-patch32", cache_dir=tmp_path, hub_cache_dir=tmp_path)
    assert time.perf_counter() - started < 5.0  # the hub client's own retries took ~25 s here
    assert "config.json" in str(info.value)


def test_a_listening_hub_counts_as_reachable(monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_reachable()
