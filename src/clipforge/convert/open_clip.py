"""OpenCLIP checkpoints (state dicts / .safetensors + their model-config JSON) → clipforge.

OpenCLIP's own towers use OpenAI's parameter names, so their key map is the one in ``convert/openai.py``;
its ``CustomTextCLIP`` (``"custom_text": true``) moves the text tower under ``text.``. Image towers built by
timm (SigLIP, EVA-02, Perception Encoder: ``vision_cfg.timm_model_name``) live under ``visual.trunk.`` with
timm's names (``convert/timm_vit.py``). OpenCLIP files carry no config: pass the model-config JSON
(``open_clip/model_configs/<name>.json``) or a clipforge model name (the registry uses OpenCLIP's names) as
``config``.

OpenCLIP has many architecture switches; a config that sets one clipforge does not implement (layer scale,
CoCa's attentional pooler, Hugging Face text towers, timm towers not in the table, ...) is refused with the
option named, never imported approximately. MobileCLIP's timm towers (``fastvit_mci*``, ``vit_base_mci_224``)
are mapped by ``convert/mobileclip.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

from clipforge.convert.common import (
    SUPPORTED_FAMILIES,
    Imported,
    Rule,
    config_errors,
    import_state,
    pipeline_config,
    read_json_object,
    read_state_file,
)
from clipforge.convert.mobileclip import (
    PREPROCESS,
    TIMM_TOWERS,
    is_mobileclip,
    is_reparameterized_layout,
    mobileclip_rules,
    mobileclip_vision,
)
from clipforge.convert.open_clip_tokenizer import open_clip_tokenizer
from clipforge.convert.openai import OPENAI_CONSTANTS, logit_rules, openai_style_difference, text_rules, vision_rules
from clipforge.convert.timm_vit import timm_vit_rules, vision_from_timm
from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig, FastViTConfig, ResNetConfig, TextConfig, VisionConfig, ViTConfig
from clipforge.model.registry import SIGLIP_LOGIT_SCALE

# Options clipforge supports only at OpenCLIP's default value (falsy values like None, False, {} also pass).
VISION_DEFAULT_ONLY: dict[str, Any] = {
    "ls_init_value": None, "attentional_pool": False, "no_ln_pre": False, "pos_embed_type": "learnable",
    "final_ln_after_pool": False, "pool_type": "tok", "act_kwargs": None, "block_type": "default", "qk_norm": False,
    "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False, "scale_attn": False,
    "scale_fc": False, "proj_bias": False, "input_patchnorm": False, "global_average_pool": False, "embed_cls": False,
}  # fmt: skip
TEXT_DEFAULT_ONLY: dict[str, Any] = {
    "ls_init_value": None, "embed_cls": False, "final_ln_after_pool": False, "block_type": "default",
    "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
    "scale_attn": False, "scale_fc": False, "hf_model_name": None, "tokenizer_mode": None,
}  # fmt: skip
# Options that do not change the weights or the features (training-time or output-format switches, the
# tokenizer's hub name and cleaning, which the tokenizer given to convert carries).
VISION_IGNORED = {"output_tokens", "attn_pooler_queries", "attn_pooler_heads", "timm_model_pretrained",
                  "timm_drop_path", "patch_dropout"}  # fmt: skip
TEXT_IGNORED = {"output_tokens", "pad_id", "eos_id", "hf_model_pretrained", "hf_proj_type", "hf_pooler_type",
                "hf_tokenizer_name", "tokenizer_kwargs"}  # fmt: skip
TIMM_KNOWN = {"timm_model_name", "timm_model_pretrained", "timm_pool", "timm_proj", "timm_proj_bias", "timm_drop",
              "timm_drop_path", "image_size", "patch_dropout"}  # fmt: skip
TOP_IGNORED = {"cast_dtype", "output_dict", "custom_text", "quick_gelu", "vision_cfg", "text_cfg", "embed_dim",
               "init_logit_scale", "init_logit_bias", "preprocess_cfg"}  # fmt: skip
RESIZE_MODES = {"shortest", "squash"}
INTERPOLATIONS = {"bicubic", "bilinear"}
TEXT_POOLS = {"argmax": "argmax", "last": "last"}  # OpenCLIP pool_type -> ours
CLEAN_MODES = ("whitespace", "lower", "canonicalize")  # OpenCLIP HFTokenizer's clean functions


class OpenCLIPSpec(NamedTuple):
    """An OpenCLIP model config mapped to ours, plus what the mapping needs besides the architecture."""

    model: CLIPConfig
    preprocess: dict[str, Any]  # PreprocessConfig fields from the config's preprocess_cfg
    custom_text: bool  # text tower keys under "text." (CustomTextCLIP)
    tokenizer_name: str | None = None  # text_cfg.hf_tokenizer_name: the Hugging Face tokenizer OpenCLIP loads
    tokenizer_kwargs: dict[str, Any] = {}  # text_cfg.tokenizer_kwargs (clean, strip_sep_token)


def _check_options(section: dict[str, Any], defaults: dict[str, Any], ignored: set[str], known: set[str], where: str):
    for key, value in section.items():
        if key in known or key in ignored:
            continue
        if key not in defaults:
            raise UserError(f"{where}: unknown OpenCLIP option {key!r}", hint="clipforge cannot import this model")
        if key == "hf_model_name" and value:
            raise UserError(f"{where}: a Hugging Face text tower (hf_model_name {value!r}) is not supported",
                            hint=f"clipforge imports {SUPPORTED_FAMILIES}")  # fmt: skip
        if value and value != defaults[key]:
            raise UserError(
                f"{where}: OpenCLIP option {key}={value!r} is not supported by clipforge's architecture",
                hint=f"clipforge imports {SUPPORTED_FAMILIES}",
            )


def _eps(section: dict[str, Any]) -> float:
    norm = section.get("norm_kwargs") or {}
    extra = set(norm) - {"eps"}
    if extra:
        raise UserError(f"OpenCLIP norm_kwargs {sorted(extra)} are not supported (only eps)")
    return float(norm.get("eps", 1e-5))


def _text_act(tc: dict[str, Any], quick_gelu: bool, where: str) -> str:
    act = tc.get("act_kwargs") or {}
    if set(act) - {"approximate"} or act.get("approximate", "none") not in ("none", "tanh"):
        raise UserError(f"{where}: act_kwargs {act} are not supported (only approximate 'tanh')")
    if quick_gelu:
        return "quick_gelu"
    return "gelu_tanh" if act.get("approximate") == "tanh" else "gelu"


def _side(value: Any, where: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise UserError(f"{where}: image_size {value} is not square; clipforge supports square images only")
        value = value[0]
    return int(value)


def config_from_open_clip(
    raw: dict[str, Any], source: str = "model config", timm_kwargs: dict[str, Any] | None = None
) -> OpenCLIPSpec:
    """Map an OpenCLIP model-config JSON (as a dict) to our config.

    Args:
        raw: the model config.
        source: file name for error messages.
        timm_kwargs: for a timm image tower built with extra sizes (see ``timm_vit.vision_from_timm``).

    Raises:
        UserError: for options clipforge does not implement, naming the option.
    """
    with config_errors(source):
        return _config_from_open_clip(raw, source, timm_kwargs)


def _vision(vc: dict[str, Any], quick_gelu: bool, source: str, timm_kwargs: dict[str, Any] | None) -> VisionConfig:
    where = f"{source}: vision_cfg"
    if vc.get("timm_model_name") in TIMM_TOWERS:
        return mobileclip_vision({k: v for k, v in vc.items() if k in TIMM_KNOWN}, _side(vc.get("image_size", 224),
                                 where), where)  # fmt: skip
    if vc.get("timm_model_name"):
        # OpenCLIP reads only the timm options (and image_size) when it builds a timm tower.
        return vision_from_timm({k: v for k, v in vc.items() if k in TIMM_KNOWN}, where, timm_kwargs)
    vision_known = {"image_size", "layers", "width", "head_width", "mlp_ratio", "patch_size", "norm_kwargs",
                    "timm_model_name", "timm_pool", "timm_proj", "timm_proj_bias", "timm_drop"}  # fmt: skip
    _check_options(vc, VISION_DEFAULT_ONLY, VISION_IGNORED, vision_known, where)
    layers = vc.get("layers", 12)
    image_size = _side(vc.get("image_size", 224), where)
    common = dict(image_size=image_size, width=vc.get("width", 768), head_width=vc.get("head_width", 64))
    if isinstance(layers, (list, tuple)):  # OpenCLIP builds a ModifiedResNet when layers is a list
        return ResNetConfig(layers=tuple(layers), **common)  # type: ignore[arg-type]
    return ViTConfig(
        layers=layers, mlp_ratio=float(vc.get("mlp_ratio", 4.0)), patch_size=vc.get("patch_size", 16),
        ln_eps=_eps(vc), patch_dropout=float(vc.get("patch_dropout", 0.0)),
        act="quick_gelu" if quick_gelu else "gelu", **common,
    )  # fmt: skip


def _text(tc: dict[str, Any], quick_gelu: bool, source: str) -> TextConfig:
    where = f"{source}: text_cfg"
    text_known = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "norm_kwargs",
                  "no_causal_mask", "proj_bias", "pool_type", "proj_type", "act_kwargs"}  # fmt: skip
    _check_options(tc, TEXT_DEFAULT_ONLY, TEXT_IGNORED, text_known, where)
    pool = tc.get("pool_type", "argmax")
    if pool not in TEXT_POOLS:
        raise UserError(f"{where}: pool_type {pool!r} is not supported", hint=f"one of {sorted(TEXT_POOLS)}")
    proj_type = tc.get("proj_type", "linear")
    if proj_type not in ("linear", "none"):
        raise UserError(f"{where}: proj_type {proj_type!r} is not supported (only 'linear' or 'none')")
    proj = "none" if proj_type == "none" else "bias" if tc.get("proj_bias") else "plain"
    return TextConfig(
        context_length=tc.get("context_length", 77), vocab_size=tc.get("vocab_size", 49408),
        width=tc.get("width", 512), heads=tc.get("heads", 8), layers=tc.get("layers", 12),
        mlp_ratio=float(tc.get("mlp_ratio", 4.0)), ln_eps=_eps(tc), act=_text_act(tc, quick_gelu, where),  # type: ignore[arg-type]
        causal=not tc.get("no_causal_mask", False), pool=TEXT_POOLS[pool], proj=proj,  # type: ignore[arg-type]
    )  # fmt: skip


def _config_from_open_clip(raw: dict[str, Any], source: str, timm_kwargs: dict[str, Any] | None) -> OpenCLIPSpec:
    if "multimodal_cfg" in raw:
        raise UserError(f"{source}: a CoCa model (multimodal_cfg: a captioning text decoder) is not supported",
                        hint=f"clipforge imports {SUPPORTED_FAMILIES}")  # fmt: skip
    unknown = set(raw) - TOP_IGNORED
    if unknown:
        raise UserError(f"{source}: unsupported OpenCLIP model-config keys {sorted(unknown)}",
                        hint=f"clipforge imports {SUPPORTED_FAMILIES}")  # fmt: skip
    if "vision_cfg" not in raw or "text_cfg" not in raw or "embed_dim" not in raw:
        raise UserError(f"{source}: not an OpenCLIP model config (needs embed_dim, vision_cfg, text_cfg)")
    quick = bool(raw.get("quick_gelu"))
    vision = _vision(dict(raw["vision_cfg"]), quick, source, timm_kwargs)
    text = _text(dict(raw["text_cfg"]), quick, source)
    model = CLIPConfig(embed_dim=raw["embed_dim"], vision=vision, text=text)
    if raw.get("init_logit_bias") is not None:
        # A sigmoid-loss (SigLIP) model: its forward never clamps the temperature (released weights sit above
        # ln 100), and without an explicit init it starts where the SigLIP paper does (log 10, bias -10).
        model = dataclasses.replace(model, init_logit_scale=SIGLIP_LOGIT_SCALE, max_logit_scale=None,
                                    init_logit_bias=float(raw["init_logit_bias"]))  # fmt: skip
    if raw.get("init_logit_scale") is not None:
        model = dataclasses.replace(model, init_logit_scale=float(raw["init_logit_scale"]))
    tc = raw["text_cfg"]
    kwargs = dict(tc.get("tokenizer_kwargs") or {})
    unknown_kwargs = set(kwargs) - {"clean", "strip_sep_token"}
    if unknown_kwargs or kwargs.get("clean", "whitespace") not in CLEAN_MODES:
        raise UserError(f"{source}: text_cfg.tokenizer_kwargs {kwargs} are not supported",
                        hint=f"clipforge reproduces clean (one of {', '.join(CLEAN_MODES)}) and strip_sep_token")  # fmt: skip
    return OpenCLIPSpec(model, _preprocess(raw.get("preprocess_cfg") or {}, source), bool(raw.get("custom_text")),
                        tc.get("hf_tokenizer_name"), kwargs)  # fmt: skip


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


def open_clip_rules(cfg: CLIPConfig, custom_text: bool) -> list[Rule]:
    """The key map between an OpenCLIP model and ours.

    Args:
        cfg: our model config.
        custom_text: OpenCLIP's CustomTextCLIP layout (text tower under ``text.``).
    """
    if is_mobileclip(cfg.vision):
        return mobileclip_rules(cfg)
    timm_tower = isinstance(cfg.vision, ViTConfig) and openai_style_difference(cfg.vision) is not None
    vision = timm_vit_rules(cfg.vision) if timm_tower else vision_rules(cfg)  # type: ignore[arg-type]
    if cfg.text.act == "swiglu":
        raise UserError("text.act='swiglu': OpenCLIP's text tower has no gated MLP")
    return vision + text_rules(cfg, "text." if custom_text else "") + logit_rules(cfg)


def read_open_clip_config(path: str | Path) -> OpenCLIPSpec:
    """Read and map an OpenCLIP model-config JSON file."""
    return config_from_open_clip(read_json_object(path, "the OpenCLIP model config"), str(path))


def import_open_clip(src: str | Path, config: CLIPConfig | str | Path | None, name: str | None = None,
                     tokenizer: str | Path | None = None) -> Imported:  # fmt: skip
    """Import an OpenCLIP checkpoint.

    Args:
        src: a state dict (.pt/.bin, optionally a training checkpoint with "state_dict" and "module." keys)
            or a .safetensors file.
        config: the OpenCLIP model-config JSON path, or our CLIPConfig (e.g. from the registry).
        name: the OpenCLIP model name ``config`` came from, if any; it picks the preprocessing of the name's
            pretrained weights where the config has none (MobileCLIP). A config file's name is its stem.
        tokenizer: the tokenizer its weights were trained with, for models whose text tower does not use
            OpenAI's vocabulary (SigLIP's SentencePiece vocabularies): a tokenizer.json or the folder holding it
            (see ``open_clip_tokenizer``).

    Raises:
        UserError: without a config (OpenCLIP files do not carry one), without the tokenizer a model needs or with
            one that does not fit it (both before any weights are read), or when the weights do not fit the config.
    """
    if config is None:
        raise UserError(
            f"{src}: OpenCLIP checkpoints carry no model config",
            hint="pass --config with the model-config JSON (open_clip/model_configs/NAME.json) or a model name",
        )
    if isinstance(config, CLIPConfig):  # a registry name: the key prefix says CLIP or CustomTextCLIP
        spec = OpenCLIPSpec(config, {}, False)
    else:
        spec, name = read_open_clip_config(config), name or Path(config).stem
    where = name or str(config)
    text_tokenizer = open_clip_tokenizer(spec.model, spec.tokenizer_name, spec.tokenizer_kwargs, tokenizer, where)
    foreign = read_state_file(src)
    if isinstance(config, CLIPConfig):
        spec = spec._replace(custom_text="text.token_embedding.weight" in foreign)
    model = spec.model
    # A MobileCLIP file says by its key names which form (training branches or folded) its weights are in.
    if isinstance(model.vision, FastViTConfig) and is_reparameterized_layout(foreign):
        model = dataclasses.replace(model, vision=dataclasses.replace(model.vision, reparameterized=True))
    rules = open_clip_rules(model, spec.custom_text)
    ignore = (*OPENAI_CONSTANTS, "attn_mask", "text.attn_mask")  # the causal mask is a constant, not a weight
    state = import_state(foreign, rules, model, str(src), ignore=ignore)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    preprocess = spec.preprocess or PREPROCESS.get(name or "", {})
    if text_tokenizer is None:
        return Imported(state, pipeline_config(model, **preprocess))
    return Imported(state, pipeline_config(model, tokenizer=text_tokenizer.config, **preprocess), text_tokenizer.json)
