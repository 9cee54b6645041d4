"""Import OpenAI, OpenCLIP or Hugging Face CLIP weights as a clipforge checkpoint directory.

--config takes the source's own config (an OpenCLIP model-config JSON, an HF config.json) or a clipforge
model name (ViT-B-32, RN50, ...; add -quickgelu for QuickGELU). OpenAI archives need none: the
architecture is derived as OpenAI's own loader does. HF folders use their config.json.

examples:
  clipforge convert --from openai ViT-B-32.pt --out ckpt/vit-b-32
  clipforge convert --from open_clip open_clip_model.safetensors --config ViT-B-32.json --out ckpt/b32
  clipforge convert --from hf ./clip-vit-base-patch32 --out ckpt/hf-b32
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, choices=["openai", "open_clip", "hf"],
                        help="layout of the weights")  # fmt: skip
    parser.add_argument("src", help="weights file (.pt/.bin/.safetensors, TorchScript archive) or HF model folder")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--config", default=None, help="source config file or clipforge model name")


def run(args: argparse.Namespace) -> int:
    # Deferred with the work: these import torch, which `clipforge --help` must not wait for.
    from clipforge.checkpoint import save_checkpoint
    from clipforge.convert import import_weights
    from clipforge.convert.common import build_model
    from clipforge.model.config import ResNetConfig, ViTConfig

    imported = import_weights(args.source, args.src, args.config)
    model = build_model(imported)
    out = save_checkpoint(model, imported.config, args.out, tokenizer_json=imported.tokenizer_json)
    n = sum(v.numel() for v in imported.state.values() if v.is_floating_point())
    m = imported.config.model
    if isinstance(m.vision, ViTConfig):
        tower = f"ViT-{m.vision.patch_size}"
    elif isinstance(m.vision, ResNetConfig):
        tower = f"ResNet{list(m.vision.layers)}"
    else:
        tower = m.vision.kind
    print(f"wrote {out} ({tower}, image {m.vision.image_size}px, embed {m.embed_dim}, {n / 1e6:.1f}M parameters)")
    return 0
