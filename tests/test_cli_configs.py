"""The experiment verbs (eval, embed, index, moderate) take one typed config: defaults <- YAML <- KEY=VALUE."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from eval_toy import write_color_emoji_set
from search_helpers import make_checkpoint

from clipforge.cli import main
from clipforge.commands.config_args import split_items
from clipforge.errors import UserError
from clipforge.eval.config import EvalConfig, SuiteConfig
from clipforge.index.config import EmbedConfig, IndexConfig, ModerateConfig
from clipforge.utils.configs import load_resolved, resolve_config

VERBS = {"eval": EvalConfig, "embed": EmbedConfig, "index": IndexConfig, "moderate": ModerateConfig}


def test_the_same_eval_from_key_values_and_from_a_yaml_writes_the_same_results(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    write_color_emoji_set(tmp_path / "emoji")
    keys = {"suite.name": "emoji", "suite.emoji_root": str(tmp_path / "emoji"), "suite.templates": "single",
            "suite.limit": 4, "suite.batch_size": 8, "report": False}  # fmt: skip
    assert main(["eval", str(ckpt), *(f"{k}={v}" for k, v in keys.items()), f"out_dir={tmp_path / 'a'}"]) == 0
    nested: dict = {"checkpoint": str(ckpt), "report": False, "suite": {}}
    for key, value in keys.items():
        if key.startswith("suite."):
            nested["suite"][key.removeprefix("suite.")] = value
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(nested))
    assert main(["eval", "--config", str(tmp_path / "eval.yaml"), f"out_dir={tmp_path / 'b'}"]) == 0
    a, b = (tmp_path / "a" / "results.json").read_text(), (tmp_path / "b" / "results.json").read_text()
    assert a == b and '"top1"' in a and '"image_to_text_R@1"' in a
    # The resolved config next to the results runs the same evaluation again.
    again = load_resolved(EvalConfig, tmp_path / "a" / "eval_config.yaml")
    assert again.suite == SuiteConfig(name="emoji", emoji_root=str(tmp_path / "emoji"), templates="single", limit=4,
                                      batch_size=8, progress=True)  # fmt: skip
    assert main(["eval", "--config", str(tmp_path / "a" / "eval_config.yaml"), f"out_dir={tmp_path / 'c'}"]) == 0
    assert (tmp_path / "c" / "results.json").read_text() == a
    assert (tmp_path / "a" / "timings.json").is_file() and not (tmp_path / "a" / "report.html").exists()


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_print_config_prints_what_config_reads_back(verb, tmp_path, capsys):
    assert main([verb, "first", "--print-config"]) == 0
    (tmp_path / "printed.yaml").write_text(capsys.readouterr().out)
    cfg = resolve_config(VERBS[verb], tmp_path / "printed.yaml")
    assert cfg == split_and_resolve(VERBS[verb], verb, ["first"])
    assert cfg != VERBS[verb]() and "first" in vars(cfg).values()  # the positional set the verb's first key


def split_and_resolve(cls, verb, items):
    positionals = {"eval": ("checkpoint",), "embed": ("checkpoint",), "index": ("embeddings",),
                   "moderate": ("checkpoint",)}[verb]  # fmt: skip
    return resolve_config(cls, None, split_items(items, positionals))


def test_typo_and_range_errors_name_the_key(capsys):
    assert main(["embed", "ckpt", "src", "out", "batch_sise=3", "--print-config"]) == 2
    assert "did you mean batch_size" in capsys.readouterr().err
    assert main(["moderate", "ckpt", "src", "precision=1.5", "--print-config"]) == 2
    assert "precision must be in (0, 1]" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        EmbedConfig(batch_size=0)  # the Python API gets the same checks
    with pytest.raises(ValueError, match="limit must be >= 1"):
        SuiteConfig(limit=0)


def test_retired_flags_say_which_key_to_write(capsys):
    assert main(["eval", "ckpt", "--limit", "5"]) == 2
    assert "--limit is now a config key: write suite.limit=5" in capsys.readouterr().err
    assert main(["embed", "ckpt", "src", "--out=runs/emb"]) == 2
    assert "write out=runs/emb" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # anything else: argparse's own message
        main(["index", "emb", "--no-such-flag"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_positionals_and_overrides_in_any_order(capsys):
    assert split_items(["runs/lr=1e-3/final", "src", "batch_size=8"], ("checkpoint", "src")) == [
        'checkpoint="runs/lr=1e-3/final"', 'src="src"', "batch_size=8"]
    assert main(["embed", "--print-config", "ck", "batch_size=8", "1.5", "true"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["checkpoint"] == "ck" and printed["src"] == "1.5" and printed["out"] == "true"  # paths stay text
    assert printed["batch_size"] == 8
    with pytest.raises(UserError, match="takes 1 positionals"):
        split_items(["a", "b"], ("checkpoint",))


def test_missing_required_key_is_a_user_error(tmp_path, capsys):
    assert main(["embed", "ckpt"]) == 2
    assert "src is not set" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert "no checkpoint to evaluate" in capsys.readouterr().err


def test_help_of_every_verb_does_not_import_torch():
    code = ("import sys\nfrom clipforge.cli import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in ('torch', 'faiss', 'fastapi') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
