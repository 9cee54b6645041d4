"""OpenAI CLIP weights (the layout of github.com/openai/CLIP) ⇄ clipforge.

OpenAI publishes TorchScript archives (``ViT-B-32.pt``, ``RN50.pt``, ...) whose ``state_dict()`` uses the
key names of their ``model.py``; OpenCLIP's standard ``CLIP`` class keeps the same names, so
``convert/open_clip.py`` reuses the key map defined here.

Which architecture? Pass a clipforge model name (``--config ViT-B-32``). Without one, the config is derived
from the state dict exactly as OpenAI's own ``build_model`` does, because their archives carry no config:
ViT if ``visual.proj`` exists; widths from ``visual.conv1`` / ``ln_final``; depth by counting residual
blocks; image size from the positional embedding; 64-channel heads; QuickGELU. Nothing beyond that.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from clipforge.convert.common import (
    Imported,
    Rule,
    affine,
    batchnorm,
    config_errors,
    import_state,
    pipeline_config,
    read_state_file,
)
from clipforge.errors import UserError
from clipforge.model.config import CLIPConfig, ResNetConfig, TextConfig, ViTConfig, with_activation

log = logging.getLogger(__name__)

# Entries of OpenAI's archives that are constants, not weights (their build_model deletes them too).
OPENAI_CONSTANTS = ("input_resolution", "context_length", "vocab_size")
# OpenAI's heads are always 64 channels wide (build_model: heads = width // 64).
OPENAI_HEAD_WIDTH = 64


def _transformer_rules(ours: str, theirs: str, layers: int) -> list[Rule]:
    rules: list[Rule] = []
    for i in range(layers):
        o, t = f"{ours}.blocks.{i}", f"{theirs}.resblocks.{i}"
        rules += affine(f"{o}.norm1", f"{t}.ln_1")
        rules += [
            Rule(f"{o}.attn.qkv.weight", (f"{t}.attn.in_proj_weight",)),
            Rule(f"{o}.attn.qkv.bias", (f"{t}.attn.in_proj_bias",)),
        ]
        rules += affine(f"{o}.attn.out", f"{t}.attn.out_proj")
        rules += affine(f"{o}.norm2", f"{t}.ln_2")
        rules += affine(f"{o}.mlp.fc1", f"{t}.mlp.c_fc")
        rules += affine(f"{o}.mlp.fc2", f"{t}.mlp.c_proj")
    return rules


def _vit_rules(cfg: ViTConfig) -> list[Rule]:
    rules = [
        Rule("visual.patch_embed.weight", ("visual.conv1.weight",)),
        Rule("visual.class_embedding", ("visual.class_embedding",)),
        Rule("visual.pos_embedding", ("visual.positional_embedding",)),
        Rule("visual.proj", ("visual.proj",)),
    ]
    rules += affine("visual.norm_pre", "visual.ln_pre")
    rules += _transformer_rules("visual.transformer", "visual.transformer", cfg.layers)
    return rules + affine("visual.norm_post", "visual.ln_post")


def _resnet_rules(cfg: ResNetConfig) -> list[Rule]:
    rules: list[Rule] = []
    # Our stem is one Sequential (conv, bn, relu) x 3 + pool; OpenAI names the convs/bns 1..3.
    for n, (conv, bn) in enumerate(((0, 1), (3, 4), (6, 7)), start=1):
        rules.append(Rule(f"visual.stem.{conv}.weight", (f"visual.conv{n}.weight",)))
        rules += batchnorm(f"visual.stem.{bn}", f"visual.bn{n}")
    for s, blocks in enumerate(cfg.layers):
        for b in range(blocks):
            o, t = f"visual.stages.{s}.{b}", f"visual.layer{s + 1}.{b}"
            for n in (1, 2, 3):
                rules.append(Rule(f"{o}.conv{n}.weight", (f"{t}.conv{n}.weight",)))
                rules += batchnorm(f"{o}.bn{n}", f"{t}.bn{n}")
            if b == 0:  # only the first block of a stage changes channels/stride, so only it has a shortcut
                # OpenAI's shortcut is Sequential("-1": avgpool, "0": conv, "1": bn); ours (pool, conv, bn).
                rules.append(Rule(f"{o}.downsample.1.weight", (f"{t}.downsample.0.weight",)))
                rules += batchnorm(f"{o}.downsample.2", f"{t}.downsample.1")
    rules.append(Rule("visual.attn_pool.pos_embedding", ("visual.attnpool.positional_embedding",)))
    for ours, theirs in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("out", "c_proj")):
        rules += affine(f"visual.attn_pool.{ours}", f"visual.attnpool.{theirs}")
    return rules


# The switches OpenAI's layout has no parameters or code for, at the value OpenAI's towers use.
OPENAI_VIT = {"act": ("gelu", "quick_gelu"), "class_token": (True,), "pos_embed": (True,), "rope": (None,),
              "patch_bias": (False,), "norm_pre": (True,), "qkv_bias": ("qkv",), "sub_ln": (False,),
              "pool": ("token",), "proj": ("plain",)}  # fmt: skip
OPENAI_TEXT = {"act": ("gelu", "quick_gelu"), "causal": (True,), "pool": ("argmax",), "proj": ("plain",)}


def openai_style_difference(tower: ViTConfig | TextConfig) -> str | None:
    """The first switch of ``tower`` that OpenAI's towers do not have (``"key=value"``), or None."""
    allowed = OPENAI_VIT if isinstance(tower, ViTConfig) else OPENAI_TEXT
    for key, values in allowed.items():
        if getattr(tower, key) not in values:
            return f"{key}={getattr(tower, key)!r}"
    return None


def check_openai_layout(cfg: CLIPConfig) -> None:
    """Raise unless ``cfg`` is built from OpenAI-style towers (the only ones OpenAI's key names describe).

    Raises:
        UserError: naming the first switch that differs.
    """
    if not isinstance(cfg.vision, (ViTConfig, ResNetConfig)):
        raise UserError(f"vision.kind {cfg.vision.kind!r}: OpenAI's CLIP layout has no such tower",
                        hint="MobileCLIP weights are OpenCLIP's: import them with --from open_clip")
    towers = [("text", cfg.text)] + ([("vision", cfg.vision)] if isinstance(cfg.vision, ViTConfig) else [])
    for name, tower in towers:
        difference = openai_style_difference(tower)
        if difference is not None:
            raise UserError(
                f"{name}.{difference}: OpenAI's CLIP layout has no such tower",
                hint="only OpenAI-style towers can be written in OpenAI's layout; export SigLIP models with --to hf",
            )


def openai_rules(cfg: CLIPConfig, text_prefix: str = "") -> list[Rule]:
    """The key map between OpenAI's layout and ours for ``cfg``.

    Args:
        cfg: our model config (OpenAI-style towers, see ``check_openai_layout``).
        text_prefix: prefix of the text-tower keys ("" in OpenAI's layout; "text." in OpenCLIP's
            CustomTextCLIP layout, which also names the projection ``text.text_projection``).
    """
    check_openai_layout(cfg)
    return vision_rules(cfg) + text_rules(cfg, text_prefix) + logit_rules(cfg)


def vision_rules(cfg: CLIPConfig) -> list[Rule]:
    """The image tower's part of OpenAI's layout (an OpenAI-style ViT or a ModifiedResNet)."""
    return _resnet_rules(cfg.vision) if isinstance(cfg.vision, ResNetConfig) else _vit_rules(cfg.vision)


def logit_rules(cfg: CLIPConfig) -> list[Rule]:
    """The temperature, and SigLIP's logit bias when the model has one."""
    rules = [Rule("logit_scale", ("logit_scale",))]
    if cfg.init_logit_bias is not None:
        rules.append(Rule("logit_bias", ("logit_bias",)))
    return rules


def text_rules(cfg: CLIPConfig, prefix: str = "") -> list[Rule]:
    """The text tower in OpenAI's names (OpenCLIP keeps them, also for SigLIP's non-causal tower).

    Args:
        cfg: our model config.
        prefix: "" (OpenAI, OpenCLIP's CLIP) or "text." (OpenCLIP's CustomTextCLIP).
    """
    p = prefix
    rules = [
        Rule("text.token_embedding.weight", (f"{p}token_embedding.weight",)),
        Rule("text.pos_embedding", (f"{p}positional_embedding",)),
    ]
    rules += _transformer_rules("text.transformer", f"{p}transformer", cfg.text.layers)
    rules += affine("text.norm_final", f"{p}ln_final")
    if cfg.text.proj == "plain":  # a (W, E) matrix used as x @ proj
        rules.append(Rule("text.proj", (f"{p}text_projection",)))
    elif cfg.text.proj == "bias":  # an nn.Linear (weight (E, W))
        rules.append(Rule("text.proj", (f"{p}text_projection.weight",), "transpose"))
        rules.append(Rule("text.proj_bias", (f"{p}text_projection.bias",)))
    return rules


def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})


def config_from_state_dict(state: Mapping[str, torch.Tensor], source: str = "state dict") -> CLIPConfig:
    """Derive the config the way OpenAI's ``build_model`` does (their archives carry no config).

    Args:
        state: an OpenAI-layout state dict.
        source: file name for error messages.

    Raises:
        UserError: when the keys OpenAI's rule reads are absent (not an OpenAI-layout state dict).
    """
    with config_errors(source):
        return _config_from_state_dict(state, source)


def _config_from_state_dict(state: Mapping[str, torch.Tensor], source: str = "state dict") -> CLIPConfig:
    try:
        if "visual.proj" in state:
            width = state["visual.conv1.weight"].shape[0]
            patch = state["visual.conv1.weight"].shape[-1]
            grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
            vision: ViTConfig | ResNetConfig = ViTConfig(
                image_size=patch * grid,
                layers=_count_blocks(state, "visual.transformer.resblocks."),
                width=width,
                head_width=OPENAI_HEAD_WIDTH,
                patch_size=patch,
            )
        else:
            blocks = tuple(_count_blocks(state, f"visual.layer{i}.") for i in (1, 2, 3, 4))
            grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
            vision = ResNetConfig(
                image_size=grid * 32,
                layers=blocks,  # type: ignore[arg-type]
                width=state["visual.layer1.0.conv1.weight"].shape[0],
                head_width=OPENAI_HEAD_WIDTH,
            )
        text_width = state["ln_final.weight"].shape[0]
        text = TextConfig(
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            width=text_width,
            heads=text_width // OPENAI_HEAD_WIDTH,
            layers=_count_blocks(state, "transformer.resblocks."),
        )
        embed_dim = state["text_projection"].shape[1]
    except KeyError as exc:
        raise UserError(
            f"{source}: not an OpenAI CLIP state dict (no {exc.args[0]!r})",
            hint="pass the model name with --config, or use --from open_clip / --from hf for other layouts",
        ) from exc
    return with_activation(CLIPConfig(embed_dim=int(embed_dim), vision=vision, text=text), "quick_gelu")


def read_openai_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an OpenAI checkpoint: a TorchScript archive (as OpenAI publishes) or a plain state dict."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.suffix != ".safetensors":
        try:
            with warnings.catch_warnings():  # torch marks TorchScript deprecated; OpenAI's files are TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                archive = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError:  # not TorchScript: a pickled state dict
            pass
        else:
            return {k: v for k, v in archive.state_dict().items()}
    return read_state_file(path)


def import_openai(src: str | Path, config: CLIPConfig | None = None) -> Imported:
    """Import OpenAI CLIP weights.

    Args:
        src: a TorchScript archive or a state dict (.pt/.bin/.safetensors) in OpenAI's layout.
        config: the architecture; None derives it as OpenAI's ``build_model`` does (see module docstring).
            OpenAI's model code always uses QuickGELU, so it is switched on for a named config too.
    """
    state = read_openai_file(src)
    cfg = config if config is not None else config_from_state_dict(state, str(src))
    if cfg.text.act != "quick_gelu":
        log.info("OpenAI weights were trained with QuickGELU: using it (act=quick_gelu)")
        cfg = with_activation(cfg, "quick_gelu")
    ours = import_state(state, openai_rules(cfg), cfg, str(src), ignore=OPENAI_CONSTANTS)
    return Imported({k: v.float() if v.is_floating_point() else v for k, v in ours.items()}, pipeline_config(cfg))
