"""Export a clipforge checkpoint to another format.

--to hf writes a Hugging Face CLIPModel folder (config.json, model.safetensors, preprocessor_config.json)
that transformers' CLIPModel.from_pretrained loads (ViT image towers only). --to openai writes OpenAI's
(and OpenCLIP's) state-dict layout as model.pt.

examples:
  clipforge export --to hf runs/tiny/checkpoint --out exported/tiny-hf
  clipforge export --to openai runs/tiny/checkpoint --out exported/tiny-openai
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", dest="target", required=True, choices=["hf", "openai"], help="output format")
    parser.add_argument("ckpt", help="clipforge checkpoint directory")
    parser.add_argument("--out", required=True, help="directory to write")


def run(args: argparse.Namespace) -> int:
    # Deferred with the work: these import torch, which `clipforge --help` must not wait for.
    import torch

    from clipforge.checkpoint import load_state_into, read_config, read_weights
    from clipforge.model.clip import CLIP
    from clipforge.utils.io import atomic_path

    config = read_config(args.ckpt)
    with torch.device("meta"):
        model = CLIP(config.model)
    model = model.to_empty(device="cpu")
    load_state_into(model, read_weights(args.ckpt), args.ckpt)  # checks keys and shapes
    if args.target == "hf":
        from clipforge.convert.hf import export_hf  # deferred with the work, as above

        out = export_hf(model.state_dict(), config, args.out)
    else:
        from clipforge.convert.common import export_state  # deferred with the work, as above
        from clipforge.convert.openai import openai_rules

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "model.pt") as tmp:
            torch.save(export_state(model.state_dict(), openai_rules(config.model)), tmp)
    print(f"wrote {out}")
    return 0
