"""Export a clipforge checkpoint to another format.

--to hf writes a Hugging Face folder (CLIPModel, or SiglipModel for sigmoid-loss models; ViT image towers
only): config.json, model.safetensors, the tokenizer (tokenizer.json, tokenizer_config.json) and the processor
(processor_config.json, preprocessor_config.json), so AutoModel + AutoProcessor.from_pretrained give clipforge's
features from an image and a string (SigLIP: pass padding="max_length", as SigLIP was trained). --to openai writes OpenAI's
(and OpenCLIP's) state-dict layout as model.pt (MobileCLIP models: OpenCLIP's layout). --to clipforge (the default) writes a clipforge checkpoint.
--to onnx writes image.onnx and text.onnx (dynamic batch; onnxruntime runs them) beside the checkpoint's config.
--reparameterize first folds the train-time branches of a MobileCLIP tower into single convolutions (the
inference form: same features, faster); other towers are written unchanged.

examples:
  clipforge export --to hf runs/tiny/checkpoint --out exported/tiny-hf
  clipforge export --to openai runs/tiny/checkpoint --out exported/tiny-openai
  clipforge export --reparameterize runs/mobile/final --out exported/mobile-fused
  clipforge export --to onnx runs/tiny/checkpoint --out exported/tiny-onnx
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", dest="target", default="clipforge", choices=["clipforge", "hf", "openai", "onnx"],
                        help="output format (default clipforge)")
    parser.add_argument("--reparameterize", action="store_true",
                        help="fold a MobileCLIP tower's train-time branches into single convolutions first")
    parser.add_argument("ckpt", help="clipforge checkpoint directory")
    parser.add_argument("--out", required=True, help="directory to write")


def run(args: argparse.Namespace) -> int:
    from clipforge.convert.export import export_checkpoint  # deferred: imports torch (`clipforge --help` must not)

    out = export_checkpoint(args.ckpt, args.out, args.target, reparameterize_first=args.reparameterize)
    print(f"wrote {out}")
    return 0
