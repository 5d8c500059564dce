"""Sinusoidal encodings: video-level temporal (seconds) and 2D spatial (patch row, column)."""

from __future__ import annotations

import math

import torch


def sinusoid(pos: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """Transformer sinusoidal encoding of real-valued positions.

    pos: (...) float  ->  (..., dim). Wavelengths go from 2*pi to 2*pi*max_period, so positions up to
    `max_period` stay distinct; integer positions match the standard table of that length.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=pos.device, dtype=torch.float32) / half
    )
    angles = pos.float().unsqueeze(-1) * freqs  # (..., half)
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if dim % 2:
        enc = torch.nn.functional.pad(enc, (0, 1))
    return enc


def temporal_encoding(times: torch.Tensor, dim: int, *, fps: float, max_video_s: float) -> torch.Tensor:
    """Video-level temporal encoding: one row per frame at `fps` over the longest video.

    times: (...) seconds  ->  (..., dim)
    """
    return sinusoid(times * fps, dim, max_period=max(max_video_s * fps, 2.0))


def spatial_encoding(rows: torch.Tensor, cols: torch.Tensor, dim: int, grid: int) -> torch.Tensor:
    """2D encoding of patch positions: half the channels for the row, half for the column.

    rows, cols: (...) long  ->  (..., dim)
    """
    half = dim // 2
    return torch.cat(
        [sinusoid(rows, half, max_period=4.0 * grid), sinusoid(cols, dim - half, max_period=4.0 * grid)],
        dim=-1,
    )
