"""What the data layer hands a distillation teacher: the student's exact views, or the teacher's stored outputs.

Online distillation (``TeacherPrep``): the loader renders each sample's augmentation a second time with the
teacher's own preprocessing (size, filter, normalization) and tokenizes the caption with the teacher's own
tokenizer, so the teacher sees exactly the crop the student sees.

Reinforced shards (``clipforge data reinforce``, train/reinforce.py): every sample carries K augmentations and
the teacher's normalized embeddings for each of them and for each caption. The loader picks one augmentation
per sample and epoch (from the sample's generator), renders it for the student and attaches the teacher's
stored image embedding of that augmentation and text embedding of the chosen caption; no teacher runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load, save

from clipforge.data.config import PreprocessConfig
from clipforge.data.transforms import Augmentation, TrainTransform

# Shard members of a reinforced sample, beside its image and txt members.
AUG_MEMBER = "aug.json"
EMBED_MEMBER = "teacher.safetensors"
REINFORCED_MEMBERS = (AUG_MEMBER, EMBED_MEMBER)


@dataclass
class TeacherInputs:
    """The teacher's part of a Batch (the fields a source provides; the others are None).

    pixels: (B, 3, h, w) the batch's views under the teacher's preprocessing (online distillation).
    token_ids: (B, L) the batch's captions under the teacher's tokenizer (online distillation).
    image_features, text_features: (B, E) the teacher's stored normalized embeddings (reinforced shards).
    """

    pixels: torch.Tensor | None = None
    token_ids: torch.Tensor | None = None
    image_features: torch.Tensor | None = None
    text_features: torch.Tensor | None = None


class TeacherPrep:
    """The teacher's preprocessing and tokenizer, applied in the loader's workers (so it must pickle).

    Args:
        preprocess: the teacher checkpoint's PreprocessConfig.
        tokenizer: the teacher's ``list[str] -> LongTensor``.
    """

    def __init__(self, preprocess: PreprocessConfig, tokenizer: Callable[[list[str]], torch.Tensor]) -> None:
        self.transform = TrainTransform(preprocess, random_resized_crop=False, crop_scale=(1.0, 1.0))
        self.tokenizer = tokenizer

    def view(self, img: Image.Image, aug: Augmentation) -> torch.Tensor:
        """The student's view ``aug`` of ``img`` at the teacher's size and normalization: (3, h, w)."""
        return self.transform.apply(img, aug)


@dataclass(frozen=True)
class Reinforced:
    """One reinforced sample's payload: its K augmentations and the teacher's embeddings.

    image: (K, E) normalized teacher image embeddings, one per augmentation. text: (C, E), one per caption.
    """

    augmentations: tuple[Augmentation, ...]
    image: torch.Tensor
    text: torch.Tensor


class ReinforcedError(ValueError):
    """A reinforced sample whose members are unreadable or disagree with each other."""


def read_reinforced(members: Mapping[str, bytes], n_captions: int) -> Reinforced | None:
    """The payload of a sample's reinforcement members, or None when it has none (a plain shard).

    Raises:
        ReinforcedError: when the members are unreadable or their counts disagree (the loader skips and counts).
    """
    if AUG_MEMBER not in members and EMBED_MEMBER not in members:
        return None

    try:
        augs = tuple(Augmentation.from_json(a) for a in json.loads(members[AUG_MEMBER])["augmentations"])
        emb = load(members[EMBED_MEMBER])
        image, text = emb["image"], emb["text"]
    except (KeyError, TypeError, ValueError, SafetensorError) as exc:  # json, safetensors, Augmentation
        raise ReinforcedError(f"unreadable reinforcement members ({exc})") from exc
    if not augs or image.shape[0] != len(augs) or text.shape[0] != n_captions:
        raise ReinforcedError(f"{len(augs)} augmentations, {image.shape[0]} image and {text.shape[0]} text "
                              f"embeddings for {n_captions} captions")
    return Reinforced(augs, image, text)


def encode_reinforced(augs: list[Augmentation], image: torch.Tensor, text: torch.Tensor) -> dict[str, bytes]:
    """The shard members holding one sample's augmentations and teacher embeddings (inverse of read_reinforced)."""
    payload = {"image": image.float().contiguous(), "text": text.float().contiguous()}
    return {AUG_MEMBER: json.dumps({"augmentations": [a.to_json() for a in augs]}).encode(),
            EMBED_MEMBER: save(payload)}  # fmt: skip
