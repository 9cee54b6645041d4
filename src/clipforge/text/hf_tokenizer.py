"""An imported Hugging Face ``tokenizers`` pipeline as a clipforge tokenizer (kind "hf").

Texts are encoded by the pipeline (its normalizer, pre-tokenizer, model and post-processor, which adds the
special tokens), truncated to ``context_length`` and padded to it with ``pad_id`` on ``padding_side``: what
``AutoTokenizer(texts, padding="max_length", truncation=True, max_length=context_length)`` gives.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer as Backend

from clipforge.errors import UserError
from clipforge.text.clean import open_clip_clean


class HFTokenizer:
    """Texts -> (B, context_length) int64 ids with an imported pipeline.

    Args:
        backend: the ``tokenizers`` pipeline (copied; the copy gets truncation and padding).
        context_length: ids per text.
        pad_id: id of the padding positions.
        padding_side: "right" or "left".
        clean: the text cleaning applied first (``clipforge.text.clean.open_clip_clean``; "none" for HF folders).
        strip_id: an id replaced by 0 after padding (OpenCLIP's ``strip_sep_token``), or None.
    """

    def __init__(self, backend: Backend, context_length: int, pad_id: int = 0, padding_side: str = "right",
                 clean: str = "none", strip_id: int | None = None) -> None:  # fmt: skip
        self._backend = Backend.from_str(backend.to_str())
        self._context_length = context_length
        self._clean, self._strip_id = clean, strip_id
        pad_token = self._backend.id_to_token(pad_id) or ""
        self._backend.enable_truncation(max_length=context_length)
        self._backend.enable_padding(length=context_length, pad_id=pad_id, pad_token=pad_token, direction=padding_side)
        self._vocab_size = self._backend.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_file(cls, path: str | Path, context_length: int, pad_id: int = 0, padding_side: str = "right",
                  clean: str = "none", strip_id: int | None = None) -> HFTokenizer:  # fmt: skip
        """Load a checkpoint's tokenizer.json.

        Raises:
            UserError: when the file is missing or not a ``tokenizers`` pipeline.
        """
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: tokenizer file not found", hint="an 'hf' tokenizer lives in tokenizer.json beside config.json")
        try:
            backend = Backend.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON
            raise UserError(f"{path}: not a valid tokenizer file ({exc})") from exc
        return cls(backend, context_length, pad_id, padding_side, clean, strip_id)

    @property
    def vocab_size(self) -> int:
        """Number of ids the pipeline can produce, special tokens included."""
        return self._vocab_size

    @property
    def context_length(self) -> int:
        return self._context_length

    def __call__(self, texts: list[str] | str, context_length: int | None = None) -> torch.Tensor:
        """Tokenize texts into a (B, context_length) int64 tensor.

        Args:
            texts: one text or a list of texts.
            context_length: must be the tokenizer's own (the model reads a fixed position).
        """
        if isinstance(texts, str):
            texts = [texts]
        if context_length not in (None, self._context_length):
            raise UserError(f"this tokenizer encodes {self._context_length} ids per text, not {context_length}")
        encodings = self._backend.encode_batch([open_clip_clean(t, self._clean) for t in texts])
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long).reshape(len(texts), self._context_length)
        if self._strip_id is not None:
            ids[ids == self._strip_id] = 0
        return ids

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """Text of one id sequence, without special tokens."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self._backend.decode(list(ids), skip_special_tokens=True).strip()

    def to_json(self) -> str:
        return self._backend.to_str()

    def __repr__(self) -> str:
        return f"HFTokenizer(vocab_size={self._vocab_size}, context_length={self._context_length})"
