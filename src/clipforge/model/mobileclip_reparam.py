"""Structural reparameterization of a whole model: the training form of a MobileCLIP tower -> its inference form.

``reparameterize(model)`` builds the same architecture with ``reparameterized=True`` (every train-time branch
folded into one convolution, see model/mobileclip_blocks.py) and fills it from ``model``: folded kernels for the
reparameterizable modules, every other tensor copied. Outputs agree with ``model.eval()`` up to float rounding.
"""

from __future__ import annotations

import dataclasses

import torch

from clipforge.model.clip import CLIP
from clipforge.model.config import FastViTConfig
from clipforge.model.mobileclip_blocks import Reparameterizable


def is_reparameterizable(model: CLIP) -> bool:
    """Whether ``model`` has train-time branches left to fold."""
    vision = model.cfg.vision
    return isinstance(vision, FastViTConfig) and not vision.reparameterized


@torch.no_grad()
def reparameterize(model: CLIP) -> CLIP:
    """The inference form of ``model``: a new CLIP in eval mode whose config says ``reparameterized=True``.

    BatchNorm layers are folded with their running statistics, so the result equals ``model`` in eval mode.
    A model with nothing to fold (towers without branches, or one already folded) is returned unchanged.

    Args:
        model: a CLIP model (not wrapped in DDP or compiled).
    """
    if not is_reparameterizable(model):
        return model
    cfg = dataclasses.replace(model.cfg, vision=dataclasses.replace(model.cfg.vision, reparameterized=True))
    ref = next(model.parameters())
    with torch.device("meta"):
        fused = CLIP(cfg)
    fused = fused.to_empty(device=ref.device).to(ref.dtype)
    old = model.state_dict()
    new: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, Reparameterizable):
            weight, bias = module.fused_weights()
            new[f"{name}.fused.weight"], new[f"{name}.fused.bias"] = weight, bias
    wanted = fused.state_dict()
    # Folded kernels of modules nested in a folded module (RepMixer's two MobileOne convs) have no place in
    # the inference form; every tensor outside the reparameterizable modules keeps its name and is copied.
    state = {k: new[k] if k in new else old[k] for k in wanted}
    fused.load_state_dict(state, strict=True)
    return fused.eval()
