"""Loss functions: pure functions of tensors with an explicit reduction.

Conventions
-----------
* Frames are float tensors in [0, 1] with shape ``(..., C, H, W)``.
* ``reduction`` is one of ``"mean"`` (average over every element), ``"sum"``, ``"batch"`` (sum over
  the non-leading dims of each sample, then mean over the leading dims: the per-frame sum that
  SVG's ELBO uses) or ``"none"``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "reduce",
    "kl_normal",
    "apply_free_nats",
    "reconstruction_loss",
]

_REDUCTIONS = ("mean", "sum", "batch", "none")


def reduce(x: Tensor, reduction: str, event_dims: int = 0) -> Tensor:
    """Reduce an element-wise loss.

    Args:
        x: element-wise loss of shape ``(*batch, *event)``.
        reduction: ``"mean"`` | ``"sum"`` | ``"batch"`` | ``"none"``.
        event_dims: number of trailing dims that form one event (one frame ``C, H, W`` = 3), used by
            ``"batch"``: the event dims are summed, the leading dims averaged.
    """
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "batch":
        if event_dims > 0:
            x = x.flatten(start_dim=x.dim() - event_dims).sum(-1)
        return x.mean()
    if reduction == "none":
        return x
    raise ValueError(f"unknown reduction {reduction!r}; expected one of {_REDUCTIONS}")


def kl_normal(
    mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor, reduction: str = "batch"
) -> Tensor:
    """KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))) for diagonal Gaussians.

    Shapes ``(..., Z)``; the KL of one latent is the sum over ``Z`` (so ``reduction="none"`` returns
    ``(...)``, and ``"batch"`` averages that over the leading dims).

        KL = 0.5 * sum_z [ logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)^2) / exp(logvar_p) - 1 ]
    """
    kl = 0.5 * (
        logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) * (-logvar_p).exp() - 1.0
    )
    kl = kl.sum(-1)
    return reduce(kl, "mean" if reduction == "batch" else reduction)


def apply_free_nats(kl: Tensor, free_nats: float) -> Tensor:
    """PlaNet's free nats: ``max(kl, free_nats)`` element-wise (no gradient below the floor).

    ``kl`` is a per-step KL (reduction ``"none"``); ``free_nats = 0`` returns it unchanged.
    """
    if free_nats <= 0:
        return kl
    return kl.clamp(min=free_nats)


def reconstruction_loss(
    pred: Tensor, target: Tensor, kind: str = "l2", reduction: str = "batch"
) -> Tensor:
    """Pixel reconstruction loss between frames ``(..., C, H, W)``.

    ``kind`` is ``"l2"`` (squared error, SVG's choice) or ``"l1"``. With ``reduction="batch"`` the
    loss is summed over each frame's pixels and averaged over frames, which keeps the paper's
    balance against ``beta * KL``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    diff = pred - target
    if kind == "l2":
        err = diff.pow(2)
    elif kind == "l1":
        err = diff.abs()
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}; expected 'l2' or 'l1'")
    return reduce(err, reduction, event_dims=3)
