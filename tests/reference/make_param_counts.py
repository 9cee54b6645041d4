"""Write tests/reference/fixtures/param_counts.json: OpenCLIP 3.3.0's parameter counts and model configs.

Run ONLY with the reference environment's python (see tests/reference/README.md), from the repository root:

    /path/to/refenv/bin/python tests/reference/make_param_counts.py

For every OpenCLIP name of the new families (SigLIP*, EVA*, PE-Core*, MobileCLIP*, ViT-bigG-14*, ViT-H-14*) and
the OpenAI-style names clipforge already registers (with their -quickgelu twins), ``open_clip.create_model(name)``
is built on the meta device (no memory, no init cost; one small name is also built for real and its count
compared) and the JSON records the total / vision / text parameter counts, the model config file's content, the
tokenizer OpenCLIP picks, the pretrained tags' preprocessing, and a few structural facts read from the built
modules. It also checks that each fixture's "also_covers" names have the same structure as the name it imitates.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import open_clip
import timm
import torch
from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_specs import SPECS  # sibling module of this script

OUT = Path(__file__).resolve().parent / "fixtures" / "param_counts.json"
CONFIG_DIR = Path(open_clip.__file__).parent / "model_configs"
PLAIN = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336",
         "ViT-H-14"]
FAMILY = re.compile(r"SigLIP|^EVA|^PE-Core|^MobileCLIP|^ViT-bigG-14|^ViT-H-14")
REAL_CHECK = "MobileCLIP2-S0"  # built for real too: its count must equal the meta-device count
PRETRAINED_KEYS = ("hf_hub", "mean", "std", "interpolation", "resize_mode", "quick_gelu")


def names() -> list[str]:
    """The OpenCLIP names to count, in OpenCLIP's own order."""
    plain = set(PLAIN) | {f"{n}-quickgelu" for n in PLAIN}
    return [n for n in open_clip.list_models() if FAMILY.search(n) or n in plain]


def build_meta(name: str) -> nn.Module:
    """``open_clip.create_model(name)`` with every tensor on the meta device."""
    with torch.device("meta"):
        return open_clip.create_model(name, pretrained=None, device="meta")


def split_counts(model: nn.Module) -> dict[str, int]:
    """Total, vision (``visual.*``), logit (scale/bias) and text (everything else) parameter counts."""
    counts = {"total": 0, "vision": 0, "text": 0, "logit": 0}
    for key, p in model.named_parameters():
        part = "vision" if key.startswith("visual.") else "logit" if key.startswith("logit_") else "text"
        counts[part] += p.numel()
        counts["total"] += p.numel()
    return counts


def tokenizer_kind(name: str, config: dict[str, Any]) -> str:
    """The tokenizer ``open_clip.get_tokenizer(name)`` picks (its rule, read off factory.get_tokenizer)."""
    hf = config["text_cfg"].get("hf_tokenizer_name")
    if hf:
        return f"HFTokenizer({hf})"
    if "siglip" in name.lower():
        return "SigLipTokenizer"
    return "SimpleTokenizer (OpenAI BPE, 49408)"


def pretrained(name: str) -> dict[str, dict[str, Any]]:
    """Preprocessing and hub id of every pretrained tag of ``name``."""
    out = {}
    for tag in list_pretrained_tags_by_model(name):
        cfg = get_pretrained_cfg(name, tag)
        out[tag] = {k: cfg[k] for k in PRETRAINED_KEYS if k in cfg}
    return out


def structure(model: nn.Module) -> dict[str, Any]:
    """Facts read from the built modules: trunk class, activations, norm eps values, rope settings."""
    acts = set()
    eps = set()
    for module in model.visual.modules():
        if isinstance(module, nn.GELU):
            acts.add(f"GELU(approximate={module.approximate})")
        elif type(module).__name__ in ("QuickGELU", "SiLU", "ReLU", "GELUTanh"):
            acts.add(type(module).__name__)
        if isinstance(module, nn.LayerNorm) or type(module).__name__ == "LayerNorm2d":
            eps.add(module.eps)
    trunk = getattr(model.visual, "trunk", None)
    tower = trunk if trunk is not None else model.visual
    facts: dict[str, Any] = {
        "vision_class": f"{type(tower).__module__}.{type(tower).__name__}",
        "vision_acts": sorted(acts),
        "vision_norm_eps": sorted(eps),
    }
    rope = getattr(trunk, "rope", None)
    if rope is not None:
        facts["rope"] = {
            "class": type(rope).__name__,
            "grid_indexing": rope.grid_indexing,
            "grid_offset": rope.grid_offset,
            "temperature": rope.temperature,
            "ref_feat_shape": list(rope.ref_feat_shape) if rope.ref_feat_shape else None,
            "feat_shape": list(rope.feat_shape) if rope.feat_shape else None,
            "dim": rope.dim,
        }
    if trunk is not None and hasattr(trunk, "num_prefix_tokens"):
        facts["num_prefix_tokens"] = trunk.num_prefix_tokens
    if trunk is not None:
        facts["dims"] = trunk_dims(trunk)
    return facts


def trunk_dims(trunk: nn.Module) -> dict[str, Any]:
    """Sizes of a timm trunk that OpenCLIP's config does not state (they come from the timm entry point)."""
    if hasattr(trunk, "stages"):  # FastViT
        stages = list(trunk.stages)
        return {
            "depths": [len(s.blocks) for s in stages],
            "widths": [s.blocks[0].mlp.fc2.out_channels for s in stages],
            "mlp_hidden": [s.blocks[0].mlp.fc1.out_channels for s in stages],
            "block_types": [type(s.blocks[0]).__name__ for s in stages],
            "final_features": trunk.num_features,
        }
    block = trunk.blocks[0]
    mlp = block.mlp
    hidden = mlp.fc2.in_features
    dims = {
        "img_size": list(trunk.patch_embed.img_size),
        "patch_size": list(trunk.patch_embed.patch_size),
        "grid": list(trunk.patch_embed.grid_size),
        "embed_dim": trunk.embed_dim,
        "depth": len(trunk.blocks),
        "num_heads": block.attn.num_heads,
        "mlp": type(mlp).__name__,
        "mlp_hidden": hidden,
        "class_token": getattr(trunk, "cls_token", None) is not None,
        "pos_embed_len": trunk.pos_embed.shape[1] if getattr(trunk, "pos_embed", None) is not None else 0,
    }
    pool = getattr(trunk, "attn_pool", None)
    if pool is not None:
        dims["attn_pool"] = {"num_heads": pool.num_heads, "mlp_hidden": pool.mlp.fc1.out_features}
    return dims


def signature(model: nn.Module, config: dict[str, Any]) -> tuple[Any, ...]:
    """What must agree between two names for one tiny fixture to stand for both (sizes removed)."""
    keys = sorted({re.sub(r"\.\d+(?=\.|$)", ".N", k) for k in model.state_dict()})
    types = sorted({type(m).__name__ for m in model.modules()})
    facts = structure(model)
    facts.pop("rope", None)  # feat_shape / ref_feat_shape are sizes
    facts.pop("dims", None)
    text = config["text_cfg"]
    switches = {k: text.get(k) for k in ("no_causal_mask", "pool_type", "proj_bias", "proj_type", "act_kwargs")}
    vision = config["vision_cfg"]
    switches.update({k: vision.get(k) for k in ("timm_pool", "timm_proj", "pool_type", "no_ln_pre")})
    switches["quick_gelu"] = config.get("quick_gelu", False)
    return keys, types, json.dumps(facts, sort_keys=True), json.dumps(switches, sort_keys=True)


def coverage(built: dict[str, tuple[nn.Module, dict[str, Any]]]) -> dict[str, dict[str, bool]]:
    """For each fixture, whether every "also_covers" name has the imitated name's signature."""
    result = {}
    for spec in SPECS:
        ref = signature(*built[spec.imitates])
        result[spec.name] = {n: signature(*built[n]) == ref for n in spec.also_covers}
    return result


def covered_names() -> set[str]:
    """Names a fixture imitates or stands for."""
    return {n for s in SPECS for n in (s.imitates, *s.also_covers)}


def main() -> None:
    torch.set_num_threads(1)
    built: dict[str, tuple[nn.Module, dict[str, Any]]] = {}
    models: dict[str, Any] = {}
    for name in names():
        config = json.loads((CONFIG_DIR / f"{name}.json").read_text())
        model = build_meta(name)
        built[name] = (model, config)
        models[name] = {
            "params": split_counts(model),
            "model_class": type(model).__name__,
            "tokenizer": tokenizer_kind(name, config),
            "structure": structure(model),
            "pretrained": pretrained(name),
            "config": config,
        }
        print(f"{name:34s} {models[name]['params']['total']:>13,d}", flush=True)
    real = sum(p.numel() for p in open_clip.create_model(REAL_CHECK, pretrained=None).parameters())
    assert real == models[REAL_CHECK]["params"]["total"], (real, models[REAL_CHECK]["params"])
    covered = coverage(built)
    for fixture, by_name in covered.items():
        for name, same in by_name.items():
            if not same:
                print(f"fixture {fixture}: {name} differs in structure from the imitated name", flush=True)
    doc = {
        "versions": {"open_clip": open_clip.__version__, "timm": timm.__version__,
                     "torch": torch.__version__.split("+")[0]},
        "counted_on": "meta device; params = sum of numel over model.parameters(); vision = keys under visual., "
        "logit = logit_scale/logit_bias, text = the rest",
        "real_build_check": {"name": REAL_CHECK, "meta_total": models[REAL_CHECK]["params"]["total"],
                             "real_total": real},
        "fixture_coverage": covered,
        "names_without_fixture": sorted(set(models) - covered_names()),
        "models": models,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
