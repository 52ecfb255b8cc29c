"""Small numpy image helpers: center crop and an anti-aliased resize.

No PIL / OpenCV / torchvision. The resize works one axis at a time:

- shrinking (``out <= in``): each output pixel is the exact area average (box filter) of the
  input pixels it covers, fractional overlaps included, so nothing aliases at any ratio. It is
  computed from prefix sums: O(input) work and no large matrices.
- enlarging (``out > in``): bilinear interpolation with pixel centres at ``i + 0.5``.
"""

from __future__ import annotations

import numpy as np


def _area_axis0(x: np.ndarray, out_size: int) -> np.ndarray:
    """Area-average ``x (n, ...)`` along axis 0 down to ``(out_size, ...)``."""
    n = x.shape[0]
    scale = n / out_size
    csum = np.concatenate([np.zeros_like(x[:1]), np.cumsum(x, axis=0)])  # (n + 1, ...)
    # The integral of the piecewise-constant signal up to each output pixel edge.
    edges = np.arange(out_size + 1) * scale
    whole = np.minimum(np.floor(edges).astype(np.int64), n - 1)
    frac = (edges - whole).reshape((-1,) + (1,) * (x.ndim - 1))
    integral = csum[whole] + frac * x[whole]  # (out_size + 1, ...)
    return (integral[1:] - integral[:-1]) / scale


def _bilinear_axis0(x: np.ndarray, out_size: int) -> np.ndarray:
    """Bilinear interpolation of ``x (n, ...)`` along axis 0 up to ``(out_size, ...)``."""
    n = x.shape[0]
    centres = np.clip((np.arange(out_size) + 0.5) * n / out_size - 0.5, 0.0, n - 1)
    left = np.floor(centres).astype(np.int64)
    right = np.minimum(left + 1, n - 1)
    frac = (centres - left).reshape((-1,) + (1,) * (x.ndim - 1))
    return (1.0 - frac) * x[left] + frac * x[right]


def _resize_axis0(x: np.ndarray, out_size: int) -> np.ndarray:
    if x.shape[0] == out_size:
        return x
    if out_size < x.shape[0]:
        return _area_axis0(x, out_size)
    return _bilinear_axis0(x, out_size)


def resize(image: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """Resize a uint8 image ``(H, W, C)`` to ``(height, width, C)`` (area average when shrinking).

    ``width`` defaults to ``height`` (a square output; a non-square input is squashed, not
    cropped: use :func:`center_crop` first to keep the aspect ratio).
    """
    width = height if width is None else width
    if image.ndim != 3:
        raise ValueError(f"resize expects an image of shape (H, W, C), got shape {image.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"resize needs a positive output size, got {height}x{width}")
    if image.shape[:2] == (height, width):
        return np.array(image, dtype=np.uint8, copy=True)
    x = _resize_axis0(image.astype(np.float32), height)  # (height, W, C)
    x = _resize_axis0(x.transpose(1, 0, 2), width).transpose(1, 0, 2)  # (height, width, C)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def center_crop(image: np.ndarray) -> np.ndarray:
    """The largest centred square of an image ``(H, W, C)``: ``(S, S, C)`` with ``S = min(H, W)``."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return image[top : top + s, left : left + s]


def to_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 ``(H, W, 3)`` view of a grey ``(H, W)``, ``(H, W, 1)``, RGB or RGBA uint8 image."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 1|3|4), got {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]
