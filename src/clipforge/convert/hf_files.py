"""The tokenizer and image-processor files of a Hugging Face model folder → clipforge's tokenizer and
preprocessing configs.

Tokenizer: a folder's ``tokenizer.json`` is a ``tokenizers`` pipeline, but transformers' tokenizer classes
adjust it when they load it (a lower-casing normalizer, special tokens added from ``tokenizer_config.json``,
the padding side). So that clipforge's ids equal ``AutoTokenizer.from_pretrained(folder)``'s, padding and
truncation included, the conversion takes the pipeline transformers actually runs when transformers is
installed (its ``backend_tokenizer``), else the folder's file as it is (with a warning). Either way the
result is saved as the checkpoint's own tokenizer.json and run by ``tokenizers`` alone
(``clipforge.text.hf_tokenizer``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

from tokenizers import Tokenizer as Backend

from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig
from clipforge.text import bpe
from clipforge.text.config import OPENAI_VOCAB_SIZE, TokenizerConfig

log = logging.getLogger(__name__)

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SENTENCEPIECE_FILES = ("spiece.model", "tokenizer.model")
PROCESSOR_FILE = "processor_config.json"  # transformers 5: the image processor's settings nested inside
PREPROCESSOR_FILE = "preprocessor_config.json"  # transformers 4: the same settings flat
# A folder with both is read as transformers 5 reads it.
PREPROCESSOR_FILES = (PROCESSOR_FILE, PREPROCESSOR_FILE)
OPENAI_EOT = "<|endoftext|>"
RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL codes, as HF stores them


class HFTokenizerImport(NamedTuple):
    """The tokenizer config for the checkpoint, and the tokenizer.json to save beside it (None: bundled)."""

    config: TokenizerConfig
    json: str | None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON file: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def _openai_vocabulary(backend: Backend) -> bool:
    """OpenAI's 49,408-token BPE (the bundled tokenizer reproduces OpenAI's own ids, cleaning included)."""
    return backend.get_vocab_size(with_added_tokens=True) == OPENAI_VOCAB_SIZE and backend.token_to_id(OPENAI_EOT) == 49407


def _clip_bpe_json(backend: Backend) -> str | None:
    """clipforge's tokenizer JSON when ``backend`` is a BPE in clipforge's (and OpenAI's) layout: byte symbols,
    the same with "</w>", one token per merge, start- and end-of-text last (a vocabulary clipforge trained and
    exported); None otherwise."""
    model = json.loads(backend.to_str()).get("model", {})
    if model.get("type") != "BPE" or model.get("end_of_word_suffix") != bpe.END_OF_WORD:
        return None
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    if not merges or any(len(m) != 2 for m in merges):
        return None
    try:
        layout = bpe.vocab_from_merges(merges)  # type: ignore[arg-type]
    except ValueError:
        return None
    vocab = {**model.get("vocab", {}), **{t: backend.token_to_id(t) for t in (bpe.SOT, bpe.EOT)}}
    return bpe.make_backend(merges).to_str() if vocab == layout else None  # type: ignore[arg-type]


def _transformers_backend(folder: Path) -> tuple[Backend, int, str] | None:
    """The pipeline, pad id and padding side transformers runs for ``folder``; None without transformers."""
    try:
        # Deferred on purpose: transformers is optional (it only makes the tokenizer import exact).
        from transformers import AutoTokenizer
    except ImportError:
        return None
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:  # transformers raises many error types for unreadable folders
        raise UserError(f"{folder}: transformers cannot load this tokenizer: {exc}") from exc
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise UserError(
            f"{folder}: tokenizer class {type(tok).__name__} has no tokenizers pipeline",
            hint="clipforge runs tokenizer.json pipelines; SentencePiece-only tokenizers are not supported",
        )
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return Backend.from_str(backend.to_str()), int(pad), str(tok.padding_side)


def _file_backend(folder: Path) -> tuple[Backend, int, str]:
    log.warning(
        "%s: transformers is not installed: using tokenizer.json as it is; transformers' tokenizer class may "
        "adjust it (lower-casing, special tokens), so ids can differ from AutoTokenizer's",
        folder,
    )
    backend = Backend.from_file(str(folder / TOKENIZER_JSON))
    settings = _read_json(folder / TOKENIZER_CONFIG) if (folder / TOKENIZER_CONFIG).is_file() else {}
    pad_token = settings.get("pad_token")
    if isinstance(pad_token, dict):
        pad_token = pad_token.get("content")
    pad = backend.token_to_id(pad_token) if isinstance(pad_token, str) else None
    return backend, pad if pad is not None else 0, settings.get("padding_side", "right")


def read_hf_tokenizer(folder: Path, cfg: CLIPConfig) -> HFTokenizerImport:
    """The tokenizer of an HF model folder, checked against the model's vocabulary.

    Args:
        folder: the model folder.
        cfg: the imported model's config.

    Raises:
        UserError: when the tokenizer has ids the model has no embedding for, when a SigLIP-style model comes
            without a usable tokenizer, or when the tokenizer cannot be read.
    """
    text = cfg.text
    if not (folder / TOKENIZER_JSON).is_file():
        sentencepiece = [n for n in SENTENCEPIECE_FILES if (folder / n).is_file()]
        if text.pool == "argmax" and text.vocab_size == OPENAI_VOCAB_SIZE:
            return HFTokenizerImport(TokenizerConfig(context_length=text.context_length), None)
        if sentencepiece:
            raise UserError(
                f"{folder}: the tokenizer is a SentencePiece model ({sentencepiece[0]}) without tokenizer.json",
                hint="clipforge reads tokenizer.json (the tokenizers format); save one beside the model first",
            )
        if text.pool == "argmax":  # a CLIP model with its own vocabulary and no file: as before, warn on import
            return HFTokenizerImport(TokenizerConfig(context_length=text.context_length, vocab_size=text.vocab_size), None)
        raise UserError(f"{folder}: no tokenizer.json", hint="a SigLIP folder needs its tokenizer to be imported")
    found = _transformers_backend(folder) or _file_backend(folder)
    backend, pad, side = found
    size = backend.get_vocab_size(with_added_tokens=True)
    if size > text.vocab_size:
        raise UserError(
            f"{folder}: the tokenizer has {size} ids but the model's text embedding only {text.vocab_size}",
            hint="the tokenizer and the weights do not belong together (nothing was written)",
        )
    if text.pool == "argmax" and _openai_vocabulary(backend):
        return HFTokenizerImport(TokenizerConfig(context_length=text.context_length), None)
    clip_bpe = _clip_bpe_json(backend) if text.pool == "argmax" and size == text.vocab_size else None
    if clip_bpe is not None:  # a vocabulary clipforge trained (and exported): back to clipforge's own tokenizer
        return HFTokenizerImport(TokenizerConfig(kind="file", context_length=text.context_length, vocab_size=size), clip_bpe)
    if side not in ("right", "left"):
        raise UserError(f"{folder}: padding side {side!r} is neither 'right' nor 'left'")
    config = TokenizerConfig(kind="hf", context_length=text.context_length, vocab_size=text.vocab_size, pad_id=pad,
                             padding_side=side)  # type: ignore[arg-type]  # fmt: skip
    backend.no_truncation()
    backend.no_padding()  # clipforge sets both per call, to the config's context length
    return HFTokenizerImport(config, backend.to_str())


def _image_processor_settings(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The first of ``PREPROCESSOR_FILES`` that holds image-processor settings, and those settings."""
    for name in PREPROCESSOR_FILES:
        path = folder / name
        if not path.is_file():
            continue
        data = _read_json(path)
        data = data.get("image_processor", data)  # processor_config.json nests the image processor's settings
        if isinstance(data, dict) and {"image_mean", "image_std", "size", "resample"} & set(data):
            return path, data
    return None


def read_hf_preprocess(folder: Path, cfg: CLIPConfig) -> dict[str, Any]:
    """PreprocessConfig fields from the folder's image-processor config (mean/std, resize, crop, filter).

    CLIPImageProcessor resizes the shortest side and centre-crops; SiglipImageProcessor resizes to the square
    without a crop ("squash"). Without such a file, CLIP's statistics and resize+crop are assumed for CLIP
    models, SigLIP's (0.5 mean and std, squash) for SigLIP models.
    """
    siglip = cfg.init_logit_bias is not None
    out: dict[str, Any] = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "resize_mode": "squash"} if siglip else {}
    found = _image_processor_settings(folder)
    if found is None:
        return out
    path, prep = found
    if "image_mean" in prep:
        out["mean"] = tuple(float(x) for x in prep["image_mean"])
    if "image_std" in prep:
        out["std"] = tuple(float(x) for x in prep["image_std"])
    if prep.get("resample") in RESAMPLE:
        out["interpolation"] = RESAMPLE[prep["resample"]]
    size = prep.get("size") or {}
    if "height" in size or "width" in size:
        out["resize_mode"] = "squash"
    elif "shortest_edge" in size:
        out["resize_mode"] = "shortest"
        crop = (prep.get("crop_size") or {}).get("height", size["shortest_edge"])
        if crop != size["shortest_edge"] or not prep.get("do_center_crop", True):
            log.warning("%s: resize to %s then crop %s is approximated by resize and crop to %d", path,
                        size["shortest_edge"], crop, cfg.vision.image_size)  # fmt: skip
    return out
