"""OpenCLIP checkpoints (state dicts / .safetensors + their model-config JSON) → clipforge.

OpenCLIP's standard ``CLIP`` class uses OpenAI's parameter names, so the key map is the one in
``convert/openai.py``; its ``CustomTextCLIP`` (``"custom_text": true``) moves the text tower under ``text.``.
OpenCLIP files carry no config: pass the model-config JSON (``open_clip/model_configs/<name>.json``) or a
clipforge model name (the registry uses OpenCLIP's names) as ``config``.

OpenCLIP has many architecture switches; a config that sets one clipforge does not implement (layer scale,
attentional pooling, timm or Hugging Face towers, other pooling, ...) is refused with the option named,
never imported approximately. MobileCLIP's timm towers are mapped by ``convert/mobileclip.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

from clipforge.convert.common import (
    Imported,
    config_errors,
    import_state,
    pipeline_config,
    read_json_object,
    read_state_file,
)
from clipforge.convert.mobileclip import (
    PREPROCESS,
    is_mobileclip,
    is_reparameterized_layout,
    mobileclip_rules,
    vision_from_timm,
)
from clipforge.convert.openai import OPENAI_CONSTANTS, openai_rules
from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig, FastViTConfig, ResNetConfig, TextConfig, VisionConfig, ViTConfig

# Options clipforge supports only at OpenCLIP's default value (falsy values like None, False, {} also pass).
VISION_DEFAULT_ONLY: dict[str, Any] = {
    "ls_init_value": None, "attentional_pool": False, "no_ln_pre": False, "pos_embed_type": "learnable",
    "final_ln_after_pool": False, "pool_type": "tok", "act_kwargs": None, "block_type": "default", "qk_norm": False,
    "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False, "scale_attn": False,
    "scale_fc": False, "timm_model_name": None, "proj_bias": False, "input_patchnorm": False,
    "global_average_pool": False, "embed_cls": False,
}  # fmt: skip
TEXT_DEFAULT_ONLY: dict[str, Any] = {
    "ls_init_value": None, "embed_cls": False, "final_ln_after_pool": False,
    "pool_type": "argmax", "proj_bias": False, "proj_type": "linear", "act_kwargs": None, "block_type": "default",
    "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
    "scale_attn": False, "scale_fc": False, "hf_model_name": None, "hf_tokenizer_name": None,
    "tokenizer_kwargs": None, "tokenizer_mode": None,
}  # fmt: skip
# Options that do not change the weights or the features (training-time or output-format switches).
VISION_IGNORED = {"output_tokens", "attn_pooler_queries", "attn_pooler_heads", "timm_model_pretrained", "timm_pool",
                  "timm_proj", "timm_proj_bias", "timm_drop", "timm_drop_path", "patch_dropout"}  # fmt: skip
TEXT_IGNORED = {"output_tokens", "pad_id", "eos_id", "hf_model_pretrained", "hf_proj_type", "hf_pooler_type"}
TOP_IGNORED = {"cast_dtype", "output_dict", "custom_text", "quick_gelu", "vision_cfg", "text_cfg", "embed_dim",
               "init_logit_scale", "init_logit_bias", "preprocess_cfg"}  # fmt: skip
RESIZE_MODES = {"shortest", "squash"}
INTERPOLATIONS = {"bicubic", "bilinear"}


class OpenCLIPSpec(NamedTuple):
    """An OpenCLIP model config mapped to ours, plus what the mapping needs besides the architecture."""

    model: CLIPConfig
    preprocess: dict[str, Any]  # PreprocessConfig fields from the config's preprocess_cfg
    custom_text: bool  # text tower keys under "text." (CustomTextCLIP)


def _check_options(section: dict[str, Any], defaults: dict[str, Any], ignored: set[str], known: set[str], where: str):
    for key, value in section.items():
        if key in known or key in ignored:
            continue
        if key not in defaults:
            raise UserError(f"{where}: unknown OpenCLIP option {key!r}", hint="clipforge cannot import this model")
        if value and value != defaults[key]:
            raise UserError(
                f"{where}: OpenCLIP option {key}={value!r} is not supported by clipforge's architecture",
                hint="only models built from OpenAI-style towers can be imported",
            )


def _eps(section: dict[str, Any]) -> float:
    norm = section.get("norm_kwargs") or {}
    extra = set(norm) - {"eps"}
    if extra:
        raise UserError(f"OpenCLIP norm_kwargs {sorted(extra)} are not supported (only eps)")
    return float(norm.get("eps", 1e-5))


def _side(value: Any, where: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise UserError(f"{where}: image_size {value} is not square; clipforge supports square images only")
        value = value[0]
    return int(value)


def config_from_open_clip(raw: dict[str, Any], source: str = "model config") -> OpenCLIPSpec:
    """Map an OpenCLIP model-config JSON (as a dict) to our config.

    Raises:
        UserError: for options clipforge does not implement, naming the option.
    """
    with config_errors(source):
        return _config_from_open_clip(raw, source)


def _config_from_open_clip(raw: dict[str, Any], source: str = "model config") -> OpenCLIPSpec:
    unknown = set(raw) - TOP_IGNORED
    if unknown:
        raise UserError(f"{source}: unsupported OpenCLIP model-config keys {sorted(unknown)}")
    if "vision_cfg" not in raw or "text_cfg" not in raw or "embed_dim" not in raw:
        raise UserError(f"{source}: not an OpenCLIP model config (needs embed_dim, vision_cfg, text_cfg)")
    vc, tc = dict(raw["vision_cfg"]), dict(raw["text_cfg"])
    text_known = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "norm_kwargs",
                  "no_causal_mask"}  # fmt: skip
    _check_options(tc, TEXT_DEFAULT_ONLY, TEXT_IGNORED, text_known, f"{source}: text_cfg")
    vision = _vision(vc, _side(vc.get("image_size", 224), f"{source}: vision_cfg"), f"{source}: vision_cfg")
    text = TextConfig(
        context_length=tc.get("context_length", 77), vocab_size=tc.get("vocab_size", 49408),
        width=tc.get("width", 512), heads=tc.get("heads", 8), layers=tc.get("layers", 12),
        mlp_ratio=float(tc.get("mlp_ratio", 4.0)), ln_eps=_eps(tc), causal=not tc.get("no_causal_mask", False),
    )  # fmt: skip
    model = CLIPConfig(embed_dim=raw["embed_dim"], vision=vision, text=text, quick_gelu=bool(raw.get("quick_gelu")))
    if raw.get("init_logit_scale") is not None:
        model = dataclasses.replace(model, init_logit_scale=float(raw["init_logit_scale"]))
    if raw.get("init_logit_bias") is not None:
        model = dataclasses.replace(model, init_logit_bias=float(raw["init_logit_bias"]))
    return OpenCLIPSpec(model, _preprocess(raw.get("preprocess_cfg") or {}, source), bool(raw.get("custom_text")))


def _vision(vc: dict[str, Any], image_size: int, where: str) -> VisionConfig:
    """The image tower of an OpenCLIP ``vision_cfg``: a MobileCLIP timm tower, a ModifiedResNet or a ViT."""
    if vc.get("timm_model_name"):
        return vision_from_timm(vc, image_size, where)
    vision_known = {"image_size", "layers", "width", "head_width", "mlp_ratio", "patch_size", "norm_kwargs"}
    _check_options(vc, VISION_DEFAULT_ONLY, VISION_IGNORED, vision_known, where)
    layers = vc.get("layers", 12)
    common = dict(image_size=image_size, width=vc.get("width", 768), head_width=vc.get("head_width", 64))
    if isinstance(layers, (list, tuple)):  # OpenCLIP builds a ModifiedResNet when layers is a list
        return ResNetConfig(layers=tuple(layers), **common)  # type: ignore[arg-type]
    return ViTConfig(
        layers=layers, mlp_ratio=float(vc.get("mlp_ratio", 4.0)), patch_size=vc.get("patch_size", 16),
        ln_eps=_eps(vc), patch_dropout=float(vc.get("patch_dropout", 0.0)), **common,
    )  # fmt: skip


def _preprocess(prep: dict[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "mean" in prep:
        out["mean"] = tuple(float(x) for x in prep["mean"])
    if "std" in prep:
        out["std"] = tuple(float(x) for x in prep["std"])
    if prep.get("interpolation", "bicubic") not in INTERPOLATIONS:
        raise UserError(f"{source}: preprocess interpolation {prep['interpolation']!r} not in {sorted(INTERPOLATIONS)}")
    if prep.get("resize_mode", "shortest") not in RESIZE_MODES:
        raise UserError(f"{source}: preprocess resize_mode {prep['resize_mode']!r} not in {sorted(RESIZE_MODES)}")
    for key in ("interpolation", "resize_mode"):
        if key in prep:
            out[key] = prep[key]
    return out


def read_open_clip_config(path: str | Path) -> OpenCLIPSpec:
    """Read and map an OpenCLIP model-config JSON file."""
    return config_from_open_clip(read_json_object(path, "the OpenCLIP model config"), str(path))


def import_open_clip(src: str | Path, config: CLIPConfig | str | Path | None, name: str | None = None) -> Imported:
    """Import an OpenCLIP checkpoint.

    Args:
        src: a state dict (.pt/.bin, optionally a training checkpoint with "state_dict" and "module." keys)
            or a .safetensors file.
        config: the OpenCLIP model-config JSON path, or our CLIPConfig (e.g. from the registry).
        name: the OpenCLIP model name ``config`` came from, if any; it picks the preprocessing of the name's
            pretrained weights where the config has none (MobileCLIP). A config file's name is its stem.

    Raises:
        UserError: without a config (OpenCLIP files do not carry one), or when the weights do not fit it.
    """
    if config is None:
        raise UserError(
            f"{src}: OpenCLIP checkpoints carry no model config",
            hint="pass --config with the model-config JSON (open_clip/model_configs/NAME.json) or a model name",
        )
    if isinstance(config, CLIPConfig):
        spec = OpenCLIPSpec(config, {}, False)
    else:
        spec, name = read_open_clip_config(config), name or Path(config).stem
    foreign = read_state_file(src)
    model = spec.model
    if is_mobileclip(model.vision):
        # The file says which form (training branches or folded) the weights are in, by its key names.
        if isinstance(model.vision, FastViTConfig) and is_reparameterized_layout(foreign):
            model = dataclasses.replace(model, vision=dataclasses.replace(model.vision, reparameterized=True))
        rules = mobileclip_rules(model)
    else:
        rules = openai_rules(model, text_prefix="text." if spec.custom_text else "")
    ignore = (*OPENAI_CONSTANTS, "attn_mask", "text.attn_mask")  # the causal mask is a constant, not a weight
    state = import_state(foreign, rules, model, str(src), ignore=ignore)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    preprocess = spec.preprocess or PREPROCESS.get(name or "", {})
    return Imported(state, pipeline_config(model, **preprocess))
