"""Import OpenAI, OpenCLIP or Hugging Face CLIP weights as a clipforge checkpoint directory.

--config takes the source's own config (an OpenCLIP model-config JSON, an HF config.json) or a clipforge
model name (ViT-B-32, RN50, ...; add -quickgelu for QuickGELU). OpenAI archives need none: the
architecture is derived as OpenAI's own loader does. HF folders use their config.json and their own tokenizer.
OpenCLIP models whose text tower does not use OpenAI's vocabulary (SigLIP, SigLIP 2) need --tokenizer: the
tokenizer.json of the Hugging Face tokenizer the config names (text_cfg.hf_tokenizer_name), or its folder.

examples:
  clipforge convert --from openai ViT-B-32.pt --out ckpt/vit-b-32
  clipforge convert --from open_clip open_clip_model.safetensors --config ViT-B-32.json --out ckpt/b32
  clipforge convert --from hf ./clip-vit-base-patch32 --out ckpt/hf-b32
  clipforge convert --from open_clip siglip.safetensors --config ViT-B-16-SigLIP.json \
      --tokenizer ./ViT-B-16-SigLIP/tokenizer.json --out ckpt/siglip-b16
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, choices=["openai", "open_clip", "hf"],
                        help="layout of the weights")  # fmt: skip
    parser.add_argument("src", help="weights file (.pt/.bin/.safetensors, TorchScript archive) or HF model folder")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--config", default=None, help="source config file or clipforge model name")
    parser.add_argument("--tokenizer", default=None,
                        help="open_clip only: tokenizer.json (or its folder) for models without OpenAI's vocabulary "
                        "(SigLIP)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from clipforge.convert import convert_checkpoint  # deferred: imports torch (`clipforge --help` must not)

    done = convert_checkpoint(args.source, args.src, args.out, args.config, args.tokenizer)
    print(f"wrote {done.path} ({done.summary})")
    return 0
