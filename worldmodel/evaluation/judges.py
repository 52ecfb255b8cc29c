"""Discriminators fitted after training: GAM between models that were trained without one.

GRAN's metric (:mod:`worldmodel.metrics.gam`) lets each model's own discriminator judge the other
model's samples. A model trained with ``loss=mse`` (or with ``loss=full``'s GDL and feature terms
only) has no discriminator, so the battle cannot be played with the checkpoints as they are. With
``gam_fit_steps > 0`` the evaluation fits one instead, the same recipe for every checkpoint (the
discriminators saved in the checkpoints are then not used, so that no judge has a head start):

1. ``gam_fit_clips`` clips of ``n_past + n_future`` frames are drawn from ``gam_fit_data``
   (training episodes: never the held-out ``data``, whose true frames are GAM's test set);
2. the frozen model predicts the ``n_future`` frames of each clip once (one prior sample, seeded);
3. a fresh multi-scale conditional discriminator (``AntiBlurConfig()``'s: Mathieu et al.'s
   three scales, 2 real frames of context, non-saturating BCE, Adam 2e-4, widths following the
   model's K) is trained ``gam_fit_steps`` steps on random batches of ``gam_fit_batch`` pairs:
   (context, true frame) against (context, predicted frame).

Each model's judge has then seen only its own model's samples, as in GRAN; the battle reads as
before (``r_test`` near 1: the two judges agree on real frames; ``r_samples < 1``: model 1 wins).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from worldmodel.antiblur.adversarial import AdversarialTrainer, AntiBlurConfig, context_windows
from worldmodel.data import EpisodeDataset
from worldmodel.evaluation.candidates import Candidate, check_compatible
from worldmodel.evaluation.clips import Clips, clips_up_to
from worldmodel.evaluation.config import EvaluateConfig
from worldmodel.evaluation.predictions import predict_all

__all__ = ["fit_discriminator", "fit_judges"]


def fit_judges(cands: Sequence[Candidate], cfg: EvaluateConfig, device: torch.device) -> None:
    """Give every checkpoint of ``cands`` a discriminator fitted to its own predictions on
    ``cfg.gam_fit_data`` (in place: ``adversarial`` and ``discriminator_note``)."""
    dataset = EpisodeDataset(cfg.gam_fit_data)
    clips = clips_up_to(dataset, cfg.n_past + cfg.n_future, cfg.gam_fit_clips, cfg.seed)
    for c in cands:
        if c.kind != "checkpoint" or c.model is None:
            continue
        check_compatible(c.model, dataset, f"checkpoint {c.path} (gam_fit_data)")
        fake = predict_first_sample(c, clips, cfg, device)
        adv, logs = fit_discriminator(
            clips.obs,
            fake,
            cfg.n_past,
            steps=cfg.gam_fit_steps,
            batch_size=cfg.gam_fit_batch,
            conv_width=c.model.cfg.conv_width,
            device=device,
            seed=cfg.seed,
        )
        c.adversarial = adv
        c.discriminator_note = (
            f"fitted after training to this model's predictions: {cfg.gam_fit_steps} steps of "
            f"{cfg.gam_fit_batch} pairs from {len(clips)} clips of {Path(cfg.gam_fit_data)}; "
            f"accuracy over its last steps: real {logs['acc_real']:.2f}, predicted "
            f"{logs['acc_fake']:.2f}"
        )


def predict_first_sample(
    cand: Candidate, clips: Clips, cfg: EvaluateConfig, device: torch.device
) -> Tensor:
    """One prior sample of the ``n_future`` frames of every clip: uint8 ``(N, n_future, C, H, W)``
    on the CPU (the evaluation's own prediction pass, one sample, no metrics, seeded with
    ``cfg.seed + 1``, apart from the scored samples')."""
    one = dataclasses.replace(cfg, samples=1, seed=cfg.seed + 1, visualize=0)
    pred = predict_all(cand, clips, one, device, base=None, image_metrics=(), want_diversity=False)
    return pred.first_sample


def fit_discriminator(
    obs: Tensor,
    fake: Tensor,
    n_past: int,
    *,
    steps: int,
    batch_size: int = 64,
    conv_width: int | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    cfg: AntiBlurConfig | None = None,
) -> tuple[AdversarialTrainer, dict[str, float]]:
    """A fresh conditional discriminator trained to tell ``obs``'s frames from ``fake``.

    Args:
        obs: uint8 ``(N, L, C, H, W)`` true clips.
        fake: uint8 ``(N, L - n_past, C, H, W)`` predictions of frames ``n_past .. L-1``.
        n_past: context frames before the first prediction (at least the discriminator's
            ``context_frames``).
        steps, batch_size: discriminator updates and (context, frame) pairs per update; the pairs
            are drawn with replacement from all ``N * (L - n_past)`` predicted positions, the same
            positions for the real and the predicted frame of a step.
        conv_width: the generator's conv width (discriminator widths left at None follow it).
        device: where the discriminator is trained.
        seed: seeds the initial weights and the batches.
        cfg: the discriminator's recipe (default ``AntiBlurConfig()``: three scales, 2 frames of
            context, BCE).

    Returns:
        ``(adversarial, logs)``: the trainer with its discriminator in eval mode, and the mean
        ``acc_real`` / ``acc_fake`` over the last ``min(steps, 20)`` updates.

    Raises:
        ValueError: shapes that do not match, ``n_past`` below the context the discriminator
            needs, or ``steps < 1``.
    """
    cfg = cfg or AntiBlurConfig()
    n, length = obs.shape[:2]
    t = length - n_past
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps ({steps}) and batch_size ({batch_size}) must be >= 1")
    if fake.shape != (n, t, *obs.shape[2:]):
        raise ValueError(
            f"fake has shape {tuple(fake.shape)}; expected {(n, t, *obs.shape[2:])} (the frames "
            f"{n_past}..{length - 1} of each clip)"
        )
    n_ctx = cfg.discriminator.context_frames
    if n_past < n_ctx:
        raise ValueError(
            f"the discriminator sees {n_ctx} real frames before each judged frame; "
            f"n_past is {n_past}"
        )
    channels, size = obs.shape[2], obs.shape[-1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kwargs = {} if conv_width is None else {"conv_width": conv_width}
        adv = AdversarialTrainer(cfg, size, channels, device=device, **kwargs)
    real = obs[:, n_past:].flatten(0, 1)
    ctx = context_windows(obs, n_ctx, n_past).flatten(0, 1)
    fake = fake.flatten(0, 1)
    gen = torch.Generator().manual_seed(seed)
    adv.discriminator.train()
    tail: list[tuple[float, float]] = []
    for step in range(steps):
        idx = torch.randint(real.shape[0], (batch_size,), generator=gen)

        def take(x: Tensor, idx: Tensor = idx) -> Tensor:
            return x[idx].to(device).float().div_(255.0)

        logs = adv.d_step(take(real), take(fake), take(ctx))
        if step >= steps - 20:
            tail.append((logs["d/acc_real"], logs["d/acc_fake"]))
    adv.discriminator.eval()
    acc_real = sum(a for a, _ in tail) / len(tail)
    acc_fake = sum(b for _, b in tail) / len(tail)
    return adv, {"acc_real": acc_real, "acc_fake": acc_fake}
