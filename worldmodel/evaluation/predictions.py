"""One model's pass over the clips: its predicted frames, reduced batch by batch.

:func:`predict_all` runs a :class:`~worldmodel.evaluation.candidates.Candidate` (a world model
sampling from its learned prior, or the copy-last-frame baseline) over every clip and keeps only
what the report needs (:class:`Predictions`): the per-video image-metric curves, the diversity per
clip, the sharpness per clip and step, sample 0 of every clip (for SWD, the Frechet distance and GAM) and the samples shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from worldmodel.evaluation.candidates import Candidate
from worldmodel.evaluation.clips import Clips
from worldmodel.evaluation.config import EvaluateConfig
from worldmodel.metrics import MetricCurve, Protocol, diversity, per_step_metrics, sharpness
from worldmodel.training.train import predict

__all__ = ["Predictions", "batches", "copy_last_frame", "predict_all"]


def copy_last_frame(obs: Tensor, n_past: int, n_future: int) -> Tensor:
    """The copy-last-frame baseline: ``(B, L, C, H, W)`` uint8 -> ``(B, 1, n_future, C, H, W)``
    float in ``[0, 1]``, the last context frame repeated."""
    last = obs[:, n_past - 1].float() / 255.0  # (B, C, H, W)
    return last[:, None, None].expand(-1, 1, n_future, -1, -1, -1).contiguous()


def batches(n: int, size: int) -> Iterable[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


@dataclass
class Predictions:
    """What one model's pass over the clips leaves behind (everything else is reduced on the fly)."""

    curves: dict[str, MetricCurve]
    diversity: Tensor | None  # (N,)
    sharpness: Tensor | None  # (N, n_future): per clip and step, mean over samples
    first_sample: Tensor  # uint8 (N, n_future, C, H, W): sample 0 of every clip
    shown: Tensor  # uint8 (V, k, n_future, C, H, W): samples for strips / GIFs
    samples: int


@torch.no_grad()
def predict_all(
    cand: Candidate,
    clips: Clips,
    cfg: EvaluateConfig,
    device: torch.device,
    base: Protocol | None,
    image_metrics: Sequence[str],
    want_diversity: bool,
    want_sharpness: bool = False,
) -> Predictions:
    """Predict ``cfg.n_future`` frames after ``cfg.n_past`` for every clip, ``cfg.samples`` per clip
    (1 for copy-last-frame), with a fresh generator seeded by ``cfg.seed``. ``base`` is the protocol
    of the image metrics (None when ``image_metrics`` is empty)."""
    n_past, n_future = cfg.n_past, cfg.n_future
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    per_video: dict[str, list[Tensor]] = {}
    protocols: dict[str, Protocol] = {}
    div, sharp, first, shown = [], [], [], []
    samples = 1
    for sl in batches(len(clips), cfg.batch_size):
        obs = clips.obs[sl].to(device)
        if cand.model is None:
            pred = copy_last_frame(obs, n_past, n_future)
        else:
            action = None
            if cand.model.action_dim > 0 and clips.action is not None:
                action = clips.action[sl].to(device)
            pred = predict(
                cand.model, obs, action, n_past, n_future, cfg.samples, gen, cfg.feedback
            )
            pred = pred.float().clamp(0.0, 1.0)
        samples = pred.shape[1]
        target = obs[:, n_past:].float() / 255.0
        if image_metrics:
            curves = per_step_metrics(pred, target, image_metrics, base, cfg.psnr_max_db)
            for key, c in curves.items():
                per_video.setdefault(key, []).append(c.per_video.cpu())
                protocols.setdefault(key, c.protocol)
        if want_sharpness:
            truth = target.unsqueeze(1).expand_as(pred)
            sharp.append(sharpness(pred, truth).mean(dim=1).cpu())  # (B, T)
        if want_diversity and samples >= 2:
            div.append(diversity(pred).cpu())
        pred_u8 = pred.mul(255).round().to(torch.uint8).cpu()
        first.append(pred_u8[:, 0])
        n_shown = max(0, min(cfg.visualize - sl.start, sl.stop - sl.start))
        if n_shown:
            shown.append(pred_u8[:n_shown, : cfg.samples_shown])
    curves = {}
    for key, parts in per_video.items():
        pv = torch.cat(parts)  # (N, T)
        curves[key] = MetricCurve(
            curve=pv.mean(dim=0), per_video=pv, protocol=protocols[key].replace(num_videos=len(pv))
        )
    return Predictions(
        curves=curves,
        diversity=torch.cat(div) if div else None,
        sharpness=torch.cat(sharp) if sharp else None,
        first_sample=torch.cat(first),
        shown=torch.cat(shown) if shown else torch.zeros(0, dtype=torch.uint8),
        samples=samples,
    )
