"""Chunks of an embedding run ("parts") and their merge into one embedding directory.

Each rank writes its results every few thousand images as ``parts/rank{R}-{T}-{S}.npz``-style pairs:
a ``.npy`` of vectors and a ``.parquet`` of metadata; the parquet is written last, so a part without it
is incomplete and ignored. A re-run reads every complete part (and the merged files) to skip done items.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipforge.index.manifest import (
    EMBED_MANIFEST,
    IMAGE_EMB_FILE,
    METADATA_FILE,
    PARTS_DIR,
    TEXT_EMB_FILE,
    EmbedManifest,
    read_embed_manifest,
)
from clipforge.utils.io import atomic_path, atomic_write_text


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def save_table(path: Path, columns: dict[str, list]) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(columns), tmp)


def write_part(out_dir: Path, name: str, meta: dict[str, list], image: np.ndarray, text: np.ndarray) -> None:
    """Write one finished chunk: vectors first, metadata last (its presence marks the chunk complete)."""
    parts = out_dir / PARTS_DIR
    save_npy(parts / f"{name}.image.npy", image)
    save_npy(parts / f"{name}.text.npy", text)
    save_table(parts / f"{name}.parquet", meta)


def _read_part(meta_path: Path) -> tuple[dict[str, list], np.ndarray, np.ndarray]:
    stem = meta_path.name[: -len(".parquet")]
    meta = pq.read_table(meta_path).to_pydict()
    image = np.load(meta_path.parent / f"{stem}.image.npy")
    text = np.load(meta_path.parent / f"{stem}.text.npy")
    return meta, image, text


def complete_parts(out_dir: Path) -> list[Path]:
    return sorted((out_dir / PARTS_DIR).glob("*.parquet"))


def read_merged(out_dir: Path) -> tuple[dict[str, list], np.ndarray | None, np.ndarray | None]:
    """The merged metadata and vectors of ``out_dir`` (empty when nothing was merged yet)."""
    if not (out_dir / METADATA_FILE).is_file():
        return {}, None, None
    meta = pq.read_table(out_dir / METADATA_FILE).to_pydict()
    return meta, np.load(out_dir / IMAGE_EMB_FILE), np.load(out_dir / TEXT_EMB_FILE)


def done_hashes(out_dir: Path) -> dict[str, str]:
    """path -> content hash of every item already embedded in ``out_dir`` (merged files and complete parts)."""
    done: dict[str, str] = {}
    sources = [out_dir / METADATA_FILE] if (out_dir / METADATA_FILE).is_file() else []
    for path in sources + complete_parts(out_dir):
        table = pq.read_table(path, columns=["path", "sha256"]).to_pydict()
        done.update(zip(table["path"], table["sha256"], strict=True))
    return done


def merge(out_dir: Path, base: EmbedManifest, skipped: dict[str, int]) -> EmbedManifest:
    """Fold every complete part into the merged files, give new rows ids, and rewrite embed.json.

    Rows of new parts replace merged rows with the same path (the file changed). New rows are sorted by
    path before ids are assigned, so ids do not depend on how many ranks ran. Ids are never reused:
    ``next_id`` only grows.
    """
    meta, image, text = read_merged(out_dir)
    next_id = base.next_id
    if (out_dir / EMBED_MANIFEST).is_file():
        next_id = max(next_id, read_embed_manifest(out_dir).next_id)
    new_rows: dict[str, tuple[dict, np.ndarray, np.ndarray]] = {}
    parts = complete_parts(out_dir)
    for part in parts:
        pmeta, pimage, ptext = _read_part(part)
        for i, path in enumerate(pmeta["path"]):
            new_rows[path] = ({k: pmeta[k][i] for k in pmeta}, pimage[i], ptext[i])
    keep = [i for i, p in enumerate(meta.get("path", [])) if p not in new_rows]
    columns = {k: [meta[k][i] for i in keep] for k in meta} if meta else {}
    images = [image[keep]] if image is not None else []
    texts = [text[keep]] if text is not None else []
    ordered = sorted(new_rows)
    if ordered:
        for key in ("path", "width", "height", "sha256", "caption"):
            columns.setdefault(key, []).extend(new_rows[p][0][key] for p in ordered)
        columns.setdefault("id", []).extend(range(next_id, next_id + len(ordered)))
        next_id += len(ordered)
        images.append(np.stack([new_rows[p][1] for p in ordered]))
        texts.append(np.stack([new_rows[p][2] for p in ordered]))
    dtype = np.dtype(base.dtype)
    all_image = np.concatenate(images).astype(dtype) if images else np.zeros((0, base.dim), dtype)
    all_text = np.concatenate(texts).astype(dtype) if texts else np.zeros((0, base.dim), dtype)
    columns = {k: columns.get(k, []) for k in ("id", "path", "width", "height", "sha256", "caption")}
    save_npy(out_dir / IMAGE_EMB_FILE, all_image)
    save_npy(out_dir / TEXT_EMB_FILE, all_text)
    save_table(out_dir / METADATA_FILE, columns)
    manifest = EmbedManifest(
        checkpoint=base.checkpoint,
        source=base.source,
        dtype=base.dtype,
        dim=int(all_image.shape[1]) if all_image.size else base.dim,
        count=len(columns["id"]),
        next_id=next_id,
        skipped=skipped,
    )
    atomic_write_text(out_dir / EMBED_MANIFEST, json.dumps(manifest.to_json(), indent=2) + "\n")
    for part in parts:  # merged: the chunks are no longer needed
        stem = part.name[: -len(".parquet")]
        part.unlink()
        for suffix in (".image.npy", ".text.npy"):
            (part.parent / f"{stem}{suffix}").unlink(missing_ok=True)
    return manifest
