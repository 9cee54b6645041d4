"""Each new family trains with the existing trainer: SigLIP with the sigmoid loss and its logit bias by default,
EVA-02 and PE-Core with InfoNCE; golden loss curves of a short deterministic run per family; gradient checkpointing
and patch dropout act on the new towers as they should.

If a change to training is intended, regenerate the curves and commit them with the change:

    PYTHONPATH=src:tests python tests/test_train_families.py --regenerate
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.checkpoint import checkpoint as torch_checkpoint
from train_support import PairSet, synthetic_factory, tiny_config

from clipforge.loss.config import LossConfig
from clipforge.model import layers
from clipforge.model.clip import CLIP
from clipforge.model.registry import get_config
from clipforge.train.config import OptimConfig
from clipforge.train.trainer import run_training

GOLDEN = Path(__file__).parent / "data" / "golden_loss_families.json"
FAMILIES = ["test-siglip", "test-eva02", "test-pe-core"]
STEPS = 8


def family_run(name: str, run_dir: Path, **overrides) -> list[float]:
    """``name`` on 64 synthetic pairs, batch 16, 8 steps, fp32, one thread, seed 0, default loss ("auto")."""
    torch.set_num_threads(1)
    cfg = tiny_config(run_dir, model=name, steps=STEPS, optim=OptimConfig(lr=2e-3, warmup_steps=2, weight_decay=0.1),
                      **overrides)  # fmt: skip
    result = run_training(cfg, loader_factory=synthetic_factory(PairSet(64, seed=0), 16, seed=0))
    return [result.losses[s] for s in range(1, STEPS + 1)]


@pytest.mark.parametrize("name", FAMILIES)
def test_golden_loss_curve(tmp_path, name):
    losses = family_run(name, tmp_path)
    want = torch.tensor(json.loads(GOLDEN.read_text())["losses"][name], dtype=torch.float64)
    got = torch.tensor(losses, dtype=torch.float64)
    assert torch.allclose(got, want, rtol=1e-4, atol=0), f"{name} loss curve changed:\n got  {losses}\n want {want.tolist()}"
    assert losses[-1] < losses[0]
    if get_config(name).init_logit_bias is not None:
        # The default loss of a logit-bias model is the sigmoid loss: it starts near -log sigmoid(-10) ~ 10 per
        # positive pair, where InfoNCE over 16 pairs cannot exceed ln 16 + 2 * scale.
        contrastive = family_run(name, tmp_path / "contrastive", loss=LossConfig(kind="contrastive"))
        assert losses[0] > 8.0 and abs(contrastive[0] - losses[0]) > 1.0


@pytest.mark.parametrize("name", FAMILIES)
def test_patch_dropout_and_gradient_checkpointing_train(tmp_path, name):
    vision = dataclasses.replace(get_config(name).vision, patch_dropout=0.5)
    model = dataclasses.replace(get_config(name), vision=vision)
    losses = family_run(model, tmp_path, grad_checkpointing=True)  # type: ignore[arg-type]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


@pytest.mark.parametrize("name", FAMILIES)
def test_gradient_checkpointing_recomputes_every_block_with_the_same_gradients(name, monkeypatch):
    """Checkpointing is applied to every block of both towers (the SigLIP MAP head, EVA's rope, PE's prefix token
    go through it too) and changes no gradient."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = CLIP(get_config(name)).train()
    size, ctx = model.cfg.vision.image_size, model.cfg.text.context_length
    pixels, ids = torch.randn(4, 3, size, size), torch.randint(0, model.cfg.text.vocab_size, (4, ctx))

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad()
        img, txt = model.encode_image(pixels), model.encode_text(ids)
        (img @ txt.t()).square().mean().backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    calls = []
    monkeypatch.setattr(layers, "checkpoint", lambda *a, **k: calls.append(1) or torch_checkpoint(*a, **k))
    model.set_grad_checkpointing(True)
    checkpointed = grads()
    assert len(calls) == model.cfg.vision.layers + model.cfg.text.layers
    assert plain.keys() == checkpointed.keys()
    for key, value in plain.items():
        torch.testing.assert_close(checkpointed[key], value, rtol=1e-5, atol=1e-7, msg=key)


@pytest.mark.parametrize("name", FAMILIES)
def test_patch_dropout_keeps_prefix_tokens_and_the_share_of_patches(name):
    torch.manual_seed(0)
    cfg = get_config(name)
    model = CLIP(dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, patch_dropout=0.5)))
    seen: list[int] = []
    model.visual.transformer.register_forward_pre_hook(lambda _m, args, kwargs: seen.append(args[0].shape[1]),
                                                       with_kwargs=True)  # fmt: skip
    pixels = torch.randn(2, 3, cfg.vision.image_size, cfg.vision.image_size)
    n_patches, prefix = cfg.vision.grid_size**2, cfg.vision.prefix_tokens
    model.train().encode_image(pixels)
    with torch.no_grad():
        dropped_eval = model.eval().encode_image(pixels)
        reference = CLIP(cfg)
        reference.load_state_dict(model.state_dict())
        full = reference.eval().encode_image(pixels)
    assert seen == [prefix + n_patches // 2, prefix + n_patches]
    assert torch.equal(dropped_eval, full)  # dropout is a training-time switch only


if __name__ == "__main__":
    if "--regenerate" not in sys.argv:
        sys.exit("usage: PYTHONPATH=src:tests python tests/test_train_families.py --regenerate")
    import tempfile

    curves = {}
    for family in FAMILIES:
        with tempfile.TemporaryDirectory() as tmp:
            curves[family] = family_run(family, Path(tmp))
    GOLDEN.write_text(json.dumps({"torch": torch.__version__, "steps": STEPS, "losses": curves}, indent=1) + "\n")
    print(f"wrote {GOLDEN}: {curves}")
