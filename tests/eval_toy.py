"""A toy pipeline for evaluator tests: every embedding is chosen by the test, so results are known exactly.

Images are (D,) tensors and preprocess is the identity, so ``encode_image`` returns the image itself.
Texts map to rows of a table given by the test (unknown texts are an error, so a wrong prompt shows up).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from clipforge.checkpoint import PipelineConfig
from clipforge.pipeline import Pipeline


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


# A pipeline that really reads PIL images: an image embeds as its centred mean colour, a text as the sum of
# the colours it names. Solid-colour images are then classified and retrieved by colour name, as CLIP would.
COLORS = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
    "cyan": (0, 255, 255), "magenta": (255, 0, 255), "white": (255, 255, 255), "black": (0, 0, 0),
}  # fmt: skip
_WORDS = ["<pad>", *COLORS]


class ColorModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        table = torch.tensor([[0.0, 0, 0]] + [[c / 255 - 0.5 for c in rgb] for rgb in COLORS.values()])
        self.register_buffer("table", table)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.mean(dim=(2, 3)) - 0.5  # (B, 3, H, W) -> (B, 3)

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.table[token_ids].sum(dim=1) + 1e-4  # (B, L, 3) -> (B, 3); no zero vectors


def color_pipeline() -> Pipeline:
    def tokenizer(batch: list[str]) -> torch.Tensor:
        ids = torch.zeros(len(batch), 8, dtype=torch.long)
        for i, text in enumerate(batch):
            words = [_WORDS.index(w) for w in text.lower().replace(".", " ").split() if w in COLORS][:8]
            ids[i, : len(words)] = torch.tensor(words, dtype=torch.long)
        return ids

    def preprocess(image) -> torch.Tensor:
        image = image.convert("RGB").resize((8, 8))
        return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 255  # (3, 8, 8)

    return Pipeline(ColorModel(), tokenizer, preprocess, PipelineConfig())


def write_color_emoji_set(root, names=("red", "green", "blue", "yellow", "cyan")) -> None:
    """A miniature of the emoji demo set layout: images/, heldout.jsonl, heldout_subgroups.jsonl."""
    import json

    from PIL import Image

    (root / "images").mkdir(parents=True)
    rows = []
    for k, name in enumerate(names):
        rgba = (*COLORS[name], 255)
        image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
        image.paste(Image.new("RGBA", (12, 12), rgba), (2, 2))  # transparent border: flattened onto white
        image = Image.new("RGBA", (16, 16), rgba) if k % 2 else image
        image.save(root / "images" / f"{k:04X}.png")
        rows.append({"image": f"images/{k:04X}.png", "captions": [f"a {name} square", f"{name}"], "label": f"{name}",
                     "group": "colours", "subgroup": name})  # fmt: skip
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (root / "heldout.jsonl").write_text(text)
    (root / "heldout_subgroups.jsonl").write_text(text + "not json\n")
