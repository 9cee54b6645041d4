"""The clipforge checkpoint directory: one manifest that travels from training to serving.

    config.json        {"model": CLIPConfig, "tokenizer": TokenizerConfig, "preprocess": PreprocessConfig}
    model.safetensors  the model's state dict, in clipforge's own parameter names
    tokenizer.json     only when the tokenizer kind is "file" (a trained vocabulary)

This module is the only place that knows these file names and how they are written and read. Loading a
directory into a usable model, tokenizer and preprocessing is ``clipforge.pipeline.load``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from clipforge.data.config import PreprocessConfig
from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig
from clipforge.text.config import TokenizerConfig
from clipforge.utils.configs import from_dict, to_dict
from clipforge.utils.io import atomic_path, atomic_write_text

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CONVERT_HINT = "convert foreign weights first with 'clipforge convert --from {openai,open_clip,hf} SRC --out DIR'"


@dataclass(frozen=True)
class PipelineConfig:
    """Everything needed to rebuild a model and feed it: saved as a checkpoint's config.json."""

    model: CLIPConfig = field(default_factory=CLIPConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


def save_checkpoint(
    model: torch.nn.Module, config: PipelineConfig, out_dir: str | Path, tokenizer_json: str | None = None
) -> Path:
    """Write ``model`` and ``config`` as a clipforge checkpoint directory (each file written atomically).

    Args:
        model: the model whose state dict is saved (weights are stored contiguous, on CPU).
        config: the full pipeline config (model + tokenizer + preprocessing).
        out_dir: the directory to create or overwrite.
        tokenizer_json: serialized tokenizer, required when ``config.tokenizer.kind`` is "file" (trained) or "hf"
            (imported).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.tokenizer.kind in ("file", "hf"):
        if tokenizer_json is None:
            raise ValueError(f"a {config.tokenizer.kind!r} tokenizer needs tokenizer_json to be saved with the checkpoint")
        atomic_write_text(out / TOKENIZER_FILE, tokenizer_json)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "producer": "clipforge"})
    atomic_write_text(out / CONFIG_FILE, json.dumps(to_dict(config), indent=2) + "\n")
    return out


def read_config(ckpt_dir: str | Path) -> PipelineConfig:
    """The PipelineConfig of a checkpoint directory (checked strictly, like every config clipforge reads).

    Raises:
        UserError: when ``ckpt_dir`` holds no config.json or the file is not a valid clipforge config.
    """
    path = Path(ckpt_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{ckpt_dir} is not a clipforge checkpoint: {path} is missing", hint=CONVERT_HINT)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable checkpoint config: {exc}") from exc
    return from_dict(PipelineConfig, _upgrade(data), source=str(path))


def read_weights(ckpt_dir: str | Path) -> dict[str, torch.Tensor]:
    """The state dict stored in a checkpoint directory.

    Raises:
        UserError: naming the file when it is missing or not a readable safetensors file.
    """
    path = Path(ckpt_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise UserError(f"{ckpt_dir}: {WEIGHTS_FILE} is missing", hint="the checkpoint is incomplete; save or convert it again")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise UserError(f"{path}: not a readable safetensors file: {exc}") from exc


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model`` exactly: every key present, none extra, every shape equal.

    Raises:
        UserError: listing missing/unexpected keys, or naming the parameter whose shape differs.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise UserError(
            f"{source}: state dict does not match the model: missing keys {missing}, unexpected keys {unexpected}"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise UserError(
                f"{source}: shape mismatch for {key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


def _upgrade(data: Any) -> Any:
    """Read config.json files written by clipforge 0.1.

    0.1 had one VisionConfig for both towers, tagged ``arch`` instead of ``kind``; a ResNet stored its blocks in
    ``resnet_layers`` beside unused ViT fields, which ResNetConfig does not have. Its model said
    ``quick_gelu: true|false`` for both towers at once; the activation is now each transformer tower's ``act``.
    """
    return _upgrade_activation(_upgrade_vision(data))


def _upgrade_activation(data: Any) -> Any:
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or "quick_gelu" not in model:
        return data
    model = dict(model)
    act = "quick_gelu" if model.pop("quick_gelu") else "gelu"
    if isinstance(model.get("vision"), dict) and model["vision"].get("kind", "vit") == "vit":
        model["vision"] = {**model["vision"], "act": act}
    model["text"] = {**(model.get("text") or {}), "act": act}
    return {**data, "model": model}


def _upgrade_vision(data: Any) -> Any:
    vision = data.get("model", {}).get("vision") if isinstance(data, dict) else None
    if not isinstance(vision, dict) or "arch" not in vision:
        return data
    vision = dict(vision)
    arch = vision.pop("arch")
    if arch == "resnet":
        vision = {"layers": vision.get("resnet_layers", (3, 4, 6, 3)),
                  **{k: vision[k] for k in ("image_size", "width", "head_width") if k in vision}}
    else:
        vision.pop("resnet_layers", None)
    return {**data, "model": {**data["model"], "vision": {"kind": arch, **vision}}}
