"""Assemble a :class:`~worldmodel.train.Trainer` with the anti-blur losses of the ``loss`` config.

The base objective (reconstruction, ``beta * KL``, reward, latent consistency) lives in
:mod:`worldmodel.train`; the anti-blur terms (GDL, multi-scale conditional adversarial loss,
DeePSiM feature loss) in :mod:`worldmodel.adversarial`. This module joins them:

* GDL and the feature loss compare every predicted frame ``1..L-1`` with the true one;
* the adversarial loss judges each predicted frame ``t >= n`` together with the ``n`` real frames
  before it (Mathieu et al.'s conditional discriminator, ``n = loss.discriminator.context_frames``);
  the discriminator is updated once per generator step on the same (detached) pairs.

Scale: :mod:`worldmodel.train`'s reconstruction term is a per-pixel mean (the balance for which
SVG's ``beta = 1e-4`` was tuned), while the anti-blur terms of :func:`~worldmodel.adversarial.generator_terms`
are per-frame sums (the scale of Mathieu et al.'s and DeePSiM's weights). Each anti-blur term is
therefore divided by the pixels per frame ``C * H * W``, so the papers' weights keep their balance
against the reconstruction term at every resolution.

The predictions are those of the training forward pass (teacher forcing, posterior ``z``), as in
SVG's training loop; the discriminator therefore sharpens the decoder's output for a given latent.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from worldmodel.adversarial import AdversarialTrainer, AntiBlurConfig, context_windows
from worldmodel.comparator import build_comparator_from_config
from worldmodel.losses import gdl
from worldmodel.svg import ModelOutput, WorldModel
from worldmodel.train import LossTerm, ObjectiveConfig, TrainConfig, Trainer

__all__ = ["build_trainer", "AdversarialHook", "conditional_pairs"]


def conditional_pairs(obs: Tensor, frames: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """(real, fake, context) pairs for a conditional discriminator, flattened over time.

    Args:
        obs: ``(B, L, C, H, W)`` the true frames ``0..L-1``.
        frames: ``(B, L-1, C, H, W)`` predictions of frames ``1..L-1``.
        n: context frames per pair (>= 1).

    Returns:
        real ``(B * (L-n), C, H, W)`` frames ``n..L-1``; fake, the predictions of the same frames;
        context ``(B * (L-n), n, C, H, W)`` the real frames ``t-n..t-1`` before each.
    """
    n = max(1, n)
    real = obs[:, n:]
    fake = frames[:, n - 1 :]
    ctx = context_windows(obs, n, n)
    return real.flatten(0, 1), fake.flatten(0, 1), ctx.flatten(0, 1)


class AdversarialHook:
    """Adapts :class:`AdversarialTrainer` to the trainer's discriminator hook."""

    def __init__(self, adversarial: AdversarialTrainer, context_frames: int) -> None:
        self.adversarial = adversarial
        self.n = max(1, context_frames)

    def update(self, real: Tensor, fake: Tensor, context: Tensor) -> dict[str, float]:
        obs = torch.cat([context[:, :1], real], dim=1)  # frames 0..L-1
        r, f, c = conditional_pairs(obs.float(), fake.float(), self.n)
        return self.adversarial.d_step(r, f, c)

    def generator_term(self, out: ModelOutput) -> Tensor:
        _, fake, ctx = conditional_pairs(out.obs, out.frames.float(), self.n)
        loss, _ = self.adversarial.g_loss(fake, ctx)
        return loss

    def state_dict(self) -> dict[str, Any]:
        return self.adversarial.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.adversarial.load_state_dict(state)


def build_trainer(
    model: WorldModel,
    train_cfg: TrainConfig,
    objective_cfg: ObjectiveConfig,
    loss_cfg: AntiBlurConfig,
    device: torch.device | str,
) -> Trainer:
    """A :class:`Trainer` whose generator loss includes the enabled anti-blur terms.

    Builds the multi-scale discriminator (and its optimiser) when ``loss.adv_weight > 0`` or the
    comparator is the discriminator, and the DeePSiM comparator when ``loss.feature_weight > 0``.
    Under ``torch.distributed`` the discriminator is wrapped in DDP for its updates.
    """
    device = torch.device(device)
    per_pixel = 1.0 / (model.channels * model.image_size * model.image_size)
    extra: dict[str, tuple[float, LossTerm]] = {}
    hook: AdversarialHook | None = None
    if loss_cfg.needs_discriminator:
        adv = AdversarialTrainer(loss_cfg, model.image_size, model.channels, device=device)
        if dist.is_available() and dist.is_initialized():
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            adv.wrap(
                lambda d: DistributedDataParallel(
                    d, device_ids=ids, find_unused_parameters=loss_cfg.progressive.enabled
                )
            )
        hook = AdversarialHook(adv, loss_cfg.discriminator.context_frames)
    if loss_cfg.gdl_weight > 0:
        alpha = loss_cfg.gdl_alpha
        extra["gdl"] = (
            loss_cfg.gdl_weight,
            lambda out: per_pixel
            * gdl(out.frames.float(), out.target.float(), alpha, reduction="batch"),
        )
    if loss_cfg.adv_weight > 0:
        assert hook is not None
        adv_term = hook.generator_term
        extra["adv"] = (loss_cfg.adv_weight, lambda out: per_pixel * adv_term(out))
    if loss_cfg.feature_weight > 0:
        comparator = build_comparator_from_config(
            loss_cfg.comparator, hook.adversarial if hook is not None else None, device
        )
        n_ctx = loss_cfg.discriminator.context_frames

        def feature_term(out: ModelOutput) -> Tensor:
            if loss_cfg.comparator.kind == "discriminator" and n_ctx > 0:
                # the conditional discriminator's features need the context of each frame
                real, fake, ctx = conditional_pairs(out.obs, out.frames.float(), n_ctx)
                return per_pixel * comparator.loss(fake, real, ctx)
            pred, target = out.frames.float().flatten(0, 1), out.target.float().flatten(0, 1)
            return per_pixel * comparator.loss(pred, target, None)

        extra["feat"] = (loss_cfg.feature_weight, feature_term)
    # the discriminator is updated only when its adversarial term is used
    disc = hook if loss_cfg.adv_weight > 0 else None
    return Trainer(model, train_cfg, objective_cfg, device, extra_terms=extra, discriminator=disc)
