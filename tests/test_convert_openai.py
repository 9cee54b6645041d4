"""OpenAI-layout import (ViT and ModifiedResNet, plain state dicts and TorchScript archives).

Semantics are checked against OpenCLIP's model code (whose standard CLIP class uses OpenAI's key names)
when its wheel is available (see tests/convert_reference.py); key layout and exact round trips always.
"""

from __future__ import annotations

import pytest
import torch
from convert_reference import openai_state, openclip_model_module, randomize
from torch import nn

from clipforge.convert.common import build_model, export_state
from clipforge.convert.openai import config_from_state_dict, import_openai, openai_rules, openai_style_difference
from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig, ResNetConfig, TextConfig, ViTConfig, with_activation

FP32_TOL = 1e-5
TEXT = TextConfig(context_length=16, vocab_size=1000, width=128, heads=2, layers=2)
# OpenAI's format fixes 64-channel heads and QuickGELU; tiny sizes otherwise.
VIT = with_activation(CLIPConfig(32, ViTConfig(image_size=32, patch_size=8, width=128, layers=2, head_width=64), TEXT),
                      "quick_gelu")
RESNET = with_activation(CLIPConfig(32, ResNetConfig(image_size=64, layers=(1, 2, 1, 1), width=16), TEXT), "quick_gelu")
CONFIGS = {"vit": VIT, "resnet": RESNET}


pytestmark = pytest.mark.usefixtures("one_thread")



def inputs(cfg: CLIPConfig, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(3, 3, cfg.vision.image_size, cfg.vision.image_size, generator=g)
    ids = torch.zeros(3, cfg.text.context_length, dtype=torch.long)
    for row, n in enumerate([cfg.text.context_length, 2, 6]):
        ids[row, : n - 1] = torch.randint(1, cfg.text.vocab_size - 1, (n - 1,), generator=g)
        ids[row, n - 1] = cfg.text.vocab_size - 1
    return pixels, ids


def test_key_layout_is_openais():
    """Spot checks of OpenAI's key names and shapes, written out by hand from their model.py."""
    vit, rn = openai_state(VIT), openai_state(RESNET)
    assert vit["visual.conv1.weight"].shape == (128, 3, 8, 8)
    assert vit["visual.positional_embedding"].shape == (17, 128)
    assert vit["visual.proj"].shape == (128, 32)
    assert vit["visual.transformer.resblocks.1.attn.in_proj_weight"].shape == (384, 128)
    assert vit["visual.transformer.resblocks.1.mlp.c_fc.weight"].shape == (512, 128)
    assert vit["text_projection"].shape == (128, 32) and vit["positional_embedding"].shape == (16, 128)
    assert vit["transformer.resblocks.0.attn.out_proj.bias"].shape == (128,)
    assert rn["visual.conv1.weight"].shape == (8, 3, 3, 3) and rn["visual.bn3.running_var"].shape == (16,)
    assert rn["visual.layer1.0.downsample.0.weight"].shape == (64, 16, 1, 1)
    assert rn["visual.layer2.1.conv3.weight"].shape == (128, 32, 1, 1) and "visual.layer2.1.downsample.0.weight" not in rn
    assert rn["visual.attnpool.positional_embedding"].shape == (5, 512)
    assert rn["visual.attnpool.c_proj.weight"].shape == (32, 512)
    assert len(vit) == len(openai_rules(VIT)) and len(rn) == len(openai_rules(RESNET))


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_config_derived_like_openai_build_model(arch):
    assert config_from_state_dict(openai_state(CONFIGS[arch])) == CONFIGS[arch]


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_import_export_round_trip_is_exact(tmp_path, arch):
    cfg = CONFIGS[arch]
    state = openai_state(cfg)
    torch.save(state, tmp_path / "w.pt")
    imported = import_openai(tmp_path / "w.pt")
    assert imported.config.model == cfg
    assert imported.config.preprocess.image_size == cfg.vision.image_size
    back = export_state(build_model(imported).state_dict(), openai_rules(cfg))
    assert set(back) == set(state)
    for key in state:
        assert torch.equal(back[key], state[key]), key


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_matches_openclip_reference(tmp_path, arch):
    oc = openclip_model_module()
    cfg = CONFIGS[arch]
    v = cfg.vision
    patch = v.patch_size if isinstance(v, ViTConfig) else 16  # OpenCLIP's ResNet ignores the patch size
    vision_cfg = oc.CLIPVisionCfg(layers=v.layers, width=v.width, head_width=v.head_width, patch_size=patch,
                                  image_size=v.image_size)  # fmt: skip
    t = cfg.text
    text_cfg = oc.CLIPTextCfg(context_length=t.context_length, vocab_size=t.vocab_size, width=t.width, heads=t.heads,
                              layers=t.layers)  # fmt: skip
    torch.manual_seed(0)
    ref = randomize(oc.CLIP(cfg.embed_dim, vision_cfg, text_cfg, quick_gelu=True))
    torch.save(ref.state_dict(), tmp_path / "openclip.pt")
    ours = build_model(import_openai(tmp_path / "openclip.pt"))
    pixels, ids = inputs(cfg)
    with torch.no_grad():
        ref_img, ref_txt = ref.encode_image(pixels), ref.encode_text(ids)
        img, txt = ours.encode_image(pixels), ours.encode_text(ids)
    d_img, d_txt = (img - ref_img).abs().max().item(), (txt - ref_txt).abs().max().item()
    print(f"\nparity openai-layout->clipforge vs OpenCLIP fp32 [{arch}]: image max-abs {d_img:.3g}, text {d_txt:.3g}")
    assert ref_img.abs().max() > 0.1 and ref_txt.abs().max() > 0.1
    assert d_img <= FP32_TOL and d_txt <= FP32_TOL


class _Holder(nn.Module):
    """A module tree with the given parameter names, so TorchScript can archive them as OpenAI's files do."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        for key, value in state.items():
            module: nn.Module = self
            *path, leaf = key.split(".")
            for part in path:
                if not hasattr(module, part):
                    module.add_module(part, nn.Module())
                module = getattr(module, part)
            if value.is_floating_point():
                module.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
            else:
                module.register_buffer(leaf, value.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_torchscript_archive(tmp_path, arch):
    """OpenAI's files are TorchScript archives with fp16 weights and a few non-weight constants."""
    cfg = CONFIGS[arch]
    state = {k: v.half() if v.is_floating_point() and v.ndim >= 2 else v for k, v in openai_state(cfg).items()}
    constants = {"input_resolution": torch.tensor(cfg.vision.image_size), "context_length": torch.tensor(16),
                 "vocab_size": torch.tensor(1000)}  # fmt: skip
    torch.jit.script(_Holder({**state, **constants})).save(str(tmp_path / f"{arch}.pt"))
    imported = import_openai(tmp_path / f"{arch}.pt")
    assert imported.config.model == cfg
    ours = build_model(imported)
    back = export_state(ours.state_dict(), openai_rules(cfg))
    assert all(ours.state_dict()[k].dtype == torch.float32 for k in ("logit_scale", "text.proj"))
    for key in state:
        assert torch.equal(back[key], state[key].to(back[key].dtype)), key


def test_named_config_gets_quickgelu_and_shape_errors_name_openai_keys(tmp_path):
    torch.save(openai_state(VIT), tmp_path / "w.pt")
    gelu = with_activation(VIT, "gelu")
    assert import_openai(tmp_path / "w.pt", gelu).config.model == VIT
    wrong = CLIPConfig(16, VIT.vision, TEXT)
    with pytest.raises(UserError, match=r"shape mismatch for (visual\.proj|text_projection) \(128, 32\)"):
        import_openai(tmp_path / "w.pt", wrong)


def test_missing_unexpected_and_foreign_layouts(tmp_path):
    state = openai_state(VIT)
    state.pop("ln_final.bias")
    state["visual.something_new"] = torch.zeros(2)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(UserError, match=r"missing keys \[ln_final.bias\].*unexpected keys \[visual.something_new\]"):
        import_openai(tmp_path / "w.pt")
    torch.save({"vision_model.x": torch.zeros(1)}, tmp_path / "hf.pt")
    with pytest.raises(UserError, match="not an OpenAI CLIP state dict"):
        import_openai(tmp_path / "hf.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pt"):
        import_openai(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="no such file"):
        import_openai(tmp_path / "absent.pt")


def test_key_maps_cover_every_registered_config():
    from clipforge.convert.common import model_shapes
    from clipforge.convert.hf import hf_rules
    from clipforge.convert.mobileclip import is_mobileclip, mobileclip_rules
    from clipforge.model.registry import get_config, list_models

    for name in list_models():
        cfg = get_config(name)
        if openai_style_difference(cfg.text) or (
            isinstance(cfg.vision, ViTConfig) and openai_style_difference(cfg.vision)
        ):
            continue  # SigLIP, EVA-02, PE: tests/test_convert_timm.py covers their key maps
        shapes = model_shapes(cfg)
        ours = [r.ours for r in (mobileclip_rules(cfg) if is_mobileclip(cfg.vision) else openai_rules(cfg))]
        assert sorted(ours) == sorted(shapes), name
        if isinstance(cfg.vision, ViTConfig):
            assert sorted(r.ours for r in hf_rules(cfg)) == sorted(shapes), name


def test_invalid_derived_config_is_a_user_error(tmp_path):
    state = openai_state(VIT)
    state["visual.conv1.weight"] = torch.zeros(100, 3, 8, 8)  # width 100 is not a multiple of 64-channel heads
    with pytest.raises(UserError, match="cannot build a clipforge model config"):
        config_from_state_dict(state, "w.pt")
