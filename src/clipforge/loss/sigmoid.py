"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training", eq. 1).

Every (image i, text j) pair is an independent binary problem, no softmax over the batch:
    L = -(1/N) * sum_{i,j} log sigmoid( z_ij * (scale * x_i . y_j + bias) ),   z_ij = +1 if i == j else -1.
The model learns ``scale`` (stored as log, init log 10) and ``bias`` (init -10, so that the ~N^2 negatives
start with a small loss): set ``CLIPConfig.init_logit_scale = log(10)`` and ``init_logit_bias = -10``.

Across ranks (paper section 3.3): images stay where they are; the text blocks travel around a ring of
ranks, one block at a time, so no rank ever runs a full all-gather.  Rank r's loss is its images against
every rank's texts, summed and divided by N / W, so the mean over ranks is exactly L.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from clipforge.errors import UserError
from clipforge.model.clip import CLIPOutput

# (this rank's rows) -> the other ranks' blocks of rows, one at a time; from dist/gather.py.
Ring = Callable[[torch.Tensor], Iterator[torch.Tensor]]


def sigmoid_block(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, positives: bool
) -> torch.Tensor:
    """Summed sigmoid loss of images (M, E) against texts (K, E); ``positives``: the diagonal pairs match.

    Args:
        img, txt: L2-normalized features. scale: exponentiated scale; bias: the learned bias.
        positives: True for a rank's own block (row i matches column i), False for other ranks' blocks.
    Returns: scalar sum over the M x K pairs of -log sigmoid(z * logit).
    """
    logits = scale * img @ txt.T + bias  # (M, K)
    if positives:
        z = 2 * torch.eye(img.shape[0], txt.shape[0], device=logits.device, dtype=logits.dtype) - 1
        return -F.logsigmoid(z * logits).sum()
    return -F.logsigmoid(-logits).sum()


def sigmoid_loss(out: CLIPOutput, ring: Ring | None = None, *, world_size: int = 1) -> torch.Tensor:
    """SigLIP loss for this rank's batch against every rank's texts.

    Args:
        out: this rank's model output; needs ``logit_bias`` (a model built with ``init_logit_bias``).
        ring: the text-block exchange (dist/gather.py ring_blocks); None in a single process.
        world_size: ranks whose losses DDP averages.
    Returns: scalar; the mean over ranks equals the single-process loss on the concatenated batch.
    """
    if out.logit_bias is None:
        raise UserError(
            "loss kind 'sigmoid' needs a model with a learnable logit bias",
            hint="set model init_logit_bias=-10 and init_logit_scale=2.302585 (log 10), as in SigLIP",
        )
    img, txt = out.image_features, out.text_features
    if img.shape[0] != txt.shape[0]:
        raise ValueError(f"{img.shape[0]} images but {txt.shape[0]} texts")
    total = sigmoid_block(img, txt, out.logit_scale, out.logit_bias, positives=True)
    n = txt.shape[0]
    if ring is not None:
        for block in ring(txt):  # (B_s, E) texts of rank s, arriving around the ring
            total = total + sigmoid_block(img, block, out.logit_scale, out.logit_bias, positives=False)
            n += block.shape[0]
    return total / (n / world_size)
