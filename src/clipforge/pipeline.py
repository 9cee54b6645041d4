"""``clipforge.load``: a checkpoint directory (or a named pretrained model) as a ready-to-use Pipeline.

Every stage after training (eval, embed, search, serve, moderate) gets its model, tokenizer and image
preprocessing from here, so all of them feed a model exactly as its checkpoint says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipforge.checkpoint import PipelineConfig, load_state_into, read_config, read_identity, read_weights
from clipforge.data.transforms import eval_transform
from clipforge.model.clip import CLIP
from clipforge.precision import PrecisionCheck, apply_precision, check_precision
from clipforge.pretrained import resolve_pretrained
from clipforge.text.tokenizer import build_tokenizer


@dataclass
class Pipeline:
    """A loaded checkpoint.

    Attributes:
        model: the CLIP model (``encode_image``, ``encode_text`` give unnormalized features).
        tokenizer: ``tokenizer(list[str]) -> LongTensor (B, context_length)``.
        preprocess: PIL image -> float tensor (3, H, W).
        config: the PipelineConfig the checkpoint was saved with.
        precision: the inference precision the model runs in (see ``clipforge.precision``).
        precision_checks: what ``precision="auto"`` measured on its probe set, per tower (cosine to fp32, seconds).
        identity: the checkpoint's identity (hash of config + weights as stored, ``checkpoint.read_identity``).
    """

    model: CLIP
    tokenizer: Callable[[list[str]], torch.Tensor]
    preprocess: Callable[[Any], torch.Tensor]
    config: PipelineConfig
    precision: str = "fp32"
    precision_checks: list[PrecisionCheck] = field(default_factory=list)
    identity: str = ""


def load(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
         precision: str = "fp32") -> Pipeline:
    """Load a clipforge checkpoint directory (or a named pretrained model) into a Pipeline (model in eval mode).

    Args:
        path: a directory holding config.json and model.safetensors, or a registered pretrained name
            (see ``clipforge.pretrained``), converted into the cache on first use.
        device: where to put the model.
        dtype: optional dtype for the model's floating-point weights (e.g. torch.bfloat16).
        precision: "fp32", "bf16", "int8" or "int8-image" (CPU), or "auto" (see ``clipforge.precision``).
    """
    check_precision(precision, device)
    ckpt = Path(path)
    if not ckpt.exists():
        ckpt = resolve_pretrained(str(path))
    config = read_config(ckpt)
    state = read_weights(ckpt)
    model = CLIP(config.model)
    load_state_into(model, state, str(ckpt))
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = build_tokenizer(config.tokenizer, ckpt)
    model, used, checks = apply_precision(model, precision, tokenizer)
    return Pipeline(model=model, tokenizer=tokenizer, preprocess=eval_transform(config.preprocess), config=config,
                    precision=used, precision_checks=checks, identity=read_identity(ckpt, state))
