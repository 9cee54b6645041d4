"""The training loop: one process, or one per device under torchrun (DDP; gloo on CPU, NCCL on GPU).

    result = run_training(cfg)                      # cfg: TrainConfig
    result = run_training(cfg, resume="latest")     # continue from run_dir's newest checkpoint

Determinism: the model's random draws (patch dropout) use the global generators, which are saved in every
checkpoint; data loading and evaluation run with those generators isolated, and the data order is a function
of (seed, epoch). So a run resumed from a checkpoint, even mid-epoch, computes the same loss at every later
step as the uninterrupted run (bit for bit on CPU; tested in tests/test_train_resume.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from clipforge.checkpoint import PipelineConfig, load_state_into, save_checkpoint
from clipforge.data.config import PreprocessConfig
from clipforge.data.transforms import eval_transform
from clipforge.dist import parallelize
from clipforge.dist.env import World, init_distributed
from clipforge.dist.sync import all_gather_object, all_reduce_mean, barrier
from clipforge.errors import UserError
from clipforge.loss.build import build_loss
from clipforge.model.clip import CLIP
from clipforge.model.text import trim_on_host
from clipforge.pipeline import Pipeline
from clipforge.train import state as train_state
from clipforge.train.config import TrainConfig
from clipforge.train.flops import flops_per_sample, peak_flops
from clipforge.train.health import LazyMetrics, PendingLosses, StepHealth, skip_or_step
from clipforge.train.optim import build_optimizer
from clipforge.train.progress import Meter, Reporter
from clipforge.train.schedule import lr_at, set_lr
from clipforge.train.setup import (
    LoaderFactory,
    config_eval_fn,
    default_loader_factory,
    model_config,
    pick_device,
    setup_tokenizer,
)
from clipforge.train.task import forward_backward
from clipforge.train.teacher import build_teacher, teacher_prep
from clipforge.utils.configs import to_dict, write_resolved
from clipforge.utils.layout import FINAL_DIR
from clipforge.utils.rng import capture_rng, isolated_rng, restore_rng
from clipforge.utils.syncs import SyncCounter

log = logging.getLogger(__name__)

EvalFn = Callable[[Pipeline], dict[str, float]]
StepCallback = Callable[[int, dict[str, float]], None]


class TrainingDiverged(UserError):
    """Too many non-finite losses or gradients in a row."""


@dataclasses.dataclass
class TrainResult:
    """What a run did.

    Attributes:
        run_dir: the run directory. final_dir: the exported clipforge checkpoint (None on ranks > 0).
        step: optimizer steps done in total (including those before a resume).
        losses: step -> loss (averaged over ranks) for the steps run by this call.
        skipped_steps: steps skipped for a non-finite loss or gradient.
        samples_per_s: mean global throughput of this call.
    """

    run_dir: Path
    final_dir: Path | None
    step: int
    losses: dict[int, float]
    skipped_steps: int
    samples_per_s: float


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _gather_rng(world: World) -> list[dict[str, Any]]:
    """Every rank's RNG state, in rank order (the checkpoint holds all of them)."""
    return all_gather_object(capture_rng(), world)


class Trainer:
    """Holds a run's model, optimizer and position; ``fit()`` runs the loop. Use ``run_training``."""

    def __init__(
        self,
        cfg: TrainConfig,
        world: World,
        loader_factory: LoaderFactory | None = None,
        eval_fn: EvalFn | None = None,
        on_step: StepCallback | None = None,
    ) -> None:
        if cfg.batch_size % world.world_size:
            raise UserError(f"batch_size={cfg.batch_size} is not divisible by the {world.world_size} ranks")
        self.cfg, self.world, self.eval_fn, self.on_step = cfg, world, eval_fn, on_step
        self.run_dir = Path(cfg.run_dir)
        self.device = world.device
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 runs use TF32 tensor cores (MFU peak assumes it)
            torch.backends.cudnn.allow_tf32 = True
        context_length = model_config(cfg).text.context_length
        self.tok = setup_tokenizer(cfg, context_length, self.run_dir, world)
        self.model_cfg = model_config(cfg, self.tok.config)
        self.preprocess: PreprocessConfig = dataclasses.replace(
            cfg.preprocess, image_size=self.model_cfg.vision.image_size
        )
        _seed_everything(cfg.seed)  # model init depends only on the seed
        self.model = CLIP(self.model_cfg).to(self.device)
        self.model.set_grad_checkpointing(cfg.grad_checkpointing)
        self.fsdp = cfg.parallel == "fsdp" and world.distributed
        if self.fsdp:
            if cfg.eval_every:
                raise UserError("eval_every is not supported with parallel=fsdp yet (the evaluation runs on rank 0 "
                                "alone, and sharded towers need every rank)", hint="evaluate run_dir/final afterwards")
            parallelize.shard_towers(self.model)  # before the optimizer: sharding replaces the parameters
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.loss_fn = build_loss(cfg.loss, world, has_logit_bias=self.model_cfg.init_logit_bias is not None)
        self.teacher = build_teacher(cfg, self.device)  # None unless distilling (train/teacher.py)
        self.loaders = loader_factory or default_loader_factory(cfg, self.tok.tokenize, self.preprocess, world,
                                                                teacher_prep(self.teacher))
        self.step, self.epoch, self.batches_in_epoch = 0, 0, 0
        self.health = StepHealth(self.device, cfg.max_bad_steps)
        # log.count_syncs: host reads of device values per step (step -> count, and where they were made).
        self.sync_counter = SyncCounter() if cfg.log.count_syncs else None
        self.syncs: dict[int, int] = {}
        self._rng_to_restore: dict[str, Any] | None = None

    # --- checkpoints ------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The full training state (every rank's RNG included); call on every rank, save on rank 0."""
        bad_in_row, skipped, _ = self.health.read()
        sharded = {"sharded": True}  # model and optimizer are in the step_N.dcp folder beside it
        return {
            **(sharded if self.fsdp else {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}),
            "step": self.step,
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "bad_in_row": bad_in_row,
            "skipped": skipped,
            "rng": _gather_rng(self.world),
            "config": to_dict(self.cfg),
            "model_config": to_dict(self.model_cfg),
        }

    def save(self) -> None:
        state = self.state()
        if self.fsdp:  # the shards first: a step_N.pt exists only once its shards are complete
            path = train_state.checkpoint_path(self.run_dir, self.step)
            parallelize.save_sharded(self.model, self.optimizer, train_state.sharded_dir(path), self.world)
        if self.world.is_main:
            train_state.save_train_state(self.run_dir, self.step, state, self.cfg.checkpoint.keep_last)
        barrier(self.world)

    def load(self, path: Path) -> None:
        """Restore a state saved by ``save``; the RNG is restored right before the loop starts."""
        state = train_state.load_train_state(path)
        if state["model_config"] != to_dict(self.model_cfg):
            raise UserError(f"{path} was saved for a different model config than this run's",
                            hint="resume with the run's own config (run_dir/config.yaml)")
        if state.get("sharded"):
            if not self.fsdp:
                raise UserError(f"{path} is a sharded (parallel=fsdp) checkpoint", hint="resume with parallel=fsdp")
            parallelize.load_sharded(self.model, self.optimizer, train_state.sharded_dir(path))
        else:
            if self.fsdp:
                raise UserError(f"{path} is not a sharded checkpoint", hint="resume it with parallel=ddp")
            load_state_into(self.model, state["model"], str(path))
            self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        self.health.restore(int(state["bad_in_row"]), int(state["skipped"]))
        rngs = state["rng"]
        self._rng_to_restore = rngs[self.world.rank] if self.world.rank < len(rngs) else rngs[0]

    # --- the loop -----------------------------------------------------------------------------------------

    def total_steps(self) -> int:
        if self.cfg.steps:
            return self.cfg.steps
        with isolated_rng():
            per_epoch = len(self.loaders(0, 0))
        if per_epoch == 0:
            raise UserError(f"{self.cfg.data.train}: no full batch of {self.cfg.batch_size} in the training data",
                            hint="lower batch_size or add data")
        return self.cfg.epochs * per_epoch

    def fit(self) -> TrainResult:
        """Run from the current position to the last step; returns the run's TrainResult."""
        cfg, world = self.cfg, self.world
        total = self.total_steps()
        train_model = self._wrap()
        reporter = Reporter(self.run_dir, total, self.step, world.is_main, cfg.log.progress, cfg.log.tensorboard)
        flops = flops_per_sample(self.model_cfg)
        peak = peak_flops(self.device, cfg.precision, cfg.log.peak_flops)
        losses: dict[int, float] = {}
        self._pending = PendingLosses()
        meter, started, seen = Meter(), time.perf_counter(), 0
        if self._rng_to_restore is not None:
            restore_rng(self._rng_to_restore)
        self.model.train()
        try:
            while self.step < total:
                with isolated_rng():
                    batches = iter(self.loaders(self.epoch, self.batches_in_epoch))
                got_any = False
                while self.step < total:
                    t0 = time.perf_counter()
                    with isolated_rng():
                        batch = next(batches, None)
                    if batch is None:
                        break
                    got_any = True
                    meter.add(batch.pixels.shape[0] * world.world_size, time.perf_counter() - t0)
                    seen += batch.pixels.shape[0] * world.world_size
                    with self._counting():
                        loss, scale = self._train_step(train_model, batch, total)
                        self._pending.add(self.step, loss)
                    metrics = {"loss": loss, "logit_scale": scale, "epoch": float(self.epoch)}
                    if self.on_step is not None:  # the caller's code: its reads are its own, not counted
                        self.on_step(self.step, LazyMetrics(metrics))
                    with self._counting():
                        self._after_step(reporter, meter, metrics, flops, peak, total, losses)
                if not got_any and self.batches_in_epoch == 0:
                    raise UserError(f"{cfg.data.train}: the loader yielded no batches for epoch {self.epoch}",
                                    hint="check the data source and batch_size")
                if batch is None:  # the epoch ran out (not the step budget)
                    self._end_epoch(reporter, batches)
            self._pending.flush(losses)
            if not train_state.list_checkpoints(self.run_dir) or train_state.list_checkpoints(self.run_dir)[-1][0] != self.step:
                self.save()
            final = self._export()
        finally:
            reporter.close()
        elapsed = max(time.perf_counter() - started, 1e-9)
        return TrainResult(self.run_dir, final, self.step, losses, self.health.read()[1], seen / elapsed)

    def _counting(self) -> contextlib.AbstractContextManager:
        """Count this step's host reads into ``self.syncs`` when ``log.count_syncs`` is on."""
        if self.sync_counter is None:
            return contextlib.nullcontext()
        return _CountInto(self.sync_counter, self.syncs, lambda: self.step)

    def _wrap(self) -> torch.nn.Module:
        model: torch.nn.Module = self.model
        if self.cfg.compile:
            model = torch.compile(model)
        if self.world.distributed and not self.fsdp:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        return model

    def _train_step(self, train_model: torch.nn.Module, batch: Any, total: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns (loss averaged over ranks, logit scale) as device tensors, unread."""
        cfg = self.cfg
        pixels = batch.pixels.to(self.device, non_blocking=True)
        # Trimmed to the longest caption on the host; a compiled model gets the full context instead, since every
        # new length would be a new graph to compile.
        ids = batch.token_ids if cfg.compile else trim_on_host(batch.token_ids, self.model_cfg.text)
        token_ids = ids.to(self.device, non_blocking=True)
        set_lr(self.optimizer, lr_at(self.step, base_lr=cfg.optim.lr, warmup_steps=cfg.optim.warmup_steps,
                                     total_steps=total, min_lr=cfg.optim.min_lr))
        teacher = self.teacher(batch, self.device) if self.teacher is not None else None
        out = forward_backward(train_model, self.loss_fn, pixels, token_ids, accum_freq=cfg.accum_freq,
                               accum_mode=cfg.accum_mode, precision=cfg.precision, teacher=teacher)
        loss = all_reduce_mean(out.loss, self.world)
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        if self.fsdp:  # the towers' gradients are reduce-scattered by FSDP; the root's scalars are averaged here
            parallelize.average_replicated_grads(self.model, self.world)
            grad_norm = parallelize.clip_grad_norm(list(self.model.parameters()), max_norm)
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        # NaN/inf loss or gradient: no update (decided on the device; the host learns of it on log steps).
        skip_or_step(self.optimizer, self.health.update(loss, grad_norm))
        self.model.clamp_logit_scale()  # CLIP paper 2.5: temperature capped at 100 (a no-op after a skipped step)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.batches_in_epoch += 1
        return loss, out.logit_scale

    def _check_health(self) -> int:
        """Read the NaN/inf counters (one wait for the device); stop the run if it diverged. Returns skipped steps."""
        bad_in_row, skipped, diverged = self.health.read()
        if diverged:
            raise TrainingDiverged(
                f"by step {self.step}: loss or gradient was NaN/inf {self.cfg.max_bad_steps} steps in a row "
                f"(max_bad_steps={self.cfg.max_bad_steps}); stopping (steps since then were not applied)",
                hint="lower optim.lr, raise optim.warmup_steps, or use precision=fp32; "
                "resume from an earlier checkpoint with --resume PATH",
            )
        return skipped

    def _after_step(self, reporter: Reporter, meter: Meter, metrics: dict[str, Any], flops: float,
                    peak: float | None, total: int, losses: dict[int, float]) -> None:
        """Log, checkpoint and evaluate when due: the only places a step reads values back from the device."""
        cfg = self.cfg
        reporter.advance(self.step)
        if self.step % cfg.log.every_steps == 0 or self.step == total:
            skipped = self._check_health()
            self._pending.flush(losses)  # every loss since the last log step, in one transfer
            window = meter.window()
            mfu = window["samples_per_s"] * flops / (peak * self.world.world_size) if peak else None
            values = {k: float(v) for k, v in metrics.items()}
            if self.sync_counter is not None:
                values["host_syncs_last_step"] = float(self.syncs.get(self.step - 1, 0))
            reporter.log(self.step, {**values, **window, "lr": self.optimizer.param_groups[0]["lr"],
                                     "skipped_steps": float(skipped), "mfu": mfu})
        if cfg.checkpoint.every_steps and self.step % cfg.checkpoint.every_steps == 0:
            self.save()
        if self.eval_fn is not None and cfg.eval_every and self.step % cfg.eval_every == 0:
            self._evaluate(reporter)

    def _end_epoch(self, reporter: Reporter, batches: Any) -> None:
        stats = getattr(getattr(batches, "stats", None), "counts", None) or {}
        if stats:
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(stats.items()))
            reporter.message(f"epoch {self.epoch}: skipped {sum(stats.values())} items ({detail})")
        self.epoch += 1
        self.batches_in_epoch = 0

    def pipeline(self) -> Pipeline:
        """The current model as a Pipeline (for evaluation hooks)."""
        config = PipelineConfig(self.model_cfg, self.tok.config, self.preprocess)
        return Pipeline(self.model, self.tok.tokenize, eval_transform(self.preprocess), config)

    def _evaluate(self, reporter: Reporter) -> None:
        if self.world.is_main and self.eval_fn is not None:
            self.model.eval()
            with isolated_rng(), torch.no_grad():
                results = self.eval_fn(self.pipeline())
            self.model.train()
            reporter.log(self.step, {f"eval.{k}": float(v) for k, v in results.items()})
            reporter.message(f"step {self.step} eval: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
        barrier(self.world)

    def _export(self) -> Path | None:
        """Write run_dir/final on rank 0 (None elsewhere); with FSDP every rank first helps gather the weights."""
        model = self.model
        if self.fsdp:
            state = parallelize.full_model_state(self.model)
            if not self.world.is_main:
                return None
            model = CLIP(self.model_cfg)
            load_state_into(model, state, "the gathered FSDP shards")
        elif not self.world.is_main:
            return None
        config = PipelineConfig(self.model_cfg, self.tok.config, self.preprocess)
        return save_checkpoint(model, config, self.run_dir / FINAL_DIR, tokenizer_json=self.tok.json)


class _CountInto:
    """Runs part of a step under ``counter`` and adds its count to the step number it ends on."""

    def __init__(self, counter: SyncCounter, into: dict[int, int], step: Callable[[], int]) -> None:
        self.counter, self.into, self.step = counter, into, step

    def __enter__(self) -> None:
        self.counter.reset()
        self.counter.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.counter.__exit__(*exc)
        self.into[self.step()] = self.into.get(self.step(), 0) + self.counter.count


def run_training(
    cfg: TrainConfig,
    *,
    resume: str | None = None,
    eval_fn: EvalFn | None = None,
    loader_factory: LoaderFactory | None = None,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train ``cfg`` to the end and export ``run_dir/final`` (a checkpoint ``clipforge.load`` reads).

    Args:
        cfg: the resolved run config; it is written to ``run_dir/config.yaml``.
        resume: None, "latest" (newest checkpoint in run_dir; a fresh start if there is none) or a path.
        eval_fn: ``(pipeline) -> {metric: value}``, called every ``cfg.eval_every`` steps on rank 0; default:
            the zero-shot check ``cfg.eval`` describes (``train.setup.config_eval_fn``).
        loader_factory: ``(epoch, skip_batches) -> loader``; default: ``clipforge.data.loader.build_loader``.
        on_step: ``(step, metrics)`` called after every step (tests use it to stop a run part-way).
    """
    if eval_fn is None:
        eval_fn = config_eval_fn(cfg)  # before init_distributed: a config error fails before any process group
    world = init_distributed(pick_device(cfg))
    trainer = Trainer(cfg, world, loader_factory=loader_factory, eval_fn=eval_fn, on_step=on_step)
    if world.is_main:
        for path in train_state.clean_run_dir(trainer.run_dir):
            log.warning("removed %s, left by a save that was interrupted", path)
        write_resolved(cfg, trainer.run_dir)
    start = train_state.resolve_resume(cfg.run_dir, resume)
    if start is not None:
        trainer.load(start)
    if world.is_main and resume:  # batch logs should say where a run picked up
        where = f"resumed from step {trainer.step} ({start})" if start is not None else \
            f"no checkpoint in {trainer.run_dir / train_state.CHECKPOINT_DIR} to resume: starting at step 0"
        print(where, flush=True)
    return trainer.fit()
