"""Tokenizer config, saved in every checkpoint's config.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# A trained or imported vocabulary, saved beside config.json in a checkpoint (and in a training run directory).
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class TokenizerConfig:
    """Which tokenizer a checkpoint uses.

    Args:
        kind: "openai" is the bundled 49,408-token OpenAI CLIP vocabulary; "file" is a vocabulary trained
            by clipforge and stored as ``tokenizer.json`` in the checkpoint directory.
        context_length: tokens per text (padded with 0, truncated keeping end-of-text last).
        vocab_size: number of ids; the end-of-text id is ``vocab_size - 1``.
    """

    kind: Literal["openai", "file"] = "openai"
    context_length: int = 77
    vocab_size: int = 49408
