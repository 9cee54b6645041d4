"""Write tests/data/open_clip_param_counts.json: OpenCLIP 3.3.0's parameter count for every name clipforge registers.

Run with a Python that has open_clip_torch 3.3.0 and timm (they need torchvision, so not clipforge's own
environment), from the repository root:

    REFERENCE_PYTHON tests/data/make_open_clip_param_counts.py

Each model is built on the meta device (no memory, no init), so even the 2.5B-parameter ones take seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import open_clip
import torch

OUT = Path(__file__).resolve().parent / "open_clip_param_counts.json"


def main(names: list[str]) -> None:
    counts = {}
    for name in names:
        with torch.device("meta"):
            model = open_clip.create_model(name, device="meta")
        counts[name] = sum(p.numel() for p in model.parameters())
        print(name, counts[name], flush=True)
    meta = {"open_clip": open_clip.__version__, "torch": torch.__version__}
    OUT.write_text(json.dumps({"versions": meta, "counts": counts}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from clipforge.model.registry import list_models  # noqa: E402  (clipforge's own code is plain torch)

    known = set(open_clip.list_models())
    registered = [n for name in list_models() for n in (name, f"{name}-quickgelu") if n in known]
    main(registered)
