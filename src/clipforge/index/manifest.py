"""What an embedding directory holds, and which checkpoint made it.

An embedding directory (written by ``clipforge embed``):
  embed.json         format, checkpoint {path, config_sha256, identity}, source {root, kind}, dtype, dim, count,
                     next_id
  metadata.parquet   one row per image: id, path, width, height, sha256, caption (row i <-> vector row i)
  image_emb.npy      (N, D) L2-normalized image embeddings, float16 by default (dtype=float32 to keep all bits;
                     float16 changes cosine scores by ~1e-3, which does not change rankings in practice)
  text_emb.npy       (N, D) L2-normalized caption embeddings; all-zero rows where an image has no caption
  parts/             per-rank chunks of an unfinished run (merged into the files above when a run completes)
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipforge.checkpoint import config_sha256, read_config, read_identity
from clipforge.errors import UserError

log = logging.getLogger(__name__)

EMBED_MANIFEST = "embed.json"
METADATA_FILE = "metadata.parquet"
IMAGE_EMB_FILE = "image_emb.npy"
TEXT_EMB_FILE = "text_emb.npy"
PARTS_DIR = "parts"
FORMAT_VERSION = 1


__all__ = ["checkpoint_fingerprint", "config_sha256", "same_checkpoint"]


def checkpoint_fingerprint(ckpt_dir: str | Path, identity: str | None = None) -> dict[str, str]:
    """``{"path", "config_sha256", "identity"}`` of a checkpoint: what embeddings and indexes record.

    ``identity`` (``checkpoint.checkpoint_identity``) covers config and weights, so step 300 and the final
    weights of one run differ; ``config_sha256`` is kept for directories made before identities existed.

    Args:
        ckpt_dir: the checkpoint directory.
        identity: its identity when already known (``Pipeline.identity``); read from config.json otherwise.
    """
    return {"path": str(Path(ckpt_dir).resolve()), "config_sha256": config_sha256(read_config(ckpt_dir)),
            "identity": identity or read_identity(ckpt_dir)}


def same_checkpoint(a: dict[str, str], b: dict[str, str]) -> bool:
    """Whether two recorded checkpoints are the same model: by identity (config + weights) when both record one.

    A directory made before identities were recorded has only the config hash; then only the configs can be
    compared, and a warning says so (re-embedding records the identity).
    """
    if a.get("identity") and b.get("identity"):
        return a["identity"] == b["identity"]
    log.warning("%s was recorded without the weights' identity (an older clipforge): only the model config is "
                "compared; re-run 'clipforge embed' and 'clipforge index' to record it",
                (a if not a.get("identity") else b).get("path", "a checkpoint"))
    return a.get("config_sha256") == b.get("config_sha256")


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
