"""The checkpoint manifest and the loaded pipeline that every stage (eval, embed, search, serve) uses.

A clipforge checkpoint directory holds:
  config.json        {"model": CLIPConfig, "tokenizer": TokenizerConfig, "preprocess": PreprocessConfig}
  model.safetensors  the model's state dict, in clipforge's own parameter names
  tokenizer.json     only when the tokenizer kind is "file" (a trained vocabulary)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipforge.data.config import PreprocessConfig
from clipforge.model.config import CLIPConfig
from clipforge.text.config import TokenizerConfig

if TYPE_CHECKING:
    import torch

    from clipforge.model.clip import CLIP

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class PipelineConfig:
    """Everything needed to rebuild a model and feed it: saved as a checkpoint's config.json."""

    model: CLIPConfig = field(default_factory=CLIPConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


@dataclass
class Pipeline:
    """A loaded checkpoint.

    Attributes:
        model: the CLIP model (``encode_image``, ``encode_text`` give unnormalized features).
        tokenizer: ``tokenizer(list[str]) -> LongTensor (B, context_length)``.
        preprocess: PIL image -> float tensor (3, H, W).
        config: the PipelineConfig the checkpoint was saved with.
    """

    model: CLIP
    tokenizer: Callable[[list[str]], torch.Tensor]
    preprocess: Callable[[Any], torch.Tensor]
    config: PipelineConfig


def load(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Pipeline:
    """Load a clipforge checkpoint directory (or a named pretrained model) into a Pipeline.

    Args:
        path: a directory holding config.json and model.safetensors, or a registered pretrained name.
        device: where to put the model.
        dtype: optional dtype for the model's floating-point weights (e.g. torch.bfloat16).
    """
    from clipforge.checkpoint import load_pipeline

    return load_pipeline(path, device=device, dtype=dtype)
