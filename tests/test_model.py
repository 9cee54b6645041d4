"""Every registered model config, shrunk to tiny width: shapes, finiteness, backward, gradient checkpointing,
config JSON round trip, and the checkpoint format."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import clipforge
from clipforge.checkpoint import PipelineConfig, load_state_into, read_config, save_checkpoint
from clipforge.errors import UserError
from clipforge.model.clip import CLIP, CLIPOutput
from clipforge.model.config import CLIPConfig, ConvStemViTConfig, FastViTConfig, ResNetConfig
from clipforge.model.registry import get_config, list_models
from clipforge.utils.configs import from_dict, to_dict

TINY_VOCAB = 1000


pytestmark = pytest.mark.usefixtures("one_thread")



def shrink(cfg: CLIPConfig) -> CLIPConfig:
    """Keep the architecture (tower type, stage count, activation, ratios, logit bias); shrink every size."""
    v = cfg.vision
    if isinstance(v, ResNetConfig):
        vision = dataclasses.replace(v, image_size=32, width=8, layers=tuple(min(b, 2) for b in v.layers))
    elif isinstance(v, FastViTConfig):
        n = len(v.layers)
        vision = dataclasses.replace(v, image_size=64, layers=(1,) * n, widths=tuple(8 * 2**i for i in range(n)),
                                     head_width=8)
    elif isinstance(v, ConvStemViTConfig):
        vision = dataclasses.replace(v, image_size=32, stem_width=8, layers=2, width=32, head_width=16)
    else:
        vision = dataclasses.replace(v, image_size=32, patch_size=8, layers=2, width=32, head_width=16)
    text = dataclasses.replace(cfg.text, context_length=12, vocab_size=TINY_VOCAB, width=32, heads=2, layers=2)
    # A tower without projection emits its width as the embedding.
    embed = 32 if "none" in (getattr(vision, "proj", None), text.proj) else 16
    return dataclasses.replace(cfg, embed_dim=embed, vision=vision, text=text)


NAMES = list_models()


def batch(cfg: CLIPConfig, n: int = 3):
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(n, 3, cfg.vision.image_size, cfg.vision.image_size, generator=g)
    ids = torch.randint(1, TINY_VOCAB - 1, (n, cfg.text.context_length), generator=g)
    for row, end in enumerate([cfg.text.context_length - 1, 3, 6][:n]):
        ids[row, end] = TINY_VOCAB - 1
        ids[row, end + 1 :] = 0
    return pixels, ids


def contrastive(out: CLIPOutput) -> torch.Tensor:
    """CLIP's InfoNCE, or SigLIP's pairwise sigmoid loss for a model with a logit bias."""
    logits = out.logit_scale * out.image_features @ out.text_features.t()
    if out.logit_bias is not None:
        signs = 2 * torch.eye(logits.shape[0]) - 1  # +1 on matching pairs, -1 elsewhere
        return -torch.nn.functional.logsigmoid(signs * (logits + out.logit_bias)).sum() / logits.shape[0]
    target = torch.arange(logits.shape[0])
    return (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.t(), target)) / 2


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_finite_and_backward(name):
    torch.manual_seed(0)
    cfg = shrink(get_config(name))
    model = CLIP(cfg)
    pixels, ids = batch(cfg)
    assert model.encode_image(pixels).shape == (3, cfg.embed_dim)
    assert model.encode_text(ids).shape == (3, cfg.embed_dim)
    out = model(pixels, ids)
    assert type(out) is CLIPOutput
    assert out.image_features.shape == out.text_features.shape == (3, cfg.embed_dim)
    assert torch.allclose(out.image_features.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out.text_features.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.isclose(out.logit_scale, torch.tensor(cfg.init_logit_scale).exp(), rtol=1e-5)
    if cfg.init_logit_bias is None:
        assert out.logit_bias is None
    else:
        assert out.logit_bias is not None and out.logit_bias.item() == cfg.init_logit_bias
    assert all(torch.isfinite(t).all() for t in out[:3])
    contrastive(out).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.visual.parameters())


def test_text_features_ignore_tokens_after_end_of_text():
    cfg = shrink(get_config("ViT-B-32"))
    model = CLIP(cfg).eval()
    _, ids = batch(cfg)
    noisy = ids.clone()
    noisy[1, 4:] = torch.randint(1, 50, (cfg.text.context_length - 4,))  # after eot at 3, below the eot id
    with torch.no_grad():
        assert torch.equal(model.encode_text(ids)[1], model.encode_text(noisy)[1])


def test_logit_bias_config_gives_a_bias():
    cfg = dataclasses.replace(shrink(get_config("ViT-B-32")), init_logit_scale=2.3, init_logit_bias=-10.0)
    out = CLIP(cfg)(*batch(cfg))
    assert out.logit_bias is not None and out.logit_bias.item() == -10.0
    assert torch.isclose(out.logit_scale, torch.tensor(2.3).exp())


@pytest.mark.parametrize("name", ["RN50-quickgelu", "ViT-B-32-quickgelu", "ViT-H-14-quickgelu", "ViT-B-16-SigLIP",
                                  "EVA02-B-16", "PE-Core-B-16", "MobileCLIP-S2", "MobileCLIP2-S3", "MobileCLIP-B"])  # fmt: skip
def test_gradient_checkpointing_same_outputs_and_grads(name):
    cfg = shrink(get_config(name))
    torch.manual_seed(0)
    plain = CLIP(cfg).train()
    ckpt = CLIP(cfg).train()
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_grad_checkpointing(True)
    pixels, ids = batch(cfg)
    out_a, out_b = plain(pixels, ids), ckpt(pixels, ids)
    for a, b in zip(out_a[:3], out_b[:3], strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    contrastive(out_a).backward()
    contrastive(out_b).backward()
    grads_b = dict(ckpt.named_parameters())
    for pname, p in plain.named_parameters():
        assert torch.allclose(p.grad, grads_b[pname].grad, atol=1e-6), pname
    # Recomputation in backward must not update BatchNorm statistics a second time.
    buffers_b = dict(ckpt.named_buffers())
    for bname, buf in plain.named_buffers():
        assert torch.equal(buf, buffers_b[bname]), bname


def test_unknown_name_lists_known_names():
    with pytest.raises(UserError) as info:
        get_config("ViT-Q-7")
    assert "ViT-Q-7" in str(info.value)
    for name in ("RN50", "ViT-B-32", "ViT-L-14-336", "tiny-vit"):
        assert name in str(info.value)
    assert get_config("RN50-quickgelu").text.act == "quick_gelu" and get_config("RN50").text.act == "gelu"
    assert get_config("ViT-B-32-quickgelu").vision.act == "quick_gelu"


@pytest.mark.parametrize("name", NAMES)
def test_config_json_round_trip(name):
    cfg = get_config(name)
    back = from_dict(CLIPConfig, json.loads(json.dumps(to_dict(cfg))))
    assert back == cfg
    pipe = PipelineConfig(model=cfg)
    assert from_dict(PipelineConfig, json.loads(json.dumps(to_dict(pipe)))) == pipe


def test_config_rejects_unknown_keys():
    data = to_dict(get_config("ViT-B-32"))
    data["vision"]["widht"] = 3
    with pytest.raises(UserError, match="widht"):
        from_dict(CLIPConfig, data)


def test_checkpoint_round_trip_and_load_errors(tmp_path):
    from safetensors.torch import load_file

    cfg = shrink(get_config("RN50"))
    model = CLIP(cfg)
    config = PipelineConfig(model=cfg)
    save_checkpoint(model, config, tmp_path / "ckpt")
    assert read_config(tmp_path / "ckpt") == config
    state = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    fresh = CLIP(cfg)
    load_state_into(fresh, state, "ckpt")
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    missing = {k: v for k, v in state.items() if k != "text.proj"}
    with pytest.raises(UserError, match=r"missing keys \['text.proj'\]"):
        load_state_into(CLIP(cfg), missing, "ckpt")
    with pytest.raises(UserError, match=r"unexpected keys \['extra'\]"):
        load_state_into(CLIP(cfg), {**state, "extra": torch.zeros(1)}, "ckpt")
    with pytest.raises(UserError, match=r"shape mismatch for text.proj: checkpoint \(3, 3\) vs model \(32, 16\)"):
        load_state_into(CLIP(cfg), {**state, "text.proj": torch.zeros(3, 3)}, "ckpt")
    with pytest.raises(UserError, match="not a clipforge checkpoint"):
        read_config(tmp_path)
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="model.safetensors is missing"):
        clipforge.load(tmp_path / "ckpt")


def test_load_pipeline(tmp_path):
    import clipforge

    cfg = get_config("test-vit")
    model = CLIP(cfg).eval()
    save_checkpoint(model, PipelineConfig(model=cfg), tmp_path / "ckpt")
    pipe = clipforge.load(tmp_path / "ckpt")
    assert pipe.config.model == cfg
    for key, value in model.state_dict().items():
        assert torch.equal(pipe.model.state_dict()[key], value), key


@pytest.mark.parametrize("name", ["RN50", "ViT-B-32", "MobileCLIP-S2", "MobileCLIP-B"])
def test_low_precision_model_takes_float32_pixels(name):
    """clipforge.load(dtype=torch.bfloat16) then encode_image(preprocess(img)): the towers cast the pixels."""
    cfg = shrink(get_config(name))
    model = CLIP(cfg).eval()
    pixels, ids = batch(cfg)
    with torch.no_grad():
        ref = model.encode_image(pixels)
        low = model.to(torch.bfloat16).encode_image(pixels)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() <= 0.05 * ref.abs().max()


@pytest.mark.parametrize("name", ["ViT-B-16-SigLIP", "EVA02-B-16", "PE-Core-B-16", "PE-Core-bigG-14-448"])
def test_patch_dropout_on_the_new_towers(name):
    """Training with patch dropout keeps the class token and each kept patch's rotary position; eval is unchanged."""
    cfg = shrink(get_config(name))
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, patch_dropout=0.5))
    torch.manual_seed(0)
    model = CLIP(cfg)
    pixels, ids = batch(cfg)
    out = model.train()(pixels, ids)
    contrastive(out).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        a, b = model.eval().encode_image(pixels), model.encode_image(pixels)
        dropped = model.train().encode_image(pixels)
    assert torch.equal(a, b) and not torch.allclose(a, dropped)


def test_siglip_text_reads_the_last_position_and_attends_to_all():
    cfg = shrink(get_config("ViT-B-16-SigLIP"))
    model = CLIP(cfg).eval()
    _, ids = batch(cfg)
    changed = ids.clone()
    changed[1, -1] = 5  # the position SigLIP reads
    earlier = ids.clone()
    earlier[1, 0] = 7  # non-causal: an early token changes the last position's features too
    with torch.no_grad():
        ref = model.encode_text(ids)
        assert not torch.allclose(ref[1], model.encode_text(changed)[1])
        assert not torch.allclose(ref[1], model.encode_text(earlier)[1])
        assert torch.equal(ref[0], model.encode_text(changed)[0])
