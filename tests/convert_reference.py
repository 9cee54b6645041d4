"""OpenCLIP's own model code as a numerical reference, loaded without installing open_clip.

``open_clip`` itself imports torchvision (which does not load beside this torch build), but its model code
(model.py, transformer.py, modified_resnet.py) is plain torch. We read those files from the
open_clip_torch 3.3.0 wheel and import them as a private package, with two stubs for imports the
standard CLIP class never uses (torchvision's FrozenBatchNorm2d, the Hugging Face text tower).

The wheel is looked up at $CLIPFORGE_OPENCLIP_WHEEL, else .whl/ in the repository root. Fetch it with:
    pip download --no-deps open_clip_torch==3.3.0 -d .whl
Tests using it skip when it is absent.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from clipforge.convert.common import export_state
from clipforge.convert.openai import openai_rules
from clipforge.model.clip import CLIP
from clipforge.model.config import CLIPConfig

WHEEL_NAME = "open_clip_torch-3.3.0-py3-none-any.whl"
FETCH = "pip download --no-deps open_clip_torch==3.3.0 -d .whl"
PACKAGE = "_openclip_reference"


def wheel_path() -> Path:
    env = os.environ.get("CLIPFORGE_OPENCLIP_WHEEL")
    return Path(env) if env else Path(__file__).resolve().parents[1] / ".whl" / WHEEL_NAME


@functools.cache
def _load(wheel: str) -> types.ModuleType:
    src = Path(tempfile.mkdtemp(prefix="openclip-ref-"))
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith("open_clip/") and name.endswith(".py"):
                zf.extract(name, src)
    package = types.ModuleType(PACKAGE)
    package.__path__ = [str(src / "open_clip")]  # a package without running open_clip/__init__.py
    hf_stub = types.ModuleType(f"{PACKAGE}.hf_model")
    hf_stub.HFTextEncoder = None  # only used for Hugging Face text towers

    class FrozenBatchNorm2d(nn.Module):  # only used when freezing a ResNet for fine-tuning
        pass

    misc = types.ModuleType("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = FrozenBatchNorm2d
    stubs = {"torchvision": types.ModuleType("torchvision"), "torchvision.ops": types.ModuleType("torchvision.ops")}
    stubs["torchvision.ops.misc"] = misc
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update({PACKAGE: package, f"{PACKAGE}.hf_model": hf_stub, **stubs})
    try:
        return importlib.import_module(f"{PACKAGE}.model")
    finally:  # the stubs must not leak to other tests
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


def openclip_model_module() -> types.ModuleType:
    """OpenCLIP's ``model`` module (``CLIP``, ``CLIPVisionCfg``, ``CLIPTextCfg``), or skip the test."""
    wheel = wheel_path()
    if not wheel.is_file():
        pytest.skip(f"OpenCLIP reference wheel not found at {wheel}; fetch it with: {FETCH}")
    return _load(str(wheel))


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Make every weight, bias, norm and BatchNorm statistic non-trivial (inits leave many at 0 or 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.add_(torch.randn(t.shape, generator=g) * 0.05)
    return model.eval()


def openai_state(cfg: CLIPConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """An OpenAI-layout state dict for ``cfg`` made from a random clipforge model via the key map."""
    return export_state(randomize(CLIP(cfg), seed).state_dict(), openai_rules(cfg))


def openclip_model_configs() -> dict[str, dict]:
    """OpenCLIP's shipped model-config JSONs by name (from the wheel), or skip the test."""
    import json

    wheel = wheel_path()
    if not wheel.is_file():
        pytest.skip(f"OpenCLIP reference wheel not found at {wheel}; fetch it with: {FETCH}")
    prefix = "open_clip/model_configs/"
    with zipfile.ZipFile(wheel) as zf:
        return {
            n[len(prefix) : -len(".json")]: json.loads(zf.read(n))
            for n in zf.namelist()
            if n.startswith(prefix) and n.endswith(".json")
        }
