"""Google or Twitter emoji artwork from the npm packages ``emoji-datasource-google`` / ``-twitter`` (MIT data).

Each package ships 64 px PNGs (img/<style>/64/) and an emoji.json with names, short names, Unicode
category and subcategory. Names come from the ``emoji`` package where it knows the code points (so labels
match the OpenMoji set and a class is held out in both), else from the package's own name, lowercased.
Same output layout and split as ``clipforge data emoji``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from PIL import Image

from clipforge.data.builders.emoji import EmojiItem, _base, _clean, _without_tones, captions_for, emoji_names
from clipforge.data.builders.splits import check_existing, write_split_tables
from clipforge.errors import UserError

STYLES = ("google", "twitter")
# From the package README: the data is MIT; the artwork keeps its makers' licences.
ARTWORK_LICENSES = {"google": "Noto emoji artwork: Apache-2.0", "twitter": "Twemoji artwork: CC-BY-4.0"}
VERSION = "16.0.0"  # the release these paths were checked against (img/<style>/64/, emoji.json fields)


def install_command(style: str, npm_dir: Path) -> str:
    return f"npm install --prefix {npm_dir} emoji-datasource-{style}@{VERSION}"


def package_dir(style: str, npm_dir: str | Path, install: bool = False) -> Path:
    """The installed package folder; runs npm when ``install`` is set, else says how to install it."""
    if style not in STYLES:
        raise UserError(f"unknown emoji style '{style}'", hint=f"use one of {', '.join(STYLES)}")
    npm_dir = Path(npm_dir)
    pkg = npm_dir / "node_modules" / f"emoji-datasource-{style}"
    if not (pkg / "emoji.json").exists() and install:
        if shutil.which("npm") is None:
            raise UserError("npm is not installed", hint="apt-get install -y npm")
        subprocess.run(install_command(style, npm_dir).split(), check=True)
    if not (pkg / "emoji.json").exists():
        raise UserError(
            f"{pkg}: npm package not found", hint=f"run: {install_command(style, npm_dir)} (or pass --install)"
        )
    return pkg


def _entries(data: list[dict]) -> list[tuple[dict, dict]]:
    """(entry, parent entry) for every emoji and each of its skin-tone variations."""
    out = []
    for entry in data:
        out.append((entry, entry))
        out += [(var, entry) for var in (entry.get("skin_variations") or {}).values()]
    return out


def build_emoji_datasource(
    out: str | Path,
    style: str = "google",
    npm_dir: str | Path = "data_cache/npm",
    *,
    size: int = 64,
    limit: int | None = None,
    install: bool = False,
) -> dict:
    """Copy (or resize) the PNGs into ``out/images`` and write the split tables; returns stats.json's content.

    Args:
        out: output folder (images already there are reused).
        style: "google" or "twitter".
        npm_dir: the npm prefix the package is installed under.
        size: image side; 64 copies the files, other sizes resize them (Lanczos).
        limit: only the first ``limit`` images (quick tests).
        install: run npm if the package is missing.
    """
    out = Path(out)
    if (old := check_existing(out, size, limit, f"emoji-datasource-{style}")) is not None:
        return old
    pkg = package_dir(style, npm_dir, install)
    names = emoji_names()
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows, missing = [], 0
    for entry, parent in _entries(json.loads((pkg / "emoji.json").read_text(encoding="utf-8"))):
        src = pkg / "img" / style / "64" / entry["image"]
        if not src.is_file():
            missing += 1
            continue
        cp = entry["unified"].upper()
        own = names.get(cp) or names.get(cp.replace("-FE0F", ""))
        base = names.get(_base(cp))
        name = _clean(own["en"]) if own else entry.get("name", parent["name"]).lower()
        label = _clean(base["en"]) if base else _without_tones(name) if own else parent["name"].lower()
        aliases = tuple(a.replace("_", " ").replace("-", " ") for a in parent.get("short_names", ()))
        item = EmojiItem(
            cp,
            name,
            label,
            tuple(a for a in dict.fromkeys(aliases) if a != name),
            parent["category"],
            parent["subcategory"],
        )
        dst = images / f"{cp}.png"
        if not dst.exists():
            if size == 64:
                shutil.copyfile(src, dst)
            else:
                with Image.open(src) as img:
                    img.convert("RGBA").resize((size, size), Image.Resampling.LANCZOS).save(dst)
        rows.append(
            {
                "image": f"images/{cp}.png",
                "captions": captions_for(item),
                "label": label,
                "group": item.group,
                "subgroup": item.subgroup,
                "codepoints": cp,
            }
        )
        if limit is not None and len(rows) >= limit:
            break
    extra = {
        "missing_images": missing,
        "size": size,
        "limit": limit,
        "source": f"emoji-datasource-{style}",
        "license": ARTWORK_LICENSES[style],
    }
    return write_split_tables(out, rows, extra)
