"""Read and write clipforge checkpoint directories (config.json + model.safetensors [+ tokenizer.json])."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from clipforge.errors import UserError
from clipforge.model.clip import CLIP
from clipforge.pipeline import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, Pipeline, PipelineConfig
from clipforge.utils.configs import from_dict, to_dict
from clipforge.utils.io import atomic_path, atomic_write_text


def save_checkpoint(
    model: CLIP, config: PipelineConfig, out_dir: str | Path, tokenizer_json: str | None = None
) -> Path:
    """Write ``model`` and ``config`` as a clipforge checkpoint directory (each file written atomically).

    Args:
        model: the model whose state dict is saved (weights are stored contiguous, on CPU).
        config: the full pipeline config (model + tokenizer + preprocessing).
        out_dir: the directory to create or overwrite.
        tokenizer_json: serialized trained tokenizer, required when ``config.tokenizer.kind == "file"``.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.tokenizer.kind == "file":
        if tokenizer_json is None:
            raise ValueError("a 'file' tokenizer needs tokenizer_json to be saved with the checkpoint")
        atomic_write_text(out / TOKENIZER_FILE, tokenizer_json)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "producer": "clipforge"})
    atomic_write_text(out / CONFIG_FILE, json.dumps(to_dict(config), indent=2) + "\n")
    return out


def read_config(ckpt_dir: str | Path) -> PipelineConfig:
    path = Path(ckpt_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(
            f"{ckpt_dir} is not a clipforge checkpoint: {path} is missing",
            hint="convert foreign weights first with 'clipforge convert --from {openai,open_clip,hf} SRC --out DIR'",
        )
    try:
        return from_dict(PipelineConfig, json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: invalid checkpoint config: {exc}") from exc


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


def load_pipeline(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Pipeline:
    """Load a checkpoint directory into a Pipeline (model in eval mode). See ``clipforge.load``."""
    from safetensors.torch import load_file

    from clipforge.data.transforms import eval_transform
    from clipforge.text.tokenizer import build_tokenizer

    ckpt = Path(path)
    if not ckpt.exists():
        from clipforge.convert.pretrained import resolve_pretrained

        ckpt = resolve_pretrained(str(path))
    config = read_config(ckpt)
    weights = ckpt / WEIGHTS_FILE
    if not weights.is_file():
        raise UserError(f"{ckpt}: {WEIGHTS_FILE} is missing", hint="the checkpoint is incomplete; save or convert it again")
    model = CLIP(config.model)
    load_state_into(model, load_file(str(weights)), str(weights))
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = build_tokenizer(config.tokenizer, ckpt)
    return Pipeline(model=model, tokenizer=tokenizer, preprocess=eval_transform(config.preprocess), config=config)
