"""Write the OpenCLIP 3.3.0 + timm reference fixtures (tests/reference/fixtures/<name>/).

Run ONLY with the reference environment's python (torch 2.14.1, torchvision 0.29.1, open_clip_torch 3.3.0, timm,
safetensors; see tests/reference/README.md), from the repository root:

    /path/to/refenv/bin/python tests/reference/make_open_clip_fixtures.py [--only NAME ...]

Each fixture is a tiny random instance built through OpenCLIP's own ``create_model`` from the imitated name's
model config with sizes made small (fixture_specs.py). Every parameter and batch-norm statistic is then
perturbed with seeded noise, so that no bias is zero and no scale is one: a key mapped to the wrong place
changes the outputs, and an importer that ignores the checkpoint's logit_scale/logit_bias is caught.
Files per fixture:
    config.json          the OpenCLIP model config the instance was built from (OpenCLIP's own schema)
    meta.json            imitated name, timm keyword arguments, switches, versions, shapes, preprocessing
    model.safetensors    ``model.state_dict()`` exactly (keys and values; what users' checkpoints hold)
    io.safetensors       inputs (pixels, token_ids) and outputs (image_features, text_features, logit_scale,
                         logit_bias if any, image_trunk_features for timm towers; for reparameterizable towers
                         image_features_reparam)
    reparam.safetensors  state dict after timm's ``reparameterize_model`` (MobileCLIP towers only)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import open_clip
import timm
import torch
from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model
from safetensors.torch import save_file
from timm.models.vision_transformer_hybrid import ConvStem, _create_vision_transformer_hybrid
from timm.utils import reparameterize_model
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_specs import SPECS, VOCAB, Spec  # sibling module of this script

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BATCH = 2
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, recursively for nested dicts (both left unchanged)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@contextlib.contextmanager
def timm_sizes(spec: Spec) -> Iterator[None]:
    """Pass the spec's size arguments to ``timm.create_model``, which OpenCLIP's TimmModel calls by attribute.

    The MobileCLIP-B trunk's entry point hard-codes its conv stem from width 768, so for it the same timm parts
    (ConvStem, the hybrid ViT builder) are composed with the spec's stem channels.
    """
    original = timm.create_model

    def create(model_name: str, **kwargs: Any) -> nn.Module:
        kwargs = {**kwargs, **spec.timm}
        if spec.stem is None:
            return original(model_name, **kwargs)
        assert model_name == "vit_base_mci_224", model_name
        kwargs.pop("pretrained", None)
        stem = ConvStem(
            channels=spec.stem, stride=(4, 2, 2), kernel_size=(4, 2, 2), padding=0, in_chans=3, act_layer=nn.GELU
        )
        return _create_vision_transformer_hybrid(
            model_name, backbone=stem, embed_args=dict(proj=False), pretrained=False, no_embed_class=True, **kwargs
        )

    timm.create_model = create
    try:
        yield
    finally:
        timm.create_model = original


def perturb_(model: nn.Module, gen: torch.Generator) -> None:
    """Seeded noise on every parameter (logit_scale and logit_bias too) and batch-norm statistic, in place."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))


def token_ids(text_cfg: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    """(BATCH, context) ids shaped like the real tokenizer's output for the tower's pooling.

    argmax pooling (OpenAI BPE): start id VOCAB-2, words, end id VOCAB-1 (the largest), zero padding.
    eos pooling: words, then eos_id, then zero padding. last pooling (SigLIP): words, end id 1, zero padding;
    the tower reads the last position whatever it holds, as OpenCLIP does.
    """
    context = text_cfg.get("context_length", 77)
    pool = text_cfg.get("pool_type", "argmax")
    ids = torch.zeros(BATCH, context, dtype=torch.int64)
    lengths = [context, max(3, context // 3)]  # one full row (truncated), one padded row
    for row, length in enumerate(lengths):
        words = torch.randint(3, VOCAB - 2, (length,), generator=gen)
        if pool == "argmax":
            words[0], words[length - 1] = VOCAB - 2, VOCAB - 1
        elif pool == "eos":
            words[length - 1] = text_cfg["eos_id"]
        else:
            words[length - 1] = 1
        ids[row, :length] = words
    return ids


def preprocess_of(name: str) -> dict[str, Any]:
    """The preprocessing of the imitated name's pretrained tags (mean, std, interpolation, resize_mode)."""
    return {
        tag: {k: get_pretrained_cfg(name, tag)[k] for k in PREPROCESS_KEYS if k in get_pretrained_cfg(name, tag)}
        for tag in list_pretrained_tags_by_model(name)
    }


def build(spec: Spec) -> tuple[nn.Module, dict[str, Any]]:
    """The tiny model (eval mode, perturbed) and the OpenCLIP config it was built from."""
    real = open_clip.get_model_config(spec.imitates)
    assert real is not None, spec.imitates
    config = deep_merge(real, spec.config)
    torch.manual_seed(zlib.crc32(spec.name.encode()))
    name = f"ref-{spec.name}"
    open_clip.factory._MODEL_CONFIGS[name] = copy.deepcopy(config)  # create_model takes names only
    try:
        with timm_sizes(spec):
            model = open_clip.create_model(name, pretrained=None, device="cpu")
    finally:
        del open_clip.factory._MODEL_CONFIGS[name]
    gen = torch.Generator().manual_seed(zlib.crc32(spec.name.encode()) + 1)
    perturb_(model, gen)
    return model.eval(), config


def outputs(model: nn.Module, pixels: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """encode_image / encode_text (unnormalized, fp32), logit scale and bias, the trunk's pre-pool features."""
    with torch.no_grad():
        out = {
            "image_features": model.encode_image(pixels),
            "text_features": model.encode_text(ids),
            "logit_scale": model.logit_scale.detach().clone(),
        }
        if model.logit_bias is not None:
            out["logit_bias"] = model.logit_bias.detach().clone()
        trunk = getattr(model.visual, "trunk", None)
        if trunk is not None:
            out["image_trunk_features"] = trunk.forward_features(pixels)
    for key, value in out.items():
        assert torch.isfinite(value).all(), (key, value)
    return out


def plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict safetensors can store (contiguous tensors that share no memory); keys and values kept."""
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def write_fixture(spec: Spec) -> dict[str, Any]:
    """Build, run and save one fixture; returns its meta.json content."""
    model, config = build(spec)
    gen = torch.Generator().manual_seed(zlib.crc32(spec.name.encode()) + 2)
    size = config["vision_cfg"]["image_size"]
    pixels = torch.randn(BATCH, 3, size, size, generator=gen)
    ids = token_ids(config["text_cfg"], gen)
    out = {"pixels": pixels, "token_ids": ids, **outputs(model, pixels, ids)}
    folder = FIXTURES / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    save_file(plain(state), str(folder / "model.safetensors"))
    meta: dict[str, Any] = {
        "imitates": spec.imitates,
        "also_covers": list(spec.also_covers),
        "switches": spec.switches,
        "timm_model_name": config["vision_cfg"].get("timm_model_name"),
        "timm_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.timm.items()},
        "timm_stem_channels": list(spec.stem) if spec.stem else None,
        "model_class": type(model).__name__,
        "num_params": sum(p.numel() for p in model.parameters()),
        "real_config": open_clip.get_model_config(spec.imitates),
        "preprocess": preprocess_of(spec.imitates),
        "versions": versions(),
        "token_ids_note": "random ids < vocab_size laid out as the real tokenizer would (see make script)",
    }
    if spec.reparam:
        fused = reparameterize_model(model)  # a deep copy, as OpenCLIP's MobileCLIP usage does
        with torch.no_grad():
            out["image_features_reparam"] = fused.encode_image(pixels)
        fused_state = fused.state_dict()
        meta["reparam_changes_state_dict"] = sorted(fused_state) != sorted(state)
        if meta["reparam_changes_state_dict"]:
            save_file(plain(fused_state), str(folder / "reparam.safetensors"))
        diff = (out["image_features_reparam"] - out["image_features"]).abs().max().item()
        meta["reparam_max_abs_diff"] = diff
    save_file(plain(out), str(folder / "io.safetensors"))
    meta["shapes"] = {k: list(v.shape) for k, v in out.items()}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def versions() -> dict[str, str]:
    """Versions of the reference stack."""
    return {"open_clip": open_clip.__version__, "timm": timm.__version__, "torch": torch.__version__.split("+")[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="fixture names to (re)write; default all")
    args = parser.parse_args()
    torch.set_num_threads(1)
    specs = [s for s in SPECS if not args.only or s.name in args.only]
    for spec in specs:
        meta = write_fixture(spec)
        extra = f", reparam diff {meta['reparam_max_abs_diff']:.2e}" if spec.reparam else ""
        print(f"{spec.name:22s} {spec.imitates:32s} {meta['num_params']:>8d} params{extra}", flush=True)
    index = {s.name: {"imitates": s.imitates, "also_covers": list(s.also_covers)} for s in SPECS}
    (FIXTURES / "index.json").write_text(json.dumps({"versions": versions(), "fixtures": index}, indent=2) + "\n")


if __name__ == "__main__":
    main()
