"""Input checks shared by every metric, and the one explicit conversion helper.

Every image metric in this package takes float frames in ``[0, data_range]`` (``data_range`` is 1 by
default) and refuses anything else with a ``ValueError`` that says what to do: a uint8 tensor, data in
``[-1, 1]`` or ``[0, 255]`` floats silently give wrong PSNR/SSIM numbers, so they are never guessed.
Use :func:`to_unit_range` to convert explicitly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = ["to_unit_range", "check_frames", "check_frame_pair"]

# Slack for values a hair outside the range (float rounding of e.g. (x + 1) / 2), relative to the range.
_RANGE_SLACK = 1e-6


def to_unit_range(
    x: Tensor | np.ndarray, assume: Literal["uint8", "unit", "signed"] = "uint8"
) -> Tensor:
    """Convert frames to float in ``[0, 1]``, stating what the input is.

    Args:
        x: frames of any shape, a tensor or a numpy array.
        assume: what ``x`` holds:
            ``"uint8"``: integer intensities in ``[0, 255]`` (uint8 tensor, or a float tensor holding
            0..255 values), divided by 255;
            ``"unit"``: already floats in ``[0, 1]`` (only checked);
            ``"signed"``: floats in ``[-1, 1]`` (tanh decoders, I3D inputs), mapped by ``(x + 1) / 2``.

    Returns:
        A float tensor in ``[0, 1]`` (float32, or float64 if ``x`` was float64), same shape and device.

    Raises:
        ValueError: if ``x`` has values outside the range that ``assume`` states.
    """
    x = torch.as_tensor(x)
    if assume not in ("uint8", "unit", "signed"):
        raise ValueError(f"assume must be 'uint8', 'unit' or 'signed', got {assume!r}")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"cannot convert a {x.dtype} tensor to frames in [0, 1]")
    out_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if assume == "uint8":
        _check_range(x, 0.0, 255.0, "x", "assume='uint8' expects values in [0, 255]")
        return x.to(out_dtype) / 255.0
    if x.dtype == torch.uint8:
        raise ValueError(
            f"x is uint8 but assume={assume!r}; uint8 frames hold 0..255: use assume='uint8'"
        )
    if assume == "unit":
        _check_range(x, 0.0, 1.0, "x", "assume='unit' expects values in [0, 1]")
        return x.to(out_dtype)
    _check_range(x, -1.0, 1.0, "x", "assume='signed' expects values in [-1, 1]")
    return ((x.to(out_dtype) + 1.0) / 2.0).clamp_(0.0, 1.0)


def _check_range(x: Tensor, low: float, high: float, name: str, hint: str) -> None:
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    lo, hi = (float(v) for v in torch.aminmax(x.detach().float()))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or inf values")
    slack = _RANGE_SLACK * (high - low)
    if lo < low - slack or hi > high + slack:
        raise ValueError(f"{name} has values in [{lo:.4g}, {hi:.4g}]; {hint}")


def check_frames(x: Tensor, name: str, data_range: float = 1.0, min_dims: int = 3) -> Tensor:
    """Check that ``x`` is a float tensor of frames ``(..., C, H, W)`` in ``[0, data_range]``.

    Returns ``x`` as float32 (float64 stays float64, half precision is upcast) so metrics never
    accumulate in half precision.

    Raises:
        ValueError: uint8 / integer input, NaN or inf, values outside ``[0, data_range]`` (with a hint
            when they look like ``[-1, 1]`` or ``[0, 255]`` data), or fewer than ``min_dims`` dims.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if x.dtype == torch.uint8:
        raise ValueError(
            f"{name} is a uint8 tensor; metrics take float frames in [0, {data_range:g}]. "
            f"Convert explicitly with to_unit_range({name}, assume='uint8')"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating point tensor in [0, {data_range:g}], got {x.dtype}"
        )
    if x.dim() < min_dims:
        raise ValueError(
            f"{name} must have at least {min_dims} dims (..., C, H, W), got shape {tuple(x.shape)}"
        )
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    lo, hi = (float(v) for v in torch.aminmax(x.detach().float()))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or inf values")
    slack = _RANGE_SLACK * data_range
    if lo < -slack or hi > data_range + slack:
        if lo < 0 and lo >= -1 - slack and hi <= 1 + slack:
            hint = (
                f"this looks like [-1, 1] data: convert with to_unit_range({name}, assume='signed')"
            )
        elif hi > 1 and lo >= 0 and hi <= 255 + slack and data_range == 1.0:
            hint = (
                f"this looks like [0, 255] data: convert with to_unit_range({name}, assume='uint8')"
            )
        else:
            hint = "clamp or rescale it first"
        raise ValueError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside the expected [0, {data_range:g}]; {hint}"
        )
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return x


def check_frame_pair(
    pred: Tensor, target: Tensor, data_range: float = 1.0, min_dims: int = 3
) -> tuple[Tensor, Tensor]:
    """Check both tensors with :func:`check_frames` and that their shapes match exactly.

    No broadcasting: a ``(B, T, C, H, W)`` prediction against a ``(T, C, H, W)`` target is an error, as
    broadcasting there usually hides a bug. Both are brought to a common float dtype and device check.
    """
    if isinstance(pred, Tensor) and isinstance(target, Tensor) and pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}; "
            "metrics compare frame by frame and do not broadcast"
        )
    pred = check_frames(pred, "pred", data_range, min_dims)
    target = check_frames(target, "target", data_range, min_dims)
    if pred.device != target.device:
        raise ValueError(f"pred is on {pred.device} but target is on {target.device}")
    dtype = torch.promote_types(pred.dtype, target.dtype)
    return pred.to(dtype), target.to(dtype)
