"""A toy pipeline for evaluator tests: every embedding is chosen by the test, so results are known exactly.

Images are (D,) tensors and preprocess is the identity, so ``encode_image`` returns the image itself.
Texts map to rows of a table given by the test (unknown texts are an error, so a wrong prompt shows up).
"""

from __future__ import annotations

import torch
from torch import nn

from clipforge.pipeline import Pipeline, PipelineConfig


class ToyModel(nn.Module):
    def __init__(self, text_table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("text_table", text_table.float())
        self.text_calls = 0
        self.image_calls = 0

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        self.image_calls += 1
        return pixels  # (B, D): the "image" is its own embedding

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        self.text_calls += 1
        return self.text_table[token_ids[:, 0]]  # (B, D)


def toy_pipeline(texts: dict[str, list[float]]) -> Pipeline:
    """A Pipeline whose text embedding of ``t`` is ``texts[t]`` and whose image embedding is the image."""
    vocab = {t: i for i, t in enumerate(texts)}
    table = torch.stack([torch.as_tensor(texts[t], dtype=torch.float32) for t in texts])

    def tokenizer(batch: list[str]) -> torch.Tensor:
        return torch.tensor([[vocab[t]] for t in batch], dtype=torch.long)  # (B, 1)

    return Pipeline(ToyModel(table), tokenizer, lambda x: torch.as_tensor(x, dtype=torch.float32), PipelineConfig())


def vec(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)
