"""Structure figures, before and after: in-function imports, import cycles, the experiment verbs' flags.

"Before" is 52d1f47, the tree the one-config-tree / import-graph review read (its figures: 126 in-function
imports of clipforge modules, 98 argparse flags). The flag count is also taken at c946a38, the first commit
with those 98 ``add_argument`` calls (they stay 98 up to 52d1f47). "After" is HEAD. Each tree comes from
``git archive``, so uncommitted edits are not measured.

- In-function imports and cycles: tests/test_architecture.py's own reader (ast), pointed at each tree.
- Flags: every verb's parser built by that tree's own ``clipforge.cli.build_parser`` (in a subprocess), counting
  options other than --help/--debug; and the ``add_argument`` calls in src/ outside cli.py (the review's count).
- Eval from key=value and from a YAML: the same evaluation of a tiny random checkpoint on a miniature emoji
  set, once with every setting on the command line and once from a YAML file; the two results.json files are
  compared byte for byte (tests/test_cli_configs.py checks the same).

    .venv/bin/python benchmarks/structure.py

Writes benchmarks/results/structure.{json,md}.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_architecture as arch
from eval_toy import write_color_emoji_set
from search_helpers import make_checkpoint

from clipforge.cli import main

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
BEFORE = "52d1f47"
FIRST_98 = "c946a38"
VERBS = ("eval", "embed", "index", "moderate", "demo")

# Run in a subprocess with one tree's src first on sys.path: that tree's own parsers.
FLAGS = """
import argparse, json, sys
sys.path.insert(0, sys.argv[1])
import clipforge.cli as cli
assert cli.__file__.startswith(sys.argv[1]), cli.__file__
sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
out = {}
for verb, parser in sub.choices.items():
    flags = [a.option_strings[0] for a in parser._actions if a.option_strings and a.dest not in ("help", "debug")]
    out[verb] = {"flags": flags, "positionals": [a.dest for a in parser._actions if not a.option_strings]}
print(json.dumps(out))
"""


def checkout(rev: str, dest: Path) -> Path:
    """``rev``'s src/ unpacked under ``dest``; returns the src folder."""
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def import_figures(src: Path) -> dict:
    arch.SRC = src  # the reader's functions look the source folder up when called
    imports = arch.all_imports()
    own = {(i.module, i.line) for i in imports if i.in_function and i.target.split(".")[0] == arch.ROOT}
    out = {"in_function_import_statements": len(own)}
    for label, include in (("module_level", False), ("with_in_function", True)):
        graph = arch.module_graph(imports, include)
        out[f"cycles_{label}"] = {
            "subpackages": [list(c) for c in arch.cycles(arch.subpackage_graph(graph))],
            "modules": [list(c) for c in arch.cycles(graph)],
        }
    out["summary"] = arch.summary()
    return out


def add_argument_calls(src: Path) -> int:
    """``add_argument(...)`` calls in src/clipforge outside cli.py (the review's count of flags built by hand)."""
    n = 0
    for path in (src / "clipforge").rglob("*.py"):
        if path.name == "cli.py" and path.parent.name == "clipforge":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        n += sum(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and node.func.attr == "add_argument" for node in ast.walk(tree))  # fmt: skip
    return n


def flag_figures(src: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", FLAGS, str(src)], check=True, capture_output=True, text=True)
    parsers = json.loads(out.stdout)
    verbs = {v: parsers[v] for v in VERBS if v in parsers}
    return {
        "per_verb": verbs,
        "experiment_verb_flags": sum(len(v["flags"]) for v in verbs.values()),
        "all_verb_flags": sum(len(v["flags"]) for v in parsers.values()),
        "add_argument_calls": add_argument_calls(src),
    }


def eval_example(tmp: Path) -> dict:
    """The same eval from key=value overrides and from a YAML file: are the results.json files identical?"""
    ckpt = make_checkpoint(tmp / "ckpt")
    write_color_emoji_set(tmp / "emoji")
    keys = {"suite.name": "emoji", "suite.emoji_root": str(tmp / "emoji"), "suite.templates": "single",
            "suite.limit": 4, "suite.batch_size": 8, "report": False}  # fmt: skip
    argv = ["eval", str(ckpt), *(f"{k}={v}" for k, v in keys.items()), f"out_dir={tmp / 'from-keys'}"]
    nested: dict = {"checkpoint": str(ckpt), "report": False, "suite": {}}
    for key, value in keys.items():
        if key.startswith("suite."):
            nested["suite"][key.removeprefix("suite.")] = value
    (tmp / "eval.yaml").write_text(yaml.safe_dump(nested))
    argv_yaml = ["eval", "--config", str(tmp / "eval.yaml"), f"out_dir={tmp / 'from-yaml'}"]
    with contextlib.redirect_stdout(io.StringIO()):
        codes = [main(argv), main(argv_yaml)]
    texts = [(tmp / d / "results.json").read_bytes() for d in ("from-keys", "from-yaml")]
    results = json.loads(texts[0])
    short = lambda args: "clipforge " + " ".join(a.replace(str(tmp) + "/", "") for a in args)
    return {
        "exit_codes": codes,
        "from_keys": short(argv),
        "from_yaml": short(argv_yaml),
        "yaml": yaml.safe_dump(nested).replace(str(tmp) + "/", ""),
        "sha256": [hashlib.sha256(t).hexdigest() for t in texts],
        "identical": texts[0] == texts[1],
        "bytes": len(texts[0]),
        "zeroshot_top1": {k: v["top1"] for k, v in results.get("zeroshot", {}).items()},
    }


def markdown(res: dict) -> str:
    b, a = res["before"], res["after"]
    lines = [
        "# Structure: imports, cycles and flags before and after the one-config-tree work",
        "",
        f"Before: {res['before_rev']} (flags also at {res['first_98_rev']}, the first commit with the 98 flags). "
        f"After: {res['after_rev']}. Produced by `benchmarks/structure.py`.",
        "",
        "| measure | before | after |",
        "|---|---|---|",
        f"| in-function imports of clipforge modules (statements) | {b['imports']['in_function_import_statements']} "
        f"| {a['imports']['in_function_import_statements']} |",
    ]
    for label, name in (("module_level", "module-level imports"), ("with_in_function", "in-function included")):
        for kind in ("subpackages", "modules"):
            before, after = b["imports"][f"cycles_{label}"][kind], a["imports"][f"cycles_{label}"][kind]
            lines.append(f"| import cycles between {kind}, {name} | {len(before)} | {len(after)} |")
    lines += [
        f"| add_argument calls in src/ outside cli.py | {b['flags']['add_argument_calls']} "
        f"({res['first_98']['add_argument_calls']} at {res['first_98_rev']}) | {a['flags']['add_argument_calls']} |",
        f"| options of {', '.join(VERBS)} | {b['flags']['experiment_verb_flags']} "
        f"| {a['flags']['experiment_verb_flags']} |",
    ]
    for verb in VERBS:
        before = b["flags"]["per_verb"].get(verb, {}).get("flags", [])
        after = a["flags"]["per_verb"].get(verb, {}).get("flags", [])
        lines.append(f"| &nbsp; {verb} | {len(before)} | {len(after)}: {' '.join(after)} |")
    lines += ["", "Cycles before, in-function imports included:", ""]
    for kind in ("subpackages", "modules"):
        for cycle in b["imports"]["cycles_with_in_function"][kind]:
            lines.append(f"- {kind}: {' / '.join(cycle)}")
    ex = res["eval_example"]
    lines += [
        "",
        "## The same eval from key=value and from a YAML",
        "",
        f"    {ex['from_keys']}",
        f"    {ex['from_yaml']}",
        "",
        "eval.yaml:",
        "",
        *("    " + line for line in ex["yaml"].splitlines()),
        "",
        f"Exit codes {ex['exit_codes']}; results.json {ex['bytes']} bytes, identical: **{ex['identical']}** "
        f"(sha256 {ex['sha256'][0][:16]}… and {ex['sha256'][1][:16]}…). Zero-shot top-1 of the random tiny "
        f"checkpoint: {ex['zeroshot_top1']}.",
        "",
        "The remaining in-function imports are the CLI verbs' deferred jobs (commands/: `clipforge --help` never "
        "imports torch), each with a comment; tests/test_architecture.py fails on any other.",
    ]
    return "\n".join(lines) + "\n"


def main_() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    after_rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                               text=True).stdout.strip()  # fmt: skip
    res: dict = {"before_rev": BEFORE, "first_98_rev": FIRST_98, "after_rev": after_rev}
    with tempfile.TemporaryDirectory() as tmp:
        for key, rev in (("before", BEFORE), ("first_98", FIRST_98), ("after", "HEAD")):
            src = checkout(rev, Path(tmp) / key)
            res[key] = {"flags": flag_figures(src)} if key == "first_98" else {
                "imports": import_figures(src), "flags": flag_figures(src)}  # fmt: skip
        res["first_98"] = res["first_98"]["flags"]
        res["eval_example"] = eval_example(Path(tmp) / "eval")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "structure.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / "structure.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main_()
