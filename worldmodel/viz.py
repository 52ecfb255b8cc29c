"""Image strips and videos of predictions, for TensorBoard, reports and GIFs.

All functions take float frames in [0, 1] shaped ``(..., 3, H, W)`` and return uint8 arrays laid out
``(H, W, 3)`` (images) or ``(T, H, W, 3)`` (videos), ready for imageio or ``SummaryWriter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["to_uint8", "prediction_strip", "prediction_video", "write_gif", "write_png"]


def to_uint8(x: Tensor) -> np.ndarray:
    """``(..., 3, H, W)`` float in [0, 1] -> ``(..., H, W, 3)`` uint8 numpy."""
    x = x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return x.movedim(-3, -1).numpy()


def _pad(x: Tensor, pad: int, value: float = 1.0) -> Tensor:
    return torch.nn.functional.pad(x, (pad, pad, pad, pad), value=value)


def prediction_strip(rows: Sequence[Tensor], pad: int = 1) -> np.ndarray:
    """Grid image with one row per sequence and one column per time step.

    Args:
        rows: sequences ``(T_i, 3, H, W)`` in [0, 1] (e.g. truth, then each sample). Shorter rows
            are right-aligned so that predictions sit under the frames they predict.
        pad: white border in pixels around each frame.

    Returns:
        ``(R * (H + 2 pad), T * (W + 2 pad), 3)`` uint8.
    """
    if not rows:
        raise ValueError("prediction_strip needs at least one row")
    t_max = max(r.shape[0] for r in rows)
    c, h, w = rows[0].shape[1:]
    grid = torch.ones(len(rows), t_max, c, h + 2 * pad, w + 2 * pad)
    for i, r in enumerate(rows):
        grid[i, t_max - r.shape[0] :] = _pad(r.detach().float().cpu(), pad)
    grid = grid.permute(2, 0, 3, 1, 4).reshape(c, len(rows) * (h + 2 * pad), t_max * (w + 2 * pad))
    return to_uint8(grid)


def prediction_video(context: Tensor, truth: Tensor, samples: Tensor, pad: int = 1) -> np.ndarray:
    """Side-by-side video: truth | sample 1 | ... | sample S, context frames shown in every panel.

    Args:
        context: ``(n_past, 3, H, W)`` observed frames.
        truth: ``(T, 3, H, W)`` true future.
        samples: ``(S, T, 3, H, W)`` predicted futures.

    Returns:
        ``(n_past + T, H + 2 pad, (S + 1) * (W + 2 pad), 3)`` uint8. Predicted frames get a red
        border so that context and prediction are told apart.
    """
    panels = [torch.cat([context, truth], 0)]
    panels += [torch.cat([context, s], 0) for s in samples]
    frames = []
    n_past = context.shape[0]
    for t in range(n_past + truth.shape[0]):
        tiles = []
        for p in panels:
            tile = _pad(p[t].detach().float().cpu(), pad)
            if t >= n_past and pad > 0:
                tile[0, :pad], tile[0, -pad:], tile[0, :, :pad], tile[0, :, -pad:] = 1, 1, 1, 1
                tile[1:, :pad], tile[1:, -pad:], tile[1:, :, :pad], tile[1:, :, -pad:] = 0, 0, 0, 0
            tiles.append(tile)
        frames.append(torch.cat(tiles, dim=-1))
    return to_uint8(torch.stack(frames))


def write_gif(path: str | Path, video: np.ndarray, fps: int = 8) -> Path:
    """Write a ``(T, H, W, 3)`` uint8 video as a looping GIF."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, video, duration=1000 / fps, loop=0)
    return path


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 image."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, image)
    return path
