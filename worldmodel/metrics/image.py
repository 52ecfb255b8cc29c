"""Per-frame image metrics: PSNR, SSIM and MS-SSIM.

Conventions
-----------
* Inputs are float frames in ``[0, data_range]`` (``data_range`` = 1 by default) with shape
  ``(..., C, H, W)``; ``pred`` and ``target`` must have the same shape (no broadcasting).
  Anything else raises ``ValueError`` (see :func:`worldmodel.metrics.to_unit_range`).
* Every metric is computed per frame: ``reduction="none"`` returns the leading shape ``(...)``
  (e.g. ``(B, T)`` for ``(B, T, C, H, W)`` inputs: one value per video and predicted time step);
  ``reduction="mean"`` averages those per-frame values (the mean of per-frame PSNRs, as SVG and
  Villegas et al. report, not the PSNR of the mean squared error).
* SSIM follows Wang et al. (2004): Gaussian window 11x11 with sigma 1.5, K1 = 0.01, K2 = 0.03,
  population (not sample) statistics, computed on the *valid* region only (no padding: an HxW frame
  gives an (H-10)x(W-10) SSIM map), per colour channel, then averaged over the map and the channels.
  This is what Wang's reference MATLAB code and ``skimage.metrics.structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` compute.
* MS-SSIM follows Wang, Simoncelli & Bovik (2003) with a scale count chosen from the frame size, see
  :func:`ms_ssim_settings`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import check_frame_pair

__all__ = [
    "WANG2003_WEIGHTS",
    "SSIM_DEFAULTS",
    "MSSSIMSettings",
    "ms_ssim_settings",
    "psnr",
    "ssim",
    "ms_ssim",
]

# Per-scale exponents of MS-SSIM, finest scale first (Wang, Simoncelli & Bovik 2003, Table/Eq. 7).
WANG2003_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

# Wang et al. (2004) constants, recorded in every protocol that uses SSIM.
SSIM_DEFAULTS = {
    "window": "gaussian",
    "window_size": 11,
    "sigma": 1.5,
    "k1": 0.01,
    "k2": 0.03,
    "padding": "valid",
    "channels": "per channel, then averaged",
}


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.mean()
    raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")


# --------------------------------------------------------------------------------------------- PSNR


def psnr(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    reduction: str = "none",
    max_db: float | None = None,
) -> Tensor:
    """Peak signal-to-noise ratio per frame, in dB: ``10 log10(data_range^2 / MSE)``.

    The MSE is taken over the ``C, H, W`` dims of each frame.

    Args:
        pred, target: ``(..., C, H, W)`` float frames in ``[0, data_range]``.
        data_range: the peak value (1 for frames in ``[0, 1]``).
        reduction: ``"none"`` -> per-frame values ``(...)``, e.g. ``(B, T)``; ``"mean"`` -> their mean.
        max_db: identical frames have an infinite PSNR; by default ``inf`` is returned (and propagates
            into means, which is honest). Pass e.g. ``max_db=100`` to cap the per-frame values
            instead, and report that cap with the numbers.

    Returns:
        ``(...)`` per-frame PSNR, or a scalar for ``reduction="mean"``.
    """
    pred, target = check_frame_pair(pred, target, data_range)
    mse = (pred - target).square().flatten(-3).mean(-1)  # (...)
    value = 10.0 * torch.log10(data_range**2 / mse)  # mse == 0 -> +inf
    if max_db is not None:
        value = value.clamp(max=max_db)
    return _reduce(value, reduction)


# --------------------------------------------------------------------------------------------- SSIM


def _gaussian_kernel(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian of odd length ``size``: ``(size,)``."""
    if size % 2 != 1 or size < 1:
        raise ValueError(f"window_size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    r = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def _valid_filter_matrix(n: int, kernel: Tensor) -> Tensor:
    """``(n, n - k + 1)`` matrix ``M`` with ``(x @ M)[j] = sum_i kernel[i] x[j + i]`` (valid correlation)."""
    k = kernel.numel()
    m = n - k + 1
    out = kernel.new_zeros(n, m)
    cols = torch.arange(m, device=kernel.device)
    for i in range(k):
        out[cols + i, cols] = kernel[i]
    return out


def _ssim_and_cs(
    x: Tensor,
    y: Tensor,
    data_range: float,
    window_size: int,
    sigma: float,
    k1: float,
    k2: float,
) -> tuple[Tensor, Tensor]:
    """SSIM and contrast-structure term of each channel of each frame.

    Args:
        x, y: ``(N, C, H, W)`` with ``H, W >= window_size``.

    Returns:
        ``(ssim, cs)``, each ``(N, C)``: the means over the valid region of the SSIM map and of the
        contrast-structure map ``(2 s_xy + C2) / (s_x^2 + s_y^2 + C2)``.
    """
    c = x.shape[1]
    h, w = x.shape[-2:]
    g = _gaussian_kernel(window_size, sigma, x.dtype, x.device)
    # Separable Gaussian filtering of the five moments as two matrix products with banded matrices
    # (much faster than grouped convolutions on CPU): (..., H, W) -> (..., H-ws+1, W-ws+1).
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (N, 5C, H, W)
    stack = _valid_filter_matrix(h, g).T @ stack @ _valid_filter_matrix(w, g)
    mu_x, mu_y, e_xx, e_yy, e_xy = stack.split(c, dim=1)  # each (N, C, H-ws+1, W-ws+1)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    var_x = e_xx - mu_x**2
    var_y = e_yy - mu_y**2
    cov = e_xy - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    lum_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (lum_map * cs_map).mean(dim=(-2, -1)), cs_map.mean(dim=(-2, -1))


def ssim(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    reduction: str = "none",
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Structural similarity (Wang et al. 2004) per frame.

    Gaussian window ``window_size`` x ``window_size`` (11, sigma 1.5), ``C1 = (k1 L)^2``,
    ``C2 = (k2 L)^2`` with ``L = data_range``; valid region only (no padding); per channel, then the
    mean over the map and the channels. Frames must be at least ``window_size`` pixels high and wide.

    Args:
        pred, target: ``(..., C, H, W)`` float frames in ``[0, data_range]``.
        reduction: ``"none"`` -> ``(...)`` per-frame values; ``"mean"`` -> their mean.

    Returns:
        ``(...)`` per-frame SSIM in ``[-1, 1]`` (1 for identical frames), or a scalar.
    """
    pred, target = check_frame_pair(pred, target, data_range)
    h, w = pred.shape[-2:]
    if min(h, w) < window_size:
        raise ValueError(
            f"SSIM needs frames of at least {window_size}x{window_size} pixels "
            f"(window_size={window_size}), got {h}x{w}"
        )
    lead = pred.shape[:-3]
    s, _ = _ssim_and_cs(
        pred.reshape(-1, *pred.shape[-3:]),
        target.reshape(-1, *target.shape[-3:]),
        data_range,
        window_size,
        sigma,
        k1,
        k2,
    )
    return _reduce(s.mean(-1).reshape(lead), reduction)


# ------------------------------------------------------------------------------------------ MS-SSIM


@dataclass(frozen=True)
class MSSSIMSettings:
    """Everything that defines an MS-SSIM number; goes into the protocol of reported results.

    Attributes:
        scales: number of scales M (1 = plain SSIM).
        weights: per-scale exponents, finest first (length M).
        sizes: ``(H, W)`` of the frame at each scale.
        weights_source: where the weights come from (e.g. the first 3 of Wang 2003, renormalised).
    """

    scales: int
    weights: tuple[float, ...]
    sizes: tuple[tuple[int, int], ...]
    weights_source: str
    window_size: int = 11
    sigma: float = 1.5
    k1: float = 0.01
    k2: float = 0.03
    downsample: str = "2x2 average pooling (odd sizes floored)"
    negative_cs: str = "clamped to 0 before the power (as tf.image.ssim_multiscale)"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights"] = list(self.weights)
        d["sizes"] = [list(s) for s in self.sizes]
        return d

    def describe(self) -> str:
        sizes = ", ".join(f"{h}x{w}" for h, w in self.sizes)
        weights = ", ".join(f"{v:.4f}" for v in self.weights)
        return (
            f"MS-SSIM, {self.scales} scales ({sizes}), weights ({weights}) [{self.weights_source}], "
            f"Gaussian window {self.window_size}/sigma {self.sigma}, K1={self.k1}, K2={self.k2}"
        )


def ms_ssim_settings(
    height: int,
    width: int,
    scales: int | None = None,
    weights: Sequence[float] | None = None,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> MSSSIMSettings:
    """Choose (or check) the MS-SSIM scales for ``height`` x ``width`` frames.

    The SSIM window must fit in the coarsest scale: scale ``j`` (0 = full size) is
    ``floor(size / 2^j)`` pixels and must be ``>= window_size``. With ``scales=None`` the largest
    count up to 5 that fits is used: 5 scales (the standard setting) for frames of at least 176 px,
    4 for 88..175 px (e.g. 128x128), 3 for 44..87 px (e.g. 64x64), 2 for 22..43 px, 1 (plain SSIM)
    for 11..21 px.

    With ``weights=None`` and 5 scales the weights are Wang et al.'s
    ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)`` as published; with fewer scales, the first ``scales``
    of them renormalised to sum to 1 (the coarse scales that do not fit are dropped); e.g. for 64x64 frames: ``(0.0711, 0.4530, 0.4760)``. Explicit ``weights`` are used
    as given (their length sets ``scales`` if that is None).

    Raises:
        ValueError: if the frame is smaller than the window, or ``scales`` do not fit the frame.
    """
    min_side = min(height, width)
    if min_side < window_size:
        raise ValueError(
            f"MS-SSIM needs frames of at least {window_size}x{window_size} pixels, got {height}x{width}"
        )
    max_fit = 1 + int(math.floor(math.log2(min_side / window_size)))
    if scales is None:
        scales = len(weights) if weights is not None else min(5, max_fit)
    if scales < 1:
        raise ValueError(f"scales must be >= 1, got {scales}")
    if scales > max_fit:
        raise ValueError(
            f"{scales} MS-SSIM scales do not fit {height}x{width} frames: scale {scales - 1} would be "
            f"{min_side >> (scales - 1)} px, smaller than the {window_size}-px window; use at most "
            f"{max_fit} scales (or scales=None to choose automatically)"
        )
    if weights is None:
        if scales > len(WANG2003_WEIGHTS):
            raise ValueError(
                f"Wang et al. give weights for at most 5 scales; pass weights for {scales} scales"
            )
        if scales == len(WANG2003_WEIGHTS):
            w, source = WANG2003_WEIGHTS, "Wang et al. 2003 (as published)"
        else:
            base = WANG2003_WEIGHTS[:scales]
            w = tuple(v / sum(base) for v in base)
            source = f"first {scales} of Wang et al. 2003, renormalised to sum 1"

    else:
        w = tuple(float(v) for v in weights)
        if len(w) != scales:
            raise ValueError(f"got {len(w)} weights for {scales} scales")
        source = "user-supplied"
    sizes = tuple((height >> j, width >> j) for j in range(scales))
    return MSSSIMSettings(
        scales=scales,
        weights=w,
        sizes=sizes,
        weights_source=source,
        window_size=window_size,
        sigma=sigma,
        k1=k1,
        k2=k2,
    )


def ms_ssim(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    reduction: str = "none",
    scales: int | None = None,
    weights: Sequence[float] | None = None,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) per frame.

    ``MS-SSIM = prod_{j < M-1} cs_j^{w_j} * ssim_{M-1}^{w_{M-1}}`` where ``cs_j`` is the mean
    contrast-structure term at scale ``j`` and the last factor is the full SSIM at the coarsest scale;
    scales are obtained by 2x2 average pooling. Per channel, then averaged over channels. Negative
    ``cs``/``ssim`` values (anti-correlated frames) are clamped to 0 before the power.

    The number of scales and the weights follow :func:`ms_ssim_settings` (by default: as many of the 5
    standard scales as fit, e.g. 3 for 64x64 frames with renormalised weights ``(0.0711, 0.4530,
    0.4760)``, 4 for 128x128, 5 for >= 176 px). Call ``ms_ssim_settings(H, W, ...)`` to get the exact
    settings to report next to the number.

    Args:
        pred, target: ``(..., C, H, W)`` float frames in ``[0, data_range]``.
        reduction: ``"none"`` -> ``(...)`` per-frame values; ``"mean"`` -> their mean.

    Returns:
        ``(...)`` per-frame MS-SSIM in ``[0, 1]`` (1 for identical frames), or a scalar.
    """
    pred, target = check_frame_pair(pred, target, data_range)
    h, w = pred.shape[-2:]
    settings = ms_ssim_settings(h, w, scales, weights, window_size, sigma, k1, k2)
    lead = pred.shape[:-3]
    x = pred.reshape(-1, *pred.shape[-3:])
    y = target.reshape(-1, *target.shape[-3:])
    weight = torch.tensor(settings.weights, dtype=x.dtype, device=x.device)
    factors = []
    for j in range(settings.scales):
        if j > 0:
            x = F.avg_pool2d(x, kernel_size=2)
            y = F.avg_pool2d(y, kernel_size=2)
        s, cs = _ssim_and_cs(x, y, data_range, window_size, sigma, k1, k2)  # (N, C) each
        factors.append(s if j == settings.scales - 1 else cs)
    stacked = torch.stack(factors, dim=-1).clamp(min=0.0)  # (N, C, M)
    value = stacked.pow(weight).prod(dim=-1).mean(dim=-1)  # (N,)
    return _reduce(value.reshape(lead), reduction)
