"""What choosing a model brings to a run: its image size, text context and tokenizer, unless the user set them.

A recipe sets ``image_size`` and ``tokenizer`` for its own model. When the command line replaces that model
(``clipforge train tiny-emoji.yaml model=ViT-B-32``) the recipe's values describe a model that is no longer
trained, so they follow the new one: ViT-B-32 trains at 224 px with OpenAI's vocabulary, not at the recipe's
32 px (one patch per image) with its small trained vocabulary. The text context is part of the model config
and comes with it. A value set beside the model (in the same YAML as the model, or on the command line) is
the user's choice and is kept; when it differs from the model's own value a warning says what it implies.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig
from clipforge.model.registry import get_config
from clipforge.text.config import OPENAI_VOCAB_SIZE

log = logging.getLogger("clipforge.train")
_DEFAULT, _FILE, _COMMAND_LINE = 0, 1, 2  # where a key was set, in the order the layers apply


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """What the user set, and where: the layers ``load_train_config`` merged."""

    file_keys: set[str]
    overrides: Mapping[str, Any]

    def layer(self, key: str) -> int:
        if key in self.overrides:
            return _COMMAND_LINE
        return _FILE if key in self.file_keys else _DEFAULT

    def model_layer(self) -> int:
        """Where the model was chosen: a ``model=`` override replaces it, ``model.x=`` only reaches into it."""
        if "model" in self.overrides:
            return _COMMAND_LINE
        return _FILE if any(k == "model" or k.startswith("model.") for k in self.file_keys) else _DEFAULT


def apply_model_defaults(cfg: Any, choice: ModelChoice) -> Any:
    """``cfg`` (a TrainConfig) with image size, tokenizer and preprocessing size that fit its model.

    Keys set in an earlier layer than the model follow the model (logged); keys set with or after it are kept
    and a mismatch is a warning. ``image_size`` and ``preprocess.image_size`` come back filled in, so the
    resolved config (``--print-config``, ``run_dir/config.yaml``) shows the size that is trained.

    Raises:
        UserError: for OpenAI's tokenizer on a registry model whose text tower has another vocabulary.
    """
    model = get_config(cfg.model) if isinstance(cfg.model, str) else cfg.model
    name = _model_name(cfg, choice)
    native_size = model.vision.image_size
    native_tokenizer = "openai" if model.text.vocab_size == OPENAI_VOCAB_SIZE else None
    model_layer = choice.model_layer()
    followed = []
    image_size, tokenizer = cfg.image_size, cfg.tokenizer
    if model_layer > choice.layer("image_size") and image_size not in (0, native_size):
        followed.append(f"image_size {image_size} -> {native_size}")
        image_size = 0
    if model_layer > choice.layer("tokenizer") and native_tokenizer and tokenizer != native_tokenizer:
        followed.append(f"tokenizer {tokenizer} -> {native_tokenizer}")
        tokenizer = native_tokenizer
    if followed:
        log.info("model=%s from the command line brings its own sizes: %s (set them on the command line to keep "
                 "the recipe's)", name, ", ".join(followed))  # fmt: skip
    size = image_size or native_size
    if image_size and image_size != native_size:
        log.warning("%s", image_size_implication(model, name, image_size))
    if name and tokenizer != "openai" and native_tokenizer == "openai":
        log.warning("tokenizer=%s with %s: a %s-token vocabulary trained on the captions replaces OpenAI's %s "
                    "tokens the model was built for (its text tower is trained for the new ids; OpenAI-vocabulary "
                    "weights will not fit it)", tokenizer, name, f"{tokenizer:,}", f"{OPENAI_VOCAB_SIZE:,}")  # fmt: skip
    if tokenizer == "openai" and native_tokenizer is None:
        raise UserError(
            f"{name or 'the model'}'s text tower has {model.text.vocab_size:,} ids, built for its own tokenizer, "
            f"not the bundled OpenAI one ({OPENAI_VOCAB_SIZE:,} ids)",
            hint=f"train a vocabulary on the captions (tokenizer={model.text.vocab_size}), or import pretrained "
            "weights with their tokenizer: clipforge convert --from hf",
        )  # fmt: skip
    pre_layer = choice.layer("preprocess.image_size")
    if pre_layer >= max(model_layer, _FILE) and cfg.preprocess.image_size != size:
        log.warning("preprocess.image_size=%d is not used: the saved preprocessing follows the trained image size "
                    "%d (set image_size= to change both)", cfg.preprocess.image_size, size)  # fmt: skip
    preprocess = dataclasses.replace(cfg.preprocess, image_size=size)
    return dataclasses.replace(cfg, image_size=size, tokenizer=tokenizer, preprocess=preprocess)


def _model_name(cfg: Any, choice: ModelChoice) -> str:
    """The registry name the model was chosen by (also when ``model.x=`` overrides expanded it), else ''."""
    if isinstance(cfg.model, str):
        return cfg.model
    given = choice.overrides.get("model")
    return given if isinstance(given, str) else ""


def image_size_implication(model: CLIPConfig, name: str, size: int) -> str:
    """One line on what training ``model`` at ``size`` px instead of its own image size means."""
    native = model.vision.image_size
    label = name or f"the {model.vision.kind} model"
    patch = getattr(model.vision, "patch_size", None)
    if patch:
        grid, native_grid = size // patch, native // patch
        return (f"image_size={size} with {label}: a {grid}x{grid} grid of {patch}-px patches ({grid * grid} "
                f"token{'s' if grid * grid != 1 else ''} per image) instead of the {native_grid}x{native_grid} it was built for at {native} px")  # fmt: skip
    share = 100.0 * (size / native) ** 2
    return f"image_size={size} with {label}: {share:.0f}% of the pixels of the {native} px it was built for"


def describe(cfg: Any) -> str:
    """One line on what a resolved TrainConfig trains (the header of ``train --print-config``)."""
    model = get_config(cfg.model) if isinstance(cfg.model, str) else cfg.model
    name = cfg.model if isinstance(cfg.model, str) else f"a {model.vision.kind} model"
    size = cfg.image_size or model.vision.image_size
    patch = getattr(model.vision, "patch_size", None)
    grid = f" ({size // patch}x{size // patch} patches of {patch} px)" if patch else ""
    tokens = f"OpenAI's tokenizer ({OPENAI_VOCAB_SIZE:,} ids)" if cfg.tokenizer == "openai" else \
        f"a {cfg.tokenizer:,}-token BPE vocabulary trained on the captions"
    return (f"trains {name}: {size} px images{grid}, text context {model.text.context_length} tokens, {tokens}, "
            f"embed_dim {model.embed_dim}")  # fmt: skip
