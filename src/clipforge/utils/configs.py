"""The one config system: typed frozen dataclasses <- YAML file <- ``key=value`` overrides, and JSON round trips.

    cfg = resolve_config(TrainConfig, "configs/runs/tiny-emoji.yaml", ["optim.lr=1e-3", "model=tiny-vit"])
    write_resolved(cfg, run_dir)      # run_dir/config.yaml, the exact config the run used
    data = to_dict(cfg)               # plain JSON-ready dicts and lists
    cfg = from_dict(TrainConfig, data, source="run_dir/config.yaml")   # strict: the same checks as the CLI

Every config in clipforge is a frozen dataclass whose fields are plain JSON values, tuples or other config
dataclasses. Reading is strict everywhere (a checkpoint's config.json, a run's YAML, a CLI override): an
unknown key or a value of the wrong type is a UserError naming the dotted key, the source and the expected type,
so a typo or a config from a newer version never passes silently.

Keys are dotted paths into the nested config. Values in overrides are parsed as YAML scalars/lists (``1e-3``,
``true``, ``[0.9, 0.98]``, ``null``) and then checked against the field's type.

A field typed as a union of config dataclasses (``vision: ViTConfig | ResNetConfig``) is read by its ``kind``
key: every member has a ``kind: Literal["..."]`` field, and the mapping's ``kind`` picks the class. Setting
``model.vision.kind=resnet`` over a ViT starts the tower from ResNetConfig's defaults.

A field typed ``str | SomeConfig`` (e.g. a model given by registry name or in full) can be *expanded*: with
``expand={"model": get_config_dict}``, an override of ``model.vision.patch_dropout=0.5`` while ``model`` is a
name first replaces the name by its full config, then sets the nested key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from clipforge.errors import UserError
from clipforge.utils.io import atomic_write_text

T = TypeVar("T")
RESOLVED_CONFIG_FILE = "config.yaml"  # a training run's resolved config, in its run_dir (the default of write_resolved)
Expanders = Mapping[str, Callable[[str], dict[str, Any]]]


def resolve_config(
    cls: type[T],
    yaml_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    expand: Expanders | None = None,
) -> T:
    """Build ``cls`` from its defaults, then a YAML file, then ``key=value`` overrides.

    Args:
        cls: the top-level config dataclass.
        yaml_path: optional YAML (or JSON) file holding a (partial) nested mapping of the config.
        overrides: ``dotted.key=value`` strings, applied in order after the file.
        expand: for fields that may hold a name or a nested config, a function turning the name into the
            config's dict, used when an override reaches into the named config.

    Raises:
        UserError: naming the unknown key, the bad value and its expected type, or the unreadable file.
    """
    expand = expand or {}
    data = _defaults(cls)
    if yaml_path is not None:
        source = str(yaml_path)
        loaded = _read_yaml(Path(yaml_path))
        _merge(cls, data, loaded, prefix="", source=source, expand=expand)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"override {item!r} is not of the form key=value", hint="e.g. optim.lr=1e-3")
        value = _parse_scalar(raw)
        nested: dict[str, Any] = {}
        cur = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = value
        _merge(cls, data, nested, prefix="", source=f"override {item!r}", expand=expand)
    return from_dict(cls, data, source="config")


def from_dict(cls: type[T], data: Mapping[str, Any], source: str = "config") -> T:
    """Check ``data`` against ``cls`` field by field and construct it (nested dataclasses included).

    Args:
        cls: the config dataclass.
        data: a (nested) mapping, e.g. read from JSON or YAML; missing keys take the field defaults.
        source: where ``data`` came from, for error messages (a file name).

    Raises:
        UserError: naming the dotted key whose value has the wrong type, or an unknown key.
    """
    return _build(cls, data, prefix="", source=source)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Convert a (nested) config dataclass to JSON-ready dicts and lists."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_resolved(cfg: Any, out_dir: str | Path, name: str = RESOLVED_CONFIG_FILE) -> Path:
    """Write ``cfg`` (a config dataclass) as YAML into ``out_dir`` atomically; returns the file's path."""
    path = Path(out_dir) / name
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def require(cfg: Any, *keys: str, command: str = "") -> None:
    """Raise a UserError naming the first of ``keys`` that ``cfg`` leaves empty (a path the run needs).

    Args:
        cfg: a config dataclass whose required fields default to "" (so that its defaults construct).
        keys: the fields the run cannot do without, checked in order.
        command: the CLI verb, for the hint (e.g. ``embed``).
    """
    for key in keys:
        if not getattr(cfg, key):
            where = f"clipforge {command} ... {key}=..." if command else f"{key}=..."
            raise UserError(f"{key} is not set", hint=f"give it as {where} or in the config YAML")


def set_keys(yaml_path: str | Path | None, overrides: Sequence[str] = ()) -> tuple[set[str], dict[str, Any]]:
    """Which dotted keys a YAML file and a list of overrides set: (the file's keys, override key -> value).

    A nested mapping contributes its own key and every key below it (``model``, ``model.vision``, ...), so a
    caller can tell a replaced ``model`` (an override of the key itself) from one reached into.
    """
    file_keys: set[str] = set()

    def walk(mapping: Mapping[str, Any], prefix: str) -> None:
        for key, value in mapping.items():
            file_keys.add(prefix + str(key))
            if isinstance(value, Mapping):
                walk(value, f"{prefix}{key}.")

    if yaml_path is not None:
        walk(_read_yaml(Path(yaml_path)), "")
    given = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if sep:
            given[key.strip()] = _parse_scalar(raw)
    return file_keys, given


def load_resolved(cls: type[T], path: str | Path) -> T:
    """Read a config written by ``write_resolved`` (YAML) or as JSON back into ``cls``."""
    return from_dict(cls, _read_yaml(Path(path)), source=str(path))


# --- internals -----------------------------------------------------------------------------------------


def _defaults(cls: type) -> dict[str, Any]:
    return to_dict(cls())


def _read_yaml(path: Path) -> dict[str, Any]:
    hint = "pass the path of a YAML file, e.g. configs/runs/tiny-emoji.yaml"
    if path.is_dir():
        raise UserError(f"config file {path} is a directory", hint=hint)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist", hint=hint)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:  # an image or other binary file given by mistake
        raise UserError(f"config file {path} is not a text file (byte {exc.start} is not UTF-8)", hint=hint) from exc
    try:
        loaded = yaml.safe_load(text) if path.suffix != ".json" else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        # YAML's own message spans several lines (a caret under the spot); the first names the problem.
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        first = (getattr(exc, "problem", None) or str(exc)).strip().splitlines()[0]
        raise UserError(f"{path}: not valid YAML{line}: {first}", hint="check the indentation and the quotes") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
    return loaded


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def _field_hints(cls: type) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(cls)
    return {n: hints[n] for n in names}


def _unknown(key: str, prefix: str, known: Sequence[str], source: str) -> UserError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {prefix}{close[0]}?" if close else f"known keys under {prefix or 'the top level'}: "
    if not close:
        hint += ", ".join(sorted(known))
    return UserError(f"{source}: unknown key {prefix + key!r}", hint=hint)


def _dataclass_options(hint: Any) -> list[type]:
    """The config dataclasses ``hint`` admits: itself, or the dataclass members of a union."""
    if dataclasses.is_dataclass(hint):
        return [hint]  # type: ignore[list-item]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    return []


def _kind(cls: type) -> str | None:
    """A union member's tag: the one value of its ``kind: Literal["..."]`` field (None if it has none)."""
    hint = _field_hints(cls).get("kind")
    if typing.get_origin(hint) is typing.Literal and len(typing.get_args(hint)) == 1:
        return typing.get_args(hint)[0]
    return None


def _pick(options: list[type], data: Mapping[str, Any], key: str, source: str) -> type:
    """The dataclass a mapping describes: the only option, or the union member its ``kind`` names."""
    if len(options) == 1:
        return options[0]
    kinds = {_kind(option): option for option in options}
    if None in kinds:  # a programming error in a config definition, not a user error
        raise TypeError(f"every member of a config union needs a kind tag: {[o.__name__ for o in options]}")
    kind = data.get("kind")
    if kind in kinds:
        return kinds[kind]
    names = ", ".join(repr(k) for k in kinds)
    if kind is None:
        raise UserError(f"{source}: {key}.kind is missing", hint=f"say which kind of {key} this is: one of {names}")
    raise UserError(f"{source}: {key}.kind = {kind!r} is not one of {names}")


def _merge(cls: type, base: dict[str, Any], new: Mapping[str, Any], prefix: str, source: str, expand: Expanders) -> None:
    """Deep-merge ``new`` into ``base`` (both plain dicts of ``cls``), checking every key exists."""
    if not isinstance(new, Mapping):
        raise UserError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {new!r}")
    hints = _field_hints(cls)
    for key, value in new.items():
        if key not in hints:
            raise _unknown(str(key), prefix, list(hints), source)
        options = _dataclass_options(hints[key])
        path = f"{prefix}{key}"
        if options and isinstance(value, Mapping):
            current = base.get(key)
            if isinstance(current, str) and path in expand:
                current = expand[path](current)  # a registry name, reached into: use its full config
            if not isinstance(current, dict) or value.get("kind", current.get("kind")) != current.get("kind"):
                # Nothing to merge into, or another kind of tower: start from that kind's own defaults.
                current = _defaults(_pick(options, value, path, source))
            base[key] = current
            _merge(_pick(options, current, path, source), current, value, prefix=f"{path}.", source=source,
                   expand=expand)
        else:
            _check(hints[key], value, path, source)  # fail here, where the source of the value is known
            base[key] = value


def _build(cls: type[T], data: Mapping[str, Any], prefix: str, source: str) -> T:
    if not isinstance(data, Mapping):
        raise UserError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = _field_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise _unknown(str(key), prefix, list(hints), source)
        kwargs[key] = _check(hints[key], value, f"{prefix}{key}", source)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{source}: invalid {prefix.rstrip('.') or cls.__name__}: {exc}",
                        hint="--print-config shows every key with its value") from exc


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check(hint: Any, value: Any, key: str, source: str) -> Any:
    """Return ``value`` converted to ``hint`` (int->float, list->tuple, dict->dataclass) or raise UserError."""

    def bad() -> UserError:
        return UserError(f"{source}: {key} = {value!r} is not a valid {_type_name(hint)}")

    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        options = _dataclass_options(hint)
        if options and isinstance(value, Mapping):  # errors name the nested key
            return _build(_pick(options, value, key, source), value, prefix=f"{key}.", source=source)
        for arg in args:
            if arg is type(None) or dataclasses.is_dataclass(arg):
                continue
            try:
                return _check(arg, value, key, source)
            except UserError:
                continue
        raise UserError(f"{source}: {key} = {value!r} is not a valid {' or '.join(_type_name(a) for a in args)}")
    if origin is typing.Literal:
        if value in typing.get_args(hint):
            return value
        raise bad()
    if dataclasses.is_dataclass(hint):
        if isinstance(value, Mapping):
            return _build(hint, value, prefix=f"{key}.", source=source)  # type: ignore[arg-type]
        raise UserError(f"{source}: {key} must be a mapping of {hint.__name__} fields, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad()
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(args) != len(value):
            raise UserError(f"{source}: {key} = {value!r} must have {len(args)} items")
        return tuple(_check(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin in (list, dict):
        if not isinstance(value, origin):
            raise bad()
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string (no dot); accept what float() accepts
            try:
                return float(value)
            except ValueError:
                raise bad() from None
        raise bad()
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad()
    return value
