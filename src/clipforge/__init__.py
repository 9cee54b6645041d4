"""clipforge: train, import, evaluate and serve CLIP models with one checkpoint manifest."""

from clipforge.pipeline import Pipeline, PipelineConfig, load

__all__ = ["Pipeline", "PipelineConfig", "load"]
__version__ = "0.1.0"
