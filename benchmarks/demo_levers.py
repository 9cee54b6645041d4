"""Levers measured on the demo's own trained models, without training again (`benchmarks/demo_seeds.py` runs).

Two levers need no new training run, so they are measured on every seed's model:
- **prompt set**: the test top-1 of every candidate set (`eval.prompt_select.CANDIDATES`) on the held-out emoji
  and Fashion-MNIST, beside the set `templates=auto` chose on the validation classes. The test figures only
  measure what the choice is worth; nothing is chosen on them.
- **steps**: the same run's intermediate checkpoints (copied from `ROOT/seedN/train/checkpoints` while it
  trained, into `--checkpoints/seedN`), evaluated with that seed's chosen sets. A checkpoint at step 600 of a
  1,200-step cosine schedule has not annealed its learning rate, so it is a lower bound for a 600-step run.

    python benchmarks/demo_levers.py --seeds 0 1 2 --root runs/bench-demo --checkpoints runs/ckpt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
from pathlib import Path
from typing import Any

import torch

import clipforge
from clipforge.checkpoint import PipelineConfig, load_state_into, save_checkpoint
from clipforge.dist.env import World
from clipforge.eval import prompt_select, zeroshot
from clipforge.eval.suite import EMOJI, FASHION_ZS, SuiteConfig, run_benchmarks
from clipforge.model.clip import CLIP
from clipforge.train.config import load_train_config
from clipforge.train.setup import model_config, setup_tokenizer
from clipforge.train.state import load_train_state
from clipforge.utils.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
BENCHES = {"emoji_heldout": EMOJI[0], "fashion_mnist": FASHION_ZS}
_STEP = re.compile(r"^step_(\d+)\.pt$")


def _top1(pipeline: Any, data: str, sets: dict[str, str] | list[str], cache: dict) -> dict[str, dict[str, float]]:
    """Test top-1 per benchmark and prompt set; ``sets`` maps a benchmark to one set, or lists sets for all."""
    out: dict[str, dict[str, float]] = {}
    for name, bench in BENCHES.items():
        names = [sets[name]] if isinstance(sets, dict) else sets
        for templates in names:
            cfg = dataclasses.replace(SuiteConfig(emoji_root=data), templates=templates)
            detail = zeroshot.run_detailed(pipeline, bench.make(cfg), cache)
            out.setdefault(name, {})[templates] = detail.metrics()["top1"]
    return out


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := _STEP.match(p.name))]
    return sorted(found)


def export_state(run_dir: Path, state_path: Path, out_dir: Path) -> Path:
    """A training checkpoint (``step_N.pt``) as a clipforge checkpoint, the way the trainer exports ``final``."""
    cfg = load_train_config(run_dir / "config.yaml")
    tok = setup_tokenizer(cfg, model_config(cfg).text.context_length, run_dir, World())  # reuses tokenizer.json
    model_cfg = model_config(cfg, tok.config)
    model = CLIP(model_cfg)
    load_state_into(model, load_train_state(state_path)["model"], str(state_path))
    preprocess = dataclasses.replace(cfg.preprocess, image_size=model_cfg.vision.image_size)
    return save_checkpoint(model, PipelineConfig(model_cfg, tok.config, preprocess), out_dir, tokenizer_json=tok.json)


def _auto(pipeline: Any, data: str) -> dict[str, Any]:
    """Both targets as the demo evaluates them: each prompt set chosen on the validation classes, then test top-1."""
    result = run_benchmarks(pipeline, list(BENCHES.values()), SuiteConfig(emoji_root=data, templates="auto"))
    return {b: {"top1": result.metrics[f"zeroshot.{b}.top1"], "templates": result.templates[f"zeroshot.{b}"]["templates"]}
            for b in BENCHES}  # fmt: skip


def measure_steps(out: Path, checkpoints: Path, data: str) -> dict[str, dict[str, Any]]:
    """Each copied checkpoint of the seed's run, evaluated as the demo evaluates its final model."""
    steps: dict[str, dict[str, Any]] = {}
    for step, path in _checkpoints(checkpoints):
        exported = export_state(out / "train", path, checkpoints / f"export_{step}")
        steps[str(step)] = _auto(clipforge.load(exported), data)
    return steps


def measure_seed(out: Path, checkpoints: Path | None, data: str) -> dict[str, Any]:
    """Every candidate prompt set's test top-1 on the final model (when the run finished) and the checkpoints."""
    steps = measure_steps(out, checkpoints, data) if checkpoints and checkpoints.is_dir() else {}
    if not (out / "results.json").is_file():
        return {"finished": False, "top1_by_step": steps}
    res = json.loads((out / "results.json").read_text())
    chosen = {b: res["templates"][f"zeroshot.{b}"]["templates"] for b in BENCHES}
    by_set = _top1(clipforge.load(out / "train" / "final"), data, list(prompt_select.CANDIDATES), {})
    steps[str(res["demo"].get("steps", "final"))] = {b: {"top1": by_set[b][chosen[b]], "templates": chosen[b]}
                                                     for b in BENCHES}  # fmt: skip
    val = {b: res["templates"][f"zeroshot.{b}"].get("val_top1", {}) for b in BENCHES}
    return {"finished": True, "chosen": chosen, "val_top1": val, "test_top1_by_set": by_set, "top1_by_step": steps}


def _markdown(s: dict[str, Any]) -> str:
    pct = lambda x: f"{100 * x:.1f}%"
    seeds = s["seeds"]
    lines = [f"# Demo levers measured on the trained models, seeds {', '.join(map(str, seeds))}"
             " (`benchmarks/demo_levers.py`)", ""]  # fmt: skip
    finished = [(seed, p) for seed, p in zip(seeds, s["per_seed"], strict=True) if p["finished"]]
    if finished:
        lines += [f"## Prompt set: test top-1 of each candidate (mean over seeds {', '.join(str(x) for x, _ in finished)})",
                  "", "| prompt set | " + " | ".join(BENCHES) + " |", "|---|" + "---|" * len(BENCHES)]  # fmt: skip
        for templates in prompt_select.CANDIDATES:
            cells = [pct(s["test_top1_by_set_mean"][b][templates]) for b in BENCHES]
            lines.append(f"| {templates} | " + " | ".join(cells) + " |")
        cells = [pct(s["auto_mean"][b]) for b in BENCHES]
        lines.append("| **auto** (chosen on validation classes, per seed) | " + " | ".join(cells) + " |")
        chosen = "; ".join(f"seed {x}: " + ", ".join(f"{b} {p['chosen'][b]}" for b in BENCHES) for x, p in finished)
        lines += [
            "",
            f"Chosen: {chosen}. The test figures of the other sets only measure what the choice is worth.",
            "",
        ]
    lines += ["## Steps: the run's checkpoints, evaluated as the demo evaluates (sets chosen on validation classes)",
              "", "| seed | step | " + " | ".join(f"{b} top-1 (set)" for b in BENCHES) + " |",
              "|---|---|" + "---|" * len(BENCHES)]  # fmt: skip
    for seed, p in zip(seeds, s["per_seed"], strict=True):
        for step, top in p["top1_by_step"].items():
            cells = [f"{pct(top[b]['top1'])} ({top[b]['templates']})" for b in BENCHES]
            lines.append(f"| {seed} | {step} | " + " | ".join(cells) + " |")
    lines += ["", "Checkpoints before the last step are mid-schedule (learning rate not annealed): a lower bound for",
              "a run trained with that many steps. Machine shared with other jobs; these are accuracies, not timings.",
              ""]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default="runs/bench-demo", help="the demo_seeds.py root (ROOT/seedN)")
    parser.add_argument("--checkpoints", default="", help="copies of each seed's checkpoints (DIR/seedN/step_*.pt)")
    parser.add_argument("--data", default="data/emoji", help="the emoji set the runs trained on")
    parser.add_argument("--name", default="demo_levers", help="benchmarks/results/NAME.{json,md}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_seed = [measure_seed(Path(args.root) / f"seed{seed}",
                             Path(args.checkpoints) / f"seed{seed}" if args.checkpoints else None, args.data)
                for seed in args.seeds]  # fmt: skip
    done = [p for p in per_seed if p["finished"]]
    summary: dict[str, Any] = {"seeds": args.seeds, "per_seed": per_seed}
    if done:
        summary["test_top1_by_set_mean"] = {
            b: {t: statistics.mean(p["test_top1_by_set"][b][t] for p in done) for t in prompt_select.CANDIDATES}
            for b in BENCHES
        }
        summary["auto_mean"] = {b: statistics.mean(p["test_top1_by_set"][b][p["chosen"][b]] for p in done)
                                for b in BENCHES}  # fmt: skip
    results = ROOT / "benchmarks" / "results"
    atomic_write_text(results / f"{args.name}.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(results / f"{args.name}.md", _markdown(summary))
    print(_markdown(summary))


if __name__ == "__main__":
    main()
