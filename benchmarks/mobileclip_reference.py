"""Write one full-size OpenCLIP MobileCLIP instance with random weights and its outputs (reference environment only).

Run with the reference environment's python (torch 2.14.1, torchvision, open_clip_torch 3.3.0, timm 1.0.31,
safetensors; see tests/reference/), not clipforge's: benchmarks/mobileclip_parity.py calls it once per name.

    /path/to/refenv/bin/python benchmarks/mobileclip_reference.py MobileCLIP2-S0 OUT_DIR

``open_clip.create_model(name)`` at its real size, then seeded noise on every parameter, layer scales set near
0.1 (their init of 1e-5 would hide the blocks' internals from a feature comparison) and random BatchNorm
statistics; eval mode. Writes OUT_DIR/model.safetensors (OpenCLIP's state dict, timm's training form),
reparam.safetensors (after timm.utils.reparameterize_model, when that changes the state dict) and
io.safetensors: pixels (2, 3, S, S) at the name's image size, token_ids (2, 77) laid out like the tokenizer's
(one full row, one padded), image_features and text_features (encode_image / encode_text, unnormalized),
image_features_reparam, and meta.json with the versions.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import open_clip
import timm
import torch
from safetensors.torch import save_file
from timm.utils import reparameterize_model
from torch import nn


def perturb_(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
            if "layer_scale" in name:
                p.copy_(0.1 + 0.05 * torch.randn(p.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))


def token_ids(vocab: int, context: int, gen: torch.Generator) -> torch.Tensor:
    ids = torch.zeros(2, context, dtype=torch.int64)
    for row, length in enumerate((context, 12)):
        words = torch.randint(1, vocab - 2, (length,), generator=gen)
        words[0], words[length - 1] = vocab - 2, vocab - 1  # start, end of text (the highest id)
        ids[row, :length] = words
    return ids


def plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    seed = zlib.crc32(name.encode())
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None, device="cpu")
    perturb_(model, seed + 1)
    model.eval()
    cfg = open_clip.get_model_config(name)
    size, text = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]
    gen = torch.Generator().manual_seed(seed + 2)
    pixels = torch.randn(2, 3, size, size, generator=gen)
    ids = token_ids(text["vocab_size"], text["context_length"], gen)
    with torch.no_grad():
        io = {"pixels": pixels, "token_ids": ids, "image_features": model.encode_image(pixels),
              "text_features": model.encode_text(ids)}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    save_file(plain(state), str(out / "model.safetensors"))
    fused = reparameterize_model(model)
    with torch.no_grad():
        io["image_features_reparam"] = fused.encode_image(pixels)
    if sorted(fused.state_dict()) != sorted(state):
        save_file(plain(fused.state_dict()), str(out / "reparam.safetensors"))
    save_file(plain(io), str(out / "io.safetensors"))
    versions = {"open_clip": open_clip.__version__, "timm": timm.__version__, "torch": torch.__version__}
    meta = {"name": name, "params": sum(p.numel() for p in model.parameters()), "versions": versions}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
