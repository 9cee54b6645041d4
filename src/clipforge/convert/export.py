"""The job behind ``clipforge export``: a clipforge checkpoint written in another layout.

    export_checkpoint("runs/tiny/final", "exported/tiny-hf", to="hf")
    export_checkpoint("runs/mobile/final", "exported/fused", reparameterize=True)

Targets: ``clipforge`` (a checkpoint directory), ``hf`` (a transformers CLIPModel or SiglipModel folder with its
tokenizer and processor files, ViT image towers only), ``openai`` (OpenAI's state-dict layout as model.pt;
MobileCLIP towers exist only in OpenCLIP, so theirs take OpenCLIP's layout) and ``onnx`` (both towers as ONNX
graphs with a dynamic batch, convert/onnx.py).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Literal

import torch

from clipforge.checkpoint import TOKENIZER_FILE, load_state_into, read_config, read_weights, save_checkpoint
from clipforge.convert.common import export_state
from clipforge.convert.hf import export_hf
from clipforge.convert.mobileclip import is_mobileclip, mobileclip_rules
from clipforge.convert.onnx import export_onnx
from clipforge.convert.openai import openai_rules
from clipforge.model.clip import CLIP
from clipforge.model.mobileclip_reparam import is_reparameterizable, reparameterize
from clipforge.utils.io import atomic_path

log = logging.getLogger(__name__)

TARGETS = ("clipforge", "hf", "openai", "onnx")
OPENAI_FILE = "model.pt"


def export_checkpoint(ckpt: str | Path, out: str | Path, to: Literal["clipforge", "hf", "openai", "onnx"] = "clipforge",
                      reparameterize_first: bool = False) -> Path:  # fmt: skip
    """Write the checkpoint ``ckpt`` to ``out`` in the layout ``to``; returns what was written.

    Args:
        ckpt: a clipforge checkpoint directory.
        out: the directory to write.
        to: one of ``TARGETS``.
        reparameterize_first: fold a MobileCLIP tower's train-time branches into single convolutions first
            (the inference form: same features, faster); other towers are written unchanged.
    """
    config = read_config(ckpt)
    with torch.device("meta"):
        model = CLIP(config.model)
    model = model.to_empty(device="cpu")
    load_state_into(model, read_weights(ckpt), ckpt)  # checks keys and shapes
    if reparameterize_first:
        if not is_reparameterizable(model):
            log.warning("%s: nothing to fold (%s tower without train-time branches)", ckpt, config.model.vision.kind)
        model = reparameterize(model.eval())
        config = dataclasses.replace(config, model=model.cfg)
    own_tokenizer = config.tokenizer.kind in ("file", "hf")  # its vocabulary is the checkpoint's tokenizer.json
    tokenizer_json = (Path(ckpt) / TOKENIZER_FILE).read_text(encoding="utf-8") if own_tokenizer else None
    if to == "clipforge":
        return save_checkpoint(model, config, out, tokenizer_json=tokenizer_json)
    if to == "hf":
        return export_hf(model.state_dict(), config, out, tokenizer_json=tokenizer_json)
    if to == "onnx":
        return export_onnx(model, ckpt, out)
    rules = mobileclip_rules(config.model) if is_mobileclip(config.model.vision) else openai_rules(config.model)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / OPENAI_FILE) as tmp:
        torch.save(export_state(model.state_dict(), rules), tmp)
    return folder
