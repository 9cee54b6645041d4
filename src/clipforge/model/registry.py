"""Named model configs, using OpenCLIP/OpenAI names. Adding a name here is all a new size needs.

``get_config("ViT-B-32-quickgelu")`` gives the named config with QuickGELU, as OpenAI's weights need.
"""

from __future__ import annotations

import dataclasses

from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig, ConvStemViTConfig, FastViTConfig, ResNetConfig, TextConfig, ViTConfig

QUICKGELU_SUFFIX = "-quickgelu"


def _vit(embed: int, image: int, layers: int, width: int, patch: int, text: TextConfig, head_width: int = 64):
    vision = ViTConfig(image_size=image, patch_size=patch, width=width, layers=layers, head_width=head_width)
    return CLIPConfig(embed_dim=embed, vision=vision, text=text)


def _rn(embed: int, image: int, blocks: tuple[int, int, int, int], width: int, text: TextConfig) -> CLIPConfig:
    return CLIPConfig(
        embed_dim=embed, vision=ResNetConfig(image_size=image, layers=blocks, width=width), text=text
    )


def _text(width: int, heads: int, layers: int = 12, causal: bool = True) -> TextConfig:
    return TextConfig(width=width, heads=heads, layers=layers, causal=causal)


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
    return CLIPConfig(embed_dim=embed, vision=MCI[tower], text=_text(text_width, text_heads, causal=False))


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
    return dataclasses.replace(cfg, quick_gelu=True) if quick else cfg
