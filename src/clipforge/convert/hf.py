"""Hugging Face ``CLIPModel`` folders (config.json + model.safetensors or pytorch_model.bin) ⇄ clipforge.

The folder is read as plain files (JSON + tensors): transformers is not needed to import or export.
Text features: clipforge reads them at ``argmax(token_ids)``, OpenAI's rule. Hugging Face does the same
when ``eos_token_id == 2`` (configs from before transformers PR #24773) and otherwise takes the first
position holding ``eos_token_id``; the two agree when end-of-text is the highest id, so an import requires
that and an export writes ``eos_token_id = vocab_size - 1``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from clipforge.checkpoint import PipelineConfig
from clipforge.convert.common import (
    OPENAI_VOCAB_SIZE,
    Imported,
    Rule,
    affine,
    config_errors,
    export_state,
    import_state,
    pipeline_config,
    read_json_object,
    read_state_file,
)
from clipforge.convert.hf_files import PREPROCESSOR_FILE, PROCESSOR_FILE, read_hf_preprocess, read_hf_tokenizer
from clipforge.convert.hf_processor import write_processor_files, write_tokenizer_files
from clipforge.convert.hf_siglip import SIGLIP_TYPES, siglip_config_from_hf, siglip_config_to_hf, siglip_rules
from clipforge.convert.openai import check_openai_layout
from clipforge.errors import UserError
from clipforge.model.config import Activation, CLIPConfig, TextConfig, ViTConfig
from clipforge.text.tokenizer import openai_tokenizer
from clipforge.utils.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_FAMILIES = {"clip": "CLIPModel", "siglip": "SiglipModel", "siglip2": "Siglip2Model"}  # model_type -> class
HF_CONFIG_FILE = "config.json"
HF_PREPROCESSOR_FILE, HF_PROCESSOR_FILE = PREPROCESSOR_FILE, PROCESSOR_FILE  # the names pretrained.py downloads
# transformers' CLIPTextConfig / CLIPVisionConfig defaults: a config.json only lists values that differ.
HF_TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
    "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
    "eos_token_id": 49407,
}  # fmt: skip
HF_VISION_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
    "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "num_channels": 3,
}  # fmt: skip
LEGACY_EOS_ID = 2  # transformers then takes argmax(ids), as we do
# transformers' activation names -> ours ("gelu" is erf GELU; "gelu_pytorch_tanh" and "gelu_new" are the same
# tanh approximation, computed by different code).
ACTIVATIONS: dict[str, Activation] = {
    "quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
}  # fmt: skip
ACTIVATION_NAMES = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}  # ours -> HF
# Buffers older transformers versions saved with the weights; they are arange(n), not learned.
HF_CONSTANTS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


def _encoder_rules(ours: str, theirs: str, layers: int) -> list[Rule]:
    rules: list[Rule] = []
    for i in range(layers):
        o, t = f"{ours}.blocks.{i}", f"{theirs}.layers.{i}"
        rules += affine(f"{o}.norm1", f"{t}.layer_norm1")
        # HF keeps separate q/k/v projections; we fuse them into one (3W, W) matrix in q, k, v order.
        for p in ("weight", "bias"):
            rules.append(Rule(f"{o}.attn.qkv.{p}", tuple(f"{t}.self_attn.{n}_proj.{p}" for n in "qkv"), "concat"))
        rules += affine(f"{o}.attn.out", f"{t}.self_attn.out_proj")
        rules += affine(f"{o}.norm2", f"{t}.layer_norm2")
        rules += affine(f"{o}.mlp.fc1", f"{t}.mlp.fc1")
        rules += affine(f"{o}.mlp.fc2", f"{t}.mlp.fc2")
    return rules


def hf_rules(cfg: CLIPConfig) -> list[Rule]:
    """The key map between transformers' CLIPModel and ours (OpenAI-style ViT image towers only)."""
    if not isinstance(cfg.vision, ViTConfig):
        tower = type(cfg.vision).__name__.removesuffix("Config")
        raise UserError(f"Hugging Face CLIPModel has only ViT image towers: a {tower} model cannot be exported to it")
    if not cfg.text.causal:
        raise UserError("Hugging Face CLIPModel's text tower is always causal: a model without the causal mask "
                        "cannot be exported to it")
    if cfg.init_logit_bias is not None:
        raise UserError("Hugging Face CLIPModel has no logit bias (SigLIP-style models export as SiglipModel)")
    check_openai_layout(cfg)
    v, t = "vision_model", "text_model"
    rules = [
        Rule("visual.patch_embed.weight", (f"{v}.embeddings.patch_embedding.weight",)),
        Rule("visual.class_embedding", (f"{v}.embeddings.class_embedding",)),
        Rule("visual.pos_embedding", (f"{v}.embeddings.position_embedding.weight",)),
        # HF projections are bias-free nn.Linear (weight is (E, W)); ours are (W, E) matrices used as x @ proj.
        Rule("visual.proj", ("visual_projection.weight",), "transpose"),
        Rule("text.token_embedding.weight", (f"{t}.embeddings.token_embedding.weight",)),
        Rule("text.pos_embedding", (f"{t}.embeddings.position_embedding.weight",)),
        Rule("text.proj", ("text_projection.weight",), "transpose"),
        Rule("logit_scale", ("logit_scale",)),
    ]
    rules += affine("visual.norm_pre", f"{v}.pre_layrnorm")  # sic: the HF attribute is spelled this way
    rules += _encoder_rules("visual.transformer", f"{v}.encoder", cfg.vision.layers)
    rules += affine("visual.norm_post", f"{v}.post_layernorm")
    rules += _encoder_rules("text.transformer", f"{t}.encoder", cfg.text.layers)
    rules += affine("text.norm_final", f"{t}.final_layer_norm")
    return rules


def _side(value: Any, what: str, source: str) -> int:
    """HF allows image_size/patch_size as an int or a pair; we support squares only."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise UserError(f"{source}: {what} {value} is not square; clipforge supports square images only")
        value = value[0]
    return int(value)


def _mlp_ratio(hidden: int, intermediate: int, source: str) -> float:
    ratio = intermediate / hidden
    if int(hidden * ratio) != intermediate:
        raise UserError(f"{source}: intermediate_size {intermediate} is not representable as {hidden} * ratio")
    return ratio


def _sub_config(raw: dict[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    # Old configs also carry "<name>_dict", which transformers lets override "<name>".
    return {**defaults, **(raw.get(name) or {}), **(raw.get(f"{name}_dict") or {})}


def activation(section: dict[str, Any], where: str, source: str) -> Activation:
    """Our name for a tower's ``hidden_act``.

    Raises:
        UserError: for an activation clipforge does not implement.
    """
    name = section["hidden_act"]
    if name not in ACTIVATIONS:
        raise UserError(f"{source}: {where}.hidden_act {name!r} is not supported", hint=f"one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def config_from_hf(raw: dict[str, Any], source: str = HF_CONFIG_FILE) -> CLIPConfig:
    """Map a Hugging Face CLIP config.json (as a dict) to our CLIPConfig.

    Raises:
        UserError: for configs clipforge cannot reproduce exactly (other activations, non-square images,
            an end-of-text id that is not the highest id).
    """
    with config_errors(source):
        return _config_from_hf(raw, source)


def _config_from_hf(raw: dict[str, Any], source: str = HF_CONFIG_FILE) -> CLIPConfig:
    if raw.get("model_type", "clip") != "clip":
        raise UserError(f"{source}: model_type {raw.get('model_type')!r} is not 'clip' (a CLIPModel config)")
    tc = _sub_config(raw, "text_config", HF_TEXT_DEFAULTS)
    vc = _sub_config(raw, "vision_config", HF_VISION_DEFAULTS)
    if vc["num_channels"] != 3:
        raise UserError(f"{source}: num_channels {vc['num_channels']} (clipforge expects RGB images)")
    eos, vocab = tc["eos_token_id"], tc["vocab_size"]
    if eos not in (LEGACY_EOS_ID, vocab - 1):
        raise UserError(
            f"{source}: text_config.eos_token_id {eos} is not the highest id {vocab - 1}",
            hint="clipforge reads text features at argmax(token_ids), which needs end-of-text to be the highest id",
        )
    vision = ViTConfig(
        act=activation(vc, "vision_config", source),
        image_size=_side(vc["image_size"], "image_size", source),
        layers=vc["num_hidden_layers"],
        width=vc["hidden_size"],
        head_width=vc["hidden_size"] // vc["num_attention_heads"],
        mlp_ratio=_mlp_ratio(vc["hidden_size"], vc["intermediate_size"], source),
        patch_size=_side(vc["patch_size"], "patch_size", source),
        ln_eps=float(vc["layer_norm_eps"]),
    )
    text = TextConfig(
        act=activation(tc, "text_config", source),
        context_length=tc["max_position_embeddings"],
        vocab_size=vocab,
        width=tc["hidden_size"],
        heads=tc["num_attention_heads"],
        layers=tc["num_hidden_layers"],
        mlp_ratio=_mlp_ratio(tc["hidden_size"], tc["intermediate_size"], source),
        ln_eps=float(tc["layer_norm_eps"]),
    )
    return CLIPConfig(
        embed_dim=raw.get("projection_dim", 512),
        vision=vision,
        text=text,
        init_logit_scale=float(raw.get("logit_scale_init_value", 2.6592)),
    )


def config_to_hf(cfg: CLIPConfig) -> dict[str, Any]:
    """Our CLIPConfig as a Hugging Face CLIP config.json dict (end-of-text = highest id, see module docs)."""
    v, t = cfg.vision, cfg.text
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": cfg.embed_dim,
        "logit_scale_init_value": cfg.init_logit_scale,
        "initializer_factor": 1.0,
        "dtype": "float32",
        "text_config": {
            "model_type": "clip_text_model", "vocab_size": t.vocab_size, "hidden_size": t.width,
            "intermediate_size": int(t.width * t.mlp_ratio), "num_hidden_layers": t.layers,
            "num_attention_heads": t.heads, "max_position_embeddings": t.context_length,
            "hidden_act": ACTIVATION_NAMES[t.act],
            "layer_norm_eps": t.ln_eps, "projection_dim": cfg.embed_dim,
            "bos_token_id": t.vocab_size - 2, "eos_token_id": t.vocab_size - 1, "pad_token_id": 1,
        },
        "vision_config": {
            "model_type": "clip_vision_model", "hidden_size": v.width, "intermediate_size": int(v.width * v.mlp_ratio),
            "num_hidden_layers": v.layers, "num_attention_heads": v.heads, "image_size": v.image_size,
            "patch_size": v.patch_size, "hidden_act": ACTIVATION_NAMES[v.act], "layer_norm_eps": v.ln_eps, "num_channels": 3,
            "projection_dim": cfg.embed_dim,
        },
    }  # fmt: skip


def _weights_file(folder: Path) -> Path:
    for name in HF_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    if any(folder.glob("*.index.json")):
        raise UserError(f"{folder}: sharded weights are not supported; merge them into one model.safetensors")
    raise UserError(f"{folder}: no {' or '.join(HF_WEIGHT_FILES)} found", hint="pass a Hugging Face CLIPModel folder")


def import_hf(src: str | Path, config: CLIPConfig | str | Path | None = None) -> Imported:
    """Import a Hugging Face CLIPModel folder.

    Args:
        src: the folder (config.json + model.safetensors or pytorch_model.bin [+ preprocessor_config.json]),
            or a weights file inside one.
        config: our CLIPConfig, or the path of an HF config.json to use instead of the folder's own.
    """
    src = Path(src)
    folder = src if src.is_dir() else src.parent
    weights = _weights_file(folder) if src.is_dir() else src
    cfg_path = Path(config) if isinstance(config, (str, Path)) else folder / HF_CONFIG_FILE
    raw = read_json_object(cfg_path) if cfg_path.is_file() else None
    if isinstance(config, CLIPConfig):
        cfg = config
        model_type = (raw or {}).get("model_type", "siglip" if cfg.init_logit_bias is not None else "clip")
    else:
        if raw is None:
            raise UserError(f"{cfg_path}: no such file", hint="a Hugging Face model folder holds config.json")
        model_type = raw.get("model_type", "clip")
        cfg = model_config_from_hf(raw, str(cfg_path))
    rules = siglip_rules(cfg, model_type) if model_type in SIGLIP_TYPES else hf_rules(cfg)
    tokenizer = read_hf_tokenizer(folder, cfg)  # a vocabulary that does not fit fails here, before any weights
    preprocess = read_hf_preprocess(folder, cfg)
    state = import_state(read_state_file(weights), rules, cfg, str(weights), ignore=HF_CONSTANTS)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return Imported(state, pipeline_config(cfg, tokenizer=tokenizer.config, **preprocess), tokenizer.json)


def model_config_from_hf(raw: dict[str, Any], source: str = HF_CONFIG_FILE) -> CLIPConfig:
    """Our CLIPConfig for an HF config.json of any supported family (CLIPModel, SiglipModel, Siglip2Model).

    Raises:
        UserError: for another family, naming it and the supported ones.
    """
    model_type = raw.get("model_type", "clip")
    if model_type == "clip":
        return config_from_hf(raw, source)
    if model_type in SIGLIP_TYPES:
        return siglip_config_from_hf(raw, source, activation)
    family = ", ".join(raw.get("architectures") or []) or model_type
    raise UserError(
        f"{source}: model_type {model_type!r} ({family}) is not supported",
        hint=f"clipforge imports {', '.join(f'{k} ({v})' for k, v in HF_FAMILIES.items())}",
    )


def export_hf(state: dict[str, torch.Tensor], config: PipelineConfig, out_dir: str | Path,
              tokenizer_json: str | None = None) -> Path:  # fmt: skip
    """Write a Hugging Face folder: a CLIPModel, or a SiglipModel for a model with a logit bias, with its
    tokenizer and processor files (``convert/hf_processor.py``), so ``AutoModel`` + ``AutoProcessor`` load it.

    Args:
        state: our model's state dict.
        config: the checkpoint's pipeline config.
        out_dir: the folder to create; ``CLIPModel.from_pretrained(out_dir)`` (``SiglipModel``) loads it.
        tokenizer_json: the checkpoint's tokenizer.json (tokenizer kinds "file" and "hf"); the bundled OpenAI
            vocabulary is used for kind "openai".

    Raises:
        UserError: for a model transformers has no class for, or a "file"/"hf" tokenizer without its JSON.
    """
    siglip = config.model.init_logit_bias is not None
    rules = siglip_rules(config.model) if siglip else hf_rules(config.model)  # refuses what HF cannot hold
    if config.tokenizer.kind != "openai" and tokenizer_json is None:
        raise UserError(f"a {config.tokenizer.kind!r} tokenizer needs the checkpoint's tokenizer.json to be exported")
    backend_json = tokenizer_json
    if config.tokenizer.kind == "openai" and config.model.text.vocab_size == OPENAI_VOCAB_SIZE:
        backend_json = openai_tokenizer().to_json()
    elif backend_json is None:  # an imported model whose vocabulary came without a tokenizer
        log.warning("%s: no tokenizer fits this model's %d text ids: tokenizer files are not written", out_dir,
                    config.model.text.vocab_size)  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf_state = export_state(state, rules)
    with atomic_path(out / HF_WEIGHT_FILES[0]) as tmp:
        save_file(hf_state, str(tmp), metadata={"format": "pt"})
    write_processor_files(out, config, siglip)
    if backend_json is not None:
        write_tokenizer_files(out, config, backend_json, "SiglipProcessor" if siglip else "CLIPProcessor")
    hf_config = siglip_config_to_hf(config.model, ACTIVATION_NAMES) if siglip else config_to_hf(config.model)
    hf_config["dtype"] = str(hf_state["logit_scale"].dtype).removeprefix("torch.")  # the dtype the weights are in
    atomic_write_text(out / HF_CONFIG_FILE, json.dumps(hf_config, indent=2) + "\n")
    return out
