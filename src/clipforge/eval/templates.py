"""Prompt template sets for zero-shot classification.

A template is a sentence with one placeholder, ``{}`` or ``{c}``, that the class name replaces. Sets:

- ``openai``: the 80 ImageNet prompts published with the CLIP paper (Radford et al., 2021, sec. 3.1.4);
  data file ``data/openai_imagenet_templates.txt`` (MIT, see ``data/LICENSE-CLIP-templates.txt``).
- ``short``: the 7 of those 80 that CLIP's prompt-engineering notebook selected.
- ``single``: ``a photo of a {}.`` alone, the paper's baseline prompt.
- ``plain``: the bare class name.
- ``emoji``: how emoji are named in captions ("an emoji of {}", "{} emoji", ...), for the emoji benchmarks.
- ``drawing``: how drawings and icons are described ("a drawing of {}", "{} icon", ...).
- any other value is read as a file path: one template per line, blank lines and ``#`` comments ignored.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from clipforge.errors import UserError

BUILTIN_SETS = ("openai", "short", "single", "plain", "emoji", "drawing")
_FILES = {"openai": "openai_imagenet_templates.txt", "short": "openai_short_templates.txt"}
_INLINE = {
    "single": ("a photo of a {}.",),
    "plain": ("{}",),
    "emoji": ("{}", "an emoji of {}", "{} emoji", "a picture of {}", "a drawing of {}"),
    "drawing": ("a drawing of {}", "{} icon", "a picture of {}", "a {} symbol", "a sketch of {}"),
}


def _parse_lines(text: str, source: str) -> tuple[str, ...]:
    templates = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.count("{}") + line.count("{c}") != 1:
            raise UserError(
                f"{source}:{lineno}: template {line!r} must contain exactly one placeholder",
                hint="write the class name's place as {} or {c}, e.g. 'a photo of a {}.'",
            )
        templates.append(line)
    if not templates:
        raise UserError(f"{source}: no templates found", hint="one template per line, e.g. 'a photo of a {}.'")
    return tuple(templates)


def get_templates(name: str) -> tuple[str, ...]:
    """Return a template set by name (see the module docstring) or read one from a file.

    Args:
        name: ``openai``, ``short``, ``single``, ``plain``, or a path to a text file.
    """
    if name in _INLINE:
        return _INLINE[name]
    if name in _FILES:
        text = resources.files("clipforge.eval").joinpath("data", _FILES[name]).read_text(encoding="utf-8")
        return _parse_lines(text, _FILES[name])
    path = Path(name)
    if not path.is_file():
        raise UserError(
            f"unknown template set {name!r} (not a built-in set and no such file)",
            hint=f"use one of {', '.join(BUILTIN_SETS)} or a file with one template per line",
        )
    return _parse_lines(path.read_text(encoding="utf-8"), str(path))


def fill(template: str, classname: str) -> str:
    """Put ``classname`` into ``template``'s placeholder.

    ``str.replace`` rather than ``str.format`` so braces inside class names are kept literally.

    Args:
        template: a sentence with one ``{}`` or ``{c}``.
        classname: the class name to insert.
    """
    if "{c}" in template:
        return template.replace("{c}", classname)
    return template.replace("{}", classname)
