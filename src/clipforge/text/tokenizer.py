"""CLIP's byte-level BPE tokenizer: OpenAI-exact ids on Hugging Face ``tokenizers``, plus trained vocabularies.

A text becomes ``[<|startoftext|>, word pieces..., <|endoftext|>, 0, 0, ...]`` of length ``context_length``.
Texts too long for the context keep their first ``context_length - 2`` pieces and still end with
end-of-text, because the text model reads its features at that position (argmax of the ids).

How a text is encoded: clean it as OpenAI does (clean.py), split it into words with OpenAI's own pattern
(the `regex` module, so Unicode handling is OpenAI's to the character), and look each word up in a
per-instance memo; a word not seen before is merged by the `tokenizers` BPE model. Measured here
(benchmarks/tokenizer.py), `tokenizers`' full pipeline costs ~20 us per short caption, mostly per-call
and per-word bookkeeping, while split + memo costs ~5 us, so the model is called only for new words.
The saved tokenizer.json still holds the full pipeline (pre-tokenizer, decoder) for use on its own.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import regex
import torch
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE

from clipforge.errors import UserError
from clipforge.text import bpe
from clipforge.text.clean import clean_text
from clipforge.text.config import TOKENIZER_FILE, TokenizerConfig
from clipforge.text.hf_tokenizer import HFTokenizer

OPENAI_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
DEFAULT_CONTEXT_LENGTH = 77
PAD_ID = 0
# Words whose ids are remembered per Tokenizer; past this the memo starts afresh (a few tens of MB at most).
_MAX_MEMO_WORDS = 200_000
# OpenAI's word pattern, run by the `regex` module exactly as OpenAI runs it (see bpe.WORD_PATTERN).
_WORDS = regex.compile(bpe.WORD_PATTERN, regex.IGNORECASE)
# The same pattern on cleaned (lowercased, whitespace-collapsed) ASCII text, where letters are a-z and
# numbers 0-9; the standard `re` engine runs it in about half the time.
_ASCII_WORDS = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+""")


def split_words(text: str) -> list[str]:
    """Clean ``text`` and split it into OpenAI CLIP's words (BPE runs within each word).

    Args:
        text: raw text.
    """
    text = clean_text(text)
    return (_ASCII_WORDS if text.isascii() else _WORDS).findall(text)


class Tokenizer:
    """Turns texts into fixed-length id tensors for CLIP's text encoder, and ids back into text.

    Args:
        backend: a ``tokenizers.Tokenizer`` with the layout of clipforge.text.bpe (end-of-text is the
            highest id, start-of-text the one below). It is never modified, so it may be shared.
        context_length: default number of ids per text.
    """

    def __init__(self, backend: Backend, context_length: int = DEFAULT_CONTEXT_LENGTH) -> None:
        self._backend = backend
        self._context_length = _check_context_length(context_length)
        size = backend.get_vocab_size(with_added_tokens=True)
        sot, eot = backend.token_to_id(bpe.SOT), backend.token_to_id(bpe.EOT)
        if eot != size - 1 or sot != size - 2:
            raise UserError(
                f"tokenizer vocabulary of {size} ids has {bpe.SOT}={sot} and {bpe.EOT}={eot}; expected "
                f"{size - 2} and {size - 1}",
                hint="the text model pools at the highest id, so end-of-text must be last: build the "
                "vocabulary with clipforge.text.tokenizer.train_tokenizer",
            )
        model = backend.model
        if not isinstance(model, BPE) or model.end_of_word_suffix != bpe.END_OF_WORD:
            raise UserError(
                f"tokenizer model is {type(model).__name__}, not a BPE with {bpe.END_OF_WORD!r} word ends",
                hint="only vocabularies made by clipforge (train_tokenizer, to_json) can be loaded",
            )
        self._vocab_size, self._sot, self._eot = size, sot, eot
        self._byte_symbols = bpe.latin1_to_symbols()
        # Word -> ids memo (module docstring). Only ever added to or replaced whole, so concurrent calls
        # from several threads are safe under the GIL.
        self._memo = self._new_memo()

    @classmethod
    def from_json(cls, text: str, context_length: int = DEFAULT_CONTEXT_LENGTH, source: str = "<string>") -> Tokenizer:
        """Rebuild a tokenizer from ``to_json()`` output.

        Args:
            text: the ``tokenizers`` JSON.
            context_length: default number of ids per text.
            source: where the JSON came from, for error messages.
        """
        try:
            backend = Backend.from_str(text)
        except Exception as e:  # tokenizers raises a bare Exception for malformed JSON
            raise UserError(f"{source}: not a valid tokenizer file ({e})") from e
        return cls(backend, context_length)

    @classmethod
    def from_file(cls, path: str | Path, context_length: int = DEFAULT_CONTEXT_LENGTH) -> Tokenizer:
        """Load a tokenizer saved with ``to_json()``.

        Args:
            path: the ``tokenizer.json`` file.
            context_length: default number of ids per text.
        """
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"{path}: tokenizer file not found",
                hint="a checkpoint whose tokenizer kind is "
                "'file' keeps its trained vocabulary as tokenizer.json beside config.json",
            )
        return cls.from_json(path.read_text(encoding="utf-8"), context_length, source=str(path))

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self._vocab_size

    @property
    def sot_id(self) -> int:
        """Id of ``<|startoftext|>`` (vocab_size - 2)."""
        return self._sot

    @property
    def eot_id(self) -> int:
        """Id of ``<|endoftext|>`` (vocab_size - 1, the highest)."""
        return self._eot

    @property
    def context_length(self) -> int:
        """Default number of ids per text."""
        return self._context_length

    def encode(self, text: str) -> list[int]:
        """Ids of one text's word pieces, without start/end-of-text and without truncation.

        Args:
            text: raw text (cleaned here).
        """
        return self._encode_many([text])[0]

    def __call__(self, texts: list[str] | str, context_length: int | None = None) -> torch.Tensor:
        """Tokenize texts into a (B, context_length) int64 tensor padded with 0.

        Args:
            texts: one text or a list of texts.
            context_length: ids per text; defaults to the tokenizer's context_length.
        """
        if isinstance(texts, str):
            texts = [texts]
        length = self._context_length if context_length is None else _check_context_length(context_length)
        return _pack(self._encode_many(texts), length, self._sot, self._eot)  # (B, L)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of one id sequence, without special tokens or padding, pieces joined by word-end spaces.

        Args:
            ids: a 1-D sequence, e.g. one row of ``__call__``'s output or ``encode``'s result.
        """
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes one sequence (1-D), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        ids = list(ids)
        # Trailing zeros are always padding: id 0 is a byte symbol without "</w>", and every word's
        # last piece carries "</w>", so no real sequence ends with 0.
        while ids and ids[-1] == PAD_ID:
            ids.pop()
        bad = [i for i in ids if not 0 <= i < self._vocab_size]
        if bad:
            raise ValueError(f"ids outside the vocabulary [0, {self._vocab_size}): {bad[:5]}")
        return self._backend.decode(ids, skip_special_tokens=True).strip()

    def to_json(self) -> str:
        """The ``tokenizers`` JSON of the vocabulary (saved as tokenizer.json for trained vocabularies)."""
        return self._backend.to_str()

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self._vocab_size}, context_length={self._context_length})"

    def _encode_many(self, texts: list[str]) -> list[list[int]]:
        memo = self._memo
        out = []
        for text in texts:
            if len(memo) > _MAX_MEMO_WORDS:
                memo = self._memo = self._new_memo()
            ids: list[int] = []
            for word in split_words(text):
                pieces = memo.get(word)
                if pieces is None:
                    pieces = memo[word] = self._word_ids(word)
                ids += pieces
            out.append(ids)
        return out

    def _word_ids(self, word: str) -> list[int]:
        # The BPE merges run in `tokenizers`' model on the word's byte symbols; it appends "</w>".
        symbols = word.encode("utf-8").decode("latin-1").translate(self._byte_symbols)
        return [token.id for token in self._backend.model.tokenize(symbols)]

    def _new_memo(self) -> dict[str, list[int]]:
        # A word that is exactly a special token's text is that token, as in OpenAI's tokenizer (only
        # where its word pattern cuts it out: "<<|endoftext|>" is punctuation and letters).
        return {bpe.SOT: [self._sot], bpe.EOT: [self._eot]}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_memo"] = None  # rebuilt on load; no need to ship it to data-loader workers
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._memo = self._new_memo()


def _pack(rows: list[list[int]], length: int, sot: int, eot: int) -> torch.Tensor:
    """[sot, ids..., eot, 0, ...] rows of ``length``; long rows keep their first length - 2 ids."""
    batch = len(rows)
    out = np.zeros((batch, length), dtype=np.int64)
    out[:, 0] = sot
    kept = np.minimum(np.fromiter((len(r) for r in rows), dtype=np.int64, count=batch), length - 2)  # (B,)
    total = int(kept.sum())
    if total:
        flat = np.fromiter((i for r in rows for i in r[: length - 2]), dtype=np.int64, count=total)  # (N,)
        row_of = np.repeat(np.arange(batch), kept)  # (N,)
        starts = np.cumsum(kept) - kept  # (B,) offset of each row in flat
        out[row_of, np.arange(total) - starts[row_of] + 1] = flat
    out[np.arange(batch), kept + 1] = eot
    return torch.from_numpy(out)  # (B, L)


def _check_context_length(length: int) -> int:
    if not isinstance(length, int) or length < 2:
        raise UserError(
            f"tokenizer context_length must be an integer >= 2, got {length!r}",
            hint="it must hold at least start- and end-of-text",
        )
    return length


@functools.lru_cache(maxsize=1)
def _openai_backend_json() -> str:
    # Built once per process from the bundled merge list (~0.15 s; from_str on the result ~0.07 s). An
    # immutable string is cached, not the backend object, so no Tokenizer can affect another.
    path = resources.files("clipforge.text") / "data" / OPENAI_VOCAB_FILE
    with resources.as_file(path) as local:
        return bpe.make_backend(bpe.read_openai_merges(local)).to_str()


def openai_tokenizer(context_length: int = DEFAULT_CONTEXT_LENGTH) -> Tokenizer:
    """OpenAI CLIP's tokenizer (49,408 ids) from the bundled vocabulary.

    Args:
        context_length: default number of ids per text.
    """
    return Tokenizer(Backend.from_str(_openai_backend_json()), context_length)


def build_tokenizer(cfg: TokenizerConfig, ckpt_dir: Path | None = None) -> Tokenizer | HFTokenizer:
    """The tokenizer a checkpoint's config names.

    Args:
        cfg: kind "openai" uses the bundled vocabulary; kinds "file" and "hf" load ``ckpt_dir/tokenizer.json``.
        ckpt_dir: the checkpoint directory (needed for kinds "file" and "hf").
    """
    if cfg.kind == "hf":
        if ckpt_dir is None:
            raise UserError("tokenizer kind 'hf' needs the checkpoint directory that holds tokenizer.json")
        hf = HFTokenizer.from_file(Path(ckpt_dir) / TOKENIZER_FILE, cfg.context_length, cfg.pad_id, cfg.padding_side,
                                   cfg.clean, cfg.strip_id)  # fmt: skip
        if hf.vocab_size > cfg.vocab_size:
            raise UserError(
                f"tokenizer has {hf.vocab_size} ids but the model's vocab_size is {cfg.vocab_size}",
                hint="the config and tokenizer.json of this checkpoint do not belong together",
            )
        return hf
    if cfg.kind == "openai":
        tokenizer = openai_tokenizer(cfg.context_length)
    elif cfg.kind == "file":
        if ckpt_dir is None:
            raise UserError("tokenizer kind 'file' needs the checkpoint directory that holds tokenizer.json")
        tokenizer = Tokenizer.from_file(Path(ckpt_dir) / TOKENIZER_FILE, cfg.context_length)
    else:
        raise UserError(f"unknown tokenizer kind {cfg.kind!r}", hint="use 'openai', 'file' or 'hf'")
    if tokenizer.vocab_size != cfg.vocab_size:
        raise UserError(
            f"tokenizer has {tokenizer.vocab_size} ids but the config says vocab_size={cfg.vocab_size}",
            hint="the config and tokenizer.json of this checkpoint do not belong together",
        )
    return tokenizer


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    context_length: int = DEFAULT_CONTEXT_LENGTH,
    min_frequency: int = 2,
    show_progress: bool = False,
) -> Tokenizer:
    """Learn a smaller BPE vocabulary from captions, cleaned and split into words exactly like OpenAI's.

    The layout matches OpenAI's (512 byte symbols, merges, then start- and end-of-text as the two highest
    ids), so any text can be encoded. The merges depend on the corpus alone (ties between equally frequent
    pairs are broken by the pair, clipforge.text.bpe_train), so the same corpus gives the same vocabulary
    in every run. Save it with ``to_json()`` as the checkpoint's tokenizer.json.

    Args:
        texts: the caption corpus (iterated once).
        vocab_size: ids wanted, special tokens included; at least 515. The result has fewer (and a
            warning is logged) when the corpus has too few distinct pairs: read ``.vocab_size``.
        context_length: default number of ids per text.
        min_frequency: a pair seen fewer times than this is never merged.
        show_progress: show the trainer's progress bar.
    """
    fixed = bpe.BASE_SYMBOLS + bpe.NUM_SPECIAL
    if vocab_size <= fixed:
        raise UserError(
            f"vocab_size {vocab_size} is too small", hint=f"use more than {fixed} (512 byte symbols + 2 special)"
        )
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(split_words(text))
    for special in (bpe.SOT, bpe.EOT):  # literal special-token words are those tokens, not merge material
        counts.pop(special, None)
    merges = bpe.train_merges(counts, vocab_size - fixed, min_frequency, show_progress)
    return Tokenizer(bpe.make_backend(merges), context_length)
