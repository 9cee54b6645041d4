"""timm's ViT image towers inside OpenCLIP (SigLIP, EVA-02, Perception Encoder) ⇄ clipforge's ViT.

OpenCLIP builds these towers with ``timm.create_model(vision_cfg.timm_model_name)`` and keeps them under
``visual.trunk.``; the architecture is the timm entry point's, so the table below lists, per timm model name,
the switches of ours that reproduce it (read from timm 1.0.31's entry points). A timm name not listed is
refused with the list of those that are.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from clipforge.convert.common import SUPPORTED_FAMILIES, Rule, affine
from clipforge.errors import UserError
from clipforge.model.config import RopeConfig, ViTConfig
from clipforge.model.registry import EVA_MLP_RATIO, SO400M_MLP_RATIO

_SIGLIP = dict(ln_eps=1e-6, class_token=False, patch_bias=True, norm_pre=False, pool="map")
_EVA02 = dict(ln_eps=1e-6, act="swiglu", mlp_ratio=EVA_MLP_RATIO, patch_bias=True, norm_pre=False, qkv_bias="qv",
              sub_ln=True, rope=RopeConfig(ref_grid=16))  # fmt: skip
_PE = dict(pool="map", pool_heads=8, pool_mlp_ratio=4.0)


def _t(patch: int, width: int, layers: int, heads: int, **switches: Any) -> dict[str, Any]:
    return dict(patch_size=patch, width=width, layers=layers, head_width=width // heads, **switches)


def _pe(patch: int, width: int, layers: int, heads: int, grid: int, class_token: bool = True, **kw: Any):
    rope = RopeConfig(ref_grid=grid, offset=1.0 if class_token else 0.0, axes="xy")
    return _t(patch, width, layers, heads, rope=rope, class_token=class_token, **_PE, **kw)


_B16 = _t(16, 768, 12, 12, **_SIGLIP)
_L16 = _t(16, 1024, 24, 16, **_SIGLIP)
_SO14 = _t(14, 1152, 27, 16, mlp_ratio=SO400M_MLP_RATIO, **_SIGLIP)
_SO16 = _t(16, 1152, 27, 16, mlp_ratio=SO400M_MLP_RATIO, act="gelu_tanh", **_SIGLIP)
_GOPT = _t(16, 1536, 40, 16, act="gelu_tanh", **_SIGLIP)

# timm model name -> ViTConfig fields (image_size comes from OpenCLIP's vision_cfg).
TIMM_TRUNKS: dict[str, dict[str, Any]] = {
    **{f"vit_base_patch16_siglip_{i}": _B16 for i in (224, 256, 384, 512)},
    "vit_base_patch32_siglip_256": _t(32, 768, 12, 12, act="gelu_tanh", **_SIGLIP),
    **{f"vit_large_patch16_siglip_{i}": _L16 for i in (256, 384)},
    "vit_large_patch16_siglip_512": {**_L16, "act": "gelu_tanh"},
    **{f"vit_so400m_patch14_siglip_{i}": _SO14 for i in (224, 378, 384)},
    **{f"vit_so400m_patch16_siglip_{i}": _SO16 for i in (256, 384, 512)},
    **{f"vit_giantopt_patch16_siglip_{i}": _GOPT for i in (256, 384)},
    "eva02_base_patch16_clip_224": _t(16, 768, 12, 12, **_EVA02),
    **{f"eva02_large_patch14_clip_{i}": _t(14, 1024, 24, 16, **_EVA02) for i in (224, 336)},
    "vit_pe_core_tiny_patch16_384": _pe(16, 192, 12, 3, 24),
    "vit_pe_core_small_patch16_384": _pe(16, 384, 12, 6, 24),
    "vit_pe_core_base_patch16_224": _pe(16, 768, 12, 12, 14),
    "vit_pe_core_large_patch14_336": _pe(14, 1024, 24, 16, 24),
    "vit_pe_core_gigantic_patch14_448": _pe(14, 1536, 50, 16, 32, class_token=False, mlp_ratio=8960 / 1536),
}  # fmt: skip


TIMM_SIZE_KWARGS = ("img_size", "embed_dim", "depth", "num_heads", "ref_feat_shape")


def vision_from_timm(vc: dict[str, Any], source: str, timm_kwargs: dict[str, Any] | None = None) -> ViTConfig:
    """Our ViTConfig for an OpenCLIP ``vision_cfg`` that names a timm trunk.

    Args:
        vc: OpenCLIP's vision_cfg.
        source: file name for error messages.
        timm_kwargs: sizes given to ``timm.create_model`` beyond the entry point's own (``img_size``,
            ``embed_dim``, ``depth``, ``num_heads``, ``ref_feat_shape``), for trunks built smaller than
            the named one (OpenCLIP itself passes none).

    Raises:
        UserError: for a timm model that is not in ``TIMM_TRUNKS``, or pooling / projection settings that do
            not fit the trunk's family.
    """
    name = vc["timm_model_name"]
    if name not in TIMM_TRUNKS:
        raise UserError(
            f"{source}: timm_model_name {name!r} is not supported",
            hint=f"clipforge imports {SUPPORTED_FAMILIES}; its timm towers: {', '.join(sorted(TIMM_TRUNKS))}",
        )
    fields = dict(TIMM_TRUNKS[name])
    pool, proj = vc.get("timm_pool", "avg"), vc.get("timm_proj", "linear")
    if pool != fields.get("pool", "token"):
        raise UserError(f"{source}: timm_pool {pool!r} for {name} is not supported (only {fields.get('pool', 'token')!r})")
    if proj == "none":
        fields["proj"] = "none"
    elif proj is None or proj == "":
        fields["proj"] = "bias"  # OpenCLIP then sizes the trunk's own classifier head to embed_dim
    else:
        raise UserError(f"{source}: timm_proj {proj!r} is not supported (only 'none' or null)")
    if vc.get("timm_proj_bias") or vc.get("timm_drop"):
        raise UserError(f"{source}: timm_proj_bias / timm_drop are not supported")
    size = vc.get("image_size", 224)
    fields["image_size"] = size[0] if isinstance(size, (list, tuple)) else int(size)
    fields["patch_dropout"] = float(vc.get("patch_dropout") or 0.0)
    return ViTConfig(**_resized(fields, timm_kwargs or {}, source))


def _resized(fields: dict[str, Any], kw: dict[str, Any], source: str) -> dict[str, Any]:
    unknown = set(kw) - set(TIMM_SIZE_KWARGS)
    if unknown:
        raise UserError(f"{source}: timm keyword arguments {sorted(unknown)} are not supported", hint=f"only {TIMM_SIZE_KWARGS}")
    heads = fields["width"] // fields["head_width"]
    if "img_size" in kw:
        fields["image_size"] = int(kw["img_size"])
    if "embed_dim" in kw:
        fields["width"] = int(kw["embed_dim"])
    fields["layers"] = int(kw.get("depth", fields["layers"]))
    fields["head_width"] = fields["width"] // int(kw.get("num_heads", heads))
    if "ref_feat_shape" in kw and fields.get("rope") is not None:
        ref = kw["ref_feat_shape"]
        fields["rope"] = dataclasses.replace(fields["rope"], ref_grid=int(ref[0] if isinstance(ref, (list, tuple)) else ref))
    return fields


def timm_vit_rules(cfg: ViTConfig, prefix: str = "visual.trunk.") -> list[Rule]:
    """The key map between a timm ``VisionTransformer`` / ``Eva`` trunk and our ViT.

    Args:
        cfg: our image-tower config (the switches decide which timm keys exist).
        prefix: where the trunk's keys live in the foreign state dict.
    """
    t, w = prefix, cfg.width
    rules = [Rule("visual.patch_embed.weight", (f"{t}patch_embed.proj.weight",))]
    if cfg.patch_bias:
        rules.append(Rule("visual.patch_embed.bias", (f"{t}patch_embed.proj.bias",)))
    if cfg.class_token:
        rules.append(Rule("visual.class_embedding", (f"{t}cls_token",), "reshape", shape=(1, 1, w)))
    if cfg.pos_embed:
        n = cfg.grid_size**2 + cfg.prefix_tokens
        rules.append(Rule("visual.pos_embedding", (f"{t}pos_embed",), "reshape", shape=(1, n, w)))
    if cfg.norm_pre:
        rules += affine("visual.norm_pre", f"{t}norm_pre")
    for i in range(cfg.layers):
        rules += _block_rules(cfg, f"visual.transformer.blocks.{i}", f"{t}blocks.{i}")
    rules += affine("visual.norm_post", f"{t}norm")
    if cfg.pool == "map":
        o, p = "visual.attn_pool", f"{t}attn_pool"
        rules += [
            Rule(f"{o}.probe", (f"{p}.latent",), "reshape", shape=(1, 1, w)),
            Rule(f"{o}.qkv.weight", (f"{p}.q.weight", f"{p}.kv.weight"), "concat", sizes=(w, 2 * w)),
            Rule(f"{o}.qkv.bias", (f"{p}.q.bias", f"{p}.kv.bias"), "concat", sizes=(w, 2 * w)),
        ]
        rules += affine(f"{o}.out", f"{p}.proj") + affine(f"{o}.norm", f"{p}.norm")
        rules += affine(f"{o}.mlp.fc1", f"{p}.mlp.fc1") + affine(f"{o}.mlp.fc2", f"{p}.mlp.fc2")
    if cfg.proj != "none":  # timm's classifier head, sized to the embedding by OpenCLIP
        rules.append(Rule("visual.proj", (f"{t}head.weight",), "transpose"))
        rules.append(Rule("visual.proj_bias", (f"{t}head.bias",)))
    return rules


def _block_rules(cfg: ViTConfig, o: str, t: str) -> list[Rule]:
    rules = affine(f"{o}.norm1", f"{t}.norm1") + affine(f"{o}.norm2", f"{t}.norm2")
    if cfg.qkv_bias == "qv":  # EVA-02: separate q/k/v projections, no key bias
        rules += [
            Rule(f"{o}.attn.qkv.weight", tuple(f"{t}.attn.{n}_proj.weight" for n in "qkv"), "concat"),
            Rule(f"{o}.attn.q_bias", (f"{t}.attn.q_proj.bias",)),
            Rule(f"{o}.attn.v_bias", (f"{t}.attn.v_proj.bias",)),
        ]
    else:
        rules += affine(f"{o}.attn.qkv", f"{t}.attn.qkv")
    rules += affine(f"{o}.attn.out", f"{t}.attn.proj")
    if cfg.sub_ln:
        rules += affine(f"{o}.attn.norm", f"{t}.attn.norm") + affine(f"{o}.mlp.norm", f"{t}.mlp.norm")
    if cfg.act == "swiglu":  # timm's SwiGLU keeps gate and value in two Linears; ours is one (gate first)
        for p in ("weight", "bias"):
            rules.append(Rule(f"{o}.mlp.fc1.{p}", (f"{t}.mlp.fc1_g.{p}", f"{t}.mlp.fc1_x.{p}"), "concat"))
    else:
        rules += affine(f"{o}.mlp.fc1", f"{t}.mlp.fc1")
    return rules + affine(f"{o}.mlp.fc2", f"{t}.mlp.fc2")
