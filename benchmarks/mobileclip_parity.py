"""Full-size MobileCLIP import parity against OpenCLIP 3.3.0 + timm's own model code, per name and direction.

    PYTHONPATH=src python benchmarks/mobileclip_parity.py --ref-python /work/refenv/bin/python [--names ...]

For every name, the reference environment builds ``open_clip.create_model(name)`` at its real size with
seeded random weights, layer scales near 0.1 and random BatchNorm statistics (benchmarks/mobileclip_reference.py)
and records its outputs before and after ``timm.utils.reparameterize_model``. clipforge then
  - imports OpenCLIP's training-form state dict (``--config NAME``) and compares encode_image / encode_text;
  - folds the imported model with its own ``reparameterize`` and compares with timm's folded model;
  - imports OpenCLIP's folded state dict (when folding changes it) and compares;
  - exports both back to OpenCLIP's layout and checks every tensor is bit-identical to OpenCLIP's.
fp32, one thread. Writes benchmarks/results/mobileclip_parity.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from clipforge.convert.common import build_model, export_state
from clipforge.convert.mobileclip import mobileclip_rules
from clipforge.convert.open_clip import import_open_clip
from clipforge.model.mobileclip_reparam import reparameterize
from clipforge.model.registry import get_config
from clipforge.utils.io import atomic_write_text

NAMES = ["MobileCLIP-S1", "MobileCLIP-S2", "MobileCLIP-B", "MobileCLIP2-S0", "MobileCLIP2-S2", "MobileCLIP2-S3",
         "MobileCLIP2-S4", "MobileCLIP2-B"]  # fmt: skip
RESULTS = Path(__file__).parent / "results"
REFERENCE = Path(__file__).parent / "mobileclip_reference.py"


def diff(got: torch.Tensor, want: torch.Tensor) -> dict[str, float]:
    d = (got - want).abs().max().item()
    return {"max_abs": d, "ref_max_abs": want.abs().max().item(), "rel": d / max(want.abs().max().item(), 1e-12)}


def exact_export(state: dict[str, torch.Tensor], cfg, theirs: dict[str, torch.Tensor]) -> bool:
    ours = export_state(state, mobileclip_rules(cfg))
    return sorted(ours) == sorted(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def check(name: str, folder: Path) -> list[dict]:
    io = load_file(str(folder / "io.safetensors"))
    rows = []
    imported = import_open_clip(folder / "model.safetensors", get_config(name), name=name)
    model = build_model(imported)
    theirs = load_file(str(folder / "model.safetensors"))
    with torch.no_grad():
        img, txt = model.encode_image(io["pixels"]), model.encode_text(io["token_ids"])
    rows.append({"direction": "import OpenCLIP (training form) -> clipforge", "image": diff(img, io["image_features"]),
                 "text": diff(txt, io["text_features"]), "export_bit_exact": exact_export(model.state_dict(),
                 imported.config.model, theirs)})  # fmt: skip
    fused = reparameterize(model)
    with torch.no_grad():
        fimg = fused.encode_image(io["pixels"])
    rows.append({"direction": "clipforge reparameterize vs timm reparameterize_model",
                 "image": diff(fimg, io["image_features_reparam"]), "text": None,
                 "vs_unfolded": diff(fimg, img)})  # fmt: skip
    if (folder / "reparam.safetensors").is_file():
        folded = import_open_clip(folder / "reparam.safetensors", get_config(name), name=name)
        fmodel = build_model(folded)
        with torch.no_grad():
            rimg = fmodel.encode_image(io["pixels"])
        rows.append({"direction": "import OpenCLIP (reparameterized) -> clipforge",
                     "image": diff(rimg, io["image_features_reparam"]), "text": None,
                     "export_bit_exact": exact_export(fmodel.state_dict(), folded.config.model,
                                                      load_file(str(folder / "reparam.safetensors")))})  # fmt: skip
    for row in rows:
        row["name"] = name
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref-python", required=True, help="python of the OpenCLIP 3.3.0 + timm environment")
    ap.add_argument("--names", nargs="*", default=NAMES)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, meta = [], {}
    for name in args.names:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([args.ref_python, str(REFERENCE), name, tmp], check=True)
            meta[name] = json.loads((Path(tmp) / "meta.json").read_text())
            rows += check(name, Path(tmp))
            print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "mobileclip_parity.json", json.dumps({"rows": rows, "reference": meta}, indent=1) + "\n")
    fmt = lambda d: "" if d is None else f"{d['max_abs']:.2e} ({d['rel']:.1e} rel.)"
    lines = ["# MobileCLIP parity, full size, fp32 (max abs difference, and relative to the largest reference value)",
             "", "| name | direction | image features | text features | export bit-exact |", "|---|---|---|---|---|"]
    for r in rows:
        exact = {True: "yes", False: "NO"}.get(r.get("export_bit_exact"), "")
        lines.append(f"| {r['name']} | {r['direction']} | {fmt(r['image'])} | {fmt(r['text'])} | {exact} |")
    versions = next(iter(meta.values()))["versions"] if meta else {}
    lines += ["", f"Reference: OpenCLIP {versions.get('open_clip')}, timm {versions.get('timm')}, torch "
              f"{versions.get('torch')} (random weights, layer scales ~0.1, random BatchNorm statistics); clipforge "
              f"on torch {torch.__version__}. Inputs: 2 images at the name's size, 2 texts of 77 tokens."]  # fmt: skip
    atomic_write_text(RESULTS / "mobileclip_parity.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
