"""Hugging Face ``SiglipModel`` and ``Siglip2Model`` folders ⇄ clipforge (read and written as plain files).

SiglipModel (SigLIP, and SigLIP 2's fixed-resolution checkpoints): a conv patch embedding with bias, learned
positions without class token, no ln_pre, a MAP head; a non-causal text tower read at the last position with
a Linear head; logit scale and bias stored as (1,) tensors.

Siglip2Model (SigLIP 2 "NaFlex"): the same towers, but patches arrive flattened in (row, column, channel)
order into a Linear, and the position table of a ``sqrt(num_patches)`` grid is resized per image to that
image's patch grid. clipforge imports it as a fixed-resolution model at the table's own grid
(``image_size = patch_size * sqrt(num_patches)``), where the resize is the identity: square images at that
size give exactly Siglip2Model's features (tests/test_convert_hf_siglip.py); other sizes and aspect ratios,
which NaFlex would run on other grids, are resized to that square instead.
"""

from __future__ import annotations

import math
from typing import Any

from clipforge.convert.common import Rule, affine, config_errors
from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig, TextConfig, ViTConfig
from clipforge.model.registry import SIGLIP_LOGIT_BIAS, SIGLIP_LOGIT_SCALE

SIGLIP_TYPES = ("siglip", "siglip2")
# transformers' SiglipTextConfig / SiglipVisionConfig defaults (a config.json lists only what differs).
TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 64, "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6, "projection_size": None,
}  # fmt: skip
VISION_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
    "num_channels": 3, "image_size": 224, "patch_size": 16, "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6, "vision_use_head": True, "num_patches": 256,
}  # fmt: skip


def _encoder_rules(ours: str, theirs: str, layers: int) -> list[Rule]:
    rules: list[Rule] = []
    for i in range(layers):
        o, t = f"{ours}.blocks.{i}", f"{theirs}.layers.{i}"
        rules += affine(f"{o}.norm1", f"{t}.layer_norm1")
        for p in ("weight", "bias"):  # separate q/k/v projections -> our fused (3W, W) in q, k, v order
            rules.append(Rule(f"{o}.attn.qkv.{p}", tuple(f"{t}.self_attn.{n}_proj.{p}" for n in "qkv"), "concat"))
        rules += affine(f"{o}.attn.out", f"{t}.self_attn.out_proj")
        rules += affine(f"{o}.norm2", f"{t}.layer_norm2")
        rules += affine(f"{o}.mlp.fc1", f"{t}.mlp.fc1") + affine(f"{o}.mlp.fc2", f"{t}.mlp.fc2")
    return rules


def siglip_rules(cfg: CLIPConfig, model_type: str = "siglip") -> list[Rule]:
    """The key map between transformers' SiglipModel (or Siglip2Model) and ours."""
    check_siglip_layout(cfg)
    v, t, w = "vision_model", "text_model", cfg.vision.width
    patch = "patch_linear" if model_type == "siglip2" else "copy"
    rules = [
        Rule("visual.patch_embed.weight", (f"{v}.embeddings.patch_embedding.weight",), patch),  # type: ignore[arg-type]
        Rule("visual.patch_embed.bias", (f"{v}.embeddings.patch_embedding.bias",)),
        Rule("visual.pos_embedding", (f"{v}.embeddings.position_embedding.weight",)),
        Rule("visual.attn_pool.probe", (f"{v}.head.probe",), "reshape", shape=(1, 1, w)),
        Rule("visual.attn_pool.qkv.weight", (f"{v}.head.attention.in_proj_weight",)),
        Rule("visual.attn_pool.qkv.bias", (f"{v}.head.attention.in_proj_bias",)),
        Rule("text.token_embedding.weight", (f"{t}.embeddings.token_embedding.weight",)),
        Rule("text.pos_embedding", (f"{t}.embeddings.position_embedding.weight",)),
        Rule("text.proj", (f"{t}.head.weight",), "transpose"),  # nn.Linear (E, W) vs our x @ (W, E)
        Rule("text.proj_bias", (f"{t}.head.bias",)),
        Rule("logit_scale", ("logit_scale",), "reshape", shape=(1,)),
        Rule("logit_bias", ("logit_bias",), "reshape", shape=(1,)),
    ]
    rules += _encoder_rules("visual.transformer", f"{v}.encoder", cfg.vision.layers)
    rules += affine("visual.norm_post", f"{v}.post_layernorm")
    rules += affine("visual.attn_pool.out", f"{v}.head.attention.out_proj")
    rules += affine("visual.attn_pool.norm", f"{v}.head.layernorm")
    rules += affine("visual.attn_pool.mlp.fc1", f"{v}.head.mlp.fc1") + affine("visual.attn_pool.mlp.fc2", f"{v}.head.mlp.fc2")
    rules += _encoder_rules("text.transformer", f"{t}.encoder", cfg.text.layers)
    return rules + affine("text.norm_final", f"{t}.final_layer_norm")


# The switches transformers' Siglip towers have, at the value they have them.
SIGLIP_VIT = {"class_token": False, "pos_embed": True, "rope": None, "patch_bias": True, "norm_pre": False,
              "qkv_bias": "qkv", "sub_ln": False, "pool": "map", "pool_heads": 0, "pool_mlp_ratio": 0.0,
              "proj": "none"}  # fmt: skip
SIGLIP_TEXT = {"causal": False, "pool": "last", "proj": "bias"}


def check_siglip_layout(cfg: CLIPConfig) -> None:
    """Raise unless ``cfg`` is a SigLIP model transformers can hold.

    Raises:
        UserError: naming the first switch that differs.
    """
    if not isinstance(cfg.vision, ViTConfig):
        raise UserError("Hugging Face SiglipModel has a ViT image tower only")
    for name, tower, wanted in (("vision", cfg.vision, SIGLIP_VIT), ("text", cfg.text, SIGLIP_TEXT)):
        for key, value in wanted.items():
            if getattr(tower, key) != value:
                raise UserError(
                    f"{name}.{key}={getattr(tower, key)!r}: Hugging Face SiglipModel has no such tower "
                    f"(it needs {key}={value!r})"
                )
    for name, tower in (("vision", cfg.vision), ("text", cfg.text)):
        if tower.act == "swiglu":
            raise UserError(f"{name}.act='swiglu': Hugging Face SiglipModel has no gated MLP")
    if cfg.init_logit_bias is None:
        raise UserError("Hugging Face SiglipModel has a logit bias: a softmax CLIP model exports with --to hf as CLIPModel")


def _sub(raw: dict[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **(raw.get(name) or {})}


def _ratio(section: dict[str, Any], source: str) -> float:
    hidden, inter = section["hidden_size"], section["intermediate_size"]
    ratio = inter / hidden
    if int(hidden * ratio) != inter:
        raise UserError(f"{source}: intermediate_size {inter} is not representable as {hidden} * ratio")
    return ratio


def siglip_config_from_hf(raw: dict[str, Any], source: str, activation) -> CLIPConfig:
    """Map a SiglipModel / Siglip2Model config.json (as a dict) to our CLIPConfig.

    Args:
        raw: the config.
        source: file name for error messages.
        activation: ``convert.hf.activation`` (maps and checks ``hidden_act``).

    Raises:
        UserError: for settings clipforge cannot reproduce exactly.
    """
    with config_errors(source):
        return _siglip_config(raw, source, activation)


def _siglip_config(raw: dict[str, Any], source: str, activation) -> CLIPConfig:
    kind = raw.get("model_type")
    tc, vc = _sub(raw, "text_config", TEXT_DEFAULTS), _sub(raw, "vision_config", VISION_DEFAULTS)
    if not vc["vision_use_head"]:
        raise UserError(f"{source}: vision_use_head false (no pooling head) is not supported")
    if vc["num_channels"] != 3:
        raise UserError(f"{source}: num_channels {vc['num_channels']} (clipforge expects RGB images)")
    patch = vc["patch_size"]
    if kind == "siglip2":
        grid = math.isqrt(vc["num_patches"])
        if grid * grid != vc["num_patches"]:
            raise UserError(f"{source}: num_patches {vc['num_patches']} is not a square grid")
        image = patch * grid
    else:
        image = vc["image_size"]
    if isinstance(image, (list, tuple)) or isinstance(patch, (list, tuple)):
        raise UserError(f"{source}: image_size / patch_size must be single integers (square images)")
    width = vc["hidden_size"]
    projection = tc["projection_size"] or tc["hidden_size"]
    if projection != width:
        raise UserError(f"{source}: text projection_size {projection} differs from the image width {width}")
    vision = ViTConfig(
        image_size=image, patch_size=patch, width=width, layers=vc["num_hidden_layers"],
        head_width=width // vc["num_attention_heads"], mlp_ratio=_ratio(vc, source), ln_eps=float(vc["layer_norm_eps"]),
        act=activation(vc, "vision_config", source), class_token=False, patch_bias=True, norm_pre=False, pool="map",
        proj="none",
    )  # fmt: skip
    text = TextConfig(
        context_length=tc["max_position_embeddings"], vocab_size=tc["vocab_size"], width=tc["hidden_size"],
        heads=tc["num_attention_heads"], layers=tc["num_hidden_layers"], mlp_ratio=_ratio(tc, source),
        ln_eps=float(tc["layer_norm_eps"]), act=activation(tc, "text_config", source), causal=False, pool="last",
        proj="bias",
    )  # fmt: skip
    return CLIPConfig(
        embed_dim=width, vision=vision, text=text, init_logit_scale=SIGLIP_LOGIT_SCALE,
        init_logit_bias=SIGLIP_LOGIT_BIAS, max_logit_scale=None,
    )  # fmt: skip


def siglip_config_to_hf(cfg: CLIPConfig, act_names: dict[str, str]) -> dict[str, Any]:
    """Our SigLIP CLIPConfig as a transformers SiglipModel config.json dict."""
    check_siglip_layout(cfg)
    v, t = cfg.vision, cfg.text
    assert isinstance(v, ViTConfig)
    return {
        "architectures": ["SiglipModel"],
        "model_type": "siglip",
        "dtype": "float32",
        "text_config": {
            "model_type": "siglip_text_model", "vocab_size": t.vocab_size, "hidden_size": t.width,
            "intermediate_size": int(t.width * t.mlp_ratio), "num_hidden_layers": t.layers,
            "num_attention_heads": t.heads, "max_position_embeddings": t.context_length,
            "hidden_act": act_names[t.act], "layer_norm_eps": t.ln_eps, "projection_size": cfg.embed_dim,
        },
        "vision_config": {
            "model_type": "siglip_vision_model", "hidden_size": v.width, "intermediate_size": int(v.width * v.mlp_ratio),
            "num_hidden_layers": v.layers, "num_attention_heads": v.heads, "image_size": v.image_size,
            "patch_size": v.patch_size, "hidden_act": act_names[v.act], "layer_norm_eps": v.ln_eps, "num_channels": 3,
            "vision_use_head": True,
        },
    }  # fmt: skip
