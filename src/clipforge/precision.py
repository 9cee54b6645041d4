"""Inference precision of a loaded model: fp32, bf16, int8, int8-image, or auto (the fastest that stays accurate).

- ``fp32``: the weights as saved.
- ``bf16``: bfloat16 weights (half the memory traffic). Faster only where the CPU computes in bf16 natively
  (AVX-512 BF16, AMX); on an AVX2 CPU it is slower (benchmarks/results/cpu_inference.md: 0.2x fp32 images/s).
- ``int8``: the Linear layers of every transformer block dynamically quantized to int8
  (``torch.ao.quantization.quantize_dynamic``: int8 weights per output channel, activations quantized per
  batch). CPU only.
- ``int8-image``: the image tower in int8, the text tower in fp32 (text features are the ones int8 moves most,
  and the text tower is the cheap one: it runs only up to the longest caption).
- ``auto``: on a GPU, bf16 autocast (matmuls in bf16, norms and softmax in fp32). On a CPU, each tower is
  chosen on its own: every candidate (fp32, int8, bf16) is checked against fp32 on a fixed probe set and timed
  on it, and the fastest one whose cosine to fp32 stays at or above ``MIN_COSINE`` is kept. When int8 misses
  the gate, it is tried again with the first blocks left out of int8 (quantization error entering early is
  amplified by every later block: benchmarks/results/cpu_inference.md), up to a quarter of the blocks; those
  run in bf16 where bf16 passed and beat fp32 on this CPU, else in fp32.

Callers L2-normalize the features after ``.float()``, so the normalization is always fp32.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipforge.errors import UserError
from clipforge.model.clip import CLIP
from clipforge.model.layers import MLP, Attention

PRECISIONS = ("fp32", "bf16", "int8", "int8-image", "auto")
# Cosine to fp32 below which a faster mode is not worth it: retrieval rankings start to move around 0.999
# (benchmarks/cpu_inference.py records each mode's cosine for the checkpoints it measures).
MIN_COSINE = 0.999
PROBE_TEXTS = (
    "a photo of a cat", "a red car parked on the street", "two dogs playing in the snow", "a bowl of soup",
    "an old map of the city", "a smiling face emoji", "a diagram of the solar system", "a bicycle",
)  # fmt: skip
TOWERS = {"image": "visual", "text": "text"}  # tower name -> CLIP attribute
_BLOCK = re.compile(r"(?:^|\.)transformer\.blocks\.(\d+)\.")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrecisionCheck:
    """One tower in one mode against fp32 on the probe set: minimum cosine of its features and seconds per probe.

    ``head_blocks``: for int8, how many leading transformer blocks were not quantized; ``head``: what they (and,
    with "bf16", a ViT's patchify convolution) computed in instead ("fp32" or "bf16").
    """

    precision: str
    tower: str
    min_cosine: float
    seconds: float
    head_blocks: int = 0
    head: str = "fp32"

    @property
    def passed(self) -> bool:
        return self.min_cosine >= MIN_COSINE

    def to_json(self) -> dict[str, float | str | bool | int]:
        return {**asdict(self), "passed": self.passed}


def check_precision(name: str, device: torch.device | str) -> str:
    """``name`` if it is a known mode that runs on ``device``; otherwise a one-line UserError."""
    if name not in PRECISIONS:
        raise UserError(f"unknown precision {name!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    if name.startswith("int8") and torch.device(device).type != "cpu":
        raise UserError(f"precision {name} runs on CPU only (dynamic quantization has CPU kernels only)",
                        hint="use precision bf16 (or auto) on a GPU")
    return name


def int8_linears(tower: nn.Module, head_blocks: int = 0) -> list[str]:
    """The Linear layers of ``tower`` that int8 quantizes: those of its ``Attention`` and ``MLP`` modules called
    as modules (an attention with separate q/v biases reads ``qkv.weight`` itself, so its ``qkv`` stays fp32),
    minus those in the first ``head_blocks`` transformer blocks."""
    names = []
    for prefix, module in tower.named_modules():
        block = _BLOCK.search(prefix + ".")
        if block is not None and int(block.group(1)) < head_blocks:
            continue
        if isinstance(module, MLP):
            names += [f"{prefix}.fc1", f"{prefix}.fc2"]
        elif isinstance(module, Attention):
            names += [f"{prefix}.qkv"] if module.q_bias is None else []
            names.append(f"{prefix}.out")
    return names


def _transformer_blocks(tower: nn.Module) -> int:
    return len({int(m.group(1)) for n, _ in tower.named_modules() if (m := _BLOCK.search(n + "."))})


class _InBF16(nn.Module):
    """A transformer block run in bf16 weights and activations inside an fp32 tower (cast in, cast back out)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block.to(dtype=torch.bfloat16)

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None = None, **kwargs: object) -> torch.Tensor:
        rope = rope.to(torch.bfloat16) if rope is not None else None
        return self.block(x.to(torch.bfloat16), rope=rope, **kwargs).to(x.dtype)


class _Patchify(nn.Module):
    """A ViT's patchify Conv2d (stride = kernel, no padding) as one matmul over the unfolded patches in ``dtype``:
    the same sums; in bf16 on a CPU with bf16 instructions 2.4x faster than the fp32 convolution (ViT-B/32, batch 8)."""

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.weight = conv.weight  # the tower casts its pixels to this dtype (fp32)
        self.patch = conv.kernel_size[0]
        matrix = conv.weight.detach().reshape(conv.out_channels, -1).t()  # (C*k*k, W)
        self.register_buffer("matrix", matrix.to(dtype))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().to(dtype))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b, c = pixels.shape[:2]
        k = self.patch
        patches = pixels.unfold(2, k, k).unfold(3, k, k)  # (B, C, gh, gw, k, k)
        gh, gw = patches.shape[2:4]
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(b * gh * gw, c * k * k).to(self.matrix.dtype)
        y = patches @ self.matrix if self.bias is None else torch.addmm(self.bias, patches, self.matrix)  # (B*g*g, W)
        return y.to(pixels.dtype).view(b, gh, gw, -1).permute(0, 3, 1, 2)  # (B, W, gh, gw)


def _is_patchify(conv: object) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == conv.stride and conv.kernel_size[0] == conv.kernel_size[1]
            and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1)  # fmt: skip


def quantize_tower(tower: nn.Module, head_blocks: int = 0, head: str = "fp32") -> nn.Module:
    """A copy of ``tower`` whose ``int8_linears`` compute in int8 (dynamic quantization, per-channel weights).

    Args:
        tower: an fp32 image or text tower.
        head_blocks: leading transformer blocks left out of int8.
        head: what those blocks compute in: "fp32", or "bf16" (faster where the CPU has bf16 instructions); with
            "bf16" a ViT's patchify convolution also runs in bf16.
    """
    quantization = getattr(torch.ao, "quantization", None)
    if quantization is None or not hasattr(quantization, "quantize_dynamic"):
        raise UserError(f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic",
                        hint="use precision bf16 or fp32")
    # Per output channel: one scale per row instead of one per matrix, at the same speed (the benchmark's cosines).
    qconfig = getattr(quantization, "per_channel_dynamic_qconfig", None) or quantization.default_dynamic_qconfig
    with warnings.catch_warnings():  # torch 2.10+ announces the move of eager quantization to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        spec = dict.fromkeys(int8_linears(tower, head_blocks), qconfig)
        out = quantization.quantize_dynamic(copy.deepcopy(tower), spec, dtype=torch.qint8)
    if head == "bf16":
        if _is_patchify(getattr(out, "patch_embed", None)):
            out.patch_embed = _Patchify(out.patch_embed)
        blocks = out.transformer.blocks
        for i in range(min(head_blocks, len(blocks))):
            blocks[i] = _InBF16(blocks[i])
    return out


def quantize_int8(model: CLIP, towers: tuple[str, ...] = ("image", "text"), head_blocks: int = 0,
                  head: str = "fp32") -> CLIP:  # fmt: skip
    """A copy of ``model`` whose ``towers`` ("image", "text") compute their block Linear layers in int8.

    Args:
        model: an fp32 CPU model.
        towers: which towers to quantize.
        head_blocks: leading transformer blocks of each quantized tower left out of int8.
        head: what those compute in ("fp32" or "bf16").
    """
    out = copy.deepcopy(model)
    for tower in towers:
        setattr(out, TOWERS[tower], quantize_tower(getattr(model, TOWERS[tower]), head_blocks, head))
    return out


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
    """``model`` in ``precision`` ("fp32", "bf16", "int8", "int8-image" or "bf16-autocast"); int8 returns a copy."""
    if precision == "bf16":
        return model.to(dtype=torch.bfloat16)
    if precision == "int8":
        return quantize_int8(model)
    if precision == "int8-image":
        return quantize_int8(model, ("image",))
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
def _run(tower: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Normalized fp32 features of ``x`` and the faster of two timed calls (after a warm-up call)."""
    tower(x)  # warm-up (first-call allocations)
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        y = tower(x)
        seconds.append(time.perf_counter() - start)
    return F.normalize(y.float(), dim=-1).cpu(), min(seconds)


def precision_name(chosen: dict[str, str]) -> str:
    """One name for a per-tower choice: "int8" (both), "int8-image" (image int8, text fp32), "bf16-text",
    or "bf16-image+int8-text" for other mixes."""
    image, text = chosen["image"], chosen["text"]
    if image == text:
        return image
    if text == "fp32":
        return f"{image}-image"
    if image == "fp32":
        return f"{text}-text"
    return f"{image}-image+{text}-text"


def _auto_tower(model: CLIP, tower: str, x: torch.Tensor) -> tuple[nn.Module, str, list[PrecisionCheck]]:
    """The fastest passing candidate for one tower: (module, mode, the checks run)."""
    module = getattr(model, TOWERS[tower])
    ref, seconds = _run(module, x)
    checks = [PrecisionCheck("fp32", tower, 1.0, seconds)]
    options: dict[str, tuple[nn.Module, float]] = {"fp32": (module, seconds)}

    def check(candidate: nn.Module, name: str, head_blocks: int = 0, head: str = "fp32") -> bool:
        feats, secs = _run(candidate, x)
        checks.append(PrecisionCheck(name, tower, float((feats * ref).sum(-1).min()), secs, head_blocks, head))
        if checks[-1].passed:
            options[name] = (candidate, secs)
        return checks[-1].passed

    # bf16 first: where it beats fp32 (native bf16 instructions), the blocks int8 leaves out run in bf16.
    bf16_ok = check(copy.deepcopy(module).to(dtype=torch.bfloat16), "bf16")
    head = "bf16" if bf16_ok and options["bf16"][1] < seconds else "fp32"
    if int8_linears(module):
        try:
            for head_blocks in range(_transformer_blocks(module) // 4 + 1):
                if check(quantize_tower(module, head_blocks, head), "int8", head_blocks, head):
                    break
        except UserError as exc:  # a torch without eager dynamic quantization: auto picks among the others
            log.info("precision auto: int8 skipped (%s)", exc.args[0])
    best = min(options, key=lambda name: options[name][1])
    return options[best][0], best, checks


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
    pixels, ids = probe_inputs(model, tokenizer)
    chosen: dict[str, str] = {}
    checks: list[PrecisionCheck] = []
    for tower, x in (("image", pixels), ("text", ids)):
        module, chosen[tower], tower_checks = _auto_tower(model, tower, x.to(device))
        setattr(model, TOWERS[tower], module)
        checks += tower_checks
    used = precision_name(chosen)
    log.info("precision auto: %s (%s)", used, ", ".join(
        f"{c.tower} {c.precision}{f' ({c.head_blocks} {c.head} blocks)' if c.head_blocks else ''} "
        f"{c.seconds * 1000:.0f} ms cos {c.min_cosine:.5f}" for c in checks))  # fmt: skip
    return model, used, checks
