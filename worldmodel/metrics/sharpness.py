"""How sharp predicted frames are compared with the true ones.

L2-trained video models average the possible futures into blur (Mathieu, Couprie & LeCun 2016), which
PSNR and SSIM barely punish (a blurred frame often *wins* on PSNR). Two measures make blur visible:

* :func:`sharpness`: the mean image-gradient magnitude of the prediction divided by the truth's,
  per frame. 1 = as much edge energy as the truth, < 1 = blurrier, > 1 = more high-frequency content
  than the truth (noise, artefacts). It says nothing about *where* the edges are: a sharp but wrong
  frame scores 1; read it next to PSNR/SSIM.
* :func:`sharpness_difference`: Mathieu et al.'s "sharpness difference" in dB,
  ``10 log10(max^2 / mean |(g_i(Y) + g_j(Y)) - (g_i(Y_hat) + g_j(Y_hat))|)`` with
  ``g_i(Y) = |Y[i, j] - Y[i-1, j]|`` and ``g_j(Y) = |Y[i, j] - Y[i, j-1]|``: higher = the
  prediction's gradients are closer to the truth's, pixel by pixel (it does reward edges in the
  right place).

Gradients are forward differences on the ``(H-1) x (W-1)`` region where both directions exist, per
colour channel. Inputs follow the other metrics' conventions (see :mod:`worldmodel.metrics.image`):
float frames in ``[0, data_range]`` with shape ``(..., C, H, W)``, same shape for ``pred`` and
``target``, one value per frame (``reduction="none"``) or their mean (``"mean"``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._validation import check_frame_pair, check_frames

__all__ = ["image_gradients", "mean_gradient_magnitude", "sharpness", "sharpness_difference"]


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.mean()
    raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")


def _check_size(x: Tensor) -> None:
    h, w = x.shape[-2:]
    if h < 2 or w < 2:
        raise ValueError(f"image gradients need frames of at least 2x2 pixels, got {h}x{w}")


def image_gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences of frames along the rows and the columns.

    Args:
        x: ``(..., C, H, W)`` frames (any float tensor; not range-checked here).

    Returns:
        ``(d_i, d_j)``, each ``(..., C, H-1, W-1)``: ``d_i[.., i, j] = x[.., i+1, j] - x[.., i, j]``
        and ``d_j[.., i, j] = x[.., i, j+1] - x[.., i, j]``, both cropped to the region where the two
        exist.
    """
    d_i = x[..., 1:, :-1] - x[..., :-1, :-1]  # vertical (row) differences
    d_j = x[..., :-1, 1:] - x[..., :-1, :-1]  # horizontal (column) differences
    return d_i, d_j


def mean_gradient_magnitude(x: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean gradient magnitude ``sqrt(d_i^2 + d_j^2)`` of each frame (over channels and pixels).

    Args:
        x: ``(..., C, H, W)`` float frames in ``[0, data_range]``, at least 2x2 pixels.

    Returns:
        ``(...)`` one value per frame, in units of intensity per pixel (0 for a flat frame).
    """
    x = check_frames(x, "x", data_range)
    _check_size(x)
    d_i, d_j = image_gradients(x)
    return (d_i.square() + d_j.square()).sqrt().flatten(-3).mean(-1)


def sharpness(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    reduction: str = "none",
) -> Tensor:
    """Relative sharpness per frame: mean gradient magnitude of ``pred`` over that of ``target``.

    ``1`` = as sharp as the truth, ``< 1`` = blurrier (an L2 model's average of futures), ``> 1`` =
    more high-frequency content than the truth (noise, checkerboard artefacts). A frame whose truth
    is perfectly flat gives ``1`` if the prediction is flat too and ``inf`` otherwise.

    Args:
        pred, target: ``(..., C, H, W)`` float frames in ``[0, data_range]``, same shape, at least
            2x2 pixels; e.g. ``(B, S, T, C, H, W)`` samples against the truth expanded to match.
        data_range: the peak value (1 for frames in ``[0, 1]``); the ratio does not depend on it.
        reduction: ``"none"`` -> per-frame ratios ``(...)``; ``"mean"`` -> the mean of the
            per-frame ratios (not the ratio of means).

    Returns:
        ``(...)`` per-frame ratios, or a scalar for ``reduction="mean"``.
    """
    pred, target = check_frame_pair(pred, target, data_range)
    _check_size(pred)
    g_pred = mean_gradient_magnitude(pred, data_range)
    g_true = mean_gradient_magnitude(target, data_range)
    ratio = g_pred / g_true  # x / 0 -> inf, 0 / 0 -> nan (fixed below)
    ratio = torch.where((g_true == 0) & (g_pred == 0), torch.ones_like(ratio), ratio)
    return _reduce(ratio, reduction)


def sharpness_difference(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    reduction: str = "none",
    max_db: float | None = None,
) -> Tensor:
    """Mathieu et al.'s (2016) sharpness difference per frame, in dB (higher is better).

    ``10 log10(data_range^2 / mean |(g_i(Y) + g_j(Y)) - (g_i(Y_hat) + g_j(Y_hat))|)`` with the
    absolute forward differences ``g_i, g_j`` of the truth ``Y`` and the prediction ``Y_hat``, the
    mean taken over channels and the ``(H-1) x (W-1)`` pixels where both differences exist. As in the
    paper, the denominator is a mean absolute (not squared) difference, so the dB values are not on
    PSNR's scale.

    Args:
        pred, target: ``(..., C, H, W)`` float frames in ``[0, data_range]``, same shape, >= 2x2.
        data_range: the peak value (``max`` in the formula).
        reduction: ``"none"`` -> ``(...)`` per-frame values; ``"mean"`` -> their mean.
        max_db: frames with identical gradients give ``inf``; pass a cap (e.g. 100) to clamp the
            per-frame values instead, and report it with the numbers.

    Returns:
        ``(...)`` per-frame values in dB, or a scalar.
    """
    pred, target = check_frame_pair(pred, target, data_range)
    _check_size(pred)
    ti, tj = image_gradients(target)
    pi, pj = image_gradients(pred)
    diff = ((ti.abs() + tj.abs()) - (pi.abs() + pj.abs())).abs().flatten(-3).mean(-1)  # (...)
    value = 10.0 * torch.log10(data_range**2 / diff)  # diff == 0 -> +inf
    if max_db is not None:
        value = value.clamp(max=max_db)
    return _reduce(value, reduction)
