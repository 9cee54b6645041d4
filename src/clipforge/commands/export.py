"""Export a clipforge checkpoint to another format.

--to hf writes a Hugging Face CLIPModel folder (config.json, model.safetensors, preprocessor_config.json)
that transformers' CLIPModel.from_pretrained loads (ViT image towers only). --to openai writes OpenAI's
(and OpenCLIP's) state-dict layout as model.pt (MobileCLIP models: OpenCLIP's layout). --to clipforge (the default) writes a clipforge checkpoint.
--reparameterize first folds the train-time branches of a MobileCLIP tower into single convolutions (the
inference form: same features, faster); other towers are written unchanged.

examples:
  clipforge export --to hf runs/tiny/checkpoint --out exported/tiny-hf
  clipforge export --to openai runs/tiny/checkpoint --out exported/tiny-openai
  clipforge export --reparameterize runs/mobile/final --out exported/mobile-fused
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", dest="target", default="clipforge", choices=["clipforge", "hf", "openai"],
                        help="output format (default clipforge)")
    parser.add_argument("--reparameterize", action="store_true",
                        help="fold a MobileCLIP tower's train-time branches into single convolutions first")
    parser.add_argument("ckpt", help="clipforge checkpoint directory")
    parser.add_argument("--out", required=True, help="directory to write")


def run(args: argparse.Namespace) -> int:
    # Deferred with the work: these import torch, which `clipforge --help` must not wait for.
    import torch

    from clipforge.checkpoint import TOKENIZER_FILE, load_state_into, read_config, read_weights, save_checkpoint
    from clipforge.convert.common import export_state
    from clipforge.convert.hf import export_hf
    from clipforge.convert.mobileclip import is_mobileclip, mobileclip_rules
    from clipforge.convert.openai import openai_rules
    from clipforge.model.clip import CLIP
    from clipforge.model.mobileclip_reparam import is_reparameterizable, reparameterize
    from clipforge.utils.io import atomic_path

    config = read_config(args.ckpt)
    with torch.device("meta"):
        model = CLIP(config.model)
    model = model.to_empty(device="cpu")
    load_state_into(model, read_weights(args.ckpt), args.ckpt)  # checks keys and shapes
    if args.reparameterize:
        if not is_reparameterizable(model):
            print(f"{args.ckpt}: nothing to fold ({config.model.vision.kind} tower without train-time branches)")
        model = reparameterize(model.eval())
        config = dataclasses.replace(config, model=model.cfg)
    if args.target == "clipforge":
        tokenizer_file = Path(args.ckpt) / TOKENIZER_FILE
        tokenizer_json = tokenizer_file.read_text() if config.tokenizer.kind == "file" else None
        out = save_checkpoint(model, config, args.out, tokenizer_json=tokenizer_json)
    elif args.target == "hf":
        out = export_hf(model.state_dict(), config, args.out)
    else:
        # MobileCLIP towers exist only in OpenCLIP, so their state dict takes OpenCLIP's layout.
        rules = mobileclip_rules(config.model) if is_mobileclip(config.model.vision) else openai_rules(config.model)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "model.pt") as tmp:
            torch.save(export_state(model.state_dict(), rules), tmp)
    print(f"wrote {out}")
    return 0
