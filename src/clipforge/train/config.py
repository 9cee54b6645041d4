"""A training run's config: model, data, loss, tokenizer, optimizer, schedule, precision, logging.

Read with ``load_train_config(yaml, overrides)`` (defaults <- YAML <- ``key=value``); the resolved config is
written to ``run_dir/config.yaml`` and stored in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clipforge.data.config import DataConfig, PreprocessConfig
from clipforge.errors import UserError
from clipforge.loss.config import LossConfig
from clipforge.model.config import CLIPConfig
from clipforge.model.registry import get_config
from clipforge.train.model_defaults import ModelChoice, apply_model_defaults
from clipforge.utils.configs import RESOLVED_CONFIG_FILE, resolve_config, set_keys, to_dict
from clipforge.utils.layout import CHECKPOINT_DIR

log = logging.getLogger("clipforge.train")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and its schedule (cosine decay after a linear warmup).

    Args:
        lr: peak learning rate, reached at the end of warmup.
        betas, eps: AdamW moments; (0.9, 0.98) and 1e-6 as in the CLIP paper for ViTs.
        weight_decay: decoupled weight decay on matrices only (never gains, biases, embeddings, logit_scale).
        warmup_steps: linear warmup from lr/warmup_steps to lr.
        min_lr: floor of the cosine decay, reached at the last step.
        grad_clip: clip the global gradient norm to this value; 0 disables clipping.
    """

    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.2
    warmup_steps: int = 100
    min_lr: float = 0.0
    grad_clip: float = 1.0


@dataclass(frozen=True)
class CheckpointConfig:
    """Training-state checkpoints under ``run_dir/checkpoints`` (model, optimizer, step, data position, RNG).

    Args:
        every_steps: save every this many optimizer steps (0 = only at the end of the run).
        keep_last: keep the newest K checkpoints, deleting older ones (0 = keep all).
    """

    every_steps: int = 500
    keep_last: int = 2


@dataclass(frozen=True)
class LogConfig:
    """Progress and metrics.

    Args:
        every_steps: write a metrics line (JSONL, TensorBoard) every this many steps.
        tensorboard: also write TensorBoard scalars under ``run_dir/tensorboard``.
        progress: show progress: a live bar on a terminal; when stdout is not one (nohup, SLURM, CI), one plain
            line every ``every_steps`` (step/total, loss, scale, samples/s, data wait, MFU, ETA).
        peak_flops: peak FLOP/s of one device for MFU; 0 = look the device up in a table (n/a on CPU).
        count_syncs: debug mode: count every host read of a device value in each step (``Trainer.syncs``, and
            ``host_syncs_last_step`` in the metrics); slows the step (a Python hook on every tensor op).
    """

    every_steps: int = 10
    tensorboard: bool = True
    progress: bool = True
    peak_flops: float = 0.0
    count_syncs: bool = False


@dataclass(frozen=True)
class TrainEvalConfig:
    """The zero-shot check run every ``eval_every`` steps on rank 0; its metrics go to metrics.jsonl as
    ``eval.zeroshot.top1`` ... (a Python ``eval_fn`` given to ``run_training`` replaces it).

    Args:
        data: labelled images: a ``.jsonl`` of ``{image, label}`` rows (e.g. the emoji set's ``val.jsonl``),
            a folder of class folders, ``fashion-mnist`` or ``animal-mnist``; "" = none.
        templates: prompt set (``eval.templates``); one prompt keeps the check cheap.
        limit: at most this many images, evenly spaced over the set (0 = all).
        batch_size: images / texts per forward pass.
    """

    data: str = ""
    templates: str = "single"
    limit: int = 500
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.limit < 0 or self.batch_size < 1:
            raise ValueError(f"eval.limit must be >= 0 and eval.batch_size >= 1, got {self.limit}, {self.batch_size}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Args:
        model: a registered model name (see ``clipforge.model.registry``) or a full CLIPConfig.
        data: where the training pairs come from (DataConfig).
        loss: the objective (LossConfig).
        tokenizer: "openai" for the bundled 49,408-token vocabulary, or an int to train a byte-level BPE
            vocabulary of that size on the training captions (stored as tokenizer.json in the run).
        image_size: 0 = the model's image size; otherwise overrides the model's and the preprocessing's.
            ``load_train_config`` fills it in (a model chosen on the command line brings its own).
        preprocess: eval-time preprocessing saved with the model (its image_size follows image_size).
        batch_size: global batch: all ranks and accumulation micro-batches together (the contrastive batch).
        epochs: passes over the data, used when ``steps`` is 0.
        steps: total optimizer steps (0 = ``epochs`` full passes).
        accum_freq: split each rank's batch into this many micro-batches.
        accum_mode: "gradcache" keeps the full batch of negatives (features of all micro-batches computed
            without grad, loss on the whole batch, feature gradients backpropagated per micro-batch);
            "mean" averages the gradients of per-micro-batch losses (fewer negatives, less compute).
        precision: "fp32", or "bf16" autocast (on GPU; on CPU autocast bf16 is also used if asked).
        grad_checkpointing: recompute transformer blocks in backward to save memory.
        compile: wrap the model with torch.compile.
        parallel: with several ranks, "ddp" (a full replica per rank) or "fsdp" (FSDP2: parameters, gradients
            and optimizer state sharded over ranks, sharded checkpoints; see clipforge.dist.parallelize).
        device: "auto" (CUDA if available), "cpu" or "cuda".
        threads: torch intra-op threads (0 = leave torch's default).
        seed: seeds model init, data order and every random draw.
        run_dir: where checkpoints, metrics, TensorBoard logs and the final model go.
        eval_every: run the in-training evaluation (``eval``, or a Python ``eval_fn``) every this many steps
            (0 = never).
        eval: what the in-training evaluation runs (TrainEvalConfig).
        max_bad_steps: abort after this many NaN/inf losses in a row (each is skipped, no update).
    """

    model: str | CLIPConfig = "tiny-vit"
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    tokenizer: Literal["openai"] | int = "openai"
    image_size: int = 0
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    batch_size: int = 128
    epochs: int = 1
    steps: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    accum_freq: int = 1
    accum_mode: Literal["gradcache", "mean"] = "gradcache"
    precision: Literal["fp32", "bf16"] = "fp32"
    grad_checkpointing: bool = False
    compile: bool = False
    parallel: Literal["ddp", "fsdp"] = "ddp"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0
    seed: int = 0
    run_dir: str = "runs/train"
    eval_every: int = 0
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)
    max_bad_steps: int = 5
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        positive = {"batch_size": self.batch_size, "accum_freq": self.accum_freq, "max_bad_steps": self.max_bad_steps}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0 (0 = never), got {self.eval_every}")
        if self.steps < 0 or self.epochs < 0 or (self.steps == 0 and self.epochs == 0):
            raise ValueError("set steps > 0 or epochs > 0")
        if isinstance(self.tokenizer, int) and self.tokenizer < 515:
            raise ValueError(f"a trained tokenizer needs a vocab size >= 515 (512 byte symbols + 2 specials + 1), "
                             f"got {self.tokenizer}")


def _model_dict(name: str) -> dict[str, Any]:
    return to_dict(get_config(name))


def load_train_config(yaml_path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Defaults <- ``yaml_path`` <- ``overrides`` (``key=value``), typed and checked. See utils/configs.

    The model brings its image size and tokenizer unless they were set with or after it (train/model_defaults);
    the result has ``image_size`` and ``preprocess.image_size`` filled in with the size that is trained.

    ``model.vision.patch_dropout=0.5`` works while ``model`` is a registry name: the name is expanded to its
    full config first.
    """
    cfg = resolve_config(TrainConfig, yaml_path, overrides, expand={"model": _model_dict})
    if isinstance(cfg.model, str):
        _model_dict(cfg.model)  # an unknown name fails now, listing the known ones
    file_keys, given = set_keys(yaml_path, overrides)
    return apply_model_defaults(cfg, ModelChoice(file_keys, given))


def resolve_model(cfg: TrainConfig, vocab_size: int | None = None) -> CLIPConfig:
    """The CLIPConfig the run trains: the named or given config, with the run's image size and vocabulary."""
    model = get_config(cfg.model) if isinstance(cfg.model, str) else cfg.model
    if cfg.image_size:
        try:
            model = dataclasses.replace(model, vision=dataclasses.replace(model.vision, image_size=cfg.image_size))
        except ValueError as exc:
            raise UserError(f"image_size={cfg.image_size} does not fit the model: {exc}") from exc
    if vocab_size is not None:
        model = dataclasses.replace(model, text=dataclasses.replace(model.text, vocab_size=vocab_size))
    return model


def config_for_resume(
    yaml_path: str | Path | None, overrides: Sequence[str], resume: str | None
) -> tuple[str | Path | None, list[str]]:
    """The YAML and overrides a (resumed) run reads: a run being continued reads the config it was trained with.

    ``--resume RUN_DIR`` (or a ``RUN_DIR/checkpoints/step_*.pt`` in it) reads ``RUN_DIR/config.yaml``, the
    resolved config the run wrote, with ``run_dir=RUN_DIR`` and then ``overrides`` (``steps=60`` lengthens the
    run); a YAML given too is not read (a warning says so). ``--resume latest`` does the same for the run_dir
    that ``yaml_path`` and ``overrides`` name once it holds a checkpoint, and starts from ``yaml_path`` otherwise.

    Raises:
        UserError: for neither a YAML nor a run to resume, or a run directory without its config.yaml.
    """
    overrides = list(overrides)
    if not resume:
        if yaml_path is None:
            raise UserError("no run config given", hint="clipforge train RUN.yaml [key=value ...], or "
                            "clipforge train --resume RUN_DIR [key=value ...] to continue a run")  # fmt: skip
        return yaml_path, overrides
    if resume == "latest":
        run_dir = Path(load_train_config(yaml_path, overrides).run_dir)
        if not any((run_dir / CHECKPOINT_DIR).glob("step_*.pt")) or not (run_dir / RESOLVED_CONFIG_FILE).is_file():
            return yaml_path, overrides  # nothing to continue yet: a fresh start from the YAML
    else:
        path = Path(resume)
        run_dir = path.parent.parent if path.suffix == ".pt" and path.parent.name == CHECKPOINT_DIR else path
        if not (run_dir / RESOLVED_CONFIG_FILE).is_file():
            if yaml_path is not None:  # a directory of checkpoints without the run's config: the given YAML
                return yaml_path, overrides
            raise UserError(f"--resume {resume}: no {RESOLVED_CONFIG_FILE} in {run_dir}",
                            hint="give the run config too: clipforge train RUN.yaml --resume PATH")  # fmt: skip
        overrides = [f"run_dir={json.dumps(str(run_dir))}", *overrides]
    saved = run_dir / RESOLVED_CONFIG_FILE
    if yaml_path is not None and Path(yaml_path).resolve() != saved.resolve():
        log.warning("resuming %s with the config it was trained with (%s); %s is not read (put changes after "
                    "--resume as key=value)", run_dir, saved, yaml_path)  # fmt: skip
    return saved, overrides
