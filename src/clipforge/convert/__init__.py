"""Foreign CLIP weights ⇄ clipforge checkpoints. Foreign parameter names live only in this package.

``import_weights(kind, src, config)`` dispatches to ``openai``, ``open_clip`` or ``hf``; each returns our
state dict and the PipelineConfig to save with it (``common.Imported``). ``convert_checkpoint`` is the job
behind ``clipforge convert``: import, then write a checkpoint directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clipforge.checkpoint import CONFIG_FILE, WEIGHTS_FILE, save_checkpoint
from clipforge.convert.common import build_model
from clipforge.convert.hf import HF_CONFIG_FILE, import_hf
from clipforge.convert.open_clip import import_open_clip
from clipforge.convert.openai import import_openai
from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig, ResNetConfig, ViTConfig
from clipforge.model.registry import get_config
from clipforge.utils.layout import FINAL_DIR

if TYPE_CHECKING:
    from clipforge.convert.common import Imported

SOURCES = ("openai", "open_clip", "hf")


def resolve_config_arg(value: str | None, kind: str) -> CLIPConfig | Path | None:
    """Turn ``--config`` into a config file path (the source's own format) or a registered CLIPConfig.

    Args:
        value: None, a path to the source's config JSON, or a clipforge model name.
        kind: the source format, one of ``SOURCES``.

    Raises:
        UserError: for a missing file, an unknown model name (listing the known ones), or a config file
            given for OpenAI weights (OpenAI has no config format; name the model instead).
    """
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        if kind == "openai":
            raise UserError(f"--config {value}: OpenAI checkpoints take a model name (e.g. ViT-B-32), not a file")
        return path
    if path.suffix == ".json" or "/" in value:
        raise UserError(f"--config {value}: no such file")
    return get_config(value)


def import_weights(kind: str, src: str | Path, config: str | None = None, tokenizer: str | None = None) -> Imported:
    """Import foreign weights.

    Args:
        kind: "openai", "open_clip" or "hf".
        src: the weights (file, or folder for hf).
        config: the ``--config`` value (see ``resolve_config_arg``).
        tokenizer: the ``--tokenizer`` value (open_clip only: a tokenizer.json or its folder, for models whose
            text tower does not use OpenAI's vocabulary; see ``convert.open_clip_tokenizer``).
    """
    if kind not in SOURCES:
        raise UserError(f"unknown source format {kind!r}", hint=f"one of {', '.join(SOURCES)}")
    if tokenizer is not None and kind != "open_clip":
        raise UserError(f"--tokenizer is for --from open_clip; {kind} weights bring their tokenizer",
                        hint="an HF folder's own tokenizer.json is read; OpenAI models use the bundled vocabulary")  # fmt: skip
    cfg = resolve_config_arg(config, kind)
    if not Path(src).exists():
        raise UserError(f"{src}: no such file or directory")
    if kind != "hf" and Path(src).is_dir():
        raise folder_given(Path(src), kind)
    if kind == "openai":
        return import_openai(src, cfg)  # type: ignore[arg-type]
    if kind == "open_clip":
        name = config if cfg is not None and not isinstance(cfg, Path) else None
        return import_open_clip(src, cfg, name=name, tokenizer=tokenizer)
    return import_hf(src, cfg)


def folder_given(folder: Path, kind: str) -> UserError:
    """The error for a folder where ``--from openai`` / ``--from open_clip`` read one weights file: what it holds."""
    if (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
        return UserError(f"{folder} is already a clipforge checkpoint: nothing to convert",
                         hint=f"use it as it is (clipforge eval {folder}, clipforge.load)")  # fmt: skip
    if (folder / FINAL_DIR / CONFIG_FILE).is_file():
        return UserError(f"{folder} is a clipforge training run: nothing to convert",
                         hint=f"its model {folder / FINAL_DIR} is a clipforge checkpoint already; use that path")
    if (folder / HF_CONFIG_FILE).is_file():
        return UserError(f"{folder} is a folder, and --from {kind} reads one weights file",
                         hint=f"a folder with config.json is a Hugging Face model: clipforge convert --from hf {folder}")
    weights = sorted(p.name for p in folder.iterdir() if p.suffix in (".pt", ".bin", ".safetensors", ".pth"))
    if weights:
        return UserError(f"{folder} is a folder, and --from {kind} reads one weights file",
                         hint=f"pass one of its files, e.g. {folder / weights[0]}")
    return UserError(f"{folder} is a folder with no weights file in it (.pt, .bin, .safetensors)",
                     hint=f"--from {kind} reads one weights file (.pt, .bin or .safetensors); --from hf reads a folder")


@dataclass(frozen=True)
class Converted:
    """What ``convert_checkpoint`` wrote: the checkpoint directory and a one-line description of the model."""

    path: Path
    summary: str


def convert_checkpoint(kind: str, src: str | Path, out: str | Path, config: str | None = None,
                       tokenizer: str | None = None) -> Converted:  # fmt: skip
    """Import foreign weights (see ``import_weights``) and save them as a clipforge checkpoint in ``out``."""
    imported = import_weights(kind, src, config, tokenizer)
    path = save_checkpoint(build_model(imported), imported.config, out, tokenizer_json=imported.tokenizer_json)
    n = sum(v.numel() for v in imported.state.values() if v.is_floating_point())
    m = imported.config.model
    if isinstance(m.vision, ViTConfig):
        tower = f"ViT-{m.vision.patch_size}"
    elif isinstance(m.vision, ResNetConfig):
        tower = f"ResNet{list(m.vision.layers)}"
    else:
        tower = m.vision.kind
    return Converted(path, f"{tower}, image {m.vision.image_size}px, embed {m.embed_dim}, {n / 1e6:.1f}M parameters")
