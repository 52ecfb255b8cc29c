"""Assemble a :class:`~worldmodel.training.train.Trainer` with the anti-blur losses of the ``loss``
config.

The base objective (reconstruction, ``beta * KL``, reward, latent consistency) lives in
:mod:`worldmodel.training.train`; the anti-blur terms (GDL, multi-scale conditional adversarial
loss, DeePSiM feature loss), their scale and the discriminator's update in
:class:`worldmodel.antiblur.adversarial.AntiBlurObjective`. This module joins them:
:func:`build_trainer` gives the trainer that objective and, with progressive growing, its schedule.

Progressive growing (``loss.progressive.enabled``): the model's decoder must have been built with
``progressive_heads`` (:func:`resolve_model_config` does that from the loss config). The trainer
reads ``(resolution r, alpha)`` from the schedule at its ``global_step`` -- the one step counter --
and the decoder predicts ``r`` px frames with ``r`` faded in by ``alpha``; every term is computed
at ``r``: reconstruction and GDL against the targets average-pooled to ``r``, the adversarial term
by the discriminator at ``r``, the feature loss on ``r`` px frames brought back to the full size
by nearest-neighbour upsampling (see :class:`~worldmodel.antiblur.adversarial.AntiBlurObjective`).

The predictions are those of the training forward pass (teacher forcing, posterior ``z``), as in
SVG's training loop; the discriminator therefore sharpens the decoder's output for a given latent.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist

from worldmodel.antiblur.adversarial import (
    AntiBlurConfig,
    AntiBlurObjective,
    conditional_pairs,
    per_scale_candidates,
)
from worldmodel.model.svg import ModelConfig, WorldModel
from worldmodel.training.train import ObjectiveConfig, TrainConfig, Trainer

__all__ = [
    "build_trainer",
    "resolve_model_config",
    "conditional_pairs",
    "per_scale_candidates",
]


def resolve_model_config(model_cfg: ModelConfig, loss_cfg: AntiBlurConfig) -> ModelConfig:
    """The architecture to build for training with ``loss_cfg`` (a new config; neither is changed).

    The loss config's generator options are properties of the decoder: ``loss.pixel_norm``
    switches on ``pixel_norm`` and ``loss.progressive.enabled`` switches on ``progressive_heads``
    (either may also be set on the model config directly). The result is what the model and its
    checkpoints record, so :func:`~worldmodel.training.checkpoint.model_from_checkpoint` rebuilds
    the same net.
    """
    return dataclasses.replace(
        model_cfg,
        pixel_norm=model_cfg.pixel_norm or loss_cfg.pixel_norm,
        progressive_heads=model_cfg.progressive_heads or loss_cfg.progressive.enabled,
    )


def build_trainer(
    model: WorldModel,
    train_cfg: TrainConfig,
    objective_cfg: ObjectiveConfig,
    loss_cfg: AntiBlurConfig,
    device: torch.device | str,
) -> Trainer:
    """A :class:`Trainer` whose generator loss includes the enabled anti-blur terms.

    The terms and the discriminator are an
    :class:`~worldmodel.antiblur.adversarial.AntiBlurObjective` (``trainer.objective``), whose
    discriminator widths follow the model's conv width (unless ``loss.discriminator.width`` is set)
    and whose judged frames are seeded by ``train.seed`` (plus the rank). Under
    ``torch.distributed`` the discriminator is wrapped in DDP for its updates. With
    ``loss.progressive.enabled`` the decoder grows with the discriminator on the objective's
    schedule; the model must then have ``cfg.progressive_heads`` (see :func:`resolve_model_config`).

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
    distributed = dist.is_available() and dist.is_initialized()
    objective = AntiBlurObjective(
        loss_cfg,
        model.image_size,
        model.channels,
        device=device,
        generator_grows=progressive,
        conv_width=model.cfg.conv_width,  # the discriminator's default widths follow model.K
        seed=train_cfg.seed + (dist.get_rank() if distributed else 0),
    )
    if objective.adversarial is not None and distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        objective.adversarial.wrap(
            lambda d: DistributedDataParallel(d, device_ids=ids, find_unused_parameters=progressive)
        )
    return Trainer(
        model,
        train_cfg,
        objective_cfg,
        device,
        objective=objective,
        progressive=objective.schedule if progressive else None,
    )
