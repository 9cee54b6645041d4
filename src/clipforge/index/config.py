"""The configs of ``clipforge embed``, ``clipforge index`` and ``clipforge moderate``.

Plain frozen dataclasses read by ``clipforge.utils.configs`` (defaults <- YAML <- ``key=value``); this module
imports neither torch nor faiss, so ``--print-config`` stays instant. Each run writes its resolved config
into its output directory (``EMBED_CONFIG_FILE`` ...), next to what it produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clipforge.data.config import DEFAULT_MAX_PIXELS

EMBED_CONFIG_FILE = "embed_config.yaml"
INDEX_CONFIG_FILE = "index_config.yaml"
MODERATE_CONFIG_FILE = "moderate_config.yaml"


def _at_least(cfg: object, minimum: int, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class EmbedConfig:
    """Embed an image collection into an embedding directory (Parquet metadata + .npy vectors).

    Args:
        checkpoint: the clipforge checkpoint directory that embeds the images.
        src: a folder of images (recursive; a sidecar NAME.txt is the caption), a pairs table (CSV, TSV,
            JSONL, Parquet with image and caption columns), or WebDataset .tar shards.
        out: the embedding directory to create, or to resume (items already in it are skipped).
        batch_size: images per forward pass.
        workers: decoding worker processes per rank (0 decodes in the main process).
        dtype: stored vector precision; float16 halves the size and moves cosine scores by about 1e-3.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        image_column, caption_column: the columns of a pairs table.
        max_pixels: decoding budget per image in pixels; a larger image is skipped and counted, not decoded.
        precision: the model's arithmetic: fp32, bf16, int8 (CPU) or auto (see clipforge.precision); unset:
            fp32 on a CPU (exactly the model's features), auto on a GPU (bf16 autocast, fp32 normalization).
    """

    checkpoint: str = ""
    src: str = ""
    out: str = ""
    batch_size: int = 64
    workers: int = 2
    dtype: Literal["float16", "float32"] = "float16"
    device: str = "auto"
    image_column: str = "image"
    caption_column: str = "caption"
    max_pixels: int = DEFAULT_MAX_PIXELS
    precision: Literal["fp32", "bf16", "int8", "int8-image", "auto"] | None = None

    def __post_init__(self) -> None:
        _at_least(self, 1, "batch_size", "max_pixels")
        _at_least(self, 0, "workers")


@dataclass(frozen=True)
class IndexConfig:
    """Build a FAISS index over an embedding directory.

    Up to 200k vectors the index is exact (inner product); above, IVF with nlist ~ 4 sqrt(N) and the smallest
    nprobe reaching ``target_recall`` recall@10 against exact search on a sample of the vectors.

    Args:
        embeddings: the embedding directory from ``clipforge embed``.
        out: the index directory to write (or update, or delete from).
        kind: ``auto`` (by size), ``flat`` (exact) or ``ivf``.
        quant: IVF vector codec: ``none``, ``sq8`` or ``pq``.
        nlist: IVF lists; None = about 4 sqrt(N).
        nprobe: IVF lists probed per query; None = the smallest reaching ``target_recall``.
        m: PQ bytes per vector; None = dim / 8.
        target_recall: recall@10 the tuned nprobe reaches.
        recall_sample: queries sampled to measure recall.
        seed: seeds training-point choice, k-means and the recall queries.
    """

    embeddings: str = ""
    out: str = ""
    kind: Literal["auto", "flat", "ivf"] = "auto"
    quant: Literal["none", "sq8", "pq"] = "none"
    nlist: int | None = None
    nprobe: int | None = None
    m: int | None = None
    target_recall: float = 0.95
    recall_sample: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        _at_least(self, 1, "nlist", "nprobe", "m", "recall_sample")
        if not 0 < self.target_recall <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {self.target_recall}")


@dataclass(frozen=True)
class ModerateConfig:
    """Flag images whose similarity to a concept text passes the concept's threshold.

    Args:
        checkpoint: the clipforge checkpoint directory that scores the images.
        src: the images to check: a folder, pairs table, shards, or an embedding directory made with the
            same checkpoint (nothing is re-embedded then).
        concepts: the concepts YAML (names, prompts, optional thresholds).
        labelled: optional CSV ``path,concept,label`` (label 1 or 0) that calibrates the thresholds.
        precision: the precision a calibrated threshold reaches on the labelled set.
        out: the report directory.
        batch_size: images per forward pass.
        workers: decoding worker processes (0 decodes in the main process).
        device: where the model runs.
    """

    checkpoint: str = ""
    src: str = ""
    concepts: str = ""
    labelled: str = ""
    precision: float = 0.9
    out: str = ""
    batch_size: int = 64
    workers: int = 2
    device: str = "cpu"

    def __post_init__(self) -> None:
        _at_least(self, 1, "batch_size")
        _at_least(self, 0, "workers")
        if not 0 < self.precision <= 1:
            raise ValueError(f"precision must be in (0, 1], got {self.precision}")

