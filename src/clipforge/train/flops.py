"""Model FLOPs per training sample and a device's peak, for model FLOPs utilization (MFU).

Counted from the config: the matmul FLOPs (2 per multiply-add) of both towers' forward for one image and one
text, times 3 for forward + backward (backward costs about twice the forward: gradients for inputs and
weights). Attention scores and the weighted sum are included; the text tower is counted at its full context
length (the model trims to the longest text in a batch, so this slightly overstates work on short captions).
Non-matmul work (norms, softmax, activations) is left out, as in the usual MFU definition (PaLM, App. B).
Patch dropout is taken into account by the kept token count.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from clipforge.model.clip import CLIP
from clipforge.model.config import CLIPConfig, ViTConfig

# Dense peak FLOP/s per device: (bf16 tensor cores, fp32/tf32 default). Matched by substring of the CUDA
# device name; the first match wins, so longer names come first. Vendor data sheets, without sparsity.
PEAK_FLOPS: list[tuple[str, float, float]] = [
    ("H200", 989e12, 494e12),
    ("H100 PCIe", 756e12, 378e12),
    ("H100", 989e12, 494e12),
    ("GH200", 989e12, 494e12),
    ("B200", 2250e12, 1100e12),
    ("A100", 312e12, 156e12),
    ("A10G", 125e12, 62.5e12),
    ("A10", 125e12, 62.5e12),
    ("L40S", 362e12, 183e12),
    ("L4", 121e12, 60e12),
    ("RTX 4090", 165e12, 82.6e12),
    ("RTX 3090", 71e12, 35.6e12),
    ("V100", 125e12, 15.7e12),
    ("T4", 65e12, 8.1e12),
]


def _transformer_flops(tokens: int, width: int, layers: int, mlp_ratio: float, causal: bool) -> float:
    """Forward matmul FLOPs of ``layers`` pre-LN blocks over ``tokens`` tokens."""
    hidden = int(width * mlp_ratio)
    dense = 2 * tokens * (4 * width * width + 2 * width * hidden)  # qkv (3 d^2) + out (d^2) + mlp (2 d h)
    attn = 2 * 2 * tokens * tokens * width  # scores q k^T and the weighted sum of v
    if causal:
        attn //= 2  # only the lower triangle is needed
    return float(layers * (dense + attn))


def _vit_flops(v: ViTConfig, embed_dim: int) -> float:
    patches = v.grid_size**2
    kept = max(1, int(patches * (1.0 - v.patch_dropout))) if v.patch_dropout > 0 else patches
    patchify = 2 * patches * 3 * v.patch_size**2 * v.width
    return patchify + _transformer_flops(kept + 1, v.width, v.layers, v.mlp_ratio, False) + 2 * v.width * embed_dim


def _counted_flops(cfg: CLIPConfig) -> float:
    """Forward FLOPs of the image tower counted by torch's FLOP counter on a meta-device model (ResNet)."""
    with torch.device("meta"):
        # eval(): BatchNorm in train mode refuses a batch of one at a 1x1 feature map; FLOPs are the same.
        model = CLIP(cfg).eval()
        pixels = torch.empty(1, 3, cfg.vision.image_size, cfg.vision.image_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.encode_image(pixels)
    return float(counter.get_total_flops())


def flops_per_sample(cfg: CLIPConfig) -> float:
    """Training FLOPs (forward + backward) for one image-text pair under ``cfg``."""
    vision = _vit_flops(cfg.vision, cfg.embed_dim) if isinstance(cfg.vision, ViTConfig) else _counted_flops(cfg)
    t = cfg.text
    text = _transformer_flops(t.context_length, t.width, t.layers, t.mlp_ratio, t.causal) + 2 * t.width * cfg.embed_dim
    return 3.0 * (vision + text)


def peak_flops(device: torch.device, precision: str, override: float = 0.0) -> float | None:
    """Peak FLOP/s of one ``device`` at ``precision``; ``override`` if > 0; None when unknown (e.g. CPU)."""
    if override > 0:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, bf16, fp32 in PEAK_FLOPS:
        if key in name:
            return bf16 if precision == "bf16" else fp32
    return None
