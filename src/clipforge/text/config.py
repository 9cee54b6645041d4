"""Tokenizer config, saved in every checkpoint's config.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# A trained or imported vocabulary, saved beside config.json in a checkpoint (and in a training run directory).
TOKENIZER_FILE = "tokenizer.json"
# OpenAI's BPE vocabulary, bundled (kind "openai"): a text tower of this size was built for it.
OPENAI_VOCAB_SIZE = 49408


@dataclass(frozen=True)
class TokenizerConfig:
    """Which tokenizer a checkpoint uses.

    Args:
        kind: "openai" is the bundled 49,408-token OpenAI CLIP vocabulary; "file" is a vocabulary trained
            by clipforge and stored as ``tokenizer.json`` in the checkpoint directory; "hf" is an imported
            Hugging Face ``tokenizers`` pipeline (SigLIP's SentencePiece-style vocabularies, ...) stored the same
            way and run as transformers runs it: special tokens as its post-processor adds them, truncated to
            and padded to ``context_length``.
        context_length: tokens per text ("openai"/"file": padded with 0, truncated keeping end-of-text last).
        vocab_size: the model's number of ids. "openai"/"file": the tokenizer's too, and end-of-text is
            ``vocab_size - 1``; "hf": the tokenizer's ids must all be below it.
        pad_id: the id padding positions hold (0 for "openai"/"file").
        padding_side: where padding goes ("hf" pipelines may pad on the left; "openai"/"file" pad on the right).
        clean: "hf" only: the text cleaning OpenCLIP's HFTokenizer applies before the pipeline ("none" for
            Hugging Face folders, which have none; OpenCLIP's SigLIP configs use "canonicalize"). See
            ``clipforge.text.clean.open_clip_clean``.
        strip_id: "hf" only: an id replaced by 0 after padding (OpenCLIP's ``strip_sep_token``), or None.
    """

    kind: Literal["openai", "file", "hf"] = "openai"
    context_length: int = 77
    vocab_size: int = OPENAI_VOCAB_SIZE
    pad_id: int = 0
    padding_side: Literal["right", "left"] = "right"
    clean: Literal["none", "whitespace", "lower", "canonicalize"] = "none"
    strip_id: int | None = None
