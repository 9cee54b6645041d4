"""Which tokenizer an imported OpenCLIP model uses, and reading the one given with ``convert --tokenizer``.

OpenCLIP picks the tokenizer from the model config: OpenAI's BPE (``SimpleTokenizer``, 49,408 ids, bundled with
clipforge) unless ``text_cfg.hf_tokenizer_name`` names a Hugging Face tokenizer, as every SigLIP / SigLIP 2 config
does (``timm/ViT-B-16-SigLIP``: SentencePiece vocabularies of 32,000 to 256,000 ids). Those come from the Hub,
which clipforge does not reach, so such a model needs ``--tokenizer`` with the tokenizer's ``tokenizer.json`` (or
the folder holding it, e.g. a SiglipModel folder). The result runs as OpenCLIP's ``HFTokenizer`` does: the
config's ``clean`` function first (``canonicalize`` for SigLIP), padded and truncated to the context length,
``strip_sep_token`` honoured.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from clipforge.convert.hf_files import (
    OPENAI_VOCAB_SIZE,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    HFTokenizerImport,
    read_hf_tokenizer,
)
from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig


def _tokenizer_folder(path: Path) -> Path:
    if path.is_dir():
        if not (path / TOKENIZER_JSON).is_file():
            raise UserError(f"--tokenizer {path}: no {TOKENIZER_JSON} in this folder",
                            hint="pass a tokenizer.json (the tokenizers format) or the folder holding it")  # fmt: skip
        return path
    if path.is_file() and path.name == TOKENIZER_JSON:
        return path.parent
    if path.is_file():
        raise UserError(f"--tokenizer {path}: not a {TOKENIZER_JSON}",
                        hint="clipforge reads tokenizers' JSON format (SentencePiece .model files are not supported)")  # fmt: skip
    raise UserError(f"--tokenizer {path}: no such file or directory")


def _sep_id(folder: Path, imported: HFTokenizerImport) -> int:
    """The separator id OpenCLIP's ``strip_sep_token`` zeroes (the tokenizer config's ``sep_token``)."""
    settings = json.loads((folder / TOKENIZER_CONFIG).read_text()) if (folder / TOKENIZER_CONFIG).is_file() else {}
    sep = settings.get("sep_token")
    sep = sep.get("content") if isinstance(sep, dict) else sep
    vocab = json.loads(imported.json or "{}").get("added_tokens", [])
    ids = [t["id"] for t in vocab if t.get("content") == sep]
    if not ids:
        raise UserError(f"{folder}: the model config strips the separator token, but the tokenizer names none",
                        hint="its tokenizer_config.json needs sep_token")  # fmt: skip
    return int(ids[0])


def open_clip_tokenizer(model: CLIPConfig, tokenizer_name: str | None, kwargs: dict[str, Any],
                        path: str | Path | None, where: str) -> HFTokenizerImport | None:  # fmt: skip
    """The tokenizer for an imported OpenCLIP model; None means OpenAI's bundled one.

    Args:
        model: the imported model's config (its vocabulary and context length).
        tokenizer_name: ``text_cfg.hf_tokenizer_name`` of the OpenCLIP config, if any.
        kwargs: ``text_cfg.tokenizer_kwargs`` (clean, strip_sep_token).
        path: the ``--tokenizer`` value.
        where: the model name or config file, for messages.

    Raises:
        UserError: when the model needs a tokenizer that was not given (naming it), or the given one has ids the
            model has no embedding for. Called before the weights are read.
    """
    vocab = model.text.vocab_size
    if path is None:
        if tokenizer_name is not None or (vocab != OPENAI_VOCAB_SIZE and model.init_logit_bias is not None):
            named = f"the Hugging Face tokenizer {tokenizer_name}" if tokenizer_name else "its own tokenizer"
            raise UserError(
                f"{where}: this model uses {named} ({vocab} ids), not OpenAI's bundled vocabulary; clipforge "
                "cannot download it",
                hint="pass --tokenizer with its tokenizer.json, or the folder holding it (e.g. the model's "
                "Hugging Face SiglipModel folder)",
            )
        return None
    folder = _tokenizer_folder(Path(path))
    imported = read_hf_tokenizer(folder, model)  # a vocabulary that does not fit fails here
    if imported.config.kind != "hf":
        return imported  # OpenAI's vocabulary: the bundled tokenizer reproduces OpenCLIP's SimpleTokenizer
    # OpenCLIP's HFTokenizer cleans with "whitespace" unless the config says otherwise; a registry name carries
    # no tokenizer settings, and every OpenCLIP SigLIP config sets "canonicalize".
    default = "canonicalize" if tokenizer_name is None and model.init_logit_bias is not None else "whitespace"
    clean = kwargs.get("clean", default)
    strip = _sep_id(folder, imported) if kwargs.get("strip_sep_token") else None
    return imported._replace(config=dataclasses.replace(imported.config, clean=clean, strip_id=strip))
