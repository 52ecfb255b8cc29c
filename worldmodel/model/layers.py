"""Generic layers of the model, from Progressive GANs (Karras et al., ICLR 2018).

* :class:`PixelNorm` -- pixelwise feature normalisation (the decoder's ``pixel_norm`` option).
* :func:`fade_in` -- PGGAN's blend of a newly added layer (the growing decoder's fade-in).
* :func:`resize_to` -- frames average-pooled to a lower resolution (the targets of a growing
  decoder).

The anti-blur code (:mod:`worldmodel.antiblur.pggan`, the discriminators) uses them too; they live
here so that the model imports no GAN code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PixelNorm", "fade_in", "resize_to"]


class PixelNorm(nn.Module):
    """Pixelwise feature normalisation: ``b = a / sqrt(mean_c(a^2) + eps)`` over the channel dim 1.

    Shapes: ``(B, C, ...) -> (B, C, ...)``.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


def fade_in(alpha: float, upsampled_old: Tensor, new: Tensor) -> Tensor:
    """Blend a newly added layer in: ``alpha * new + (1 - alpha) * upsampled_old``.

    ``alpha = 0`` gives the old (lower-resolution) path, ``alpha = 1`` the new layer only.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"fade-in alpha must be in [0, 1], got {alpha}")
    if alpha == 1.0:
        return new
    if alpha == 0.0:
        return upsampled_old
    return torch.lerp(upsampled_old, new, alpha)


def resize_to(x: Tensor, resolution: int) -> Tensor:
    """Average-pool frames ``(..., C, H, W)`` down to ``resolution`` (an integer factor of H and W).

    Returns ``x`` itself when it already has that size.
    """
    h, w = x.shape[-2:]
    if h == resolution and w == resolution:
        return x
    if h != w or resolution > h or h % resolution != 0:
        raise ValueError(
            f"cannot downsample {h}x{w} frames to {resolution}x{resolution}: the target must divide "
            "square frames by an integer factor"
        )
    lead = x.shape[:-3]
    y = F.avg_pool2d(x.reshape(-1, *x.shape[-3:]), h // resolution)
    return y.reshape(*lead, *y.shape[-3:])
