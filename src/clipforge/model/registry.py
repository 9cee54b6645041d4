"""Named model configs, using OpenCLIP/OpenAI names. Adding a name here is all a new size needs.

``get_config("ViT-B-32-quickgelu")`` gives the named config with QuickGELU, as OpenAI's weights need.
"""

from __future__ import annotations

import dataclasses

from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig, ResNetConfig, TextConfig, ViTConfig

QUICKGELU_SUFFIX = "-quickgelu"


def _vit(embed: int, image: int, layers: int, width: int, patch: int, text: TextConfig, head_width: int = 64):
    vision = ViTConfig(image_size=image, patch_size=patch, width=width, layers=layers, head_width=head_width)
    return CLIPConfig(embed_dim=embed, vision=vision, text=text)


def _rn(embed: int, image: int, blocks: tuple[int, int, int, int], width: int, text: TextConfig) -> CLIPConfig:
    return CLIPConfig(
        embed_dim=embed, vision=ResNetConfig(image_size=image, layers=blocks, width=width), text=text
    )


def _text(width: int, heads: int, layers: int = 12) -> TextConfig:
    return TextConfig(width=width, heads=heads, layers=layers)


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
