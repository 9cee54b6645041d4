"""MobileCLIP / MobileCLIP2 as OpenCLIP 3.3.0 stores them ⇄ clipforge.

OpenCLIP builds these image towers with timm (``visual.trunk.*``): ``fastvit_mci0..4`` (our FastViT) and
``vit_base_mci_224`` (our ConvStemViT), inside a CustomTextCLIP (text keys under ``text.``). A state dict may be
in timm's training form (the branches: ``conv_kxk``, ``conv_scale``, ``identity``, ...) or in the inference form
``timm.utils.reparameterize_model`` leaves (``reparam_conv``); ``is_reparameterized_layout`` tells them apart by
key names, and the imported config says which form the weights are in (FastViTConfig.reparameterized).

The key map is built by walking our model (on the meta device) and naming, for each of our modules, timm's
module at the same place, so it always covers exactly the parameters the config has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from clipforge.convert.common import Rule, affine, batchnorm
from clipforge.convert.openai import logit_rules, text_rules
from clipforge.data.config import OPENAI_MEAN, OPENAI_STD
from clipforge.errors import UserError
from clipforge.model.clip import CLIP
from clipforge.model.config import CLIPConfig, ConvStemViTConfig, FastViTConfig, VisionConfig
from clipforge.model.mobileclip import FastViT, FastViTStage
from clipforge.model.mobileclip_blocks import (
    AttentionBlock,
    ConvBN,
    ConvMLP,
    RepConv,
    RepLargeKernelConv,
    RepMixer,
    RepMixerBlock,
    SqueezeExcite,
)
from clipforge.model.registry import MCI, MCI_VIT_B

# timm model names OpenCLIP's MobileCLIP configs use, and our tower for each (at the real sizes).
TIMM_TOWERS: dict[str, VisionConfig] = {f"fastvit_{k}": v for k, v in MCI.items()} | {"vit_base_mci_224": MCI_VIT_B}
# vision_cfg keys of those configs (TimmModel's arguments); the only values OpenCLIP uses for them.
TIMM_DEFAULTS: dict[str, Any] = {"timm_model_pretrained": False, "timm_proj": None, "timm_proj_bias": False, "timm_drop": 0.0,
                                 "timm_drop_path": 0.0}  # fmt: skip
TIMM_POOL = {"fastvit": "avg", "vit_convstem": "token"}
# The preprocessing of OpenCLIP's pretrained tags (open_clip/pretrained.py, _mccfg / _mc2cfg): MobileCLIP and
# MobileCLIP2-S0/S2/B take pixels in [0, 1]; MobileCLIP2-S3/S4 OpenAI's normalization; all bilinear.
UNIT_RANGE = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
PREPROCESS: dict[str, dict[str, Any]] = {
    name: {**(UNIT_RANGE if name[-2:] not in ("S3", "S4") else {"mean": OPENAI_MEAN, "std": OPENAI_STD}),
           "interpolation": "bilinear", "resize_mode": "shortest"}
    for name in ("MobileCLIP-S1", "MobileCLIP-S2", "MobileCLIP-B", "MobileCLIP2-S0", "MobileCLIP2-S2",
                 "MobileCLIP2-S3", "MobileCLIP2-S4", "MobileCLIP2-B")
}  # fmt: skip
REPARAM_KEY = ".reparam_conv."


def is_mobileclip(vision: VisionConfig) -> bool:
    """Whether ``vision`` is one of the towers this module maps."""
    return isinstance(vision, (FastViTConfig, ConvStemViTConfig))


def mobileclip_vision(vc: dict[str, Any], image_size: int, source: str) -> VisionConfig:
    """Our tower for an OpenCLIP ``vision_cfg`` naming a MobileCLIP timm model.

    Raises:
        UserError: for a timm model or TimmModel option clipforge does not map.
    """
    name = vc.get("timm_model_name")
    if name not in TIMM_TOWERS:
        raise UserError(f"{source}: timm_model_name {name!r} is not supported",
                        hint=f"clipforge maps these timm towers: {', '.join(TIMM_TOWERS)}")
    vision = TIMM_TOWERS[name]
    for key, value in vc.items():
        if key in ("timm_model_name", "image_size"):
            continue
        expected = TIMM_POOL[vision.kind] if key == "timm_pool" else TIMM_DEFAULTS.get(key, KeyError)
        if expected is KeyError:
            raise UserError(f"{source}: vision_cfg option {key!r} is not supported for timm tower {name}")
        if value != expected:
            raise UserError(f"{source}: vision_cfg {key}={value!r} is not supported for {name} (only {expected!r})")
    return dataclasses.replace(vision, image_size=image_size)


def is_reparameterized_layout(keys: Iterable[str]) -> bool:
    """Whether a MobileCLIP state dict holds timm's inference form (folded ``reparam_conv`` kernels)."""
    return any(REPARAM_KEY in k for k in keys)


def mobileclip_rules(cfg: CLIPConfig) -> list[Rule]:
    """The key map between OpenCLIP's MobileCLIP layout and ours for ``cfg`` (image tower, text tower, scale)."""
    if not is_mobileclip(cfg.vision):
        raise ValueError(f"not a MobileCLIP image tower: {cfg.vision.kind}")
    with torch.device("meta"):
        model = CLIP(cfg)
    visual = model.visual
    if isinstance(visual, FastViT):
        rules = _fastvit_rules(visual)
    else:
        rules = _convstem_vit_rules(cfg.vision)  # type: ignore[arg-type]
    return rules + text_rules(cfg, "text.") + logit_rules(cfg)


# --- FastViT (timm fastvit.py) -----------------------------------------------------------------------------


def _fastvit_rules(visual: FastViT) -> list[Rule]:
    o, t = "visual", "visual.trunk"
    rules: list[Rule] = []
    for i, conv in enumerate(visual.stem):
        rules += _repconv(conv, f"{o}.stem.{i}", f"{t}.stem.{i}")
    for i, stage in enumerate(visual.stages):
        rules += _stage(stage, f"{o}.stages.{i}", f"{t}.stages.{i}")
    rules += _repconv(visual.final, f"{o}.final", f"{t}.final_conv")
    return rules + affine(f"{o}.proj", f"{t}.head.fc")


def _stage(stage: FastViTStage, o: str, t: str) -> list[Rule]:
    rules: list[Rule] = []
    if stage.down is not None:
        rules += _large_kernel(stage.down.large, f"{o}.down.large", f"{t}.downsample.proj.0")
        rules += _repconv(stage.down.pointwise, f"{o}.down.pointwise", f"{t}.downsample.proj.1")
    if stage.pos is not None:
        rules += _fused_or(stage.pos, f"{o}.pos", f"{t}.pos_emb", lambda: affine(f"{o}.pos.conv", f"{t}.pos_emb.pos_enc"))
    for j, block in enumerate(stage.blocks):
        ob, tb = f"{o}.blocks.{j}", f"{t}.blocks.{j}"
        if isinstance(block, RepMixerBlock):
            rules += _repmixer(block.mixer, f"{ob}.mixer", f"{tb}.token_mixer")
            rules.append(Rule(f"{ob}.layer_scale", (f"{tb}.layer_scale.gamma",)))
        else:
            rules += _attention_block(block, ob, tb)
        rules += _conv_mlp(block.mlp, f"{ob}.mlp", f"{tb}.mlp")
    return rules


def _fused_or(module: nn.Module, o: str, t: str, branches) -> list[Rule]:  # a rule thunk
    """The folded conv's rules when ``module`` is in inference form, else the branches' rules."""
    if getattr(module, "fused", None) is not None:
        return affine(f"{o}.fused", f"{t}.reparam_conv")
    return branches()


def _conv_bn(m: ConvBN, o: str, t: str) -> list[Rule]:
    return [Rule(f"{o}.conv.weight", (f"{t}.conv.weight",))] + batchnorm(f"{o}.norm", f"{t}.bn")


def _se(m: nn.Module, o: str, t: str) -> list[Rule]:
    if not isinstance(m, SqueezeExcite):
        return []
    return affine(f"{o}.reduce", f"{t}.fc1") + affine(f"{o}.expand", f"{t}.fc2")


def _repconv(m: RepConv, o: str, t: str) -> list[Rule]:
    def branches() -> list[Rule]:
        rules = batchnorm(f"{o}.skip", f"{t}.identity") if m.skip is not None else []
        for j, conv in enumerate(m.convs):
            rules += _conv_bn(conv, f"{o}.convs.{j}", f"{t}.conv_kxk.{j}")
        if m.scale is not None:
            rules += _conv_bn(m.scale, f"{o}.scale", f"{t}.conv_scale")
        return rules

    return _fused_or(m, o, t, branches) + _se(m.se, f"{o}.se", f"{t}.se")


def _large_kernel(m: RepLargeKernelConv, o: str, t: str) -> list[Rule]:
    def branches() -> list[Rule]:
        return _conv_bn(m.large, f"{o}.large", f"{t}.large_conv") + _conv_bn(m.small, f"{o}.small", f"{t}.small_conv")

    return _fused_or(m, o, t, branches) + _se(m.se, f"{o}.se", f"{t}.se")


def _repmixer(m: RepMixer, o: str, t: str) -> list[Rule]:
    def branches() -> list[Rule]:
        rules = _repconv(m.norm, f"{o}.norm", f"{t}.norm") + _repconv(m.mix, f"{o}.mix", f"{t}.mixer")
        return rules + [Rule(f"{o}.layer_scale", (f"{t}.layer_scale.gamma",))]

    return _fused_or(m, o, t, branches)


def _attention_block(m: AttentionBlock, o: str, t: str) -> list[Rule]:
    norm = batchnorm(f"{o}.norm", f"{t}.norm") if isinstance(m.norm, nn.BatchNorm2d) else affine(f"{o}.norm", f"{t}.norm")
    return norm + [
        Rule(f"{o}.attn.qkv.weight", (f"{t}.token_mixer.qkv.weight",)),
        *affine(f"{o}.attn.proj", f"{t}.token_mixer.proj"),
        Rule(f"{o}.layer_scale1", (f"{t}.layer_scale_1.gamma",)),
        Rule(f"{o}.layer_scale2", (f"{t}.layer_scale_2.gamma",)),
    ]


def _conv_mlp(m: ConvMLP, o: str, t: str) -> list[Rule]:
    return _conv_bn(m.dw, f"{o}.dw", f"{t}.conv") + affine(f"{o}.fc1", f"{t}.fc1") + affine(f"{o}.fc2", f"{t}.fc2")


# --- the conv-stem ViT (timm vision_transformer_hybrid.py, vit_base_mci_224) ---------------------------------


def _convstem_vit_rules(cfg: ConvStemViTConfig) -> list[Rule]:
    o, t = "visual", "visual.trunk"
    rules: list[Rule] = []
    for i in (0, 1):
        rules.append(Rule(f"{o}.stem.{i}.conv.weight", (f"{t}.patch_embed.backbone.{i}.conv.weight",)))
        rules += batchnorm(f"{o}.stem.{i}.norm", f"{t}.patch_embed.backbone.{i}.bn")
    rules += affine(f"{o}.stem.2", f"{t}.patch_embed.backbone.2.conv")
    # timm keeps the class token as (1, 1, W) and the positions as (1, N, W); ours drop the leading ones.
    grid = cfg.grid_size**2
    rules += [Rule(f"{o}.class_embedding", (f"{t}.cls_token",), op="reshape", shape=(1, 1, cfg.width)),
              Rule(f"{o}.pos_embedding", (f"{t}.pos_embed",), op="reshape", shape=(1, grid, cfg.width))]  # fmt: skip
    for i in range(cfg.layers):
        ob, tb = f"{o}.transformer.blocks.{i}", f"{t}.blocks.{i}"
        rules += affine(f"{ob}.norm1", f"{tb}.norm1") + affine(f"{ob}.attn.qkv", f"{tb}.attn.qkv")
        rules += affine(f"{ob}.attn.out", f"{tb}.attn.proj") + affine(f"{ob}.norm2", f"{tb}.norm2")
        rules += affine(f"{ob}.mlp.fc1", f"{tb}.mlp.fc1") + affine(f"{ob}.mlp.fc2", f"{tb}.mlp.fc2")
    return rules + affine(f"{o}.norm", f"{t}.norm") + affine(f"{o}.proj", f"{t}.head")
