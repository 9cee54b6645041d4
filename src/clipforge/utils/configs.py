"""JSON round-trip for frozen config dataclasses.

Every config in clipforge is a frozen dataclass whose fields are plain JSON values, tuples or other
config dataclasses. ``to_dict``/``from_dict`` convert both ways; unknown keys are an error so a typo
in a YAML file or a config from a newer version never passes silently.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Convert a (nested) config dataclass to JSON-ready dicts and lists."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, recursing into nested dataclass fields.

    Raises:
        ValueError: on keys that ``cls`` does not have, naming them and the known ones.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown}; known keys: {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v) for k, v in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        for option in options:
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return from_dict(option, value)
        for option in options:
            if typing.get_origin(option) is tuple and isinstance(value, (list, tuple)):
                return _coerce(option, value)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)  # type: ignore[arg-type]
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        return tuple(_coerce(a, v) for a, v in zip(args, value, strict=True))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def save_json(cfg: Any, path: str | Path) -> None:
    """Write ``cfg`` (a dataclass or a dict) as indented JSON, atomically."""
    from clipforge.utils.io import atomic_write_text

    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def load_json(cls: type[T], path: str | Path) -> T:
    """Read a JSON file written by ``save_json`` back into ``cls``."""
    return from_dict(cls, json.loads(Path(path).read_text()))
