"""The clipforge checkpoint directory: one manifest that travels from training to serving.

    config.json        {"model": CLIPConfig, "tokenizer": TokenizerConfig, "preprocess": PreprocessConfig,
                        "identity": hex SHA-256 of the config and the weights, computed once when written}
    model.safetensors  the model's state dict, in clipforge's own parameter names
    tokenizer.json     only when the tokenizer kind is "file" (a trained vocabulary)

This module is the only place that knows how these files are written and read; the names are defined here
(``CONFIG_FILE``, ``WEIGHTS_FILE``) and beside the tokenizer's config (``text.config.TOKENIZER_FILE``, which
the tokenizer reads without depending on this module). Loading a
directory into a usable model, tokenizer and preprocessing is ``clipforge.pipeline.load``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from clipforge.data.config import PreprocessConfig
from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig
from clipforge.text.config import TOKENIZER_FILE, TokenizerConfig
from clipforge.utils.configs import from_dict, to_dict
from clipforge.utils.io import atomic_path, atomic_write_text
from clipforge.utils.layout import CHECKPOINT_DIR, FINAL_DIR

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
IDENTITY_KEY = "identity"
log = logging.getLogger(__name__)
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
    record = {**to_dict(config), IDENTITY_KEY: checkpoint_identity(config, state)}
    atomic_write_text(out / CONFIG_FILE, json.dumps(record, indent=2) + "\n")
    return out


def config_sha256(config: Any) -> str:
    """Hex SHA-256 of a config's canonical JSON (sorted keys, no spaces): equal configs, equal hashes.

    Args:
        config: a frozen config dataclass, e.g. a ``PipelineConfig``.
    """
    canonical = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def checkpoint_identity(config: PipelineConfig, state: dict[str, torch.Tensor]) -> str:
    """Hex SHA-256 over the config's canonical JSON and every tensor (name, dtype, shape, bytes, sorted by name).

    Two checkpoints of one architecture (step 300 and the final weights) get different identities; the same
    weights saved twice get the same one. It is computed when a checkpoint is written and stored in config.json,
    so readers compare a string instead of hashing the weights.
    """
    digest = hashlib.sha256(config_sha256(config).encode())
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_identity(ckpt_dir: str | Path, state: dict[str, torch.Tensor] | None = None) -> str:
    """The identity stored in a checkpoint's config.json; computed from its files for checkpoints written before
    identities were recorded (logged, since that reads every weight).

    Args:
        ckpt_dir: the checkpoint directory.
        state: its weights when already in memory (spares reading them again for an old checkpoint).
    """
    stored = _raw_config(Path(ckpt_dir) / CONFIG_FILE).get(IDENTITY_KEY)
    if isinstance(stored, str) and stored:
        return stored
    log.info("%s records no identity (written by an older clipforge): computing it from its weights", ckpt_dir)
    return checkpoint_identity(read_config(ckpt_dir), state if state is not None else read_weights(ckpt_dir))


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or inf, naming the first such tensor (a model with them embeds to NaN).

    Raises:
        UserError: naming ``source``, the tensor and how many of its values are not finite.
    """
    for name in sorted(state):
        tensor = state[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise UserError(f"{source}: tensor {name} holds {bad} non-finite (NaN/inf) values of "
                            f"{math.prod(tensor.shape)}", hint="these weights are corrupt or diverged: use an "
                            "earlier checkpoint, or lower the learning rate and train again")


def read_config(ckpt_dir: str | Path) -> PipelineConfig:
    """The PipelineConfig of a checkpoint directory (checked strictly, like every config clipforge reads).

    Raises:
        UserError: when ``ckpt_dir`` holds no config.json or the file is not a valid clipforge config.
    """
    path = Path(ckpt_dir) / CONFIG_FILE
    data = {k: v for k, v in _raw_config(path).items() if k != IDENTITY_KEY}
    return from_dict(PipelineConfig, _upgrade(data), source=str(path))


def _raw_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path.parent} is not a clipforge checkpoint: {path} is missing", hint=_missing_hint(path.parent))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable checkpoint config ({type(exc).__name__})",
                        hint="config.json is written by 'clipforge train' or 'clipforge convert'") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a checkpoint config (a JSON object)", hint=CONVERT_HINT)
    return data


def _missing_hint(folder: Path) -> str:
    """What a folder without config.json most likely is, and what to pass instead."""
    if (folder / FINAL_DIR / CONFIG_FILE).is_file():
        return f"{folder} is a training run: its model is {folder / FINAL_DIR} (pass that path)"
    if (folder / CHECKPOINT_DIR).is_dir():
        return (f"{folder} is a training run without a final model yet: finish it with "
                f"'clipforge train --resume {folder}', then use {folder / FINAL_DIR}")  # fmt: skip
    return CONVERT_HINT


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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable safetensors file ({first})",
                        hint="the file is truncated or of another format: copy, save or convert it again") from exc


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model`` exactly: every key present, none extra, every shape equal.

    Raises:
        UserError: listing missing/unexpected keys, naming the parameter whose shape differs, or a tensor holding
            NaN/inf.
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
    check_finite(state, source)
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
