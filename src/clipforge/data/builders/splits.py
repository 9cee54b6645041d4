"""The split and table layout every builder writes (see clipforge.data.builders.emoji for the layout).

Classes are held out by a hash of their label, so the same class lands on the same side in every builder
and every subset; subgroups are held out whole for the stricter split. In hash order, the first 20% of the
classes are the held-out test classes and the next 10% the validation classes: unseen in training like the
test classes, they are what choices such as the zero-shot prompt set are made on, so that no choice looks at
a test class.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from clipforge.errors import UserError
from clipforge.utils.io import atomic_write_text

log = logging.getLogger(__name__)

HELDOUT_FRACTION = 0.2  # test classes
VAL_FRACTION = 0.1  # validation classes, taken after the test classes in hash order (the test split is unchanged)
SPLITS = ("train", "val", "trainval", "heldout", "train_strict", "heldout_subgroups")
STATS_FILE = "stats.json"  # counts and split sizes; its presence marks a finished build


def stable_hash(text: str) -> str:
    return hashlib.sha1(f"clipforge-emoji:{text}".encode()).hexdigest()


def split_classes(labels: list[str]) -> set[str]:
    """The held-out (test) classes: the first 20% of the distinct labels in hash order."""
    distinct = sorted(set(labels), key=stable_hash)
    return set(distinct[: round(HELDOUT_FRACTION * len(distinct))])


def validation_classes(labels: list[str]) -> set[str]:
    """The validation classes: the 10% of the distinct labels that follow the held-out ones in hash order."""
    distinct = sorted(set(labels), key=stable_hash)
    start = round(HELDOUT_FRACTION * len(distinct))
    return set(distinct[start : start + round(VAL_FRACTION * len(distinct))])


def split_subgroups(subgroups: list[str | None]) -> set[str]:
    """Whole subgroups, in hash order, until they hold >= 20% of the rows that have a subgroup.

    Args:
        subgroups: one entry per row (None: no subgroup; such rows always stay on the training side).
    """
    sizes: dict[str, int] = {}
    for sub in subgroups:
        if sub:
            sizes[sub] = sizes.get(sub, 0) + 1
    target, held, count = HELDOUT_FRACTION * sum(sizes.values()), set(), 0
    for sub in sorted(sizes, key=stable_hash):
        if count >= target:
            break
        held.add(sub)
        count += sizes[sub]
    return held


def unify_subgroups(rows: list[dict]) -> None:
    """Give every row of a class the first (group, subgroup) seen for that class, in place.

    So the strict split never puts one class on both sides.
    """
    first: dict[str, tuple] = {}
    for r in rows:
        if r.get("subgroup") is not None:
            first.setdefault(r["label"], (r.get("group"), r["subgroup"]))
    for r in rows:
        if r["label"] in first:
            r["group"], r["subgroup"] = first[r["label"]]


def check_existing(out: Path, size: int, limit: int | None, what: str) -> dict | None:
    """stats.json of a finished build with the same settings (to reuse), None to build; error on a size clash."""
    stats_path = out / STATS_FILE
    if not stats_path.exists():
        return None
    old = json.loads(stats_path.read_text())
    if old.get("size") != size:
        raise UserError(
            f"{out} holds {old.get('size')} px images, not {size} px", hint="choose another OUT or remove it"
        )
    if old.get("limit") == limit and all((out / f"{s}.jsonl").exists() for s in SPLITS):
        log.info("%s data set already built in %s; reusing it", what, out)
        return old
    return None


def write_split_tables(out: Path, rows: list[dict], extra: dict) -> dict:
    """Write train/val/trainval/heldout/train_strict/heldout_subgroups JSONL and stats.json; return the stats.

    Args:
        out: output folder.
        rows: one dict per image with at least "image" (relative to out), "captions", "label", "group",
            "subgroup".
        extra: more fields for stats.json (size, limit, source, ...).
    """
    if not rows:
        raise UserError(f"{out}: no images to write")
    unify_subgroups(rows)
    labels = [r["label"] for r in rows]
    heldout, val = split_classes(labels), validation_classes(labels)
    held_subs = split_subgroups([r["subgroup"] for r in rows])
    splits = {
        "train": [r for r in rows if r["label"] not in heldout and r["label"] not in val],
        "val": [r for r in rows if r["label"] in val],
        # Every non-test class: what a model that does not need unseen validation classes trains on (the demo).
        "trainval": [r for r in rows if r["label"] not in heldout],
        "heldout": [r for r in rows if r["label"] in heldout],
        "train_strict": [r for r in rows if r["subgroup"] not in held_subs and r["label"] not in val],
        "heldout_subgroups": [r for r in rows if r["subgroup"] in held_subs],
    }
    for name, split_rows in splits.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in split_rows)
        atomic_write_text(out / f"{name}.jsonl", text)

    def n_classes(split_rows: list[dict]) -> int:
        return len({r["label"] for r in split_rows})

    stats = {
        "images": len(rows),
        "classes": n_classes(rows),
        "train_classes": n_classes(splits["train"]),
        "val_classes": n_classes(splits["val"]),
        "heldout_classes": n_classes(splits["heldout"]),
        "splits": {k: {"images": len(v), "classes": n_classes(v)} for k, v in splits.items()},
        "heldout_subgroups": sorted(held_subs),
        "subgroups": len({r["subgroup"] for r in rows if r["subgroup"]}),
        "without_subgroup": sum(r["subgroup"] is None for r in rows),
        **extra,
    }
    atomic_write_text(out / STATS_FILE, json.dumps(stats, indent=1) + "\n")
    log.info(
        "%d images, %d classes (%d held out) in %s", stats["images"], stats["classes"], stats["heldout_classes"], out
    )
    return stats
