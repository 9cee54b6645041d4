"""Distillation: a student matches a teacher's image-text similarity distribution.

For every row (an image against all texts, and a text against all images) the student's softmax over
its logits is pulled towards the teacher's with KL(P_teacher || P_student), averaged over both
directions (as in the symmetric CLIP loss), and added to the student's own contrastive loss:
    L = contrastive_weight * InfoNCE(student) + distill_weight * (KL_i2t + KL_t2i) / 2.
The teacher uses its own temperature; its features carry no gradient.

Teacher features can be computed once and read back: ``precompute_teacher_features`` runs the teacher
over a loader and writes ``teacher_features.safetensors`` (``image`` (S, E), ``text`` (S, E) normalized,
``index`` (S,) the loader's global sample indices, sorted; ``logit_scale`` (), and ``logit_bias`` () when
the teacher has one).  ``TeacherFeatures(dir).get(batch.indices)`` returns the teacher's CLIPOutput for a
batch.  Texts are keyed by sample index, so precompute with the same caption choice the training loader
makes (a loader with one caption per sample, or train=False).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import Progress
from safetensors.torch import load_file, save_file

from clipforge.errors import UserError
from clipforge.loss.contrastive import Gather, RowsColumns, infonce, rows_and_columns
from clipforge.model.clip import CLIPOutput
from clipforge.utils.io import atomic_path

FEATURES_FILE = "teacher_features.safetensors"


def similarity_kl(student: RowsColumns, teacher: RowsColumns, s_scale: torch.Tensor, t_scale: torch.Tensor) -> torch.Tensor:
    """(KL_i2t + KL_t2i) / 2 of the teacher's row softmax to the student's, summed over rows / ``student.denom``.

    Args:
        student, teacher: rows and columns laid out alike (same offsets, same N).
        s_scale, t_scale: each model's exponentiated logit scale.
    """
    total = student.q_img.new_zeros(())
    for sq, sk, tq, tk in (
        (student.q_img, student.k_txt, teacher.q_img, teacher.k_txt),  # image rows over all texts
        (student.q_txt, student.k_img, teacher.q_txt, teacher.k_img),  # text rows over all images
    ):
        log_ps = F.log_softmax(s_scale * sq @ sk.T, dim=1)  # (M, N)
        log_pt = F.log_softmax(t_scale * tq @ tk.T, dim=1)  # (M, N)
        total = total + F.kl_div(log_ps, log_pt, reduction="sum", log_target=True)
    return total / (2 * student.denom)


def distill_loss(
    out: CLIPOutput,
    teacher: CLIPOutput,
    gather: Gather | None = None,
    *,
    world_size: int = 1,
    local_loss: bool = True,
    chunk_size: int = 0,
    distill_weight: float = 1.0,
    contrastive_weight: float = 1.0,
) -> torch.Tensor:
    """Student contrastive loss plus the weighted similarity KL to ``teacher`` (module docstring).

    Args:
        out: the student's output for this rank's batch; teacher: the teacher's for the same samples.
        gather, world_size, local_loss, chunk_size: as ``contrastive_loss`` (the KL term is not streamed).
        distill_weight: weight of the KL term; contrastive_weight: weight of the student's InfoNCE.
    """
    if teacher.image_features.shape[0] != out.image_features.shape[0]:
        raise ValueError(f"teacher has {teacher.image_features.shape[0]} rows, student {out.image_features.shape[0]}")
    student = rows_and_columns(out.image_features, out.text_features, gather, world_size, local_loss)
    t_img, t_txt = teacher.image_features.detach(), teacher.text_features.detach()
    teach = rows_and_columns(t_img.to(out.image_features), t_txt.to(out.image_features), gather, world_size, local_loss)
    kl = similarity_kl(student, teach, out.logit_scale, teacher.logit_scale.detach().to(out.logit_scale))
    loss = distill_weight * kl
    if contrastive_weight:
        loss = loss + contrastive_weight * infonce(student, out.logit_scale, chunk_size)
    return loss


class TeacherFeatures:
    """Precomputed teacher features in a directory (see ``precompute_teacher_features``).

    Args:
        path: the directory holding ``teacher_features.safetensors``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        file = self.path / FEATURES_FILE
        if not file.is_file():
            raise UserError(f"no {FEATURES_FILE} in {self.path}", hint="write it with precompute_teacher_features")
        t = load_file(str(file))
        missing = {"image", "text", "index", "logit_scale"} - set(t)
        if missing:
            raise UserError(f"{file} lacks {sorted(missing)}", hint="rewrite it with precompute_teacher_features")
        self.image, self.text, self.index = t["image"], t["text"], t["index"]
        self.logit_scale, self.logit_bias = t["logit_scale"], t.get("logit_bias")

    def __len__(self) -> int:
        return self.index.shape[0]

    def get(self, indices: torch.Tensor, device: torch.device | str = "cpu") -> CLIPOutput:
        """The teacher's output for these global sample indices (B,). Raises UserError for unknown indices.

        Args:
            indices: (B,) int64 sample indices (``Batch.indices``). device: where to put the features.
        """
        idx = indices.detach().to("cpu", torch.int64)
        pos = torch.searchsorted(self.index, idx).clamp(max=len(self) - 1)  # index is sorted
        bad = self.index[pos] != idx
        if bad.any():
            raise UserError(
                f"{int(bad.sum())} sample indices (e.g. {int(idx[bad][0])}) have no teacher features in {self.path}",
                hint="precompute the teacher features on the same dataset the student trains on",
            )
        bias = None if self.logit_bias is None else self.logit_bias.to(device)
        return CLIPOutput(self.image[pos].to(device), self.text[pos].to(device), self.logit_scale.to(device), bias)


@torch.no_grad()
def precompute_teacher_features(teacher_model: torch.nn.Module, loader: Iterable[Any], out_dir: str | Path) -> Path:
    """Run ``teacher_model`` over ``loader`` and write its features keyed by sample index (atomically).

    Args:
        teacher_model: a CLIP model (forward(pixels, token_ids) -> CLIPOutput); put it on its device first.
        loader: yields batches with ``pixels``, ``token_ids`` and ``indices`` (clipforge.data.loader.Batch).
        out_dir: directory to write ``teacher_features.safetensors`` into.
    Returns: the path of the written file.
    """
    device = next(teacher_model.parameters()).device
    was_training = teacher_model.training
    teacher_model.eval()
    images, texts, indices = [], [], []
    out: CLIPOutput | None = None
    try:
        with Progress() as progress:
            task = progress.add_task("teacher features", total=len(loader) if hasattr(loader, "__len__") else None)
            for batch in loader:
                out = teacher_model(batch.pixels.to(device), batch.token_ids.to(device))
                images.append(out.image_features.float().cpu())
                texts.append(out.text_features.float().cpu())
                indices.append(batch.indices.cpu().to(torch.int64))
                progress.advance(task)
    finally:
        teacher_model.train(was_training)
    if out is None:
        raise UserError("the loader for the teacher features yielded no batches")
    index = torch.cat(indices)
    order = torch.argsort(index)
    index = index[order]
    if (index[1:] == index[:-1]).any():
        raise UserError("the loader yielded a sample index twice", hint="precompute over one epoch, train=False")
    tensors = {
        "image": torch.cat(images)[order].contiguous(),
        "text": torch.cat(texts)[order].contiguous(),
        "index": index.contiguous(),
        "logit_scale": out.logit_scale.detach().float().cpu().reshape(()),
    }
    if out.logit_bias is not None:
        tensors["logit_bias"] = out.logit_bias.detach().float().cpu().reshape(())
    path = Path(out_dir) / FEATURES_FILE
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return path
