"""2-D rotary position embedding (RoFormer, Su et al. 2021) over a square patch grid, in EVA-02's axial form.

A head of width Dh is split in two: the first Dh/2 channels rotate with one grid coordinate, the other Dh/2
with the other, in interleaved pairs (x0, x1), (x2, x3), ... Pair i of a half turns by angle
``position * temperature ** (-i / (Dh / 4))``. The sines and cosines are computed from the config on every
forward (a few kB; no buffers to keep in sync across devices, dtypes or meta-device construction).
"""

from __future__ import annotations

import torch

from clipforge.model.config import RopeConfig


def rope_table(cfg: RopeConfig, grid: int, head_width: int, device: torch.device | None = None) -> torch.Tensor:
    """Sines then cosines for every patch, row-major over the grid.

    Args:
        cfg: the rotary settings.
        grid: patches per side.
        head_width: channels per attention head (a multiple of 4).
        device: where to build the table.

    Returns:
        (grid * grid, 2 * head_width) float32: [sin | cos], each in the interleaved layout [f0, f0, f1, f1, ...].
    """
    bands = head_width // 4
    exponents = torch.arange(bands, device=device, dtype=torch.float32) / bands  # (F,)
    freqs = 1.0 / (cfg.temperature**exponents)  # (F,)
    pos = torch.arange(grid, device=device, dtype=torch.float32) + cfg.offset  # (g,)
    if cfg.ref_grid:
        pos = pos / grid * cfg.ref_grid  # EVA-02: positions on the pretraining grid
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")  # each (g, g)
    first, second = (rows, cols) if cfg.axes == "ij" else (cols, rows)
    coords = torch.stack([first, second], dim=-1).reshape(grid * grid, 2, 1)  # (N, 2, 1)
    angles = (coords * freqs).reshape(grid * grid, 2 * bands)  # (N, Dh/2): first half, then second
    angles = angles.repeat_interleave(2, dim=-1)  # (N, Dh): pairs share an angle
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (N, 2 * Dh)


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., Dh/2, 2)
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)  # (..., Dh)


def apply_rope(x: torch.Tensor, table: torch.Tensor, prefix: int = 0) -> torch.Tensor:
    """Rotate queries or keys of the patch tokens; the first ``prefix`` tokens (class token) stay as they are.

    Args:
        x: (B, H, N, Dh) queries or keys.
        table: (N - prefix, 2 * Dh) from ``rope_table``, or (B, N - prefix, 2 * Dh) after patch dropout.
        prefix: tokens before the patches.
    """
    sin, cos = table.chunk(2, dim=-1)  # each (..., N - prefix, Dh)
    if sin.dim() == 3:
        sin, cos = sin.unsqueeze(1), cos.unsqueeze(1)  # (B, 1, N - prefix, Dh): one table per image
    head, patches = x[:, :, :prefix], x[:, :, prefix:]
    rotated = (patches * cos + _rotate_pairs(patches) * sin).to(x.dtype)  # float32 tables, x's dtype out
    return torch.cat([head, rotated], dim=2) if prefix else rotated
