"""Text tower: a transformer over token ids, read at one position.

OpenAI's CLIP: causal attention, features at the end-of-text token (the highest id). SigLIP: attention over
all positions (padding included, as it was trained) and features at the last position.
"""

from __future__ import annotations

import torch
from torch import nn

from clipforge.model.config import TextConfig
from clipforge.model.layers import BlockSpec, Transformer


def pool_positions(token_ids: torch.Tensor, cfg: TextConfig, trim: bool = True) -> tuple[torch.Tensor, int]:
    """Which position of each text is read, and how many leading positions the forward must run.

    Args:
        token_ids: (B, L) ids.
        cfg: the text tower's config.
        trim: find the longest text (reads one value back to the host: on an accelerator a wait for the device).

    Returns:
        (B,) positions, and n <= L: with a causal mask nothing after the last read position can change the
        features, so the batch is trimmed to its longest text instead of always running all L positions.
    """
    if cfg.pool == "last":
        length = token_ids.shape[1]
        return torch.full((token_ids.shape[0],), length - 1, device=token_ids.device), length
    eot = token_ids.argmax(dim=-1)  # (B,) first end-of-text position
    if not trim or not cfg.causal or not token_ids.numel():
        return eot, token_ids.shape[1]
    return eot, int(eot.max()) + 1


def trim_on_host(token_ids: torch.Tensor, cfg: TextConfig) -> torch.Tensor:
    """``token_ids`` (B, L) cut to the longest text while still in host memory, before the copy to the device.

    The same trim the causal tower does for itself in eval mode, without the device read: in training mode the
    tower runs whatever length it is given, so a training step never waits on the device for a length.
    """
    if cfg.pool == "last" or not cfg.causal or not token_ids.numel() or token_ids.device.type != "cpu":
        return token_ids
    longest = int(token_ids.numpy().argmax(axis=-1).max()) + 1  # numpy: host memory, nothing to wait for
    return token_ids[:, :longest]


class TextTransformer(nn.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        spec = BlockSpec(cfg.width, cfg.heads, cfg.mlp_ratio, cfg.act, cfg.ln_eps)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_embedding = nn.Parameter(torch.zeros(cfg.context_length, cfg.width))
        self.transformer = Transformer(spec, cfg.layers)
        self.norm_final = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)
        self.proj = nn.Parameter(torch.zeros(cfg.width, embed_dim)) if cfg.proj != "none" else None
        self.proj_bias = nn.Parameter(torch.zeros(embed_dim)) if cfg.proj == "bias" else None
        self.init_weights()

    def init_weights(self) -> None:
        w, layers = self.cfg.width, self.cfg.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embedding, std=0.01)
        if self.proj is not None:
            nn.init.normal_(self.proj, std=w**-0.5)
        self.transformer.init_weights(proj_std=w**-0.5 * (2 * layers) ** -0.5, attn_std=w**-0.5, fc_std=(2 * w) ** -0.5)

    def forward(self, token_ids: torch.Tensor, trim: bool | None = None) -> torch.Tensor:
        """Args: token_ids (B, L) with L <= context_length (L = context_length for pool "last"); trim: cut the
        batch to its longest text (default: in eval mode only; training steps are not held up by the length
        read, their callers trim on the host with trim_on_host; a traced export needs static shapes).

        Returns (B, embed_dim) unnormalized features.
        """
        pos, n = pool_positions(token_ids, self.cfg, trim=not self.training if trim is None else trim)
        ids = token_ids[:, :n]
        x = self.token_embedding(ids) + self.pos_embedding[:n].to(self.token_embedding.weight.dtype)  # (B, n, W)
        x = self.transformer(x, causal=self.cfg.causal)
        x = self.norm_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), pos]  # (B, W)
        if self.proj is not None:
            x = x @ self.proj.to(x.dtype)  # (B, E)
        if self.proj_bias is not None:
            x = x + self.proj_bias.to(x.dtype)
        return x
