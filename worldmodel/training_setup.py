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
therefore divided by the pixels per frame ``C * H * W`` of the frames it is computed on, so the
papers' weights keep their balance against the reconstruction term at every resolution.

Progressive growing (``loss.progressive.enabled``): the model's decoder must have been built with
``progressive_heads`` (:func:`resolve_model_config` does that from the loss config). The trainer
then asks the discriminator's own :class:`~worldmodel.pggan.ProgressiveSchedule` (or, without a
discriminator, the same schedule built from the config) for ``(resolution r, alpha)`` at every
step; the decoder predicts ``r`` px frames with ``r`` faded in by ``alpha`` and every term is
computed at ``r``: reconstruction and GDL against the targets average-pooled to ``r``, the
adversarial term by the discriminator at ``r``, the feature loss on ``r`` px frames brought back
to the full size by nearest-neighbour upsampling (the comparators need >= 32 px, and their
weights were set at full size; an avg-pooled nearest upsample is exact, so the discriminator
comparator sees the ``r`` px frames themselves).

Multi-scale decoder (``model.decoder_scales = N > 1``, Mathieu et al.'s coarse-to-fine form): GDL
is summed over the ``N`` predicted scales (each against the targets average-pooled to it and
divided by its own pixels per frame), and the discriminator of scale factor ``s`` judges the
decoder's own prediction at ``S / s`` px (the finest prediction average-pooled when the decoder
has no such scale). Reconstruction and the feature loss use the finest prediction.

The predictions are those of the training forward pass (teacher forcing, posterior ``z``), as in
SVG's training loop; the discriminator therefore sharpens the decoder's output for a given latent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from worldmodel.adversarial import AdversarialTrainer, AntiBlurConfig, context_windows
from worldmodel.comparator import build_comparator_from_config
from worldmodel.losses import gdl
from worldmodel.pggan import resize_to
from worldmodel.svg import ModelConfig, ModelOutput, WorldModel
from worldmodel.train import LossTerm, ObjectiveConfig, TrainConfig, Trainer

__all__ = [
    "build_trainer",
    "resolve_model_config",
    "AdversarialHook",
    "conditional_pairs",
    "per_scale_candidates",
]


def resolve_model_config(model_cfg: ModelConfig, loss_cfg: AntiBlurConfig) -> ModelConfig:
    """The architecture to build for training with ``loss_cfg`` (a new config; neither is changed).

    The loss config's generator options are properties of the decoder: ``loss.pixel_norm``
    switches on ``pixel_norm`` and ``loss.progressive.enabled`` switches on ``progressive_heads``
    (either may also be set on the model config directly). The result is what the model and its
    checkpoints record, so :func:`~worldmodel.train.model_from_checkpoint` rebuilds the same net.
    """
    return dataclasses.replace(
        model_cfg,
        pixel_norm=model_cfg.pixel_norm or loss_cfg.pixel_norm,
        progressive_heads=model_cfg.progressive_heads or loss_cfg.progressive.enabled,
    )


def per_scale_candidates(
    pyramid: Sequence[Tensor], scales: Sequence[int], full: int
) -> list[Tensor]:
    """One candidate per discriminator scale from a multi-scale decoder's predictions.

    Args:
        pyramid: predictions ``(..., C, r_k, r_k)``, coarse to fine, the last at ``full`` px.
        scales: the discriminator's downsampling factors.
        full: the full frame size ``S``.

    Returns:
        For each factor ``s``: the prediction at ``S / s`` px, or the finest one average-pooled
        to ``S / s`` when the decoder has no such scale.
    """
    by_size = {int(p.shape[-1]): p for p in pyramid}
    return [
        by_size[full // s] if full // s in by_size else resize_to(pyramid[-1], full // s)
        for s in scales
    ]


def _per_pixel(frames: Tensor) -> float:
    """``1 / (C * r * r)`` for frames ``(..., C, r, r)``: one over the pixels of a frame."""
    c, h, w = frames.shape[-3:]
    return 1.0 / (c * h * w)


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

    def check_in_step(self, out: ModelOutput) -> None:
        """Raise if a growing generator's ``(resolution, alpha)`` is not the discriminator's."""
        if not self.adversarial.generator_grows:
            return
        expected = self.adversarial.resolution_alpha
        if (out.resolution, out.alpha) != expected:
            raise RuntimeError(
                f"progressive growing out of step: the decoder predicted at (resolution, alpha) = "
                f"{(out.resolution, out.alpha)} but the discriminator is at {expected}"
            )

    def _pairs(
        self, obs: Tensor, fake: Tensor | Sequence[Tensor]
    ) -> tuple[Tensor, Tensor | list[Tensor], Tensor]:
        """:func:`conditional_pairs`; a pyramid gives one flattened fake per discriminator scale."""
        if isinstance(fake, Tensor):
            return conditional_pairs(obs, fake.float(), self.n)
        d = self.adversarial.discriminator
        per_scale = per_scale_candidates(fake, d.scales, d.image_size)
        real, _, ctx = conditional_pairs(obs, fake[-1].float(), self.n)
        fakes = [conditional_pairs(obs, f.float(), self.n)[1] for f in per_scale]
        return real, fakes, ctx

    def update(
        self, real: Tensor, fake: Tensor | Sequence[Tensor], context: Tensor
    ) -> dict[str, float]:
        obs = torch.cat([context[:, :1], real], dim=1)  # frames 0..L-1
        r, f, c = self._pairs(obs.float(), fake)
        return self.adversarial.d_step(r, f, c)

    def generator_term(self, out: ModelOutput) -> Tensor:
        self.check_in_step(out)
        _, fake, ctx = self._pairs(out.obs, out.pyramid or out.frames)
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
    Under ``torch.distributed`` the discriminator is wrapped in DDP for its updates. With
    ``loss.progressive.enabled`` the decoder grows with the discriminator (see the module
    docstring); the model must then have ``cfg.progressive_heads`` (see :func:`resolve_model_config`).

    Raises:
        ValueError: progressive growing is enabled but the model's decoder cannot grow.
    """
    device = torch.device(device)
    progressive = loss_cfg.progressive.enabled
    if progressive and not model.cfg.progressive_heads:
        raise ValueError(
            "loss.progressive.enabled=true needs a decoder with progressive heads: build the model "
            "from resolve_model_config(model_cfg, loss_cfg) (or set model.progressive_heads=true)"
        )
    full = model.image_size
    extra: dict[str, tuple[float, LossTerm]] = {}
    hook: AdversarialHook | None = None
    schedule = loss_cfg.progressive.schedule(full) if progressive else None
    if loss_cfg.needs_discriminator:
        adv = AdversarialTrainer(
            loss_cfg, model.image_size, model.channels, device=device, generator_grows=progressive
        )
        if progressive:
            schedule = adv.schedule  # the generator follows the discriminator's schedule
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

        def gdl_term(out: ModelOutput) -> Tensor:
            if out.pyramid is None:
                pred, target = out.frames.float(), out.target.float()
                return _per_pixel(out.frames) * gdl(pred, target, alpha, reduction="batch")
            truth = out.obs[:, 1:]  # a multi-scale decoder: GDL at every scale, summed
            per_scale = [
                _per_pixel(p)
                * gdl(p.float(), resize_to(truth, p.shape[-1]).float(), alpha, reduction="batch")
                for p in out.pyramid
            ]
            return torch.stack(per_scale).sum()

        extra["gdl"] = (loss_cfg.gdl_weight, gdl_term)
    if loss_cfg.adv_weight > 0:
        assert hook is not None
        adv_term = hook.generator_term
        extra["adv"] = (loss_cfg.adv_weight, lambda out: _per_pixel(out.frames) * adv_term(out))
    if loss_cfg.feature_weight > 0:
        comparator = build_comparator_from_config(
            loss_cfg.comparator, hook.adversarial if hook is not None else None, device
        )
        n_ctx = loss_cfg.discriminator.context_frames

        def full_size(x: Tensor) -> Tensor:
            """``(B, T, C, r, r)`` -> ``(B, T, C, S, S)`` by nearest upsampling (identity at S)."""
            if x.shape[-1] == full:
                return x
            y = F.interpolate(x.flatten(0, 1), size=(full, full), mode="nearest")
            return y.view(*x.shape[:2], *y.shape[1:])

        def feature_term(out: ModelOutput) -> Tensor:
            frames, target = full_size(out.frames.float()), full_size(out.target.float())
            per_pixel = _per_pixel(frames)
            if loss_cfg.comparator.kind == "discriminator" and n_ctx > 0:
                # the conditional discriminator's features need the context of each frame
                # (its prepare pools real, context and upsampled fakes back to its resolution)
                real, fake, ctx = conditional_pairs(out.obs, frames, n_ctx)
                return per_pixel * comparator.loss(fake, real, ctx)
            pred, target = frames.flatten(0, 1), target.flatten(0, 1)
            return per_pixel * comparator.loss(pred, target, None)

        extra["feat"] = (loss_cfg.feature_weight, feature_term)
    # the discriminator is updated only when its adversarial term is used
    disc = hook if loss_cfg.adv_weight > 0 else None
    return Trainer(
        model,
        train_cfg,
        objective_cfg,
        device,
        extra_terms=extra,
        discriminator=disc,
        progressive=schedule,
    )
