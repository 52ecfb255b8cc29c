"""Evaluation protocol records, per-time-step metric curves and sample diversity.

Numbers from stochastic video models are only comparable when the protocol is known: how many context
frames, how many predicted, how many samples per video and whether the reported value is the mean over
samples or the best of N, how many test videos, which metric variant. :class:`Protocol` holds all of
it and every curve :func:`per_step_metrics` returns carries one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ._validation import check_frame_pair, check_frames
from .image import SSIM_DEFAULTS, ms_ssim, ms_ssim_settings, psnr, ssim

__all__ = ["Protocol", "MetricCurve", "per_step_metrics", "diversity"]


@dataclass(frozen=True)
class Protocol:
    """How a number was obtained. Fields left at None are unknown and are printed as such.

    Attributes:
        context_frames: frames given to the model before it predicts.
        predicted_frames: frames predicted and scored (the length of the curves).
        samples_per_video: S, samples drawn per test video (1 for a deterministic model).
        aggregate: ``"mean"`` (average over the S samples) or ``"best-of-N"`` (per video, the sample
            with the best metric averaged over time, N = ``samples_per_video``).
        num_videos: test videos averaged over.
        dataset: dataset / environment and split.
        checkpoint: the model checkpoint evaluated.
        metric: metric name (``"psnr"``, ``"ssim"``, ``"ms_ssim"``, ``"FVD"``, ...).
        details: metric settings (SSIM window and constants, MS-SSIM scales and weights, PSNR cap...).
        feature_net: feature network of a Frechet distance (``"i3d-kinetics400"``, ...).
    """

    context_frames: int | None = None
    predicted_frames: int | None = None
    samples_per_video: int = 1
    aggregate: str = "mean"
    num_videos: int | None = None
    dataset: str | None = None
    checkpoint: str | None = None
    metric: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    feature_net: str | None = None

    def validate(self) -> Protocol:
        """Raise ValueError on an unknown aggregate or ``samples_per_video < 1``; return self
        (:func:`per_step_metrics` and :meth:`replace` call it)."""
        if self.aggregate not in ("mean", "best-of-N"):
            raise ValueError(f"aggregate must be 'mean' or 'best-of-N', got {self.aggregate!r}")
        if self.samples_per_video < 1:
            raise ValueError(f"samples_per_video must be >= 1, got {self.samples_per_video}")
        return self

    def replace(self, **changes: Any) -> Protocol:
        """A copy with ``changes``, checked (:meth:`validate`)."""
        return dataclasses.replace(self, **changes).validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line, e.g. ``ssim, 5 -> 10 frames, best of 100 samples, 256 videos, dataset=..``."""

        def show(v: Any) -> str:
            return "?" if v is None else str(v)

        agg = (
            f"best of {self.samples_per_video} samples"
            if self.aggregate == "best-of-N"
            else f"mean over {self.samples_per_video} sample(s)"
        )
        parts = [
            show(self.metric),
            f"{show(self.context_frames)} context -> {show(self.predicted_frames)} predicted frames",
            agg,
            f"{show(self.num_videos)} videos",
            f"dataset={show(self.dataset)}",
            f"checkpoint={show(self.checkpoint)}",
        ]
        if self.feature_net is not None:
            parts.append(f"features={self.feature_net}")
        if self.details:
            parts.append("details=" + ", ".join(f"{k}={v}" for k, v in self.details.items()))
        return "; ".join(parts)


@dataclass(frozen=True)
class MetricCurve:
    """A metric as a function of the predicted time step, with its protocol.

    Attributes:
        curve: ``(T,)`` mean over videos of the per-video values.
        per_video: ``(B, T)`` per-video values (after the mean / best-of-N over samples).
        protocol: how it was computed.
    """

    curve: Tensor
    per_video: Tensor
    protocol: Protocol

    @property
    def mean(self) -> float:
        """The curve averaged over time steps (one number; report it with the protocol)."""
        return float(self.curve.mean())


_METRICS = ("psnr", "ssim", "ms_ssim")


def _metric_details(name: str, h: int, w: int, psnr_max_db: float | None) -> dict[str, Any]:
    if name == "psnr":
        return {
            "data_range": 1.0,
            "per_frame": "10 log10(1 / MSE over C,H,W), then averaged",
            "max_db": psnr_max_db if psnr_max_db is not None else "none (identical frames: inf)",
        }
    if name == "ssim":
        return dict(SSIM_DEFAULTS, data_range=1.0)
    return {"ms_ssim": ms_ssim_settings(h, w).describe(), "data_range": 1.0}


def per_step_metrics(
    pred: Tensor,
    target: Tensor,
    metrics: Sequence[str] = ("psnr", "ssim"),
    protocol: Protocol | None = None,
    psnr_max_db: float | None = None,
) -> dict[str, MetricCurve]:
    """Per-time-step curves of each metric: the mean over samples and the best of S samples.

    Best-of-S follows SVG's evaluation (Denton & Fergus 2018): for each video, the sample whose metric
    *averaged over the predicted time steps* is highest is selected (separately for each metric, so the
    best-PSNR and the best-SSIM sample can differ), and its whole curve is used; curves are then
    averaged over videos. Best-of-S is an optimistic estimate that grows with S: always report S.

    Args:
        pred: ``(B, S, T, C, H, W)`` predicted frames in ``[0, 1]``, S samples per video.
        target: ``(B, T, C, H, W)`` ground-truth future frames in ``[0, 1]``.
        metrics: any of ``"psnr"``, ``"ssim"``, ``"ms_ssim"`` (higher is better for all).
        protocol: what the caller knows (context frames, dataset, checkpoint...); the shape-derived
            fields (predicted_frames, samples_per_video, num_videos) are filled in, and must agree
            with the tensors if the caller set them.
        psnr_max_db: optional cap on per-frame PSNR (see :func:`psnr`); recorded in the protocol.

    Returns:
        ``{"<metric>/mean": MetricCurve, "<metric>/best": MetricCurve, ...}``; the protocol of the
        first has ``aggregate="mean"``, of the second ``aggregate="best-of-N"``.
    """
    if not isinstance(pred, Tensor) or pred.dim() != 6:
        raise ValueError(
            f"pred must be (B, S, T, C, H, W) (use pred.unsqueeze(1) for one sample), got "
            f"{tuple(pred.shape) if isinstance(pred, Tensor) else type(pred).__name__}"
        )
    if not isinstance(target, Tensor) or target.dim() != 5:
        raise ValueError("target must be (B, T, C, H, W)")
    b, s, t = pred.shape[:3]
    if pred.shape[:1] + pred.shape[2:] != target.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} (B, S, T, C, H, W) does not match target "
            f"{tuple(target.shape)} (B, T, C, H, W)"
        )
    unknown = [m for m in metrics if m not in _METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {_METRICS}")
    protocol = (protocol or Protocol()).validate()
    for fld, value in (("predicted_frames", t), ("samples_per_video", s), ("num_videos", b)):
        given = getattr(protocol, fld)
        default = 1 if fld == "samples_per_video" else None
        if given not in (default, value):
            raise ValueError(f"protocol.{fld}={given} but the tensors give {value}")
    base = protocol.replace(predicted_frames=t, samples_per_video=s, num_videos=b)
    pred, target_b = check_frame_pair(pred, target.unsqueeze(1).expand_as(pred))
    h, w = pred.shape[-2:]

    out: dict[str, MetricCurve] = {}
    for name in metrics:
        if name == "psnr":
            values = psnr(pred, target_b, max_db=psnr_max_db)
        elif name == "ssim":
            values = ssim(pred, target_b)
        else:
            values = ms_ssim(pred, target_b)
        values = values.detach()  # (B, S, T)
        details = _metric_details(name, h, w, psnr_max_db)
        mean_pv = values.mean(dim=1)  # (B, T)
        best = values.mean(dim=2).argmax(dim=1)  # (B,) sample with the best time-averaged value
        best_pv = values[torch.arange(b, device=values.device), best]  # (B, T)
        for agg, pv in (("mean", mean_pv), ("best", best_pv)):
            info = {**base.details, **details}
            if agg == "best":
                info["best_of_n_selection"] = (
                    "per video, the sample with the best time-averaged value"
                )
            proto = base.replace(
                metric=name, aggregate="mean" if agg == "mean" else "best-of-N", details=info
            )
            out[f"{name}/{agg}"] = MetricCurve(curve=pv.mean(dim=0), per_video=pv, protocol=proto)
    return out


def diversity(samples: Tensor, pair_batch: int = 64) -> Tensor:
    """Sample diversity: mean pairwise MS-SSIM between S samples of the same future.

    **Lower is more diverse** (1 = all samples identical), as Karras et al. use MS-SSIM between
    generated pairs. Each pair's MS-SSIM is averaged over its T frames, then over all ``S (S - 1) / 2``
    unordered pairs. MS-SSIM settings follow :func:`ms_ssim_settings` for the frame size (e.g. 3 scales
    for 64x64); report them with the number.

    Args:
        samples: ``(S, T, C, H, W)`` samples of one video's future, or ``(B, S, T, C, H, W)`` for B
            videos, in ``[0, 1]``; ``S >= 2``.
        pair_batch: pairs evaluated at once (memory).

    Returns:
        A scalar for one video, ``(B,)`` for a batch.
    """
    if not isinstance(samples, Tensor) or samples.dim() not in (5, 6):
        raise ValueError("samples must be (S, T, C, H, W) or (B, S, T, C, H, W)")
    single = samples.dim() == 5
    x = check_frames(samples.unsqueeze(0) if single else samples, "samples")
    s = x.shape[1]
    if s < 2:
        raise ValueError(f"diversity needs at least 2 samples per video, got S={s}")
    i, j = torch.triu_indices(s, s, offset=1, device=x.device)  # (P,) each
    sums = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for k in range(0, i.numel(), pair_batch):
        a, c = x[:, i[k : k + pair_batch]], x[:, j[k : k + pair_batch]]  # (B, p, T, C, H, W)
        sums += ms_ssim(a, c).mean(dim=-1).sum(dim=-1)  # (B,)
    result = sums / i.numel()
    return result[0] if single else result
