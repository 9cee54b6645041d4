"""Docs that run: every shell command in README.md and docs/*.md is executed here, in a scratch directory laid
out as the docs assume (a tiny random checkpoint at every checkpoint path they name, small image folders, the
emoji set's layout), so a wrong path, a renamed key or a stale flag in the docs fails this test.

Commands that need downloaded weights, GPUs, a long run or a server that does not exit are not run: they are
listed in SKIP with the reason (and the test that covers them instead). Long training commands run with a few
steps appended (SHORTEN): the keys and paths they use are checked, not the hours.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from pathlib import Path

import pytest
from eval_toy import write_color_emoji_set
from search_helpers import draw, make_checkpoint, make_collection

from clipforge.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console", ""}
PROGRAMS = ("clipforge", ".venv/bin/clipforge", "make", "torchrun", "python", "PYTHONPATH=")

# command prefix -> why it is not run here
SKIP = {
    "make demo": "the full CPU demo (~7 min); the lead runs it, tests/test_demo.py runs its --quick variant",
    "make test": "the test suite itself",
    "torchrun": "several processes / GPUs; tests/test_train_distributed.py runs 2 gloo processes",
    ".venv/bin/clipforge serve": "a server that does not exit; tests/test_search_api.py and test_search_browser.py",
    "clipforge serve": "a server that does not exit; tests/test_search_api.py and test_search_browser.py",
    "clipforge convert --from openai ViT-B-32.pt": "OpenAI's downloaded weights; tests/test_convert_openai.py",
    "clipforge convert --from open_clip": "OpenCLIP's downloaded weights; tests/test_convert_open_clip.py, "
                                          "test_convert_mobileclip.py",
    "clipforge export --reparameterize runs/student/final": "needs a trained MobileCLIP student; "
                                                           "tests/test_mobileclip.py",
    "PYTHONPATH=src python benchmarks/": "benchmarks are measurements (minutes; some need the OpenCLIP + timm "
                                         "reference venv); each writes benchmarks/results/*.json + .md",
    "clipforge data emoji data/emoji": "renders ~20k SVGs (minutes); tests/test_data_emoji.py builds a small set",
    "clipforge data reinforce": "a teacher pass over the whole emoji set; tests/test_reinforce.py",
    "clipforge train configs/runs/tiny-emoji.yaml data.train=my_pairs.csv model=ViT-B-32":
        "ViT-B-32 at 224 px for 10k steps is a GPU run; --print-config of it runs below (docs/training.md)",
    "clipforge train configs/runs/tiny-emoji.yaml model=tiny-mobileclip": "distillation from a trained teacher; "
                                                                         "tests/test_train_distill.py",
    "clipforge train --resume runs/tiny-emoji": "resumes the demo-length run; the same form runs below on "
                                                "runs/quick (docs/training.md)",
    "clipforge eval CHECKPOINT zeroshot=[fashion-mnist]": "Debian's dataset-fashion-mnist (70k images); "
                                                          "tests/test_eval_suite_report.py reads it",
}
# command prefix -> arguments appended so a long run takes seconds
SHORTEN = {
    "clipforge train configs/runs/tiny-emoji.yaml": ["steps=2", "batch_size=8", "data.workers=0"],
    "clipforge train --resume runs/quick": ["steps=4", "batch_size=8", "data.workers=0"],
}
# Checkpoint paths the docs read; ckpt/b32 stands in for the output of the skipped OpenCLIP convert.
CHECKPOINT_PATHS = ("ckpt/vit-b-32", "ckpt/hf-b32", "ckpt/b32", "CKPT", "CHECKPOINT", "imported/ViT-B-32",
                    "runs/demo/train/final")


def doc_commands() -> list[tuple[str, int, str]]:
    """(file, line, command) for every command line in a shell code block (continuations joined)."""
    out = []
    for path in DOCS:
        text = path.read_text()
        for block in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            if block.group(1) not in SHELL_LANGS:
                continue
            first = text[: block.start(2)].count("\n") + 1
            pending, start = "", 0
            for i, line in enumerate(block.group(2).splitlines()):
                stripped = line.strip()
                if not pending and not stripped.startswith(PROGRAMS):
                    continue
                start = start if pending else first + i
                pending += " " + stripped.removesuffix("\\")
                if not stripped.endswith("\\"):
                    out.append((path.name, start, pending.strip()))
                    pending = ""
    return out


def _skip_reason(command: str) -> str | None:
    command = " ".join(command.split())  # the docs align columns with spaces
    return next((why for prefix, why in SKIP.items() if command.startswith(prefix)), None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A scratch directory with everything the docs' commands read."""
    root = tmp_path_factory.mktemp("docs")
    ckpt = make_checkpoint(root / "ckpt" / "vit-b-32")
    for name in CHECKPOINT_PATHS[1:]:
        make_checkpoint(root / name)
    assert ckpt.is_dir()
    make_collection(root / "photos", 8)
    make_collection(root / "uploads", 8, captions=False)
    for folder in ("my_dataset", "my_photos"):  # folder-per-class image sets
        for k, (colour, name) in enumerate((((220, 40, 40), "red"), ((40, 80, 220), "blue"))):
            (root / folder / name).mkdir(parents=True)
            for j in range(3):
                draw(colour, "circle", seed=k * 3 + j).save(root / folder / name / f"{j}.png")
    write_color_emoji_set(root / "data" / "emoji")
    (root / "concepts.yaml").write_text("concepts:\n  - name: red\n    prompts: [a red shape]\n")
    (root / "labelled.csv").write_text("path,concept,label\n" + "".join(
        f"{p.relative_to(root / 'uploads')},red,{int(i % 2 == 0)}\n"
        for i, p in enumerate(sorted((root / "uploads").rglob("*.png")))))
    pairs = sorted((root / "photos").rglob("*.png"))
    (root / "my_pairs.csv").write_text("image,caption\n" + "".join(f"{p},a shape\n" for p in pairs))
    # The recipe's training table, small: the emoji set's rows.
    rows = (root / "data" / "emoji" / "heldout.jsonl").read_text()
    (root / "data" / "emoji" / "trainval.jsonl").write_text(rows * 4)
    (root / "configs" / "runs").mkdir(parents=True)
    (root / "configs" / "runs" / "tiny-emoji.yaml").write_text((ROOT / "configs/runs/tiny-emoji.yaml").read_text())
    (root / "my-eval.yaml").write_text(f"checkpoint: {ckpt}\nzeroshot: [my_photos/]\n")
    # The HF folder the docs convert from: a tiny checkpoint exported as transformers writes it.
    assert main(["export", "--to", "hf", str(root / "ckpt" / "hf-b32"), "--out", str(root / "clip-vit-base-patch32")]) == 0
    return root


COMMANDS = doc_commands()


def test_the_docs_have_commands():
    files = {f for f, _, _ in COMMANDS}
    assert {"README.md", "search.md", "training.md", "evaluation.md", "convert.md"} <= files
    print(f"{len(COMMANDS)} commands in {len(files)} files; {sum(_skip_reason(c) is not None for _, _, c in COMMANDS)} "
          "listed in SKIP")


def test_every_skip_entry_still_names_a_command():
    unused = [p for p in SKIP if not any(" ".join(c.split()).startswith(p) for _, _, c in COMMANDS)]
    assert unused == [], "SKIP entries without a command in the docs: remove them"


@pytest.mark.parametrize("where,line,command", COMMANDS, ids=[f"{f}:{n}" for f, n, _ in COMMANDS])
def test_doc_command_runs(workdir, where, line, command, monkeypatch, capsys):
    reason = _skip_reason(command)
    if reason is not None:
        pytest.skip(reason)
    argv = shlex.split(command, comments=True)
    assert argv[0] in ("clipforge", ".venv/bin/clipforge"), f"{where}:{line}: no runner for {argv[0]}"
    argv = argv[1:] + next((extra for p, extra in SHORTEN.items() if command.startswith(p)), [])
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CLIPFORGE_CACHE", str(workdir / ".cache"))
    with contextlib.suppress(SystemExit):
        rc = main(argv)
    out = capsys.readouterr()
    assert rc == 0, f"{where}:{line}: `{command}` exited {rc}\n{out.err[-2000:]}"
