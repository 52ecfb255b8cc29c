"""GRAN's generative adversarial metric (GAM) between the checkpoints that carry discriminators,
or, with ``gam_fit_steps > 0``, between every two checkpoints, each judged by a discriminator
fitted to it after training (:mod:`worldmodel.evaluation.judges`).

Each discriminator judges pairs of a predicted frame (sample 0) with the real frames before it, as
the conditional discriminator was trained; the test data are the true frames with the same context
(held out, never seen by either discriminator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from worldmodel.antiblur.adversarial import AdversarialTrainer, context_windows
from worldmodel.evaluation.candidates import Candidate
from worldmodel.evaluation.clips import Clips
from worldmodel.evaluation.config import EvaluateConfig
from worldmodel.evaluation.predictions import Predictions
from worldmodel.metrics import Protocol, gam

__all__ = ["gam_battles"]


def gam_battles(
    cands: Sequence[Candidate],
    clips: Clips,
    predictions: Mapping[str, Predictions],
    cfg: EvaluateConfig,
    device: torch.device,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """GAM between every two checkpoints with a discriminator (saved, or fitted after training
    when ``cfg.gam_fit_steps > 0``: :func:`~worldmodel.evaluation.judges.fit_judges`).

    Returns:
        ``(battles, skipped)``: one dict per pair (``model1``, ``model2``, GAM's result and its
        protocol), and ``{key: reason}`` for checkpoints without a discriminator and for GAM as a
        whole when it cannot be played.
    """
    skipped = {
        f"{c.label}/gam": c.discriminator_note
        for c in cands
        if c.kind == "checkpoint" and c.adversarial is None
    }
    judges = [c for c in cands if c.adversarial is not None]
    why_not = _why_no_battle(judges, cfg)
    if why_not:
        skipped["gam"] = why_not
        return [], skipped
    n_ctx = max(1, max(c.adversarial.cfg.discriminator.context_frames for c in judges))
    context = context_windows(clips.obs, n_ctx, cfg.n_past).flatten(0, 1)  # (N*T, n, C, H, W)
    real = clips.obs[:, cfg.n_past :].flatten(0, 1)  # (N*T, C, H, W)
    battles = []
    for i, c1 in enumerate(judges):
        for c2 in judges[i + 1 :]:
            result = gam(
                _judge(c1.adversarial, device),
                _judge(c2.adversarial, device),
                (context, predictions[c1.label].first_sample.flatten(0, 1)),
                (context, predictions[c2.label].first_sample.flatten(0, 1)),
                (context, real),
                test_tolerance=cfg.gam_test_tolerance,
                tie_tolerance=cfg.gam_tie_tolerance,
                test_rule=cfg.gam_test_rule,
                batch_size=max(cfg.batch_size, 64),
            )
            proto = Protocol(
                context_frames=cfg.n_past,
                predicted_frames=cfg.n_future,
                samples_per_video=1,
                num_videos=len(clips),
                dataset=str(cfg.data),
                checkpoint=f"{c1.checkpoint_desc()} vs {c2.checkpoint_desc()}",
                metric="gam",
                details={
                    "pairs": "every predicted frame (sample 0) with the "
                    f"{n_ctx} real frames before it; test data: the true frames with the same "
                    "context (held-out data, never seen by either discriminator)",
                    "logit": "mean of the per-scale logits (minus 0.5 for lsgan); >= 0 = real",
                    "discriminators": (
                        f"fitted after training, {cfg.gam_fit_steps} steps each on "
                        f"{cfg.gam_fit_data} (see each model's 'discriminator')"
                        if cfg.gam_fit_steps > 0
                        else "saved in the checkpoints; eval mode (no dropout), at their "
                        "saved progressive stage"
                    ),
                    "seed": cfg.seed,
                },
            )
            battles.append(
                {
                    "model1": c1.label,
                    "model2": c2.label,
                    **result.to_dict(),
                    "protocol": proto.to_dict(),
                }
            )
    return battles, skipped


def _why_no_battle(judges: Sequence[Candidate], cfg: EvaluateConfig) -> str:
    """Why GAM cannot be played between these discriminators ('' when it can)."""
    if len(judges) < 2:
        return (
            f"needs two checkpoints with discriminators, got {len(judges)} "
            f"({', '.join(c.label for c in judges) or 'none'})"
        )
    if {c.adversarial.cfg.discriminator.clip_length for c in judges} != {1}:
        return "only discriminators that judge single frames (clip_length=1) are supported"
    n_ctx = max(1, max(c.adversarial.cfg.discriminator.context_frames for c in judges))
    if cfg.n_past < n_ctx:
        return (
            f"the discriminators see {n_ctx} real frames before each judged frame; "
            f"set n_past >= {n_ctx}"
        )
    return ""


def _judge(adv: AdversarialTrainer, device: torch.device) -> Callable[[Tensor, Tensor], Tensor]:
    """GAM's view of a multi-scale conditional discriminator: ``(context, frame)`` uint8 ->
    one logit per pair, the mean of the per-scale logits minus the real/fake threshold."""
    threshold = 0.5 if adv.form == "lsgan" else 0.0

    def d(context: Tensor, frame: Tensor) -> Tensor:
        ctx = context.to(device).float() / 255.0
        x = frame.to(device).float() / 255.0
        x, ctx, alpha = adv.prepare(x, ctx)
        logits = adv.discriminator(x, ctx, alpha=alpha)
        return torch.stack([lg.float() for lg in logits]).mean(dim=0) - threshold

    return d
