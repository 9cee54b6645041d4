"""A MobileCLIP-style student distilled from a small clipforge teacher vs the same student from scratch, same wall time.

    PYTHONPATH=src python benchmarks/mobileclip_distill.py [--budget 60] [--seeds 0] [--teacher CKPT]
    PYTHONPATH=src python benchmarks/mobileclip_distill.py --budget 3 --teacher-steps 10 --work .bench/smoke  # smoke

Everything runs on the CPU at one thread, sized for ~15-20 CPU minutes in all (the machine it was measured on is
shared, so every figure carries that load). In order:

  data        the emoji demo set (``clipforge data emoji``; no icon sets, so the shards stay small): students
              and teacher train on train.jsonl; held-out classes (heldout.jsonl) are never trained on.
  teacher     the demo recipe (configs/runs/tiny-emoji.yaml: a ModifiedResNet 32 wide at 32 px, text 4 x 128,
              a 4,096-token BPE trained on the captions, crops 0.56-1, silhouette view 0.5, AdamW 1e-3) at
              batch 64, trained briefly (TEACHER_STEPS) on train.jsonl; ``--teacher CKPT`` uses a checkpoint.
  reinforce   ``clipforge data reinforce`` over train.jsonl: REINFORCE.augmentations views per image (the
              recipe's own crop scale and silhouette rate) with the teacher's embeddings; paid once.
  students    ``tiny-mobileclip`` (an MCi tower: 4 stages 16..128 wide, RepMixer then attention; text 4 x 128)
              at 32 px with the same recipe, three ways:
                scratch     the contrastive loss alone;
                online      loss = 0.25 * contrastive + 0.75 * KL to the teacher's image-text similarities, the
                            frozen teacher run in the loop on the same crops (loss.teacher=...);
                reinforced  the same loss on the reinforced shards; no teacher runs while training.

Equal wall time: every variant first trains CALIBRATION steps (variants back to back, round by round) to measure
its seconds per step, then trains ``budget / (seconds per step)`` steps (the learning-rate schedule runs to its
end); the measured training time of each run is reported beside the budget. Zero-shot top-1 (``eval.zeroshot``)
on the held-out emoji classes and on Fashion-MNIST (Debian's dataset-fashion-mnist) with fixed prompt sets
(EVAL_TEMPLATES). Writes benchmarks/results/mobileclip_distill.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import clipforge
from clipforge.data.builders.emoji import build_emoji
from clipforge.eval import zeroshot
from clipforge.eval.datasets import DatasetConfig
from clipforge.eval.zeroshot import ZeroShotConfig
from clipforge.train.config import load_train_config
from clipforge.train.reinforce import ReinforceSettings, reinforce
from clipforge.train.trainer import run_training
from clipforge.utils.io import atomic_write_text

RECIPE = "configs/runs/tiny-emoji.yaml"
COMMON = ["threads=1", "batch_size=64", "log.progress=false", "log.tensorboard=false", "checkpoint.every_steps=0",
          "data.workers=1"]  # fmt: skip
TEACHER_STEPS = 160  # ~4 epochs of train.jsonl at batch 64: a brief run of the demo recipe
# The recipe's 32 px and trained vocabulary, set beside the model (a model= override alone brings its own sizes).
STUDENT = ["model=tiny-mobileclip", "image_size=32", "tokenizer=4096"]
DISTILL = ["loss.kind=distill", "loss.distill_weight=0.75", "loss.contrastive_weight=0.25"]
# The recipe's own augmentation distribution; MobileCLIP's DataCompDR stores 10 views per image, 2 keep it cheap.
REINFORCE = ReinforceSettings(augmentations=2, crop_scale=(0.56, 1.0), silhouette=0.5, seed=0, shard_size=1000)
CALIBRATION, WARMUP, CALIBRATION_ROUNDS = 6, 2, 1
# Fixed prompt sets (chosen before any run, the same for every model): the emoji set's own caption style for the
# emoji, CLIP's short photo set for the product photos. Fashion-MNIST: 500 of its 10,000 test images, evenly
# spaced (every class keeps its share), to keep the evaluation of four models short.
EVAL_TEMPLATES = {"emoji": "emoji", "fashion": "short"}
EVAL_FASHION = 500
METRICS = ("emoji held-out top-1", "Fashion-MNIST top-1")
RESULTS = Path(__file__).parent / "results"


def variants(teacher: str, shards: str) -> dict[str, list[str]]:
    return {
        "scratch": [*STUDENT],
        "online": [*STUDENT, *DISTILL, f"loss.teacher={teacher}"],
        "reinforced": [*STUDENT, *DISTILL, f"data.train={shards}"],
    }


def config(overrides: list[str], train: str, run_dir: Path, steps: int, seed: int):
    return load_train_config(RECIPE, [*COMMON, f"data.train={train}", *overrides, f"steps={steps}", f"seed={seed}",
                                      f"run_dir={run_dir}"])  # fmt: skip


def train(cfg) -> tuple[Path | None, float, dict]:
    """Train; returns the final checkpoint, the seconds from the first to the last step, and the loss curve."""
    marks: list[float] = []
    result = run_training(cfg, on_step=lambda step, m: marks.append(time.perf_counter()))
    return result.final_dir, marks[-1] - marks[0], result.losses


def seconds_per_step(cfg) -> float:
    marks: list[float] = []
    run_training(cfg, on_step=lambda step, m: marks.append(time.perf_counter()))
    return statistics.median(b - a for a, b in zip(marks[WARMUP:], marks[WARMUP + 1 :], strict=False))


def trained_by(ckpt: str) -> dict:
    """What a given teacher's own run recorded next to it (a clipforge run directory), if anything."""
    run = Path(ckpt).parent
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return {}
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    cfg = load_train_config(run / "config.yaml")
    return {"recipe": RECIPE, "steps": cfg.steps, "seed": cfg.seed, "batch_size": cfg.batch_size,
            "train_seconds": rows[-1]["time"] - rows[0]["time"], "final_loss": rows[-1]["loss"],
            "note": "seconds between the first and last logged step of its run"}  # fmt: skip


def evaluate(ckpt: Path, emoji_root: str) -> dict[str, float]:
    """Zero-shot top-1 on the held-out emoji classes (all) and Fashion-MNIST's test set (EVAL_FASHION images)."""
    pipe = clipforge.load(ckpt)
    emoji = DatasetConfig(kind="jsonl", path=str(Path(emoji_root) / "heldout.jsonl"))
    fashion = DatasetConfig(kind="fashion-mnist", split="test", limit=EVAL_FASHION)
    return {
        "emoji held-out top-1": zeroshot.run(pipe, ZeroShotConfig(emoji, EVAL_TEMPLATES["emoji"]))["top1"],
        "Fashion-MNIST top-1": zeroshot.run(pipe, ZeroShotConfig(fashion, EVAL_TEMPLATES["fashion"]))["top1"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default=None, help="a teacher checkpoint (default: train one with the demo recipe)")
    ap.add_argument("--teacher-steps", type=int, default=TEACHER_STEPS, help="steps of the teacher's training run")
    ap.add_argument("--budget", type=float, default=60.0, help="training seconds per student")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--work", default=".bench/mobileclip_distill", help="data, runs and shards go here")
    ap.add_argument("--emoji-root", default=None, help="an emoji set already built (default: WORK/emoji)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    clock = {"start": time.perf_counter()}
    emoji_root = args.emoji_root or str(work / "emoji")
    build_emoji(emoji_root, size=64, workers=1)  # reused when already there
    train_table = str(Path(emoji_root) / "train.jsonl")
    clock["data"] = time.perf_counter()
    teacher_info: dict = {"checkpoint": args.teacher, **trained_by(args.teacher)} if args.teacher else {}
    if args.teacher is None:
        cfg = config([], train_table, work / "teacher", args.teacher_steps, 0)
        final, seconds, losses = train(cfg)
        args.teacher = str(final)
        teacher_info = {"checkpoint": args.teacher, "recipe": RECIPE, "steps": args.teacher_steps, "seed": 0,
                        "train_seconds": seconds, "final_loss": losses[max(losses)]}  # fmt: skip
    clock["teacher"] = time.perf_counter()
    rein = reinforce(args.teacher, train_table, work / "reinforced", REINFORCE, image_column="image",
                     caption_column="captions", batch_size=256)  # fmt: skip
    clock["reinforce"] = time.perf_counter()
    runs = variants(args.teacher, str(work / "reinforced"))
    out: dict = {"teacher": teacher_info, "data": {"emoji_root": emoji_root, "train": train_table},
                 "reinforce": {"seconds": clock["reinforce"] - clock["teacher"], "samples": rein.written,
                               "settings": REINFORCE.__dict__, "resumed_shards": rein.resumed_shards},
                 "budget_s": args.budget, "seeds": args.seeds, "recipe": RECIPE, "common_overrides": COMMON,
                 "student_overrides": STUDENT, "distill": DISTILL, "calibration_steps": CALIBRATION, "calibration_rounds": CALIBRATION_ROUNDS,
                 "eval": {"templates": EVAL_TEMPLATES, "fashion_mnist_images": EVAL_FASHION}, "runs": [],
                 "meta": {"threads": 1, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                          "note": "shared 2-core machine (other jobs running): figures carry that load; steps per "
                                  "variant come from interleaved calibration runs"}}  # fmt: skip
    for seed in args.seeds:
        per_step: dict[str, list[float]] = {name: [] for name in runs}
        for rnd in range(CALIBRATION_ROUNDS):  # interleaved: load on the shared machine hits every variant alike
            for name, overrides in runs.items():
                cal = config(overrides, train_table, work / f"cal-{name}-{seed}-{rnd}", CALIBRATION, seed)
                per_step[name].append(seconds_per_step(cal))
        for name, overrides in runs.items():
            sps = statistics.median(per_step[name])
            steps = max(1, int(args.budget / sps))
            final, train_s, losses = train(config(overrides, train_table, work / f"{name}-{seed}", steps, seed))
            out["runs"].append({"variant": name, "seed": seed, "seconds_per_step": sps, "steps": steps,
                                "train_seconds": train_s, "final_loss": losses[max(losses)],
                                "metrics": evaluate(final, emoji_root)})  # fmt: skip
            print(json.dumps(out["runs"][-1]), flush=True)
    teacher_info["metrics"] = evaluate(Path(args.teacher), emoji_root)
    end = time.perf_counter()
    out["seconds"] = {"data": clock["data"] - clock["start"], "teacher": clock["teacher"] - clock["data"],
                      "reinforce": clock["reinforce"] - clock["teacher"], "total": end - clock["start"]}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "mobileclip_distill.json", json.dumps(out, indent=1) + "\n")
    write_table(out)


def pct(metrics: dict[str, float], key: str) -> str:
    return f"{100 * metrics[key]:.1f}%" if key in metrics else "-"


def write_table(out: dict) -> None:
    labels = list(METRICS)
    head = "| model | seed | steps | s/step | train s | " + " | ".join(labels) + " |"
    lines = ["# MobileCLIP-style student: distilled vs from scratch, same training wall time (CPU, 1 thread)", "",
             head, "|" + "---|" * (5 + len(labels))]  # fmt: skip
    for r in out["runs"]:
        lines.append(f"| student, {r['variant']} | {r['seed']} | {r['steps']} | {r['seconds_per_step']:.3f} | "
                     f"{r['train_seconds']:.0f} | " + " | ".join(pct(r["metrics"], k) for k in labels) + " |")  # fmt: skip
    t = out["teacher"]
    lines.append(f"| teacher (demo recipe, tiny ModifiedResNet) | {t.get('seed', '')} | {t.get('steps', '')} | | "
                 f"{t.get('train_seconds', 0):.0f} | " + " | ".join(pct(t["metrics"], k) for k in labels) + " |")  # fmt: skip
    rein, sec = out["reinforce"], out["seconds"]
    lines += ["", f"Budget {out['budget_s']:.0f} s of training per student, seeds {out['seeds']}; steps per variant from "
              f"{out.get('calibration_rounds', 1)} calibration round(s) of {out['calibration_steps']} steps. Teacher: "
              f"{t.get('steps', '?')} steps at batch {t.get('batch_size', '?')} in {t.get('train_seconds', 0):.0f} s. "
              f"Reinforced shards written once in {rein['seconds']:.0f} s ({rein['samples']} images x "
              f"{rein['settings']['augmentations']} augmentations). Recipe {out['recipe']} with "
              f"{' '.join(out['common_overrides'])} data.train={out['data']['train']}; students "
              f"{' '.join(out['student_overrides'])}; distillation {' '.join(out['distill'])}. Prompt sets "
              f"{out['eval']['templates']}, Fashion-MNIST on {out['eval']['fashion_mnist_images']} evenly spaced test "
              f"images. This invocation took {sec['total'] / 60:.1f} min at one thread (data {sec['data']:.0f} s, "
              f"teacher {sec['teacher']:.0f} s: 0 when given with --teacher) on a shared 2-core machine: every figure "
              "carries that load.", "",
              "`PYTHONPATH=src python benchmarks/mobileclip_distill.py` (config and seeds in the script)."]  # fmt: skip
    atomic_write_text(RESULTS / "mobileclip_distill.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
