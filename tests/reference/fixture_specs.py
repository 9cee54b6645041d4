"""The tiny reference instances: which OpenCLIP 3.3.0 name each one imitates and what is made small.

Read by make_open_clip_fixtures.py (reference environment only). Each spec starts from the imitated name's own
OpenCLIP model config and changes only sizes (widths, depths, heads, image size, vocabulary); every switch
(pooling, activations, norms, causal mask, projections, rope settings, block types) stays as OpenCLIP and timm
set it for the real name. ``timm`` holds the extra keyword arguments given to ``timm.create_model`` for the
vision trunk (OpenCLIP passes none of these itself), ``stem`` the channels of a hybrid ViT's conv stem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Tiny text vocabulary used by every fixture; the real sizes are in each fixture's "real_config".
VOCAB = 256


@dataclass(frozen=True)
class Spec:
    """One fixture.

    Args:
        name: fixture folder name under fixtures/.
        imitates: the OpenCLIP 3.3.0 model name whose switches it keeps.
        also_covers: other OpenCLIP names that differ from ``imitates`` only in sizes (widths, depths, mlp ratios,
            patch and image size, vocabulary, context length).
        config: overrides deep-merged into the imitated name's OpenCLIP model config.
        timm: extra keyword arguments for ``timm.create_model`` (the vision trunk's sizes).
        stem: conv-stem channels for the MobileCLIP-B hybrid ViT (its timm entry point hard-codes them).
        reparam: also save the outputs and state dict after timm's ``reparameterize_model``.
        switches: the switches this fixture exercises, in words (copied into meta.json).
    """

    name: str
    imitates: str
    also_covers: tuple[str, ...]
    config: dict[str, Any]
    timm: dict[str, Any] = field(default_factory=dict)
    stem: tuple[int, ...] | None = None
    reparam: bool = False
    switches: str = ""


def _text(width: int, heads: int, **extra: Any) -> dict[str, Any]:
    return {"width": width, "heads": heads, "layers": 2, "vocab_size": VOCAB, **extra}


def _vit_timm(image: int, width: int, heads: int, **extra: Any) -> dict[str, Any]:
    return {"img_size": image, "embed_dim": width, "depth": 2, "num_heads": heads, **extra}


SIGLIP = [
    Spec(
        "siglip_b16", "ViT-B-16-SigLIP",
        ("ViT-B-16-SigLIP-256", "ViT-B-16-SigLIP-384", "ViT-B-16-SigLIP-512", "ViT-B-16-SigLIP-i18n-256",
         "ViT-L-16-SigLIP-256", "ViT-L-16-SigLIP-384"),
        {"embed_dim": 16, "vision_cfg": {"image_size": 64}, "text_cfg": _text(16, 2)},
        timm=_vit_timm(64, 16, 2),
        switches="timm ViT, no class token, MAP head, exact GELU (vision and text), no image projection "
        "(timm_proj none), text non-causal, pool last token, text projection Linear with bias, LN eps 1e-6, "
        "logit_bias init -10",
    ),
    Spec(
        "siglip2_b16", "ViT-B-16-SigLIP2",
        ("ViT-B-16-SigLIP2-256", "ViT-B-16-SigLIP2-384", "ViT-B-16-SigLIP2-512", "ViT-L-16-SigLIP2-256",
         "ViT-L-16-SigLIP2-384", "ViT-SO400M-14-SigLIP2", "ViT-SO400M-14-SigLIP2-378"),
        {"embed_dim": 16, "vision_cfg": {"image_size": 64}, "text_cfg": _text(16, 2)},
        timm=_vit_timm(64, 16, 2),
        switches="as siglip_b16 but the text MLP uses tanh-approximated GELU (act_kwargs approximate=tanh); "
        "the vision tower keeps exact GELU (same timm model as SigLIP 1)",
    ),
    Spec(
        "siglip_so400m14", "ViT-SO400M-14-SigLIP",
        ("ViT-SO400M-14-SigLIP-378", "ViT-SO400M-14-SigLIP-384"),
        {"embed_dim": 24, "vision_cfg": {"image_size": 56}, "text_cfg": _text(24, 2)},
        timm=_vit_timm(56, 24, 2),
        switches="SO400M shape: mlp_ratio 3.7362 in vision blocks, MAP head MLP and text blocks; hidden width "
        "is int(width * 3.7362) (truncated: 89 at width 24, not 90); patch 14; context 16; exact GELU",
    ),
    Spec(
        "siglip_so400m16_i18n", "ViT-SO400M-16-SigLIP-i18n-256", (),
        {"embed_dim": 24, "vision_cfg": {"image_size": 64}, "text_cfg": _text(24, 2)},
        timm=_vit_timm(64, 24, 2),
        switches="SO400M with gelu_tanh in vision only (text exact GELU), NO text projection (proj_type none): "
        "encode_text returns the pooled ln_final output",
    ),
    Spec(
        "siglip2_gopt16", "ViT-gopt-16-SigLIP2-256",
        ("ViT-gopt-16-SigLIP2-384", "ViT-B-32-SigLIP2-256", "ViT-SO400M-16-SigLIP2-256", "ViT-SO400M-16-SigLIP2-384",
         "ViT-SO400M-16-SigLIP2-512", "ViT-L-16-SigLIP2-512"),
        {"embed_dim": 24, "vision_cfg": {"image_size": 64}, "text_cfg": _text(16, 2)},
        timm=_vit_timm(64, 24, 2),
        switches="vision width (= embed_dim) differs from text width: the text projection maps 16 -> 24; "
        "text mlp_ratio 3.7362, vision mlp_ratio 4, tanh-approximated GELU in both towers (timm act_layer "
        "gelu_tanh, text act_kwargs approximate=tanh), as every SigLIP 2 name whose timm model sets gelu_tanh",
    ),
]

EVA = [
    Spec(
        "eva02_b16", "EVA02-B-16", (),
        {"embed_dim": 24, "vision_cfg": {"image_size": 64}, "text_cfg": _text(16, 2)},
        timm=_vit_timm(64, 16, 2),
        switches="EVA-02: class token, learned abs pos embed (incl. class slot) + 2-D rope (the real ref_feat_shape 16 kept, "
        "so the 4x4 grid's positions are scaled by 16/4; the real 224 model scales 14 -> 16), separate q/k/v Linear (k without bias), "
        "sub-LN inside attention (attn.norm) and inside SwiGLU (mlp.norm), SwiGLU hidden int(16*8/3)=42 (not 43), "
        "token pooling, image projection = timm head Linear with bias; text: OpenAI-style causal, argmax",
    ),
    Spec(
        "eva02_l14", "EVA02-L-14", ("EVA02-L-14-336",),
        {"embed_dim": 24, "vision_cfg": {"image_size": 56}, "text_cfg": _text(16, 2)},
        timm=_vit_timm(56, 24, 2, ref_feat_shape=(4, 4)),
        switches="same switches as eva02_b16 with patch 14 and rope grid equal to ref_feat_shape (ratio 1, "
        "as EVA02-L-14 at 224); EVA02-L-14-336 runs grid 24 against ref 16",
    ),
    Spec(
        "eva02_e14", "EVA02-E-14", ("EVA02-E-14-plus",),
        {"embed_dim": 24, "vision_cfg": {"image_size": 56}, "text_cfg": _text(16, 2)},
        timm=_vit_timm(56, 16, 2),
        switches="EVA-02-E: post-norm blocks (EvaBlockPostNorm: x + norm(attn(x))), no rope, fused qkv with "
        "q_bias/v_bias parameters (k bias zero), GELU MLP with hidden int(width*15360/1792), token pooling",
    ),
    Spec(
        "eva01_g14", "EVA01-g-14", ("EVA01-g-14-plus",),
        {"embed_dim": 24, "vision_cfg": {"image_size": 56}, "text_cfg": _text(16, 2)},
        timm=_vit_timm(56, 16, 2),
        switches="EVA-01 giant: pre-norm Eva blocks, no rope, fused qkv with q_bias/v_bias, GELU MLP with "
        "hidden int(width*6144/1408), token pooling",
    ),
]

PE = [
    Spec(
        "pe_core_b16", "PE-Core-B-16", ("PE-Core-T-16-384", "PE-Core-S-16-384", "PE-Core-L-14-336"),
        {"embed_dim": 40, "vision_cfg": {"image_size": 64}, "text_cfg": _text(16, 2)},
        timm=_vit_timm(64, 16, 2, ref_feat_shape=(4, 4)),
        switches="PE-Core: class token + abs pos embed, 2-D rope with 'xy' grid indexing and grid offset 1 "
        "(class token not rotated), fused qkv Linear with full bias, norm_pre (patch embed without bias), "
        "LN eps 1e-5, MAP head with 8 heads over all tokens incl. class token, image projection = timm head "
        "Linear with bias; text: OpenAI-style causal, argmax, context 32",
    ),
    Spec(
        "pe_core_g14", "PE-Core-bigG-14-448", (),
        {"embed_dim": 40, "vision_cfg": {"image_size": 56}, "text_cfg": _text(16, 2)},
        timm=_vit_timm(56, 16, 2, ref_feat_shape=(4, 4)),
        switches="PE-Core bigG: NO class token, rope grid offset 0, mlp_ratio 8960/1536, context 72",
    ),
]

BIG_VIT = [
    Spec(
        "vit_bigG14", "ViT-bigG-14", ("ViT-H-14", "ViT-H-14-378"),
        {"embed_dim": 24, "vision_cfg": {"image_size": 56, "layers": 2, "width": 16, "head_width": 8},
         "text_cfg": _text(16, 2)},
        switches="OpenCLIP's own VisionTransformer/TextTransformer (OpenAI layout keys), exact GELU, "
        "head_width != 64, mlp_ratio 4.9231 -> hidden int(16*4.9231)=78 (not 79)",
    ),
    Spec(
        "vit_h14_quickgelu", "ViT-H-14-quickgelu", ("ViT-H-14-378-quickgelu", "ViT-bigG-14-quickgelu"),
        {"embed_dim": 24, "vision_cfg": {"image_size": 70, "layers": 2, "width": 16, "head_width": 8},
         "text_cfg": _text(16, 2)},
        switches="QuickGELU in both towers, odd patch grid (5x5, as 378/14 = 27), head_width != 64",
    ),
    Spec(
        "vit_bigG14_clipa", "ViT-bigG-14-CLIPA", ("ViT-bigG-14-CLIPA-336", "ViT-H-14-CLIPA", "ViT-H-14-CLIPA-336"),
        {"embed_dim": 24, "vision_cfg": {"image_size": 56, "layers": 2, "width": 16, "head_width": 8},
         "text_cfg": _text(16, 2)},
        switches="CLIPA: no ln_pre, average pooling over patch tokens (class token excluded) with ln_post "
        "after pooling; text non-causal, pool last token, context 32",
    ),
    Spec(
        "vit_h14_worldwide", "ViT-H-14-worldwide",
        ("ViT-H-14-worldwide-378", "ViT-bigG-14-worldwide",
         "ViT-bigG-14-worldwide-378"),
        {"embed_dim": 24, "vision_cfg": {"image_size": 56, "layers": 2, "width": 16, "head_width": 8},
         "text_cfg": _text(16, 2)},
        switches="text pooled at the first token equal to eos_id 2 (pool_type eos), causal",
    ),
]

MOBILECLIP = [
    Spec(
        "mobileclip_s1", "MobileCLIP-S1", ("MobileCLIP-S2", "MobileCLIP2-S0", "MobileCLIP2-S2"),
        {"embed_dim": 24, "vision_cfg": {"image_size": 64}, "text_cfg": _text(16, 2)},
        timm={"layers": (2, 1, 1, 1), "embed_dims": (8, 16, 32, 64)},
        reparam=True,
        switches="FastViT MCi0/1/2: 4 stages (repmixer x3, attention), mlp_ratio 3, SE in the downsampling of "
        "stages 3-4, RepCPE before stage 4, BatchNorm, stem with scale branch, large-kernel conv act, "
        "final_conv MobileOne (SE) to 2x channels, avg pool, head Linear with bias; text non-causal, argmax",
    ),
    Spec(
        "mobileclip2_s3", "MobileCLIP2-S3", ("MobileCLIP2-S4",),
        {"embed_dim": 24, "vision_cfg": {"image_size": 96}, "text_cfg": _text(16, 2)},
        timm={"layers": (1, 1, 1, 1, 1), "embed_dims": (4, 8, 16, 32, 64)},
        reparam=True,
        switches="FastViT MCi3/4: 5 stages (repmixer x3, attention x2), mlp_ratio 4, no SE in downsampling, "
        "RepCPE before stages 4 and 5, LayerNorm2d (eps 1e-5) in attention blocks, stem without scale branch; "
        "text non-causal, argmax",
    ),
    Spec(
        "mobileclip_b", "MobileCLIP-B", ("MobileCLIP2-B",),
        {"embed_dim": 24, "vision_cfg": {"image_size": 64}, "text_cfg": _text(16, 2)},
        timm=_vit_timm(64, 16, 2),
        stem=(4, 4, 16),
        reparam=True,
        switches="timm hybrid ViT (vit_base_mci_224): conv stem (k4s4 BN GELU, k2s2 BN GELU, k2s2 with bias), "
        "no patch projection, class token without position slot (no_embed_class), token pooling, head Linear "
        "with bias; text CAUSAL, argmax",
    ),
    Spec(
        "mobileclip2_l14", "MobileCLIP2-L-14", (),
        {"embed_dim": 24, "vision_cfg": {"image_size": 56}, "text_cfg": _text(16, 2)},
        timm=_vit_timm(56, 16, 2),
        switches="timm CLIP ViT (vit_large_patch14_clip_224): norm_pre, patch embed without bias, LN eps 1e-5, "
        "class token, token pooling, head Linear with bias; text non-causal, argmax",
    ),
]

SPECS: list[Spec] = SIGLIP + EVA + PE + BIG_VIT + MOBILECLIP
