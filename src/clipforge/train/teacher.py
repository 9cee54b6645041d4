"""Distillation teachers: where a run's teacher outputs come from, behind one call.

    teacher = build_teacher(cfg, device)     # None unless loss.kind == "distill"
    out = teacher(batch, device)             # CLIPOutput: normalized features (B, E) and the teacher's scale

- ``OnlineTeacher`` (``loss.teacher=CKPT``): a frozen clipforge checkpoint of any family, run in the loop under
  no_grad on the views and captions the loader prepared with the teacher's own preprocessing and tokenizer
  (``prep``; clipforge.data.teacher). MobileCLIP's online distillation (Vasu et al. 2024, section 3).
- ``StoredTeacher``: shards written by ``clipforge data reinforce`` carry the teacher's embeddings of the very
  augmentation the loader picked; no teacher model runs (dataset reinforcement, Vasu et al. 2024, section 3.1).
- ``IndexedTeacher`` (``loss.teacher_features=DIR``): features precomputed per sample index
  (clipforge.loss.distill.precompute_teacher_features).

Under torchrun every rank runs its teacher on its own batch; the loss gathers the teacher's features across
ranks exactly as it gathers the student's (clipforge.loss.distill).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from clipforge.data.teacher import TeacherInputs, TeacherPrep
from clipforge.errors import UserError
from clipforge.loss.distill import TeacherFeatures
from clipforge.model.clip import CLIPOutput
from clipforge.pipeline import load
from clipforge.train.reinforce import read_manifest
from clipforge.train.task import autocast_context

if TYPE_CHECKING:
    from clipforge.data.datasets import Batch
    from clipforge.train.config import TrainConfig


class Teacher(Protocol):
    def __call__(self, batch: Batch, device: torch.device) -> CLIPOutput: ...


def _inputs(batch: Batch, need: str) -> TeacherInputs:
    inputs = batch.teacher
    if inputs is None or getattr(inputs, need) is None:
        raise UserError("the batch carries no teacher inputs",
                        hint="train distillation with loss.teacher=CKPT, loss.teacher_features=DIR, or on "
                        "shards written by 'clipforge data reinforce'")  # fmt: skip
    return inputs


class OnlineTeacher:
    """A frozen clipforge checkpoint run in the training loop.

    Args:
        path: the teacher's checkpoint directory (or a pretrained name ``clipforge.load`` resolves).
        device: where it runs.
        precision: "bf16" runs its forward under bf16 autocast; features are returned in fp32.
    """

    def __init__(self, path: str | Path, device: torch.device, precision: str = "fp32") -> None:
        pipe = load(path, device=device)
        self.model = pipe.model.eval().requires_grad_(False)
        self.config = pipe.config
        self.device, self.precision = device, precision
        self.prep: TeacherPrep = TeacherPrep(pipe.config.preprocess, pipe.tokenizer)

    @torch.no_grad()
    def __call__(self, batch: Batch, device: torch.device) -> CLIPOutput:
        inputs = _inputs(batch, "pixels")
        with autocast_context(self.device, self.precision):
            out = self.model(inputs.pixels.to(self.device), inputs.token_ids.to(self.device))
        bias = out.logit_bias.float().to(device) if out.logit_bias is not None else None
        return CLIPOutput(out.image_features.float().to(device), out.text_features.float().to(device),
                          out.logit_scale.float().to(device), bias)  # fmt: skip


class StoredTeacher:
    """The teacher's embeddings stored in reinforced shards (``Batch.teacher.image_features``).

    Args:
        logit_scale, logit_bias: the teacher's exponentiated temperature (and bias), from the shards' manifest.
    """

    def __init__(self, logit_scale: float, logit_bias: float | None = None) -> None:
        self.logit_scale, self.logit_bias = logit_scale, logit_bias

    def __call__(self, batch: Batch, device: torch.device) -> CLIPOutput:
        inputs = _inputs(batch, "image_features")
        bias = None if self.logit_bias is None else torch.tensor(self.logit_bias, device=device)
        return CLIPOutput(inputs.image_features.to(device), inputs.text_features.to(device),
                          torch.tensor(self.logit_scale, device=device), bias)  # fmt: skip


class IndexedTeacher:
    """Teacher features precomputed per sample index (clipforge.loss.distill.TeacherFeatures)."""

    def __init__(self, path: str | Path) -> None:
        self.store = TeacherFeatures(path)

    def __call__(self, batch: Batch, device: torch.device) -> CLIPOutput:
        return self.store.get(batch.indices, device)


def build_teacher(cfg: TrainConfig, device: torch.device) -> Teacher | None:
    """The run's teacher (see the module docstring); None when the loss is not "distill".

    Raises:
        UserError: a distill run with no teacher source, or with both a checkpoint and precomputed features.
    """
    loss = cfg.loss
    if loss.kind != "distill":
        if loss.teacher or loss.teacher_features:
            raise UserError(f"loss.teacher / loss.teacher_features are set but loss.kind is {loss.kind!r}",
                            hint="set loss.kind=distill to train against the teacher")  # fmt: skip
        return None
    if loss.teacher and loss.teacher_features:
        raise UserError("set one of loss.teacher (a checkpoint run online) and loss.teacher_features, not both")
    if loss.teacher:
        return OnlineTeacher(loss.teacher, device, cfg.precision)
    if loss.teacher_features:
        return IndexedTeacher(loss.teacher_features)
    manifest = read_manifest(cfg.data.train)
    if manifest is None:
        raise UserError("loss.kind=distill needs a teacher",
                        hint="set loss.teacher=CKPT (run online), loss.teacher_features=DIR, or train on shards "
                        "written by 'clipforge data reinforce'")  # fmt: skip
    return StoredTeacher(manifest.logit_scale, manifest.logit_bias)


def teacher_prep(teacher: Teacher | None) -> TeacherPrep | None:
    """What the loader must prepare for ``teacher`` (an online teacher's preprocessing and tokenizer)."""
    return getattr(teacher, "prep", None)
