"""clipforge: train, import, evaluate and serve CLIP models with one checkpoint manifest.

    import clipforge
    pipeline = clipforge.load("ckpt/vit-b-32")      # model, tokenizer, preprocess, config
    clipforge.list_models(), clipforge.list_pretrained()
    pipeline = clipforge.create("tiny-vit")         # by name: the model's own image size and tokenizer
    classifier = clipforge.zero_shot_classifier(pipeline, ["cat", "dog"], templates=["a photo of a {}."])
    classifier.probabilities(pil_image)            # {"cat": 0.71, "dog": 0.29}

The names below are resolved on first use (PEP 562) so that ``import clipforge`` — which every CLI start
does — does not pay for importing torch until a command needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clipforge.api import ZeroShotClassifier as ZeroShotClassifier
    from clipforge.api import create as create
    from clipforge.api import list_models as list_models
    from clipforge.api import list_pretrained as list_pretrained
    from clipforge.api import zero_shot_classifier as zero_shot_classifier
    from clipforge.checkpoint import PipelineConfig as PipelineConfig
    from clipforge.pipeline import Pipeline as Pipeline
    from clipforge.pipeline import load as load

__version__ = "0.1.0"
# public name -> the module that defines it
_EXPORTS = {"Pipeline": "clipforge.pipeline", "load": "clipforge.pipeline", "PipelineConfig": "clipforge.checkpoint",
            "create": "clipforge.api", "list_models": "clipforge.api", "list_pretrained": "clipforge.api",
            "zero_shot_classifier": "clipforge.api", "ZeroShotClassifier": "clipforge.api"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clipforge' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
