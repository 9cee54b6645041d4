"""Recipe variants of the demo, each trained once and evaluated as the demo evaluates (one seed, same budget).

Every variant is `clipforge train configs/runs/tiny-emoji.yaml` with a few overrides (the training table, the
silhouette probability, the learning rate), 700 steps at batch 128 with 1 torch thread; its final model is then
scored on the held-out emoji and Fashion-MNIST: test top-1 of every candidate prompt set, and the set
`templates=auto` chooses on the validation classes (`benchmarks/demo_levers.py`'s functions). Variants that train
on the validation classes (`trainval`) make that choice on classes the model has seen; the other sets' test
figures are beside it so the choice can be judged, never to choose.

Training tables (built from the emoji set in --data, `clipforge data emoji data/emoji --icons all`):
`train` (training classes), `trainval` (training + validation classes), `train+icons` (the previous recipe's
train_icons.jsonl: training classes, then ~15,600 icons), `train x6+icons` / `trainval x6+icons` (every emoji row
six times, then the icons: emoji are about half the samples).

    python benchmarks/demo_recipe.py --variants all --root runs/bench-recipe    # ~10 min per variant, 2 at once
    python benchmarks/demo_recipe.py --collect --root runs/bench-recipe         # the table only

Writes benchmarks/results/demo_recipe.{json,md}. One seed per variant: differences of a few points are within
run-to-run spread (benchmarks/results/demo_seeds.md has the 3-seed spread of the shipped recipe).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

import clipforge
from clipforge.eval import prompt_select
from clipforge.utils.io import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_levers import BENCHES, _auto, _top1

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "runs" / "tiny-emoji.yaml"
BASE = ["steps=700", "threads=1", "seed=0", "checkpoint.every_steps=10000", "log.tensorboard=false",
        "log.progress=false"]  # fmt: skip
# name -> (training table, overrides); the shipped recipe is "trainval, silhouette 0.25, lr 2e-3".
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "train+icons, silhouette 0.5, lr 1e-3 (previous recipe's data)": ("train+icons", ["data.silhouette=0.5", "optim.lr=1e-3"]),
    "train, silhouette 0.5, lr 1e-3": ("train", ["data.silhouette=0.5", "optim.lr=1e-3"]),
    "trainval, silhouette 0.5, lr 1e-3": ("trainval", ["data.silhouette=0.5", "optim.lr=1e-3"]),
    "train x6+icons, silhouette 0.5, lr 1e-3": ("train x6+icons", ["data.silhouette=0.5", "optim.lr=1e-3"]),
    "trainval x6+icons, silhouette 0.5, lr 1e-3": ("trainval x6+icons", ["data.silhouette=0.5", "optim.lr=1e-3"]),
    "trainval, silhouette 0, lr 1e-3": ("trainval", ["data.silhouette=0.0", "optim.lr=1e-3"]),
    "trainval, silhouette 0.25, lr 1e-3": ("trainval", ["data.silhouette=0.25", "optim.lr=1e-3"]),
    "trainval, silhouette 0, lr 2e-3": ("trainval", ["data.silhouette=0.0", "optim.lr=2e-3"]),
    "shipped recipe (trainval, silhouette 0.25, lr 2e-3), 1,400 steps": ("trainval", ["steps=1400"]),
    "trainval, silhouette 0.5, lr 2e-3": ("trainval", ["data.silhouette=0.5", "optim.lr=2e-3"]),
    "shipped recipe, crops from 35% of the area (instead of 56%)": ("trainval", ["data.crop_scale=[0.35,1.0]"]),
    "shipped recipe, batch 256 for 350 steps (the same samples)": ("trainval", ["batch_size=256", "steps=350"]),
}  # fmt: skip


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:60]


def training_table(data: Path, kind: str) -> Path:
    """The table a variant trains on, written inside the emoji set (image paths are relative to it)."""
    read = lambda name: (data / name).read_text(encoding="utf-8")
    if kind in ("train", "trainval"):
        return data / f"{kind}.jsonl"
    if kind == "train+icons":
        text = read("train.jsonl") + read("icons.jsonl")
    else:  # "<emoji> x6+icons"
        text = read(f"{kind.split()[0]}.jsonl") * 6 + read("icons.jsonl")
    path = data / f"bench_{_slug(kind)}.jsonl"
    atomic_write_text(path, text)
    return path


def run_variant(name: str, data: Path, root: Path) -> dict[str, Any]:
    table, overrides = VARIANTS[name]
    run_dir = root / _slug(name)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "clipforge", "train", str(RECIPE), f"run_dir={run_dir}",
                    f"data.train={training_table(data, table)}", *BASE, *overrides], check=True)  # fmt: skip
    seconds = time.perf_counter() - start
    pipeline = clipforge.load(run_dir / "final")
    result = {"name": name, "table": table, "overrides": overrides, "train_seconds": round(seconds, 1),
              "test_top1_by_set": _top1(pipeline, str(data), list(prompt_select.CANDIDATES), {}),
              "auto": _auto(pipeline, str(data))}  # fmt: skip
    atomic_write_text(run_dir / "variant.json", json.dumps(result, indent=1) + "\n")
    return result


def _markdown(rows: list[dict[str, Any]]) -> str:
    pct = lambda x: f"{100 * x:.1f}%"
    lines = ["# Demo recipe variants, one seed each (`benchmarks/demo_recipe.py`)", "",
             "700 steps, batch 128, 1 thread, seed 0. auto = the prompt set chosen on the validation classes; best = "
             "the best candidate's test top-1 (information only).", "",
             "| variant | held-out emoji, auto (set) | best | Fashion-MNIST, auto (set) | best |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        cells = []
        for b in BENCHES:
            a = r["auto"][b]
            cells += [f"{pct(a['top1'])} ({a['templates']})", pct(max(r["test_top1_by_set"][b].values()))]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["all"], help="variant names, or 'all'")
    parser.add_argument("--root", default="runs/bench-recipe")
    parser.add_argument("--data", default="data/emoji")
    parser.add_argument("--parallel", type=int, default=2, help="variants trained at once")
    parser.add_argument("--collect", action="store_true", help="only gather ROOT/*/variant.json into the table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root, data = Path(args.root), Path(args.data)
    if not args.collect:
        names = list(VARIANTS) if args.variants == ["all"] else args.variants
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda n: run_variant(n, data, root), names))
    rows = [json.loads((root / _slug(n) / "variant.json").read_text()) for n in VARIANTS
            if (root / _slug(n) / "variant.json").is_file()]  # fmt: skip
    results = ROOT / "benchmarks" / "results"
    atomic_write_text(results / "demo_recipe.json", json.dumps({"base": BASE, "variants": rows}, indent=1) + "\n")
    atomic_write_text(results / "demo_recipe.md", _markdown(rows))
    print(_markdown(rows))


if __name__ == "__main__":
    main()
