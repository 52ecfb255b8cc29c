"""The numbers of one model, each with its protocol; and which metrics can be computed at all.

:func:`plan_metrics` decides once per report which requested metrics the clips allow (a metric
that cannot be computed, e.g. a Frechet distance from fewer clips than feature dimensions, goes to
``skipped`` with the reason) and prepares what every model shares (the real clips' features).
:func:`score_candidate` then runs one model over the clips and turns its
:class:`~worldmodel.evaluation.predictions.Predictions` into report entries
(:class:`CandidateResult`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from worldmodel.evaluation.candidates import Candidate
from worldmodel.evaluation.clips import Clips, describe_selection
from worldmodel.evaluation.config import IMAGE_METRICS, EvaluateConfig
from worldmodel.evaluation.predictions import Predictions, batches, predict_all
from worldmodel.metrics import (
    I3DFeatures,
    MetricCurve,
    Protocol,
    RandomConv3dFeatures,
    VideoFeatureExtractor,
    feature_statistics,
    frechet_distance,
    ms_ssim_settings,
    swd,
)

__all__ = ["FrechetReference", "MetricPlan", "CandidateResult", "plan_metrics", "score_candidate"]


@dataclass
class FrechetReference:
    """The feature network of the Frechet distance and the real clips' features ``(N, D)``."""

    extractor: VideoFeatureExtractor
    real_features: Tensor


@dataclass
class MetricPlan:
    """What this report computes for every model.

    Attributes:
        image_metrics: the requested PSNR / SSIM / MS-SSIM.
        swd, sharpness, diversity: whether they were requested.
        frechet: the Frechet distance's reference, None when not requested or skipped.
        skipped: ``{metric: reason}`` for requested metrics the clips do not allow.
        details: protocol details shared by every number (seed, clip selection, feedback, prior).
    """

    image_metrics: list[str]
    swd: bool
    diversity: bool
    sharpness: bool
    frechet: FrechetReference | None
    skipped: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class CandidateResult:
    """One model's part of the report: ``models[label]``, ``results[label]``, its predictions
    (for the media and GAM) and its skipped metrics (``{"<label>/<metric>": reason}``)."""

    label: str
    model: dict[str, Any]
    results: dict[str, Any]
    predictions: Predictions
    skipped: dict[str, str]


def plan_metrics(cfg: EvaluateConfig, clips: Clips, device: torch.device) -> MetricPlan:
    """Which of ``cfg.metrics`` the clips allow, and the real clips' Frechet features."""
    length = cfg.n_past + cfg.n_future
    plan = MetricPlan(
        image_metrics=[m for m in IMAGE_METRICS if m in cfg.metrics],
        swd="swd" in cfg.metrics,
        diversity="diversity" in cfg.metrics,
        sharpness="sharpness" in cfg.metrics,
        frechet=None,
        details={
            "seed": cfg.seed,
            "clips": describe_selection(clips, length, cfg.num_videos, cfg.seed),
            "feedback": cfg.feedback,
            "prior": "z sampled from the learned prior after the context "
            "(posterior on the context)",
        },
    )
    if "frechet" in cfg.metrics:
        extractor = _frechet_extractor(cfg, device)
        reason = _frechet_unavailable(extractor, clips, cfg, device)
        if reason:
            plan.skipped["frechet"] = reason
        else:
            real = _features(extractor, clips.obs, cfg.batch_size, device)
            plan.frechet = FrechetReference(extractor, real)
    return plan


def score_candidate(
    cand: Candidate, clips: Clips, plan: MetricPlan, cfg: EvaluateConfig, device: torch.device
) -> CandidateResult:
    """Run ``cand`` over the clips and compute every planned metric, each with its protocol."""
    base = Protocol(
        context_frames=cfg.n_past,
        dataset=str(cfg.data),
        checkpoint=cand.checkpoint_desc(),
        details={**plan.details, "actions": _actions_note(cand, clips)},
    )
    pred = predict_all(
        cand, clips, cfg, device, base, plan.image_metrics, plan.diversity, plan.sharpness
    )
    stamp = base.replace(
        predicted_frames=cfg.n_future, samples_per_video=pred.samples, num_videos=len(clips)
    )
    results: dict[str, Any] = {
        m: {agg: _curve_entry(pred.curves[f"{m}/{agg}"]) for agg in ("mean", "best")}
        for m in plan.image_metrics
    }
    if plan.swd:
        results["swd"] = _swd_entry(clips, pred, stamp, cfg)
    if pred.sharpness is not None:
        results["sharpness"] = _sharpness_entry(pred.sharpness, stamp)
    if plan.frechet is not None:
        results["frechet"] = _frechet_entry(plan.frechet, clips, pred, stamp, cfg, device)
    skipped = {}
    if plan.diversity:
        if pred.diversity is None:
            skipped[f"{cand.label}/diversity"] = "needs >= 2 samples per video" + (
                " (copy-last-frame is deterministic)" if cand.model is None else ""
            )
        else:
            results["diversity"] = _diversity_entry(pred, stamp, clips)
    return CandidateResult(cand.label, cand.describe(), results, pred, skipped)


def _actions_note(cand: Candidate, clips: Clips) -> str:
    if cand.model is None:
        return "not used (copy-last-frame)"
    if clips.action is None:
        return "none in the data (action-free video)"
    if cand.model.action_dim == 0:
        return "not used (action-free model)"
    return "the recorded actions, context and future"


def _curve_entry(curve: MetricCurve) -> dict[str, Any]:
    per_video_avg = curve.per_video.mean(dim=1)  # (N,) time-averaged per video
    n = per_video_avg.numel()
    sem = float(per_video_avg.std() / math.sqrt(n)) if n > 1 else math.nan
    return {
        "value": curve.mean,
        "sem": sem,
        "curve": curve.curve.tolist(),
        "protocol": curve.protocol.to_dict(),
        "description": curve.protocol.describe(),
    }


def _entry(value: Any, proto: Protocol, **extra: Any) -> dict[str, Any]:
    return {**extra, "value": value, "protocol": proto.to_dict(), "description": proto.describe()}


def _sharpness_entry(per_video: Tensor, stamp: Protocol) -> dict[str, Any]:
    """Relative sharpness (:func:`~worldmodel.metrics.sharpness`): per step, mean over samples
    and clips; ``value`` is its mean over the steps (1 = as sharp as the truth)."""
    per_video = per_video.double()
    finite = torch.isfinite(per_video).all(dim=1)  # a flat true frame makes a ratio infinite
    kept = per_video[finite]
    n = kept.shape[0]
    proto = stamp.replace(
        metric="sharpness",
        details={
            **stamp.details,
            "definition": "mean gradient magnitude of the prediction / of the truth, per frame; "
            "mean over samples, clips and steps (1 = as sharp as the truth, < 1 = blurrier)",
            "clips_with_a_flat_true_frame_left_out": int((~finite).sum()),
        },
    )
    avg = kept.mean(dim=1)
    return {
        "value": float(avg.mean()) if n else math.nan,
        "sem": float(avg.std() / math.sqrt(n)) if n > 1 else math.nan,
        "curve": kept.mean(dim=0).tolist() if n else [],
        "protocol": proto.to_dict(),
        "description": proto.describe(),
    }


def _swd_entry(clips: Clips, pred: Predictions, stamp: Protocol, cfg: EvaluateConfig) -> dict:
    real = clips.obs[:, cfg.n_past :].flatten(0, 1).float() / 255.0
    fake = pred.first_sample.flatten(0, 1).float() / 255.0
    values = swd(real, fake, generator=torch.Generator().manual_seed(cfg.seed))
    proto = stamp.replace(
        metric="swd",
        samples_per_video=1,  # sample 0 of each clip
        details={
            **stamp.details,
            "sets": f"{real.shape[0]} predicted frames (sample 0 of each clip, every "
            "predicted step) vs the true future frames of the same clips",
            "patches_per_image": 128,
            "patch_size": 7,
            "num_projections": 512,
            "pyramid": "Laplacian, finest level first, down to 16 px",
            "scale": "x1e3 (as Karras et al. report it)",
            "patch_positions": "shared by both sets (common random numbers)",
            "predicted_frames_quantised": "uint8, like the data",
        },
    )
    return {
        "value": values["avg"],
        "per_level": {str(k): v for k, v in values.items() if k != "avg"},
        "protocol": proto.to_dict(),
        "description": proto.describe(),
    }


def _frechet_entry(
    ref: FrechetReference,
    clips: Clips,
    pred: Predictions,
    stamp: Protocol,
    cfg: EvaluateConfig,
    device: torch.device,
) -> dict[str, Any]:
    fake_clips = torch.cat([clips.obs[:, : cfg.n_past], pred.first_sample], dim=1)
    fake_features = _features(ref.extractor, fake_clips, cfg.batch_size, device)
    mu_r, s_r = feature_statistics(ref.real_features, cfg.fd_shrinkage)
    mu_f, s_f = feature_statistics(fake_features, cfg.fd_shrinkage)
    proto = stamp.replace(
        metric=ref.extractor.metric_name,
        samples_per_video=1,  # sample 0 of each clip
        feature_net=ref.extractor.name,
        details={
            **stamp.details,
            "clips": f"{len(clips)} real clips of {cfg.n_past + cfg.n_future} frames vs the same "
            f"{cfg.n_past} real context frames followed by {cfg.n_future} predicted frames "
            "(sample 0)",
            "preprocessing": ref.extractor.preprocessing,
            "feature_dim": int(ref.real_features.shape[1]),
            "shrinkage": cfg.fd_shrinkage,
            "comparable_with": (
                "published FVDs (reference I3D, 16-frame clips)"
                if ref.extractor.reference_fvd
                else "other FDs of this network and protocol only, never with FVD"
            ),
        },
    )
    return _entry(frechet_distance(mu_r, s_r, mu_f, s_f), proto, name=ref.extractor.metric_name)


def _diversity_entry(pred: Predictions, stamp: Protocol, clips: Clips) -> dict[str, Any]:
    assert pred.diversity is not None
    h, w = clips.obs.shape[-2:]
    proto = stamp.replace(
        metric="diversity",
        details={
            **stamp.details,
            "definition": "mean pairwise MS-SSIM between the samples of a clip "
            "(each pair averaged over the predicted frames), averaged over clips; "
            "lower = more diverse",
            "ms_ssim": ms_ssim_settings(h, w).describe(),
            "pairs_per_video": pred.samples * (pred.samples - 1) // 2,
        },
    )
    return _entry(float(pred.diversity.mean()), proto)


def _frechet_extractor(cfg: EvaluateConfig, device: torch.device) -> VideoFeatureExtractor:
    if cfg.i3d:
        return I3DFeatures.from_file(cfg.i3d, map_location=device)
    return RandomConv3dFeatures(seed=cfg.fd_seed, dim=cfg.fd_dim).to(device)


def _frechet_unavailable(
    extractor: VideoFeatureExtractor, clips: Clips, cfg: EvaluateConfig, device: torch.device
) -> str:
    """Why the Frechet distance cannot be computed from these clips ('' when it can)."""
    n = len(clips)
    name = extractor.metric_name
    if n < 2:
        return f"{name} needs at least 2 clips for a covariance; the data gives {n}"
    if cfg.fd_shrinkage > 0:
        return ""
    dim = int(_features(extractor, clips.obs[:1], 1, device).shape[1])
    if n > dim:
        return ""
    return (
        f"{name} needs more clips than feature dimensions for a covariance: {n} clips <= {dim} "
        f"dimensions; evaluate on more than {dim} clips (more episodes or shorter clips), "
        + ("" if cfg.i3d else f"set fd_dim below {n}, ")
        + "or set fd_shrinkage > 0 (a different number, reported)"
    )


@torch.no_grad()
def _features(
    extractor: VideoFeatureExtractor, videos: Tensor, batch_size: int, device: torch.device
) -> Tensor:
    """uint8 ``(N, T, C, H, W)`` -> ``(N, D)`` float32 CPU features, converted batch by batch."""
    out = [
        extractor.features(videos[sl].to(device).float() / 255.0).cpu()
        for sl in batches(videos.shape[0], batch_size)
    ]
    return torch.cat(out)
