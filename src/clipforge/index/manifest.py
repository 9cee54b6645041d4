"""What an embedding directory holds, and which checkpoint made it.

An embedding directory (written by ``clipforge embed``):
  embed.json         format, checkpoint {path, config_sha256}, source {root, kind}, dtype, dim, count, next_id
  metadata.parquet   one row per image: id, path, width, height, sha256, caption (row i <-> vector row i)
  image_emb.npy      (N, D) L2-normalized image embeddings, float16 by default (dtype=float32 to keep all bits;
                     float16 changes cosine scores by ~1e-3, which does not change rankings in practice)
  text_emb.npy       (N, D) L2-normalized caption embeddings; all-zero rows where an image has no caption
  parts/             per-rank chunks of an unfinished run (merged into the files above when a run completes)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipforge.checkpoint import read_config
from clipforge.errors import UserError
from clipforge.utils.configs import to_dict

EMBED_MANIFEST = "embed.json"
METADATA_FILE = "metadata.parquet"
IMAGE_EMB_FILE = "image_emb.npy"
TEXT_EMB_FILE = "text_emb.npy"
PARTS_DIR = "parts"
FORMAT_VERSION = 1


def checkpoint_fingerprint(ckpt_dir: str | Path) -> dict[str, str]:
    """``{"path", "config_sha256"}`` of a checkpoint: the config hash proves later queries use the same model.

    The hash covers the canonical JSON of config.json (model, tokenizer and preprocessing), so two
    checkpoints with the same architecture but different preprocessing get different hashes.
    """
    return {"path": str(Path(ckpt_dir).resolve()), "config_sha256": config_sha256(read_config(ckpt_dir))}


def config_sha256(config: Any) -> str:
    """Hex SHA-256 of a config's canonical JSON (sorted keys, no spaces): equal configs, equal hashes.

    Args:
        config: a frozen config dataclass, e.g. a ``PipelineConfig``.
    """
    canonical = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def content_hash(data: bytes) -> str:
    """Hex digest of an image's bytes (BLAKE2b-128): a changed file is re-embedded, an unchanged one skipped."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True)
class EmbedManifest:
    """The parsed embed.json of an embedding directory."""

    checkpoint: dict[str, str]
    source: dict[str, str]
    dtype: str
    dim: int
    count: int
    next_id: int
    skipped: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "checkpoint": self.checkpoint,
            "source": self.source,
            "dtype": self.dtype,
            "dim": self.dim,
            "count": self.count,
            "next_id": self.next_id,
            "skipped": self.skipped,
        }


def read_embed_manifest(emb_dir: str | Path) -> EmbedManifest:
    """Parse ``emb_dir/embed.json``.

    Raises:
        UserError: when the directory is not a finished embedding directory.
    """
    path = Path(emb_dir) / EMBED_MANIFEST
    if not path.is_file():
        raise UserError(
            f"{emb_dir} is not an embedding directory: {path} is missing",
            hint="create one with 'clipforge embed CKPT SRC OUT_DIR' (an interrupted run resumes when re-run)",
        )
    try:
        raw = json.loads(path.read_text())
        return EmbedManifest(
            checkpoint=raw["checkpoint"],
            source=raw["source"],
            dtype=raw["dtype"],
            dim=int(raw["dim"]),
            count=int(raw["count"]),
            next_id=int(raw["next_id"]),
            skipped=dict(raw.get("skipped", {})),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: invalid embedding manifest ({exc})") from exc
