"""MFU's FLOP count: the analytic transformer count matches torch's FLOP counter."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from clipforge.model.clip import CLIP
from clipforge.model.registry import get_config
from clipforge.train.flops import flops_per_sample, peak_flops


def _counted(cfg) -> float:
    """Forward FLOPs of one image + one full-length text, counted by torch on meta tensors."""
    with torch.device("meta"):
        model = CLIP(cfg)
        pixels = torch.empty(1, 3, cfg.vision.image_size, cfg.vision.image_size)
    # A full-length text (end-of-text last) so the text tower runs all positions.
    ids = torch.zeros(1, cfg.text.context_length, dtype=torch.long)
    ids[0, -1] = cfg.text.vocab_size - 1
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.encode_image(pixels)
    with torch.device("cpu"):
        cpu_model = CLIP(cfg).text
    text_counter = FlopCounterMode(display=False)
    with text_counter, torch.no_grad():
        cpu_model(ids)
    return float(counter.get_total_flops() + text_counter.get_total_flops())


@pytest.mark.parametrize("name", ["test-vit", "tiny-vit"])
def test_analytic_count_matches_torch_counter(name):
    cfg = get_config(name)
    analytic = flops_per_sample(cfg) / 3
    counted = _counted(cfg)
    # The image tower runs on meta tensors, where SDPA decomposes into counted bmm's. The text tower needs real
    # token ids (it trims to the longest text), and torch's counter does not see the CPU SDPA kernel, so its
    # attention (counted by us as the causal half: 2 matmuls x 2 FLOPs x L^2/2 x width per layer) is left out.
    t = cfg.text
    text_attention = t.layers * 2 * t.context_length**2 * t.width
    assert analytic - text_attention == pytest.approx(counted, rel=1e-9)


def test_patch_dropout_reduces_the_count():
    cfg = get_config("tiny-vit")
    dropped = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, patch_dropout=0.5))
    assert flops_per_sample(dropped) < flops_per_sample(cfg)


def test_resnet_is_counted():
    assert flops_per_sample(get_config("tiny-resnet")) > 0


def test_peak_is_unknown_on_cpu_unless_given():
    assert peak_flops(torch.device("cpu"), "fp32") is None
    assert peak_flops(torch.device("cpu"), "fp32", override=1e12) == 1e12


def test_resnet_flops_at_one_by_one_final_feature_map():
    # 32 px ResNets end on a 1x1 map, where a train-mode BatchNorm rejects a single-image probe.
    import dataclasses

    cfg = get_config("tiny-resnet")
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, image_size=32))
    assert flops_per_sample(cfg) > 0
