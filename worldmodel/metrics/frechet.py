"""Frechet distance between Gaussians fitted to features (FID / FVD style).

``d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``

The trace of the matrix square root is computed stably in float64 from the symmetric PSD matrix
``S1^(1/2) S2 S1^(1/2)``, which is similar to ``S1 S2`` and so has the same eigenvalues: both square
roots come from ``torch.linalg.eigh`` (tiny negative eigenvalues from round-off are clamped to 0), so
no complex parts appear and nothing depends on scipy's ``sqrtm``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["frechet_distance", "feature_statistics"]


def _psd_sqrt(m: Tensor) -> Tensor:
    """Square root of a symmetric PSD matrix ``(D, D)`` via its eigendecomposition."""
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def _as_f64(x: Tensor | np.ndarray, name: str) -> Tensor:
    t = torch.as_tensor(x).detach().to(dtype=torch.float64, device="cpu")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return t


def frechet_distance(
    mu1: Tensor | np.ndarray,
    sigma1: Tensor | np.ndarray,
    mu2: Tensor | np.ndarray,
    sigma2: Tensor | np.ndarray,
) -> float:
    """Squared Frechet (2-Wasserstein) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Args:
        mu1, mu2: ``(D,)`` means.
        sigma1, sigma2: ``(D, D)`` symmetric positive semi-definite covariances.

    Returns:
        ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))`` as a Python float, computed
        in float64 on the CPU. This is the quantity FID and FVD report (no square root taken).
    """
    mu1, mu2 = _as_f64(mu1, "mu1"), _as_f64(mu2, "mu2")
    s1, s2 = _as_f64(sigma1, "sigma1"), _as_f64(sigma2, "sigma2")
    if mu1.dim() != 1 or mu1.shape != mu2.shape:
        raise ValueError(
            f"mu1 and mu2 must be vectors of the same length, got {tuple(mu1.shape)} and "
            f"{tuple(mu2.shape)}"
        )
    d = mu1.shape[0]
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must be ({d}, {d}) to match the means, got {tuple(s.shape)}")
        if not torch.allclose(s, s.T, rtol=1e-5, atol=1e-8 * float(s.abs().max()) + 1e-12):
            raise ValueError(f"{name} is not symmetric; pass a covariance matrix")
    s1 = (s1 + s1.T) / 2
    s2 = (s2 + s2.T) / 2
    root1 = _psd_sqrt(s1)
    inner = root1 @ s2 @ root1
    eig = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0)
    tr_covmean = eig.sqrt().sum()
    value = (mu1 - mu2).square().sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean
    # Round-off can make the distance of identical Gaussians a tiny negative number.
    return max(float(value), 0.0)


def feature_statistics(
    features: Tensor | np.ndarray, shrinkage: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Mean and covariance of a feature set, in float64.

    The covariance uses the unbiased ``1 / (N - 1)`` normalisation (``np.cov(features, rowvar=False)``,
    as the reference FID/FVD code).

    Args:
        features: ``(N, D)`` features, one row per sample (video).
        shrinkage: ``alpha`` in ``[0, 1]``; if > 0 the covariance is shrunk towards a scaled identity,
            ``(1 - alpha) S + alpha * (tr(S) / D) I``, which makes it usable with ``N <= D`` samples. A
            shrunk covariance gives a *different* number: report the value of ``shrinkage``.

    Returns:
        ``(mu (D,), sigma (D, D))`` float64 CPU tensors.

    Raises:
        ValueError: ``N < 2``, or ``N <= D`` without shrinkage (the sample covariance of ``N`` points
            has rank at most ``N - 1 < D``: the distance would be dominated by estimation error).
    """
    f = _as_f64(features, "features")
    if f.dim() != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(f.shape)}")
    n, d = f.shape
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    if n < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {n}")
    if n <= d and shrinkage == 0.0:
        raise ValueError(
            f"{n} samples are too few for a covariance of {d}-dim features (need N > D, "
            f"ideally N >> D); use more videos, a feature network with fewer dims, or pass "
            f"shrinkage > 0 and report it"
        )
    mu = f.mean(dim=0)
    centred = f - mu
    sigma = centred.T @ centred / (n - 1)
    if shrinkage > 0:
        eye = torch.eye(d, dtype=sigma.dtype)
        sigma = (1 - shrinkage) * sigma + shrinkage * (torch.trace(sigma) / d) * eye
    return mu, sigma
