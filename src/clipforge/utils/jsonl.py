"""Reading JSON-lines files where a bad line is skipped and counted, never fatal."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_json_objects(path: str | Path, keep: Callable[[dict[str, Any]], bool], rejected: str) -> list[dict[str, Any]]:
    """The JSON objects of ``path`` for which ``keep`` holds; other lines are skipped with one warning.

    Args:
        path: a JSON-lines file (blank lines ignored).
        keep: accepts a parsed object; lines that are not JSON objects are always skipped.
        rejected: what a skipped line is, for the warning ("lines that are not JSON objects with a step").
    """
    rows, bad = [], 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict) and keep(row):
            rows.append(row)
        else:
            bad += 1
    if bad:
        log.warning("%s: skipped %d %s", path, bad, rejected)
    return rows
