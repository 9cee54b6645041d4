"""Named model configs, using OpenCLIP's names. Adding a name here is all a new size needs.

``get_config("ViT-B-32-quickgelu")`` gives the named config with QuickGELU, as OpenAI's weights need. The
families (OpenAI CLIP, SigLIP / SigLIP 2, EVA-02, Perception Encoder) are compositions of the same ViT and
text-tower switches (model/config.py); tests/test_registry.py checks every name's parameter count against
OpenCLIP 3.3.0's.
"""

from __future__ import annotations

import math

from clipforge.errors import UserError
from clipforge.model.config import (
    Activation,
    CLIPConfig,
    ConvStemViTConfig,
    FastViTConfig,
    ResNetConfig,
    RopeConfig,
    TextConfig,
    ViTConfig,
    with_activation,
)

QUICKGELU_SUFFIX = "-quickgelu"
# SigLIP paper (Zhai et al. 2023), sec. 3: t' = log 10 and b = -10 start the sigmoid loss near its optimum.
SIGLIP_LOGIT_SCALE = math.log(10.0)
SIGLIP_LOGIT_BIAS = -10.0
SO400M_MLP_RATIO = 3.7362  # 4304 / 1152, the "shape-optimized" width of Alabdulmohsin et al. 2023
EVA_MLP_RATIO = 4 * 2 / 3  # SwiGLU keeps the parameters of a 4x MLP with two thirds of its hidden width


def _vit(embed: int, image: int, layers: int, width: int, patch: int, text: TextConfig, head_width: int = 64,
         mlp_ratio: float = 4.0) -> CLIPConfig:  # fmt: skip
    vision = ViTConfig(image_size=image, patch_size=patch, width=width, layers=layers, head_width=head_width,
                       mlp_ratio=mlp_ratio)  # fmt: skip
    return CLIPConfig(embed_dim=embed, vision=vision, text=text)


def _rn(embed: int, image: int, blocks: tuple[int, int, int, int], width: int, text: TextConfig) -> CLIPConfig:
    return CLIPConfig(
        embed_dim=embed, vision=ResNetConfig(image_size=image, layers=blocks, width=width), text=text
    )


def _text(width: int, heads: int, layers: int = 12, context: int = 77) -> TextConfig:
    return TextConfig(width=width, heads=heads, layers=layers, context_length=context)


# MobileCLIP's MCi image towers (timm's fastvit_mci0..4). MCi0-2: 4 stages, mlp ratio 3, squeeze-excitation in
# the last two downsamplings; MCi3/4: 5 stages, mlp ratio 4, channel LayerNorm before attention, no stem scale branch.
_MCI_SMALL = dict(mixers=("repmixer",) * 3 + ("attention",), se_downsample=(False, False, True, True), mlp_ratio=3.0)
_MCI_LARGE = dict(mixers=("repmixer",) * 3 + ("attention",) * 2, se_downsample=(False,) * 5, mlp_ratio=4.0,
                  attn_norm="layer", stem_scale_branch=False)
MCI: dict[str, FastViTConfig] = {
    "mci0": FastViTConfig(layers=(2, 6, 10, 2), widths=(64, 128, 256, 512), **_MCI_SMALL),
    "mci1": FastViTConfig(layers=(4, 12, 20, 4), widths=(64, 128, 256, 512), **_MCI_SMALL),
    "mci2": FastViTConfig(layers=(4, 12, 24, 4), widths=(80, 160, 320, 640), **_MCI_SMALL),
    "mci3": FastViTConfig(layers=(2, 12, 24, 4, 2), widths=(96, 192, 384, 768, 1536), **_MCI_LARGE),
    "mci4": FastViTConfig(layers=(2, 12, 24, 4, 4), widths=(128, 256, 512, 1024, 2048), **_MCI_LARGE),
}
# MobileCLIP-B's tower: ViT-B/16 widths behind a conv stem of 768 // 4 channels.
MCI_VIT_B = ConvStemViTConfig(image_size=224, stem_width=192, width=768, layers=12, head_width=64)


def _mobileclip(tower: str, embed: int, text_width: int, text_heads: int) -> CLIPConfig:
    """MobileCLIP-S* / MobileCLIP2-S*: an MCi tower at 256 px and a text transformer without causal mask."""
    text = TextConfig(width=text_width, heads=text_heads, causal=False)
    return CLIPConfig(embed_dim=embed, vision=MCI[tower], text=text)


def _siglip(
    image: int, patch: int, width: int, layers: int, heads: int, text: TextConfig, mlp_ratio: float = 4.0,
    act: Activation = "gelu", embed: int | None = None,
) -> CLIPConfig:  # fmt: skip
    """SigLIP: ViT without class token, MAP pooling and no projection; sigmoid logits with a learned bias.

    OpenCLIP builds these image towers with timm, whose SigLIP ViTs use exact GELU except where timm says
    gelu_tanh (the Hugging Face ports use GELU-tanh throughout: convert/hf.py reads the activation).
    """
    vision = ViTConfig(
        image_size=image, patch_size=patch, width=width, layers=layers, head_width=width // heads,
        mlp_ratio=mlp_ratio, ln_eps=1e-6, act=act, class_token=False, patch_bias=True, norm_pre=False,
        pool="map", proj="none",
    )  # fmt: skip
    return CLIPConfig(
        embed_dim=embed or width, vision=vision, text=text, init_logit_scale=SIGLIP_LOGIT_SCALE,
        init_logit_bias=SIGLIP_LOGIT_BIAS, max_logit_scale=None,
    )  # fmt: skip


def _siglip_text(
    width: int, heads: int, layers: int, vocab: int, context: int = 64, mlp_ratio: float = 4.0,
    act: Activation = "gelu", proj: str = "bias",
) -> TextConfig:  # fmt: skip
    """SigLIP's text tower: attention over all positions, features at the last position, Linear head."""
    return TextConfig(
        context_length=context, vocab_size=vocab, width=width, heads=heads, layers=layers, mlp_ratio=mlp_ratio,
        ln_eps=1e-6, act=act, causal=False, pool="last", proj=proj,  # type: ignore[arg-type]
    )  # fmt: skip


def _eva02(embed: int, image: int, patch: int, width: int, layers: int, heads: int, text: TextConfig) -> CLIPConfig:
    """EVA-02 (Fang et al. 2023) as EVA-CLIP: 2-D rotary positions on the 16 x 16 grid it was pretrained at,
    SwiGLU with sub-LN, sub-LN in attention, no key bias, linear head with bias."""
    vision = ViTConfig(
        image_size=image, patch_size=patch, width=width, layers=layers, head_width=width // heads,
        mlp_ratio=EVA_MLP_RATIO, ln_eps=1e-6, act="swiglu", rope=RopeConfig(ref_grid=16), patch_bias=True,
        norm_pre=False, qkv_bias="qv", sub_ln=True, proj="bias",
    )  # fmt: skip
    return CLIPConfig(embed_dim=embed, vision=vision, text=text)


def _pe_core(
    embed: int, image: int, patch: int, width: int, layers: int, heads: int, text: TextConfig,
    mlp_ratio: float = 4.0, class_token: bool = True,
) -> CLIPConfig:  # fmt: skip
    """Perception Encoder core (Bolya et al. 2025): rotary positions counted from the class token (x, y axes),
    ln_pre, MAP pooling with 8 heads over all tokens, linear head with bias."""
    grid = image // patch
    rope = RopeConfig(ref_grid=grid, offset=1.0 if class_token else 0.0, axes="xy")
    vision = ViTConfig(
        image_size=image, patch_size=patch, width=width, layers=layers, head_width=width // heads,
        mlp_ratio=mlp_ratio, class_token=class_token, rope=rope, pool="map", pool_heads=8, pool_mlp_ratio=4.0,
        proj="bias",
    )  # fmt: skip
    return CLIPConfig(embed_dim=embed, vision=vision, text=text)


_B16_TEXT = _siglip_text(768, 12, 12, 32000)
_B16_TEXT2 = _siglip_text(768, 12, 12, 256000, act="gelu_tanh")
_L16_TEXT = _siglip_text(1024, 16, 24, 32000)
_L16_TEXT2 = _siglip_text(1024, 16, 24, 256000, act="gelu_tanh")
_SO400M_TEXT2 = _siglip_text(1152, 16, 27, 256000, mlp_ratio=SO400M_MLP_RATIO, act="gelu_tanh")


def _so400m(image: int, patch: int, text: TextConfig, act: Activation = "gelu") -> CLIPConfig:
    return _siglip(image, patch, 1152, 27, 16, text, mlp_ratio=SO400M_MLP_RATIO, act=act)


_SIGLIP: dict[str, CLIPConfig] = {
    **{f"ViT-B-16-SigLIP{s}": _siglip(i, 16, 768, 12, 12, _B16_TEXT)
       for s, i in (("", 224), ("-256", 256), ("-384", 384), ("-512", 512))},
    "ViT-B-16-SigLIP-i18n-256": _siglip(256, 16, 768, 12, 12, _siglip_text(768, 12, 12, 250000)),
    **{f"ViT-L-16-SigLIP-{i}": _siglip(i, 16, 1024, 24, 16, _L16_TEXT) for i in (256, 384)},
    "ViT-SO400M-14-SigLIP": _so400m(224, 14, _siglip_text(1152, 16, 27, 32000, 16, SO400M_MLP_RATIO)),
    **{f"ViT-SO400M-14-SigLIP-{i}": _so400m(i, 14, _siglip_text(1152, 16, 27, 32000, 64, SO400M_MLP_RATIO))
       for i in (378, 384)},
    "ViT-SO400M-16-SigLIP-i18n-256": _so400m(
        256, 16, _siglip_text(1152, 16, 27, 250000, mlp_ratio=SO400M_MLP_RATIO, proj="none"), act="gelu_tanh"
    ),
    **{f"ViT-B-16-SigLIP2{s}": _siglip(i, 16, 768, 12, 12, _B16_TEXT2)
       for s, i in (("", 224), ("-256", 256), ("-384", 384), ("-512", 512))},
    "ViT-B-32-SigLIP2-256": _siglip(256, 32, 768, 12, 12, _B16_TEXT2, act="gelu_tanh"),
    **{f"ViT-L-16-SigLIP2-{i}": _siglip(i, 16, 1024, 24, 16, _L16_TEXT2) for i in (256, 384)},
    "ViT-L-16-SigLIP2-512": _siglip(512, 16, 1024, 24, 16, _L16_TEXT2, act="gelu_tanh"),
    "ViT-SO400M-14-SigLIP2": _so400m(224, 14, _SO400M_TEXT2),
    "ViT-SO400M-14-SigLIP2-378": _so400m(378, 14, _SO400M_TEXT2),
    **{f"ViT-SO400M-16-SigLIP2-{i}": _so400m(i, 16, _SO400M_TEXT2, act="gelu_tanh") for i in (256, 384, 512)},
    **{f"ViT-gopt-16-SigLIP2-{i}": _siglip(i, 16, 1536, 40, 16, _SO400M_TEXT2, act="gelu_tanh", embed=1536)
       for i in (256, 384)},
}  # fmt: skip

_EVA_PE: dict[str, CLIPConfig] = {
    "EVA02-B-16": _eva02(512, 224, 16, 768, 12, 12, _text(512, 8)),
    "EVA02-L-14": _eva02(768, 224, 14, 1024, 24, 16, _text(768, 12)),
    "EVA02-L-14-336": _eva02(768, 336, 14, 1024, 24, 16, _text(768, 12)),
    "PE-Core-T-16-384": _pe_core(512, 384, 16, 192, 12, 3, _text(512, 8, context=32)),
    "PE-Core-S-16-384": _pe_core(512, 384, 16, 384, 12, 6, _text(512, 8, context=32)),
    "PE-Core-B-16": _pe_core(1024, 224, 16, 768, 12, 12, _text(1024, 16, 24, context=32)),
    "PE-Core-L-14-336": _pe_core(1024, 336, 14, 1024, 24, 16, _text(1024, 16, 24, context=32)),
    "PE-Core-bigG-14-448": _pe_core(1280, 448, 14, 1536, 50, 16, _text(1280, 20, 24, context=72),
                                    mlp_ratio=8960 / 1536, class_token=False),
}  # fmt: skip

_CONFIGS: dict[str, CLIPConfig] = {
    "RN50": _rn(1024, 224, (3, 4, 6, 3), 64, _text(512, 8)),
    "RN101": _rn(512, 224, (3, 4, 23, 3), 64, _text(512, 8)),
    "RN50x4": _rn(640, 288, (4, 6, 10, 6), 80, _text(640, 10)),
    "RN50x16": _rn(768, 384, (6, 8, 18, 8), 96, _text(768, 12)),
    "RN50x64": _rn(1024, 448, (3, 15, 36, 10), 128, _text(1024, 16)),
    "ViT-B-32": _vit(512, 224, 12, 768, 32, _text(512, 8)),
    "ViT-B-16": _vit(512, 224, 12, 768, 16, _text(512, 8)),
    "ViT-L-14": _vit(768, 224, 24, 1024, 14, _text(768, 12)),
    "ViT-L-14-336": _vit(768, 336, 24, 1024, 14, _text(768, 12)),
    "ViT-H-14": _vit(1024, 224, 32, 1280, 14, _text(1024, 16, 24), head_width=80),
    "ViT-H-14-378": _vit(1024, 378, 32, 1280, 14, _text(1024, 16, 24), head_width=80),
    "ViT-bigG-14": _vit(1280, 224, 48, 1664, 14, _text(1280, 20, 32), head_width=104, mlp_ratio=4.9231),
    **_SIGLIP,
    **_EVA_PE,
    # MobileCLIP (Vasu et al. 2024) and MobileCLIP2 (Faghri et al. 2025), as OpenCLIP names them.
    "MobileCLIP-S1": _mobileclip("mci1", 512, 512, 8),
    "MobileCLIP-S2": _mobileclip("mci2", 512, 512, 8),
    "MobileCLIP-B": CLIPConfig(embed_dim=512, vision=MCI_VIT_B, text=_text(512, 8)),
    "MobileCLIP2-S0": _mobileclip("mci0", 512, 512, 8),
    "MobileCLIP2-S2": _mobileclip("mci2", 512, 512, 8),
    "MobileCLIP2-S3": _mobileclip("mci3", 768, 768, 12),
    "MobileCLIP2-S4": _mobileclip("mci4", 768, 768, 12),
    "MobileCLIP2-B": CLIPConfig(embed_dim=512, vision=MCI_VIT_B, text=_text(512, 8)),
    # Small configs for CPU training and tests. Text vocab is the OpenAI one unless a run trains its own.
    "tiny-vit": CLIPConfig(
        embed_dim=128,
        vision=ViTConfig(image_size=64, patch_size=8, width=192, layers=4),
        text=TextConfig(context_length=32, width=128, heads=4, layers=4),
    ),
    "tiny-resnet": CLIPConfig(
        embed_dim=128,
        vision=ResNetConfig(image_size=64, layers=(1, 1, 1, 1), width=32),
        text=TextConfig(context_length=32, width=128, heads=4, layers=4),
    ),
    # An MCi-style student for CPU distillation runs: the MobileCLIP-S layout at tiny widths.
    "tiny-mobileclip": CLIPConfig(
        embed_dim=128,
        vision=FastViTConfig(image_size=64, layers=(1, 1, 2, 1), widths=(16, 32, 64, 128), **_MCI_SMALL),
        text=TextConfig(context_length=32, width=128, heads=4, layers=4),
    ),
    "test-mobileclip": CLIPConfig(
        embed_dim=16,
        vision=FastViTConfig(image_size=32, layers=(1, 1, 1, 1), widths=(8, 16, 32, 32), **_MCI_SMALL),
        text=TextConfig(context_length=16, width=32, heads=2, layers=2, causal=False),
    ),
    "test-vit": CLIPConfig(
        embed_dim=16,
        vision=ViTConfig(image_size=32, patch_size=8, width=32, layers=2, head_width=16),
        text=TextConfig(context_length=16, width=32, heads=2, layers=2),
    ),
    # The same sizes in each family's composition, for the families' golden training runs.
    "test-siglip": _siglip(32, 8, 32, 2, 2, _siglip_text(32, 2, 2, 49408, context=16)),
    "test-eva02": _eva02(16, 32, 8, 32, 2, 2, TextConfig(context_length=16, width=32, heads=2, layers=2)),
    "test-pe-core": _pe_core(16, 32, 8, 32, 2, 2, TextConfig(context_length=16, width=32, heads=2, layers=2)),
}


def list_models() -> list[str]:
    """Every registered name (each also works with the ``-quickgelu`` suffix)."""
    return sorted(_CONFIGS)


def get_config(name: str) -> CLIPConfig:
    """The config registered under ``name``.

    Raises:
        UserError: for an unknown name, listing the known ones.
    """
    base, quick = (name[: -len(QUICKGELU_SUFFIX)], True) if name.endswith(QUICKGELU_SUFFIX) else (name, False)
    if base not in _CONFIGS:
        raise UserError(f"unknown model name {name!r}", hint=f"known names: {', '.join(list_models())}")
    cfg = _CONFIGS[base]
    return with_activation(cfg, "quick_gelu") if quick else cfg
