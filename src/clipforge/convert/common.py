"""Shared machinery for weight import/export: declarative key maps between foreign layouts and ours.

A key map is a list of ``Rule``s, each tying one of our parameters to one or more foreign ones. The same
map drives import (foreign -> ours) and export (ours -> foreign), so the two directions cannot drift
apart, and every error can name the foreign keys the user actually has in their file.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from safetensors.torch import load_file

from clipforge.checkpoint import PipelineConfig
from clipforge.data.config import OPENAI_MEAN, OPENAI_STD, PreprocessConfig
from clipforge.errors import UserError
from clipforge.model.clip import CLIP
from clipforge.model.config import CLIPConfig
from clipforge.text.config import OPENAI_VOCAB_SIZE, TokenizerConfig

log = logging.getLogger(__name__)

# What an "unsupported family" error lists as the alternatives.
SUPPORTED_FAMILIES = ("OpenAI-style ViT and ModifiedResNet CLIP, SigLIP / SigLIP 2, EVA-02 (B-16, L-14, L-14-336), "
                      "Perception Encoder (PE-Core), MobileCLIP / MobileCLIP2")  # fmt: skip
# Lists in error messages are cut here so a wholly wrong file gives a readable message.
MAX_LISTED = 12

Op = Literal["copy", "transpose", "concat", "reshape", "patch_linear"]


@dataclass(frozen=True)
class Rule:
    """One of our parameters and the foreign parameter(s) it is made from.

    Args:
        ours: our state-dict key.
        theirs: the foreign key(s).
        op: "copy" (same tensor), "transpose" (2-D, foreign is ours.T, e.g. nn.Linear vs ``x @ proj``),
            "concat" (ours is the foreign tensors concatenated along dim 0, e.g. fused QKV from q/k/v),
            "reshape" (same values in another shape, e.g. a (1, 1, W) token vs our (W,)),
            "patch_linear" (a patch embedding stored as a Linear over flattened (p, p, C) patches vs our
            (W, C, p, p) convolution).
        optional: the foreign key may be absent (BatchNorm's ``num_batches_tracked``, unused at inference);
            it is then filled with zero.
        sizes: for "concat", the foreign tensors' sizes along dim 0 when they differ (export splits by them);
            empty = equal parts.
        shape: for "reshape", the foreign shape (export writes it).
    """

    ours: str
    theirs: tuple[str, ...]
    op: Op = "copy"
    optional: bool = False
    sizes: tuple[int, ...] = ()
    shape: tuple[int, ...] = ()


class Imported(NamedTuple):
    """What every importer returns: our state dict, the pipeline config to save beside it, and the
    tokenizer.json to save with it when the tokenizer is not the bundled one."""

    state: dict[str, torch.Tensor]
    config: PipelineConfig
    tokenizer_json: str | None = None


@contextlib.contextmanager
def config_errors(source: str) -> Iterator[None]:
    """Turn a config dataclass's validation error (e.g. width not a multiple of head width) into a UserError."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise UserError(f"{source}: cannot build a clipforge model config: {exc}") from exc


def affine(ours: str, theirs: str) -> list[Rule]:
    """weight + bias of a Linear or LayerNorm."""
    return [Rule(f"{ours}.weight", (f"{theirs}.weight",)), Rule(f"{ours}.bias", (f"{theirs}.bias",))]


def batchnorm(ours: str, theirs: str) -> list[Rule]:
    """All five BatchNorm2d entries; ``num_batches_tracked`` may be missing from foreign files."""
    rules = [Rule(f"{ours}.{n}", (f"{theirs}.{n}",)) for n in ("weight", "bias", "running_mean", "running_var")]
    return rules + [Rule(f"{ours}.num_batches_tracked", (f"{theirs}.num_batches_tracked",), optional=True)]


def _preview(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:MAX_LISTED])
    return f"[{shown}{f', ... ({len(keys) - MAX_LISTED} more)' if len(keys) > MAX_LISTED else ''}]"


def model_shapes(cfg: CLIPConfig) -> dict[str, tuple[int, ...]]:
    """Our parameter shapes for ``cfg``, computed without allocating weights (meta device)."""
    with torch.device("meta"):
        model = CLIP(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def import_state(
    foreign: Mapping[str, torch.Tensor], rules: list[Rule], cfg: CLIPConfig, source: str, ignore: Iterable[str] = ()
) -> dict[str, torch.Tensor]:
    """Map a foreign state dict onto our names, checking keys and shapes at the foreign level.

    Args:
        foreign: the foreign state dict.
        rules: the key map for the configured architecture.
        cfg: our model config (its shapes are what the result must have).
        source: file name for error messages.
        ignore: foreign keys that are expected and deliberately dropped (e.g. non-learned constants).

    Raises:
        UserError: listing missing and unexpected foreign keys, or naming the foreign parameter whose shape
            does not fit the configured model.
    """
    expected = {k for r in rules for k in r.theirs}
    required = {k for r in rules if not r.optional for k in r.theirs}
    missing = required - set(foreign)
    unexpected = set(foreign) - expected - set(ignore)
    if missing or unexpected:
        raise UserError(
            f"{source}: weights do not match the configured model: "
            f"missing keys {_preview(missing)} ({len(missing)}), unexpected keys {_preview(unexpected)} "
            f"({len(unexpected)})",
            hint="check that --config names the architecture these weights were trained with",
        )
    shapes = model_shapes(cfg)
    state: dict[str, torch.Tensor] = {}
    for rule in rules:
        if rule.optional and any(k not in foreign for k in rule.theirs):
            state[rule.ours] = torch.zeros(shapes[rule.ours], dtype=torch.long)
            continue
        parts = [foreign[k] for k in rule.theirs]
        try:
            value = _to_ours(rule, parts, shapes[rule.ours])
        except RuntimeError as exc:  # e.g. concat of q/k/v with different widths, a reshape to the wrong size
            raise UserError(f"{source}: cannot combine {list(rule.theirs)}: {exc}") from exc
        if tuple(value.shape) != shapes[rule.ours]:
            theirs = ", ".join(f"{k} {tuple(p.shape)}" for k, p in zip(rule.theirs, parts, strict=True))
            raise UserError(
                f"{source}: shape mismatch for {theirs}: the configured model needs {shapes[rule.ours]} "
                f"(clipforge parameter {rule.ours}, got {tuple(value.shape)})",
                hint="check that --config names the architecture these weights were trained with",
            )
        state[rule.ours] = value
    unmapped = set(shapes) - set(state)
    if unmapped:  # a bug in a key map, not a user error
        raise RuntimeError(f"key map leaves clipforge parameters unset: {_preview(unmapped)}")
    return state


def _to_ours(rule: Rule, parts: list[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    if rule.op == "copy":
        return parts[0]
    if rule.op == "transpose":
        return parts[0].t().contiguous()
    if rule.op == "reshape":
        return parts[0].reshape(shape)
    if rule.op == "patch_linear":
        width, channels, p, _ = shape
        return parts[0].reshape(width, p, p, channels).permute(0, 3, 1, 2).contiguous()  # (W, C, p, p)
    return torch.cat(parts, dim=0)


def export_state(ours: Mapping[str, torch.Tensor], rules: list[Rule]) -> dict[str, torch.Tensor]:
    """Map our state dict to a foreign layout with the same rules used for import (exact inverse)."""
    out: dict[str, torch.Tensor] = {}
    for rule in rules:
        value = ours[rule.ours].detach().cpu()
        if rule.op == "copy":
            parts = [value]
        elif rule.op == "transpose":
            parts = [value.t()]
        elif rule.op == "reshape":
            parts = [value.reshape(rule.shape)]
        elif rule.op == "patch_linear":
            parts = [value.permute(0, 2, 3, 1).reshape(value.shape[0], -1)]  # (W, p * p * C)
        elif rule.sizes:
            parts = list(value.split(list(rule.sizes), dim=0))
        else:
            parts = list(value.chunk(len(rule.theirs), dim=0))
        for key, part in zip(rule.theirs, parts, strict=True):
            out[key] = part.contiguous()
    return out


def pipeline_config(
    model: CLIPConfig,
    mean: tuple[float, float, float] = OPENAI_MEAN,
    std: tuple[float, float, float] = OPENAI_STD,
    tokenizer: TokenizerConfig | None = None,
    **preprocess: object,
) -> PipelineConfig:
    """The manifest for an imported model: its tokenizer (default: OpenAI's), preprocessing at the model's image
    size."""
    prep = PreprocessConfig(image_size=model.vision.image_size, mean=mean, std=std, **preprocess)  # type: ignore[arg-type]
    if tokenizer is not None and tokenizer.kind != "openai":
        return PipelineConfig(model=model, tokenizer=tokenizer, preprocess=prep)
    if model.text.vocab_size != OPENAI_VOCAB_SIZE:
        log.warning(
            "text vocabulary has %d ids but the bundled OpenAI tokenizer %d: clipforge.load will refuse this "
            "checkpoint until it gets a matching tokenizer (tokenizer.kind 'file')",
            model.text.vocab_size,
            OPENAI_VOCAB_SIZE,
        )
    tokenizer = TokenizerConfig(kind="openai", context_length=model.text.context_length, vocab_size=model.text.vocab_size)
    return PipelineConfig(model=model, tokenizer=tokenizer, preprocess=prep)


def build_model(imported: Imported) -> CLIP:
    """A float32 CLIP holding the imported weights (no random init: weights are allocated empty, then filled)."""
    with torch.device("meta"):
        model = CLIP(imported.config.model)
    model = model.to_empty(device="cpu")
    model.load_state_dict(imported.state, strict=True)
    return model.eval()


def read_json_object(path: str | Path, what: str = "JSON") -> dict:
    """A JSON file that must hold one object (a foreign model config).

    Args:
        path: the file.
        what: how to name the file in errors, e.g. "the OpenCLIP model config".

    Raises:
        UserError: the file is unreadable, not JSON, or not a JSON object.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def read_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file or a pickled ``.pt``/``.bin`` state dict (tensors only, no code).

    Raises:
        UserError: when the file is missing or holds something other than a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise UserError(f"{path}: not a readable safetensors file ({_first_line(exc)})",
                            hint="the file is truncated or of another format: download or export it again") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        # PyTorch's message is a page of weights_only advice; loading pickled code is never the fix here.
        raise UserError(
            f"{path}: not a readable PyTorch state dict ({_first_line(exc)})",
            hint="only plain state dicts (or TorchScript archives for --from openai) can be imported",
        ) from exc
    return as_state_dict(obj, str(path))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def as_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """Accept a state dict, or a training checkpoint holding one under ``state_dict``/``model``."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{source}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    state = dict(obj)
    # Checkpoints saved from DistributedDataParallel prefix every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state
