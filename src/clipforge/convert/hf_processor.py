"""The tokenizer and processor files of an exported Hugging Face folder, so that ``AutoProcessor`` gives the ids
and pixels clipforge gives (``AutoModel`` + ``AutoProcessor`` then reproduce clipforge's features).

Written as plain JSON/text (transformers is not needed to export):
  processor_config.json     what transformers 5 writes: the image processor's settings nested under
                            "image_processor", and "processor_class"
  preprocessor_config.json  the same settings flat (transformers 4 and other readers look for this name)
  tokenizer.json            a ``tokenizers`` pipeline; tokenizer_config.json names its class and special tokens
  vocab.json, merges.txt    CLIP-style BPE vocabularies only (transformers 4's Python CLIPTokenizer reads them)

Tokenizers: clipforge's byte-level BPE (the bundled OpenAI vocabulary and trained ones share its layout) is
written as a ``CLIPTokenizer``; an imported "hf" pipeline (SigLIP's SentencePiece-style vocabularies) as the
generic tokenizers-backed class, which runs the file as it is. CLIPTokenizer rebuilds its normalizer and
pre-tokenizer from its own code (NFC, whitespace, lower-casing; CLIP's word pattern); what it does not do is
the ftfy repair and HTML unescaping clipforge applies first, so texts with mojibake or entities can get other
ids through transformers (as they do for every CLIP model on the Hub).
"""

from __future__ import annotations

import json
import logging
import re
import string
from pathlib import Path
from typing import Any

from tokenizers import Regex, normalizers, processors
from tokenizers import Tokenizer as Backend

from clipforge.checkpoint import PipelineConfig
from clipforge.convert.hf_files import (
    PREPROCESSOR_FILE,
    PROCESSOR_FILE,
    RESAMPLE,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
)
from clipforge.text import bpe
from clipforge.utils.io import atomic_write_text

log = logging.getLogger(__name__)

RESAMPLE_CODES = {name: code for code, name in RESAMPLE.items()}  # PIL resample codes, as HF stores them


def image_processor_settings(config: PipelineConfig, siglip: bool) -> dict[str, Any]:
    """The image processor's settings for ``config.preprocess``.

    CLIPImageProcessor resizes the shortest side and centre-crops, as clipforge's "shortest" mode does;
    SiglipImageProcessor resizes to the square without a crop ("squash").
    """
    p = config.preprocess
    settings: dict[str, Any] = {
        "do_resize": True, "resample": RESAMPLE_CODES[p.interpolation], "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(p.mean), "image_std": list(p.std),
        "do_convert_rgb": True,
    }  # fmt: skip
    if siglip or p.resize_mode == "squash":
        cls = "SiglipImageProcessor" if siglip else "CLIPImageProcessor"
        settings.update(image_processor_type=cls, size={"height": p.image_size, "width": p.image_size},
                        do_center_crop=False)  # fmt: skip
    else:
        settings.update(image_processor_type="CLIPImageProcessor", size={"shortest_edge": p.image_size},
                        do_center_crop=True, crop_size={"height": p.image_size, "width": p.image_size})  # fmt: skip
    return settings


def write_processor_files(out: Path, config: PipelineConfig, siglip: bool) -> None:
    """processor_config.json (nested, transformers 5) and preprocessor_config.json (flat, transformers 4)."""
    processor_class = "SiglipProcessor" if siglip else "CLIPProcessor"
    image = image_processor_settings(config, siglip)
    nested = {"image_processor": image, "processor_class": processor_class}
    atomic_write_text(out / PROCESSOR_FILE, json.dumps(nested, indent=2) + "\n")
    atomic_write_text(out / PREPROCESSOR_FILE, json.dumps({**image, "processor_class": processor_class}, indent=2) + "\n")


def clip_bpe_pipeline(backend_json: str) -> Backend:
    """clipforge's BPE backend completed into a standalone pipeline: CLIPTokenizer's normalizer (NFC, runs of
    whitespace to one space, lower-case) and start/end-of-text added around every text."""
    backend = Backend.from_str(backend_json)
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip(), normalizers.Lowercase()]
    )
    sot, eot = backend.token_to_id(bpe.SOT), backend.token_to_id(bpe.EOT)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bpe.SOT} $A {bpe.EOT}", special_tokens=[(bpe.SOT, sot), (bpe.EOT, eot)]
    )
    return backend


def clean_normalizers(mode: str) -> list[normalizers.Normalizer]:
    """OpenCLIP's text cleaning (``clipforge.text.clean.open_clip_clean``) as ``tokenizers`` normalizers, so an
    exported tokenizer cleans as clipforge does; the ftfy repair and HTML unescaping have no equivalent."""
    if mode == "none":
        return []
    steps: list[normalizers.Normalizer] = []
    if mode == "canonicalize":
        punctuation = Regex("[" + re.escape(string.punctuation) + "]")
        steps += [normalizers.Replace("_", " "), normalizers.Replace(punctuation, "")]
    if mode in ("canonicalize", "lower"):
        steps.append(normalizers.Lowercase())
    return steps + [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]


def write_tokenizer_files(out: Path, config: PipelineConfig, backend_json: str, processor_class: str) -> None:
    """tokenizer.json + tokenizer_config.json (+ vocab.json and merges.txt for CLIP-style BPE).

    Args:
        out: the export folder.
        config: the checkpoint's pipeline config (its tokenizer kind, context length, pad id, padding side).
        backend_json: the tokenizer's ``tokenizers`` JSON (the bundled OpenAI one, or the checkpoint's file).
        processor_class: the processor these files belong to.
    """
    tok = config.tokenizer
    if tok.kind == "hf":
        backend = Backend.from_str(backend_json)
        cleaning = clean_normalizers(tok.clean)
        if cleaning:  # OpenCLIP's cleaning runs before the pipeline's own normalizer
            backend.normalizer = normalizers.Sequence(cleaning + ([backend.normalizer] if backend.normalizer else []))
        if tok.strip_id is not None:
            log.warning("%s: transformers has no setting to zero the separator id %d (OpenCLIP's strip_sep_token): "
                        "set those ids to 0 after tokenizing", out, tok.strip_id)  # fmt: skip
        # input_ids only, as SiglipTokenizer gives: SigLIP's text tower attends to its padding (clipforge's and
        # big_vision's do), and an attention mask passed to the model would change the features.
        settings: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast",
                                    "pad_token": backend.id_to_token(tok.pad_id), "padding_side": tok.padding_side,
                                    "model_input_names": ["input_ids"]}  # fmt: skip
    else:
        backend = clip_bpe_pipeline(backend_json)
        # CLIP's own pad token, end-of-text: clipforge pads with id 0, but that id is the word piece "!", and a
        # pad token is matched as a special token inside texts. Features do not depend on the pad (the causal
        # text tower is read at the first end-of-text), so only the padded positions' ids differ.
        settings = {"tokenizer_class": "CLIPTokenizer", "bos_token": bpe.SOT, "eos_token": bpe.EOT,
                    "unk_token": bpe.EOT, "pad_token": bpe.EOT}  # fmt: skip
        model = json.loads(backend.to_str())["model"]
        atomic_write_text(out / "vocab.json", json.dumps(model["vocab"], ensure_ascii=False) + "\n")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        atomic_write_text(out / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    settings.update(model_max_length=tok.context_length, processor_class=processor_class)
    atomic_write_text(out / TOKENIZER_JSON, backend.to_str())
    atomic_write_text(out / TOKENIZER_CONFIG, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")
