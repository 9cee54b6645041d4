"""Dataset reinforcement (MobileCLIP, Vasu et al. 2024, section 3.1): a teacher's outputs stored once with the data.

``reinforce(teacher, src, out, augmentations=K)`` writes WebDataset shards in which every sample holds

    <key>.<ext>                  the source image, byte for byte
    <key>.txt                    its captions, one per line
    <key>.aug.json               K random augmentations: crop box in the image's pixels and silhouette level
    <key>.teacher.safetensors    the teacher's L2-normalized embeddings: "image" (K, E) of each augmentation,
                                 rendered with the teacher's own preprocessing; "text" (C, E) of each caption

plus ``shards.json`` (sample counts) and ``reinforce.json`` (this manifest: teacher, its logit scale, settings,
progress). Training on such shards (loss.kind=distill, no teacher given) picks one stored augmentation per
sample and epoch, renders exactly that crop for the student and reads the teacher's embeddings of it from the
shard: the teacher never runs again (clipforge.data.teacher).

Resumable: shard i always holds source items [i * shard_size, (i + 1) * shard_size), each shard is written
atomically and recorded in the manifest, and an interrupted run continues after the last finished shard.
An item's augmentations are drawn from a generator seeded by (seed, item index), so a rerun writes the same
shards. Images that cannot be decoded and items without captions are skipped and counted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clipforge.checkpoint import WEIGHTS_FILE
from clipforge.data.datasets import seed_of
from clipforge.data.shards import INDEX_FILE
from clipforge.data.skips import SkipStats
from clipforge.data.sources import Item, Source, expand_shards, is_shard_spec, open_source, read_bytes
from clipforge.data.teacher import EMBED_MEMBER, TeacherPrep, encode_reinforced
from clipforge.data.transforms import Augmentation, BadImageError, ImageTooLarge, TrainTransform, load_image
from clipforge.errors import UserError
from clipforge.pipeline import load
from clipforge.utils.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

MANIFEST_FILE = "reinforce.json"
SHARD_NAME = "shard-{:06d}.tar"


@dataclass(frozen=True)
class ReinforceSettings:
    """What decides the shards' content; a resumed run must use the same.

    Args:
        augmentations: K, the random views stored per image.
        crop_scale: area range of the random resized crops.
        silhouette: probability of the silhouette view per augmentation (data.transforms.silhouette).
        seed: seeds every image's augmentations (with its index).
        shard_size: source items per shard.
    """

    augmentations: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    silhouette: float = 0.0
    seed: int = 0
    shard_size: int = 1000

    def __post_init__(self) -> None:
        if self.augmentations < 1 or self.shard_size < 1:
            raise UserError(f"--augmentations and --shard-size must be >= 1, got {self.augmentations}, {self.shard_size}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise UserError(f"--crop-scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        if not 0 <= self.silhouette <= 1:
            raise UserError(f"--silhouette must be a probability, got {self.silhouette}")


@dataclass
class Manifest:
    """``reinforce.json``: the teacher, its temperature, the settings and which shards are done."""

    teacher: str
    teacher_sha256: str
    logit_scale: float
    logit_bias: float | None
    embed_dim: int
    source: str
    items: int
    settings: ReinforceSettings
    shards: list[dict[str, Any]] = field(default_factory=list)  # {"name", "count", "skipped": {reason: n}}
    complete: bool = False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1) + "\n"

    @staticmethod
    def from_json(text: str, source: str) -> Manifest:
        try:
            data = json.loads(text)
            data["settings"] = ReinforceSettings(**{**data["settings"],
                                                    "crop_scale": tuple(data["settings"]["crop_scale"])})
            return Manifest(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{source}: not a readable {MANIFEST_FILE} ({exc})",
                            hint="write the shards again with 'clipforge data reinforce'") from exc


def read_manifest(spec: str) -> Manifest | None:
    """The manifest of reinforced shards named by a training data spec; None for anything else."""
    if not spec or not is_shard_spec(spec):
        return None
    path = Path(expand_shards(spec)[0]).parent / MANIFEST_FILE
    if not path.is_file():
        return None
    manifest = Manifest.from_json(path.read_text(encoding="utf-8"), str(path))
    if not manifest.complete:
        raise UserError(f"{path.parent}: the reinforced shards are incomplete",
                        hint="finish them by running the same 'clipforge data reinforce' command again")
    return manifest


@dataclass
class ReinforceResult:
    written: int
    shards: int
    skipped: dict[str, int]
    resumed_shards: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Encoder:
    """The teacher model: normalized embeddings of views and captions, in batches, without gradients."""

    def __init__(self, pipe: Any, batch_size: int) -> None:
        self.model, self.batch_size = pipe.model, batch_size
        self.prep = TeacherPrep(pipe.config.preprocess, pipe.tokenizer)
        self.device = next(self.model.parameters()).device

    @torch.no_grad()
    def images(self, views: list[torch.Tensor]) -> torch.Tensor:
        out = [self.model.encode_image(torch.stack(views[i : i + self.batch_size]).to(self.device))
               for i in range(0, len(views), self.batch_size)]  # fmt: skip
        return F.normalize(torch.cat(out).float(), dim=-1).cpu()  # (N, E)

    @torch.no_grad()
    def texts(self, captions: list[str]) -> torch.Tensor:
        out = [self.model.encode_text(self.prep.tokenizer(captions[i : i + self.batch_size]).to(self.device))
               for i in range(0, len(captions), self.batch_size)]  # fmt: skip
        return F.normalize(torch.cat(out).float(), dim=-1).cpu()  # (N, E)


def _load(source: Source, item: Item, skipped: SkipStats) -> tuple[bytes, Any] | None:
    """The item's raw bytes and decoded image, or None (skipped and counted)."""
    if not item.captions:
        skipped.add(item.caption_error or "empty_caption", item.path)
        return None
    try:
        raw = read_bytes(source.root, item.path)
        return raw, load_image(raw, item.path)
    except (OSError, KeyError):
        skipped.add("missing", item.path)
    except ImageTooLarge:
        skipped.add("too_large", item.path)
    except BadImageError:
        skipped.add("corrupt", item.path)
    return None


def _write_shard(path: Path, samples: list[dict[str, bytes]]) -> None:
    """A tar of the samples' members (``<key>.<ext>``), written atomically with fixed metadata."""
    with atomic_path(path) as tmp, tarfile.open(tmp, "w") as tar:
        for sample in samples:
            key = sample["__key__"].decode()
            for ext, data in sample.items():
                if ext == "__key__":
                    continue
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))


def _reinforce_shard(source: Source, lo: int, hi: int, enc: _Encoder, sampler: TrainTransform,
                     settings: ReinforceSettings, skipped: SkipStats) -> list[dict[str, bytes]]:
    """The samples of source items [lo, hi): augmentations, teacher embeddings, members."""
    kept, views, captions = [], [], []
    for index in range(lo, hi):
        item = source.items[index]
        loaded = _load(source, item, skipped)
        if loaded is None:
            continue
        raw, img = loaded
        gen = torch.Generator().manual_seed(seed_of(settings.seed, index))
        augs = [sampler.sample(img, gen) for _ in range(settings.augmentations)]
        views += [enc.prep.view(img, a) for a in augs]  # K views at the teacher's size
        captions += list(item.captions)
        kept.append((index, item, raw, augs))
    if not kept:
        return []
    image, text = enc.images(views), enc.texts(captions)  # (n * K, E), (sum C, E)
    samples, t = [], 0
    k = settings.augmentations
    for j, (index, item, raw, augs) in enumerate(kept):
        c = len(item.captions)
        members = encode_reinforced(augs, image[j * k : (j + 1) * k], text[t : t + c])
        t += c
        ext = Path(item.path.split("#")[-1]).suffix.lower().lstrip(".") or "png"
        samples.append({"__key__": f"{index:09d}".encode(), ext: raw, "txt": "\n".join(item.captions).encode(),
                        **members})  # fmt: skip
    return samples


def _start(manifest: Manifest, out: Path) -> Manifest:
    """The manifest to continue from: the one in ``out`` if it was written for the same job, else ``manifest``."""
    path = out / MANIFEST_FILE
    if not path.is_file():
        return manifest
    old = Manifest.from_json(path.read_text(encoding="utf-8"), str(path))
    same = (old.teacher_sha256, old.source, old.items, old.settings) == (
        manifest.teacher_sha256, manifest.source, manifest.items, manifest.settings)  # fmt: skip
    if not same:
        raise UserError(f"{out} holds reinforced shards of another teacher, source or settings",
                        hint="write to a new --out folder, or repeat the original command to resume it")
    return old


def reinforce(
    teacher: str | Path,
    src: str | Path,
    out: str | Path,
    settings: ReinforceSettings,
    *,
    image_column: str = "image",
    caption_column: str = "caption",
    batch_size: int = 64,
    device: str = "cpu",
    on_shard: Callable[[int, int], None] | None = None,
) -> ReinforceResult:
    """Write reinforced shards of ``src`` with ``teacher``'s embeddings (module docstring).

    Args:
        teacher: a clipforge checkpoint directory.
        src: a folder, table or shards (clipforge.data.sources).
        out: the folder for the shards, shards.json and reinforce.json; an unfinished job there is resumed.
        settings: augmentations per image, their distribution, seed and shard size.
        image_column, caption_column: for tables.
        batch_size: images per teacher forward.
        device: where the teacher runs.
        on_shard: called as ``on_shard(done, total)`` after each shard (tests stop a run part-way with it).
    """
    if not (Path(teacher) / WEIGHTS_FILE).is_file():
        raise UserError(f"{teacher}: not a clipforge checkpoint directory (no {WEIGHTS_FILE})",
                        hint="train or convert the teacher first; its folder holds config.json and model.safetensors")
    pipe = load(teacher, device=device)
    source = open_source(src, image_column, caption_column, require_captions=True)
    scale = pipe.model.temperature().item()  # what its forward multiplies the similarities by
    bias = pipe.model.logit_bias.item() if pipe.model.logit_bias is not None else None
    fresh = Manifest(str(teacher), _sha256(Path(teacher) / WEIGHTS_FILE), scale, bias, pipe.config.model.embed_dim,
                     str(src), len(source), settings)  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = _start(fresh, out)
    n_shards = math.ceil(len(source) / settings.shard_size)
    done = {s["name"] for s in manifest.shards}
    resumed = len(done)
    enc = _Encoder(pipe, batch_size)
    sampler = TrainTransform(pipe.config.preprocess, True, settings.crop_scale, silhouette_p=settings.silhouette)
    started, todo = time.perf_counter(), n_shards - resumed
    for i in range(n_shards):
        name = SHARD_NAME.format(i)
        if name in done:
            continue
        skipped = SkipStats()
        lo, hi = i * settings.shard_size, min((i + 1) * settings.shard_size, len(source))
        samples = _reinforce_shard(source, lo, hi, enc, sampler, settings, skipped)
        if samples:
            _write_shard(out / name, samples)
        manifest.shards.append({"name": name, "count": len(samples), "skipped": dict(skipped.counts)})
        atomic_write_text(out / MANIFEST_FILE, manifest.to_json())
        finished = len(manifest.shards) - resumed
        eta = (time.perf_counter() - started) / finished * (todo - finished)
        log.info("reinforced shard %d/%d: %d samples, %d skipped; ETA %.0f s", len(manifest.shards), n_shards,
                 len(samples), skipped.total, eta)
        if on_shard is not None:
            on_shard(len(manifest.shards), n_shards)
    return _finish(manifest, out, resumed)


def _finish(manifest: Manifest, out: Path, resumed: int) -> ReinforceResult:
    written = [s for s in manifest.shards if s["count"] > 0]
    if not written:
        raise UserError(f"{manifest.source}: no usable samples to reinforce")
    skipped = SkipStats()
    for s in manifest.shards:
        skipped.update(s["skipped"])
    index = {"shards": [{"name": s["name"], "count": s["count"]} for s in written],
             "total": sum(s["count"] for s in written), "skipped": dict(skipped.counts)}  # fmt: skip
    atomic_write_text(out / INDEX_FILE, json.dumps(index, indent=1) + "\n")
    manifest.complete = True
    atomic_write_text(out / MANIFEST_FILE, manifest.to_json())
    return ReinforceResult(index["total"], len(written), dict(skipped.counts), resumed)


__all__ = ["EMBED_MEMBER", "MANIFEST_FILE", "Augmentation", "Manifest", "ReinforceSettings", "read_manifest",
           "reinforce"]  # fmt: skip
