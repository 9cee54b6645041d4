"""Inference precision of a loaded model: fp32, bf16, int8, or auto (the fastest that stays accurate).

- ``fp32``: the weights as saved.
- ``bf16``: bfloat16 weights (half the memory traffic). Faster only where the CPU computes in bf16 natively
  (AVX-512 BF16, AMX); on an AVX2 CPU it is slower (benchmarks/results/cpu_inference.md: 0.2x fp32 images/s).
- ``int8``: the Linear layers of every transformer block dynamically quantized to int8
  (``torch.ao.quantization.quantize_dynamic``: int8 weights, activations quantized per batch). CPU only.
- ``auto``: on a GPU, bf16 autocast (matmuls in bf16, norms and softmax in fp32). On a CPU, every candidate is
  checked against fp32 on a fixed probe set and timed on it; the fastest one whose cosine to fp32 stays at or
  above ``MIN_COSINE`` for both towers is kept (fp32 itself when none does).

Callers L2-normalize the features after ``.float()``, so the normalization is always fp32.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from clipforge.errors import UserError
from clipforge.model.clip import CLIP
from clipforge.model.layers import MLP, Attention

PRECISIONS = ("fp32", "bf16", "int8", "auto")
# Cosine to fp32 below which a faster mode is not worth it: retrieval rankings start to move around 0.999
# (benchmarks/cpu_inference.py records each mode's cosine for the checkpoints it measures).
MIN_COSINE = 0.999
PROBE_TEXTS = (
    "a photo of a cat", "a red car parked on the street", "two dogs playing in the snow", "a bowl of soup",
    "an old map of the city", "a smiling face emoji", "a diagram of the solar system", "a bicycle",
)  # fmt: skip
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrecisionCheck:
    """One mode against fp32 on the probe set: minimum cosines of each tower's features and seconds per probe."""

    precision: str
    min_cosine_image: float
    min_cosine_text: float
    seconds: float

    @property
    def passed(self) -> bool:
        return min(self.min_cosine_image, self.min_cosine_text) >= MIN_COSINE

    def to_json(self) -> dict[str, float | str | bool]:
        return {**asdict(self), "passed": self.passed}


def check_precision(name: str, device: torch.device | str) -> str:
    """``name`` if it is a known mode that runs on ``device``; otherwise a one-line UserError."""
    if name not in PRECISIONS:
        raise UserError(f"unknown precision {name!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    if name == "int8" and torch.device(device).type != "cpu":
        raise UserError("precision int8 runs on CPU only (dynamic quantization has CPU kernels only)",
                        hint="use precision bf16 (or auto) on a GPU")
    return name


def quantize_int8(model: CLIP) -> CLIP:
    """A copy of ``model`` whose transformer-block Linear layers compute in int8 (dynamic quantization).

    Only the Linear modules of ``Attention`` and ``MLP`` blocks, and of those only the ones called as modules:
    an attention with separate q/v biases reads ``qkv.weight`` itself, so its ``qkv`` stays fp32.
    """
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, MLP):
            names |= {f"{prefix}.fc1", f"{prefix}.fc2"}
        elif isinstance(module, Attention):
            names.add(f"{prefix}.out")
            if module.q_bias is None:
                names.add(f"{prefix}.qkv")
    quantization = getattr(torch.ao, "quantization", None)
    if quantization is None or not hasattr(quantization, "quantize_dynamic"):
        raise UserError(f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic",
                        hint="use precision bf16 or fp32")
    with warnings.catch_warnings():  # torch 2.10+ announces the move of eager quantization to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantization.quantize_dynamic(copy.deepcopy(model), names, dtype=torch.qint8)


def _under_autocast(method: Callable[[torch.Tensor], torch.Tensor], device_type: str) -> Callable:
    @functools.wraps(method)
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            return method(x)

    return run


def autocast_bf16(model: CLIP) -> CLIP:
    """``model`` with both towers run under bf16 autocast (weights stay fp32). The towers are wrapped per
    instance, so ``model(pixels, ids)``, ``encode_image`` and ``encode_text`` all take the autocast path."""
    device_type = next(model.parameters()).device.type
    model.encode_image = _under_autocast(model.encode_image, device_type)  # type: ignore[method-assign]
    model.encode_text = _under_autocast(model.encode_text, device_type)  # type: ignore[method-assign]
    return model


def convert(model: CLIP, precision: str) -> CLIP:
    """``model`` in ``precision`` ("fp32", "bf16", "int8" or "bf16-autocast"); int8 returns a copy."""
    if precision == "bf16":
        return model.to(dtype=torch.bfloat16)
    if precision == "int8":
        return quantize_int8(model)
    if precision == "bf16-autocast":
        return autocast_bf16(model)
    return model


def probe_inputs(model: CLIP, tokenizer: Callable[[list[str]], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed probe set: 8 smooth pseudo-images (seeded low-frequency noise) and 8 captions."""
    size = model.cfg.vision.image_size
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(len(PROBE_TEXTS), 3, 8, 8, generator=g)
    pixels = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)  # (8, 3, S, S)
    return pixels, tokenizer(list(PROBE_TEXTS))


@torch.inference_mode()
def _features(model: CLIP, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    device = next(model.parameters()).device
    model.encode_image(pixels.to(device)), model.encode_text(ids.to(device))  # warm-up (first-call allocations)
    start = time.perf_counter()
    image = F.normalize(model.encode_image(pixels.to(device)).float(), dim=-1).cpu()
    text = F.normalize(model.encode_text(ids.to(device)).float(), dim=-1).cpu()
    return image, text, time.perf_counter() - start


def measure(model: CLIP, reference: tuple[torch.Tensor, torch.Tensor], probe: tuple[torch.Tensor, torch.Tensor],
            precision: str) -> PrecisionCheck:  # fmt: skip
    """``model`` (in ``precision``) against the fp32 features ``reference`` of ``probe``."""
    image, text, seconds = _features(model, *probe)
    cos_image = float((image * reference[0]).sum(-1).min())
    cos_text = float((text * reference[1]).sum(-1).min())
    return PrecisionCheck(precision, cos_image, cos_text, seconds)


def apply_precision(model: CLIP, precision: str, tokenizer: Callable[[list[str]], torch.Tensor]
                    ) -> tuple[CLIP, str, list[PrecisionCheck]]:  # fmt: skip
    """``model`` (fp32, eval mode) in ``precision``; returns (model, the mode used, the checks auto ran).

    Args:
        model: the loaded fp32 model, already on its device.
        precision: one of PRECISIONS.
        tokenizer: the pipeline's tokenizer (for the probe captions of auto).
    """
    device = next(model.parameters()).device
    check_precision(precision, device)
    if precision != "auto":
        return convert(model, precision), precision, []
    if device.type != "cpu":
        return autocast_bf16(model), "bf16-autocast", []
    probe = probe_inputs(model, tokenizer)
    image, text, seconds = _features(model, *probe)
    checks = [PrecisionCheck("fp32", 1.0, 1.0, seconds)]
    candidates: dict[str, CLIP] = {"fp32": model}
    for name in ("int8", "bf16"):
        try:
            candidate = convert(copy.deepcopy(model) if name == "bf16" else model, name)
        except UserError as exc:  # a torch without eager dynamic quantization: auto picks among the others
            log.info("precision auto: %s skipped (%s)", name, exc.args[0])
            continue
        checks.append(measure(candidate, (image, text), probe, name))
        if checks[-1].passed:
            candidates[name] = candidate
    best = min((c for c in checks if c.precision in candidates), key=lambda c: c.seconds)
    log.info("precision auto: %s (%s)", best.precision,
             ", ".join(f"{c.precision} {c.seconds * 1000:.0f} ms cos {min(c.min_cosine_image, c.min_cosine_text):.5f}"
                       for c in checks))  # fmt: skip
    return candidates[best.precision], best.precision, checks
