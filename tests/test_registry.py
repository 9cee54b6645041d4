"""Every registered name builds with exactly the parameter count OpenCLIP 3.3.0 gives the same name.

The counts come from OpenCLIP itself (tests/reference/fixtures/param_counts.json, written by
tests/reference/make_param_counts.py in the reference environment with open_clip_torch 3.3.0 + timm);
clipforge builds each model on the meta device, so even the 2.5B-parameter ones cost no memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clipforge.model.clip import CLIP
from clipforge.model.registry import get_config, list_models

_REFERENCE = json.loads((Path(__file__).parent / "reference" / "fixtures" / "param_counts.json").read_text())
_REGISTERED = {n for name in list_models() for n in (name, f"{name}-quickgelu")}
# OpenCLIP's count for every registered name it also has (the file covers more OpenCLIP names than we register).
COUNTS = {n: m["params"]["total"] for n, m in _REFERENCE["models"].items() if n in _REGISTERED}
OWN_NAMES = {"tiny-vit", "tiny-resnet", "test-vit", "test-siglip", "test-eva02", "test-pe-core", "tiny-mobileclip",
             "test-mobileclip"}  # clipforge's small CPU configs; OpenCLIP has no such names


def n_params(name: str) -> int:
    with torch.device("meta"):
        model = CLIP(get_config(name))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_count_equals_open_clips(name):
    assert n_params(name) == COUNTS[name]


def test_every_registered_name_is_counted():
    missing = [n for n in list_models() if n not in OWN_NAMES and n not in COUNTS]
    assert not missing, f"no OpenCLIP count for {missing}: rerun tests/reference/make_param_counts.py"
    assert sum("SigLIP" in n for n in COUNTS) == 26  # every SigLIP / SigLIP 2 name OpenCLIP 3.3 has
    assert sum(n.startswith("EVA02-") for n in COUNTS) == 3 and sum(n.startswith("PE-Core-") for n in COUNTS) == 5
