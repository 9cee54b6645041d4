"""The Python API as OpenCLIP users know it: list names, create a pipeline by name, classify zero-shot.

    import clipforge
    clipforge.list_models()                  # registered architectures ("ViT-B-32", "tiny-vit", ...)
    clipforge.list_pretrained()              # names that load weights ("openai/clip-vit-base-patch32", ...)
    pipe = clipforge.create("tiny-vit")      # random weights, with the model's own preprocess and tokenizer
    clf = clipforge.zero_shot_classifier(pipe, ["cat", "dog"], templates=["a photo of a {}."])
    clf.probabilities(pil_image)             # {"cat": 0.7, "dog": 0.3}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from clipforge.checkpoint import PipelineConfig
from clipforge.data.config import PreprocessConfig
from clipforge.data.transforms import eval_transform
from clipforge.errors import UserError
from clipforge.eval.templates import get_templates
from clipforge.eval.zeroshot import class_embeddings, class_probabilities, rank_classes
from clipforge.model.clip import CLIP
from clipforge.model.config import CLIPConfig
from clipforge.model.registry import get_config
from clipforge.model.registry import list_models as _registry_names
from clipforge.pipeline import Pipeline, load
from clipforge.pretrained import KNOWN_PRETRAINED
from clipforge.text.config import OPENAI_VOCAB_SIZE, TokenizerConfig
from clipforge.text.tokenizer import build_tokenizer


def list_models() -> list[str]:
    """Every registered model architecture name (``clipforge.create`` builds any of them)."""
    return _registry_names()


def list_pretrained() -> list[str]:
    """Names ``create(name, pretrained=...)`` and ``clipforge.load`` resolve to weights (converted on first use);
    any Hugging Face CLIPModel repo also works as ``hf-hub:ORG/NAME``."""
    return list(KNOWN_PRETRAINED)


def pipeline_config(model: CLIPConfig) -> PipelineConfig:
    """The PipelineConfig that feeds ``model`` as it was built: its image size and its text context length
    (``PipelineConfig(model=...)`` alone keeps the 224-px, 77-token defaults whatever the model)."""
    if model.text.vocab_size != OPENAI_VOCAB_SIZE:  # the bundled BPE: the only tokenizer a name can bring
        raise UserError(f"this model's text tower has a {model.text.vocab_size:,}-token vocabulary and no tokenizer "
                        "comes with its name", hint="load a checkpoint that has one: create(name, pretrained=DIR)")
    return PipelineConfig(model=model,
                          tokenizer=TokenizerConfig(kind="openai", context_length=model.text.context_length),
                          preprocess=PreprocessConfig(image_size=model.vision.image_size))


def create(name: str, pretrained: str | None = None, device: str | torch.device = "cpu",
           precision: str = "fp32") -> Pipeline:
    """A Pipeline (model, matching preprocess and tokenizer, config) for a registered model name.

    Args:
        name: a name from ``list_models()``.
        pretrained: None for random weights; else a checkpoint directory or a name from ``list_pretrained()``,
            whose architecture must be ``name``'s.
        device: where the model goes.
        precision: "fp32", "bf16", "int8", "int8-image" or "auto" (see ``clipforge.precision``).

    Raises:
        UserError: an unknown name (listing the known ones), or weights of another architecture.
    """
    model_cfg = get_config(name)
    if pretrained is not None:
        pipe = load(pretrained, device=device, precision=precision)
        if pipe.config.model != model_cfg:
            raise UserError(f"{pretrained} holds another architecture than {name!r}",
                            hint="pass the name its weights were made for, or clipforge.load(path) alone")
        return pipe
    config = pipeline_config(model_cfg)
    model = CLIP(model_cfg).to(device).eval()
    return Pipeline(model=model, tokenizer=build_tokenizer(config.tokenizer, None),
                    preprocess=eval_transform(config.preprocess), config=config)


@dataclass
class ZeroShotClassifier:
    """Class embeddings from names and prompt templates (``eval.zeroshot.class_embeddings``), scored as the
    zero-shot benchmark scores them.

    Attributes:
        pipeline: the model, tokenizer and preprocess.
        classnames: the C classes, in order.
        weights: (C, D) unit class embeddings.
    """

    pipeline: Pipeline
    classnames: list[str]
    weights: torch.Tensor

    def probabilities(self, image: Any) -> dict[str, float]:
        """Each class's probability for one PIL image, best first: softmax over the classes for CLIP models,
        sigmoid per class for SigLIP models (``eval.zeroshot.class_probabilities``)."""
        model = self.pipeline.model
        param = next(model.parameters())
        with torch.inference_mode():
            pixels = self.pipeline.preprocess(image).unsqueeze(0).to(param.device, param.dtype)  # (1, 3, H, W)
            features = F.normalize(model.encode_image(pixels).float(), dim=-1).cpu()  # (1, D)
        scores, ranking = rank_classes(features, self.weights)  # (1, C) each
        probs = class_probabilities(scores, model)[0]  # (C,)
        return {self.classnames[i]: float(probs[i]) for i in ranking[0].tolist()}


def zero_shot_classifier(pipeline: Pipeline, classnames: Sequence[str],
                         templates: Sequence[str] | str = "openai") -> ZeroShotClassifier:
    """A zero-shot classifier: each class embedded through every template, averaged (CLIP, sec. 3.1.4).

    Args:
        pipeline: from ``create`` or ``load``.
        classnames: the class names.
        templates: prompt templates with a ``{}`` placeholder, or a named set (``eval.templates``: "openai" is
            CLIP's 80 ImageNet prompts, "short" its 7).
    """
    names = [c.strip() for c in classnames if c.strip()]
    if not names:
        raise UserError("no class names given")
    prompts = get_templates(templates) if isinstance(templates, str) else tuple(templates)
    return ZeroShotClassifier(pipeline, names, class_embeddings(pipeline, names, prompts).cpu())
