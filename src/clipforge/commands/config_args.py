"""Command-line arguments of the verbs that run experiments (eval, embed, index, moderate): one typed config each.

    clipforge VERB [POSITIONAL ...] [KEY=VALUE ...] [--config YAML] [--print-config]

The config is built as everywhere in clipforge (``clipforge.utils.configs``): the dataclass defaults, then
the ``--config`` YAML, then the positionals (shorthands for the verb's first keys, e.g. the checkpoint),
then the ``KEY=VALUE`` overrides. A word is an override when the text before its first ``=`` is a dotted
key (``suite.limit=100``); a path such as ``runs/lr=1e-3/final`` is a positional.

Flags of clipforge 0.1 that became config keys are refused with a one-line error that spells out the key
to write instead (``RETIRED`` maps each to a template of the replacement).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml

from clipforge.errors import UserError
from clipforge.utils.configs import resolve_config, to_dict

T = TypeVar("T")
# clipforge.precision.PRECISIONS, repeated here so that `--help` does not import torch (a test keeps them equal).
PRECISIONS = ("fp32", "bf16", "int8", "int8-image", "auto")
PRECISION_HELP = "model arithmetic: fp32 (default), bf16, int8 (CPU only), int8-image (image tower int8, text fp32; CPU), auto (per tower, the fastest that matches fp32)"
_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=")


def add_config_arguments(parser: argparse.ArgumentParser, positionals: Sequence[str]) -> None:
    """Add ``[POSITIONAL ...] [KEY=VALUE ...]``, ``--config`` and ``--print-config`` to a verb's parser.

    Args:
        parser: the verb's parser.
        positionals: the config keys the leading plain words set, in order (e.g. ``("checkpoint", "src")``).
    """
    names = " ".join(k.upper() for k in positionals)
    parser.add_argument(
        "items", nargs="*", metavar="ARG",
        help=f"{names} (in this order, each also settable as a key), then KEY=VALUE config overrides",
    )  # fmt: skip
    parser.add_argument("--config", metavar="YAML", default=None, help="a YAML file of config keys (before KEY=VALUE)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")


def split_items(items: Sequence[str], positionals: Sequence[str]) -> list[str]:
    """The overrides ``items`` stands for: positional words become ``KEY="word"``, in ``positionals`` order.

    Raises:
        UserError: for more plain words than the verb has positionals.
    """
    overrides, plain = [], []
    for item in items:
        (overrides if _OVERRIDE.match(item) else plain).append(item)
    if len(plain) > len(positionals):
        extra = plain[len(positionals)]
        names = " ".join(k.upper() for k in positionals)
        raise UserError(f"unexpected argument {extra!r}: this verb takes {len(positionals)} positionals ({names})",
                        hint="settings are KEY=VALUE, e.g. batch_size=32; --print-config lists the keys")
    # A JSON string is a quoted YAML scalar: a path stays a string even when it reads like a number or a bool.
    return [f"{key}={json.dumps(word)}" for key, word in zip(positionals, plain, strict=False)] + overrides


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision MODE``: shorthand for the config key ``precision=MODE`` (applied after the overrides)."""
    parser.add_argument("--precision", default=None, choices=PRECISIONS, help=PRECISION_HELP)


def resolve_args(cls: type[T], args: argparse.Namespace, positionals: Sequence[str]) -> T:
    """The verb's config from parsed arguments: defaults <- ``--config`` <- positionals <- ``KEY=VALUE``."""
    overrides = split_items(args.items, positionals)
    if getattr(args, "precision", None):
        overrides.append(f"precision={args.precision}")
    return resolve_config(cls, args.config, overrides)


def print_config(cfg: Any) -> None:
    """Print a resolved config as the YAML ``--config`` reads."""
    sys.stdout.write(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def check_retired(argv: Sequence[str], retired: Mapping[str, str]) -> None:
    """Refuse a flag that became a config key, naming the key (``retired``: flag -> replacement template).

    A template's ``{}`` receives the value that followed the flag (``--limit 5`` -> ``suite.limit=5``).

    Raises:
        UserError: for the first retired flag in ``argv``.
    """
    for i, token in enumerate(argv):
        flag, eq, inline = token.partition("=")
        if flag not in retired:
            continue
        value = inline if eq else (argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else "VALUE")
        replacement = retired[flag].format(value)
        raise UserError(f"{flag} is now a config key: write {replacement}",
                        hint="see --help; --print-config shows every key and its value")
