"""A MobileCLIP-style student distilled from the demo model vs the same student from scratch, same wall time.

    PYTHONPATH=src python benchmarks/mobileclip_distill.py --teacher runs/teacher/final [--budget 360] [--seeds 0 1]

The student is ``tiny-mobileclip`` (an MCi tower: 4 stages 16..128 wide, RepMixer then attention; text 4 x 128)
trained with the demo recipe (configs/runs/tiny-emoji.yaml: emoji + icon training split, 32 px, crops 0.56-1,
silhouette view 0.5, a BPE vocabulary trained on the captions, batch 128, AdamW 1e-3) in three ways:

  scratch     the contrastive loss alone;
  online      loss = 0.25 * contrastive + 0.75 * KL to the teacher's image-text similarities, the teacher
              (a frozen clipforge checkpoint) run in the loop on the same crops (loss.teacher=...);
  reinforced  the same loss, on shards written once by ``clipforge data reinforce`` (K augmentations per image
              with the teacher's embeddings); no teacher runs while training.

Equal wall time: every variant first trains CALIBRATION steps (interleaved, round by round) to measure its
seconds per step on this machine, then trains ``budget / (seconds per step)`` steps (the learning-rate schedule
runs to its end). The measured training time of each full run is reported beside the budget; the one-off cost
of writing the reinforced shards is reported separately (it is paid once for any number of students). All
runs use one thread. Zero-shot: the ``demo`` evaluation suite (held-out emoji classes, Fashion-MNIST,
Animal-MNIST) with prompt sets chosen on the validation classes (``templates=auto``, as the demo reports). Writes benchmarks/results/mobileclip_distill.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import clipforge
from clipforge.eval.suite import SuiteConfig, run_suite
from clipforge.train.config import load_train_config
from clipforge.train.reinforce import ReinforceSettings, reinforce
from clipforge.train.trainer import run_training
from clipforge.utils.io import atomic_write_text

RECIPE = "configs/runs/tiny-emoji.yaml"
STUDENT = ["model=tiny-mobileclip", "image_size=32", "threads=1", "log.progress=false", "log.tensorboard=false",
           "checkpoint.every_steps=0", "data.workers=1"]  # fmt: skip
DISTILL = ["loss.kind=distill", "loss.distill_weight=0.75", "loss.contrastive_weight=0.25"]
# The recipe's own augmentation distribution; 10 views per image, as MobileCLIP's DataCompDR-1B stores.
REINFORCE = ReinforceSettings(augmentations=10, crop_scale=(0.56, 1.0), silhouette=0.5, seed=0, shard_size=1000)
CALIBRATION, WARMUP = 14, 4
METRICS = {"emoji held-out top-1": "zeroshot.emoji_heldout.top1", "Fashion-MNIST top-1": "zeroshot.fashion_mnist.top1",
           "Animal-MNIST top-1": "zeroshot.animal_mnist.top1",
           "emoji held-out image->text R@1": "retrieval.emoji_heldout.image_to_text_R@1"}  # fmt: skip
RESULTS = Path(__file__).parent / "results"


def variants(teacher: str, shards: str) -> dict[str, list[str]]:
    return {
        "scratch": [],
        "online": [*DISTILL, f"loss.teacher={teacher}"],
        "reinforced": [*DISTILL, f"data.train={shards}"],
    }


def train(overrides: list[str], run_dir: Path, steps: int, seed: int) -> tuple[Path | None, float, dict]:
    """Train; returns the final checkpoint, the seconds from the first to the last step, and the loss curve."""
    cfg = load_train_config(RECIPE, [*STUDENT, *overrides, f"steps={steps}", f"seed={seed}", f"run_dir={run_dir}"])
    marks: list[float] = []
    result = run_training(cfg, on_step=lambda step, m: marks.append(time.perf_counter()))
    return result.final_dir, marks[-1] - marks[0], result.losses


def seconds_per_step(overrides: list[str], run_dir: Path, seed: int) -> float:
    cfg = load_train_config(RECIPE, [*STUDENT, *overrides, f"steps={CALIBRATION}", f"seed={seed}",
                                     f"run_dir={run_dir}"])  # fmt: skip
    marks: list[float] = []
    run_training(cfg, on_step=lambda step, m: marks.append(time.perf_counter()))
    return statistics.median(b - a for a, b in zip(marks[WARMUP:], marks[WARMUP + 1 :], strict=False))


def evaluate(ckpt: Path, emoji_root: str) -> dict[str, float]:
    pipe = clipforge.load(ckpt)
    metrics = run_suite(pipe, SuiteConfig(name="demo", emoji_root=emoji_root, templates="auto")).metrics
    return {label: metrics[key] for label, key in METRICS.items() if key in metrics}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, help="the demo model's checkpoint (runs/tiny-emoji/final)")
    ap.add_argument("--budget", type=float, default=360.0, help="training seconds per student")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--work", default=".bench/mobileclip_distill", help="runs and reinforced shards go here")
    ap.add_argument("--emoji-root", default="data/emoji")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    start = time.perf_counter()
    data = load_train_config(RECIPE).data
    rein = reinforce(args.teacher, data.train, work / "reinforced", REINFORCE, image_column=data.image_column,
                     caption_column=data.caption_column, batch_size=256)  # fmt: skip
    reinforce_s = time.perf_counter() - start
    runs = variants(args.teacher, str(work / "reinforced"))
    out: dict = {"teacher": {"checkpoint": args.teacher, "metrics": evaluate(Path(args.teacher), args.emoji_root)},
                 "reinforce": {"seconds": reinforce_s, "samples": rein.written, "settings": REINFORCE.__dict__,
                               "resumed_shards": rein.resumed_shards},
                 "budget_s": args.budget, "recipe": RECIPE, "student_overrides": STUDENT, "distill": DISTILL,
                 "calibration_steps": CALIBRATION, "runs": []}  # fmt: skip
    for seed in args.seeds:
        per_step: dict[str, list[float]] = {name: [] for name in runs}
        for rnd in range(2):  # interleaved: load on the shared machine hits every variant alike
            for name, overrides in runs.items():
                per_step[name].append(seconds_per_step(overrides, work / f"cal-{name}-{seed}-{rnd}", seed))
        for name, overrides in runs.items():
            sps = statistics.median(per_step[name])
            steps = max(1, int(args.budget / sps))
            final, train_s, losses = train(overrides, work / f"{name}-{seed}", steps, seed)
            out["runs"].append({"variant": name, "seed": seed, "seconds_per_step": sps, "steps": steps,
                                "train_seconds": train_s, "final_loss": losses[max(losses)],
                                "metrics": evaluate(final, args.emoji_root)})  # fmt: skip
            atomic_write_text(RESULTS / "mobileclip_distill.json", json.dumps(out, indent=1) + "\n")
    write_table(out)


def write_table(out: dict) -> None:
    labels = list(METRICS)
    head = "| student | seed | steps | s/step | train s | " + " | ".join(labels) + " |"
    lines = ["# MobileCLIP-style student: distilled vs from scratch, same training wall time (CPU, 1 thread)", "",
             head, "|" + "---|" * (5 + len(labels))]  # fmt: skip
    for r in out["runs"]:
        vals = " | ".join(f"{100 * r['metrics'].get(k, float('nan')):.1f}%" for k in labels)
        lines.append(f"| {r['variant']} | {r['seed']} | {r['steps']} | {r['seconds_per_step']:.3f} | "
                     f"{r['train_seconds']:.0f} | {vals} |")  # fmt: skip
    t = out["teacher"]["metrics"]
    lines.append("| teacher (demo model) | | | | | " + " | ".join(f"{100 * t.get(k, float('nan')):.1f}%" for k in labels)
                 + " |")  # fmt: skip
    rein = out["reinforce"]
    lines += ["", f"Budget {out['budget_s']:.0f} s of training per student; reinforced shards written once in "
              f"{rein['seconds']:.0f} s ({rein['samples']} images x {rein['settings']['augmentations']} augmentations). "
              f"Recipe {out['recipe']} with {' '.join(out['student_overrides'])}; distillation {' '.join(out['distill'])}. "
              "Shared 2-core machine: steps per variant come from interleaved calibration runs."]  # fmt: skip
    atomic_write_text(RESULTS / "mobileclip_distill.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
