"""Load benchmarks/tokenizer_reference.py (the plain-Python BPE reference) in tests; benchmarks/ is not a package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def load_reference():
    name = "clipforge_tokenizer_reference"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / "tokenizer_reference.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
