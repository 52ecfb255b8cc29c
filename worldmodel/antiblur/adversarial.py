"""The anti-blur objective: its configuration, its generator terms and the discriminator side.

* :class:`AntiBlurConfig` -- every anti-blur option in one plain dataclass (the ``loss`` config
  group's presets ``configs/loss/mse.yaml`` and ``full.yaml`` override it): GDL, the multi-scale
  conditional adversarial loss (with PGGAN options and progressive growing) and DeePSiM's feature
  loss with its comparator.
* :class:`AntiBlurObjective` -- THE composition of the anti-blur terms, the one the trainer runs
  (:func:`worldmodel.training.training_setup.build_trainer` passes it to the
  :class:`~worldmodel.training.train.Trainer`): :meth:`~AntiBlurObjective.terms` turns the training
  forward pass (a :class:`~worldmodel.model.svg.ModelOutput`) into the named, unweighted terms
  ``gdl``, ``adv``, ``feat`` on the scale of the per-pixel reconstruction term,
  :meth:`~AntiBlurObjective.weights` gives their weights, :meth:`~AntiBlurObjective.update` trains
  the discriminator.
* :class:`AdversarialTrainer` -- owns the
  :class:`~worldmodel.antiblur.discriminator.MultiScaleDiscriminator` and its own Adam optimiser:
  :meth:`~AdversarialTrainer.d_step` updates the discriminator (with DeePSiM's pause rule),
  :meth:`~AdversarialTrainer.g_loss` gives the generator's adversarial term.

Typical use, the same steps :meth:`worldmodel.training.train.Trainer.step` takes
(``obs (B, L, 3, H, W)``, ``action (B, L-1, A)``, ``reward (B, L-1)``)::

    model = WorldModel(resolve_model_config(model_cfg, cfg), image_size=64, action_dim=A)
    antiblur = AntiBlurObjective(cfg, model.image_size, device=device,
                                 generator_grows=cfg.progressive.enabled)
    point = antiblur.schedule.at(step)   # progressive growing: (resolution, alpha) of this step
    out = model(obs, action, reward, n_past=2, resolution=point[0], alpha=point[1])
    weights = {**base_cfg.weights(), **antiblur.weights()}       # base_cfg: ObjectiveConfig
    terms = {**objective_terms(out, base_cfg), **antiblur.terms(out)}
    loss = sum(weights[k] * v for k, v in terms.items())
    g_opt.zero_grad(); loss.backward(); g_opt.step()  # D's parameters get no gradient
    d_logs = antiblur.update(out)                       # one discriminator update (or a pause)

Scale: :func:`worldmodel.training.train.objective_terms`' reconstruction term is a per-pixel mean
(the balance for which SVG's ``beta = 1e-4`` was tuned), while GDL, the adversarial and the feature
loss are per-frame quantities in the papers (Mathieu et al.'s and DeePSiM's weights are set against
a per-frame pixel *sum*). Each anti-blur term is therefore divided by the pixels per frame
``C * H * W`` of the frames it is computed on, so those weights keep their balance against the
reconstruction term at every resolution.

Distributed data parallel: wrap the discriminator with :meth:`AdversarialTrainer.wrap`, e.g.
``adv.wrap(lambda d: DDP(d, device_ids=[rank], find_unused_parameters=progressive))``
(progressive growing leaves some ``fromRGB`` layers unused). ``d_step`` calls the wrapped module;
``g_loss`` calls the raw module with frozen parameters (no gradient sync needed on the generator
side); the pause decision is averaged over ranks so every rank skips the same steps. The WGAN-GP
penalty runs the raw per-scale networks and is not supported with DDP.

Mixed precision: ``d_step`` and ``g_loss`` may run under ``torch.autocast`` (bf16); the losses are
computed in float32 from the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from wmcommon.checks import is_int
from worldmodel.antiblur.comparator import (
    Comparator,
    ComparatorConfig,
    DiscriminatorComparator,
    build_comparator_from_config,
    frozen,
)
from worldmodel.antiblur.discriminator import (
    DEFAULT_CONV_WIDTH,
    DiscriminatorConfig,
    MultiScaleDiscriminator,
)
from worldmodel.antiblur.pggan import ProgressiveConfig, ProgressiveSchedule, blend_resolution
from worldmodel.model.layers import resize_to
from worldmodel.training.checkpoint import load_optimizer_state
from worldmodel.training.losses import (
    ADV_FORMS,
    discriminator_loss,
    gdl,
    generator_loss,
    gradient_penalty,
    multiscale,
)

if TYPE_CHECKING:
    from worldmodel.model.svg import ModelOutput

__all__ = [
    "AntiBlurConfig",
    "AntiBlurObjective",
    "AdversarialTrainer",
    "Point",
    "conditional_pairs",
    "context_windows",
    "per_scale_candidates",
]

#: ``(resolution, alpha)``: a point of the progressive-growing schedule (the frame size the
#: generator predicts and the discriminator judges, and the fade-in of that size).
Point = tuple[int, float]


@dataclass
class AntiBlurConfig:
    """Losses against blur, on top of SVG's ``L2 + beta * KL``. All weights default to 0 (plain SVG).

    Weights multiply the terms of :meth:`AntiBlurObjective.terms`. They are set on the scale of
    the papers, against the per-frame pixel L2 *sum*
    (:func:`~worldmodel.training.losses.reconstruction_loss` with ``reduction="batch"``) at weight
    1; the objective divides every term by the pixels per frame, which keeps that balance against
    the trainer's per-pixel reconstruction mean:

    * ``gdl_weight``: GDL with the same reduction; Mathieu et al. used 1 with ``alpha = 1``. With
      ``alpha = 1`` it is an L1-like quantity: on a 5x5-box-blurred 64 px frame GDL is ~16x the
      pixel L2 sum, so at weight 1 it dominates the data term (which lowers SVG's effective
      ``beta``), and as an L1 loss on gradient magnitudes its optimum under an uncertain edge is
      the median, no edge: on cheetah-run it made SVG blurrier. ``alpha = 2`` (``loss=full``'s)
      is on the L2 term's scale and keeps the mean gradient: sharper at no loss of PSNR.
    * ``adv_weight``: adversarial term, the per-sample mean summed over scales. Mathieu et al. used
      0.05 next to an L2 weight of 1 (their L2 also sums a frame's pixels, of 32 px training
      patches in [-1, 1]: 4x fewer pixels and 4x larger squared errors than our 64 px frames in
      [0, 1], so the balance is about the same). DeePSiM's ``lambda_adv = 100,
      lambda_img = 2e-6`` are on another scale (raw-pixel sums) and do not transfer.
    * ``feature_weight``: DeePSiM's feature loss (sum of squared feature differences per frame).
      Its scale depends on the comparator; with random AlexNet at native 64 px it is ~30-80x the
      pixel L2 sum of the same pair of frames (blurred, shifted, noisy), so DeePSiM's
      ``lambda_feat = 0.01`` puts it at ~0.3-0.8x the L2 term.

    Attributes:
        gdl_weight, gdl_alpha: GDL weight and exponent (alpha >= 1).
        adv_weight, adv_form: adversarial weight and form, one of ``bce`` (Mathieu/DeePSiM,
            non-saturating), ``hinge``, ``lsgan``, ``wgan-gp``.
        feature_weight: DeePSiM feature loss weight; the comparator is in ``comparator``.
        judged_per_sequence: how many predicted frames of each training sequence the adversarial
            and the feature terms judge at a step: a fresh random choice among the frames with a
            full context (``t >= max(1, discriminator.context_frames)``), the same frames for the
            generator's terms and the discriminator's update. Mathieu et al. and DeePSiM judge one
            prediction per training sample; the mean over the chosen frames is an unbiased
            estimate of the mean over all of them (with more variance) at a fraction of the cost:
            each judged frame costs a discriminator pass at every scale and a comparator pass.
            None: every predicted frame (every frame ``1..L-1`` for the feature loss).
        pixel_norm: PGGAN pixelwise feature normalisation after each conv of the generator. Not
            used by the losses: the training entry points switch on ``ModelConfig.pixel_norm``
            from it (:func:`~worldmodel.training.training_setup.resolve_model_config`), so
            checkpoints record it with the architecture.
        discriminator: :class:`~worldmodel.antiblur.discriminator.DiscriminatorConfig`
            (architecture, Adam, pause rule, gradient penalty).
        comparator: :class:`~worldmodel.antiblur.comparator.ComparatorConfig`.
        progressive: :class:`~worldmodel.antiblur.pggan.ProgressiveConfig` (progressive growing of
            the discriminator's input resolution and, through ``ModelConfig.progressive_heads``
            switched on by the entry points, of the decoder's output resolution).
    """

    gdl_weight: float = 0.0
    gdl_alpha: float = 1.0
    adv_weight: float = 0.0
    adv_form: str = "bce"
    feature_weight: float = 0.0
    judged_per_sequence: int | None = None
    pixel_norm: bool = False
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    comparator: ComparatorConfig = field(default_factory=ComparatorConfig)
    progressive: ProgressiveConfig = field(default_factory=ProgressiveConfig)

    def validate(self) -> AntiBlurConfig:
        """Raise ValueError naming the first bad field (of this config, or of its
        ``discriminator``, ``comparator`` and ``progressive`` configs, checked first); return
        self. :class:`AntiBlurObjective` and :class:`AdversarialTrainer` call it."""
        self.discriminator.validate()
        self.comparator.validate()
        self.progressive.validate()
        if min(self.gdl_weight, self.adv_weight, self.feature_weight) < 0:
            raise ValueError(
                "anti-blur weights (gdl_weight, adv_weight, feature_weight) must be >= 0"
            )
        k = self.judged_per_sequence
        if k is not None and not is_int(k, 1):
            raise ValueError(f"judged_per_sequence={k!r}; expected an integer >= 1 or None (all)")
        if self.gdl_alpha < 1:
            raise ValueError(f"gdl_alpha must be >= 1, got {self.gdl_alpha}")
        if self.adv_form not in ADV_FORMS:
            raise ValueError(f"unknown adv_form {self.adv_form!r}; expected one of {ADV_FORMS}")
        if self.adv_form == "wgan-gp" and self.discriminator.pause_threshold > 0:
            raise ValueError(
                "the DeePSiM pause rule compares positive losses and does not apply to wgan-gp; "
                "set discriminator.pause_threshold=0"
            )
        if self.progressive.enabled and self.progressive.start_resolution < 4 * max(
            self.discriminator.scales
        ):
            raise ValueError(
                f"progressive.start_resolution ({self.progressive.start_resolution}) must be >= 4 x "
                f"the largest discriminator scale ({max(self.discriminator.scales)})"
            )
        return self

    def weights(self) -> dict[str, float]:
        """Weights of the terms returned by :meth:`AntiBlurObjective.terms`."""
        return {"gdl": self.gdl_weight, "adv": self.adv_weight, "feat": self.feature_weight}

    @property
    def needs_discriminator(self) -> bool:
        """True when a discriminator must be built and trained."""
        return self.adv_weight > 0 or (
            self.feature_weight > 0 and self.comparator.kind == "discriminator"
        )


class AdversarialTrainer:
    """The discriminator side of adversarial training (not an ``nn.Module``).

    Owns the :class:`~worldmodel.antiblur.discriminator.MultiScaleDiscriminator`, its Adam optimiser
    (separate from the generator's) and DeePSiM's pause rule. It keeps no step counter: with
    progressive growing the caller passes the schedule's ``point = (resolution, alpha)`` of the
    current step to :meth:`prepare`, :meth:`d_step` and :meth:`g_loss` (the trainer takes it from
    its own step, through the :class:`~worldmodel.model.svg.ModelOutput` it predicted at that
    point); without a point they judge fully grown frames.

    Args:
        cfg: the anti-blur config (``discriminator``, ``adv_form``, ``progressive`` are used).
        image_size: frame size once fully grown.
        channels: image channels.
        device: where the discriminator lives.
        generator_grows: the generator's frames come from a progressively growing decoder that
            already fades in the current resolution (PGGAN): they are then judged as they are,
            while real frames and the context are still blended (see :meth:`prepare`).
        conv_width: the generator's conv width ``round(K * nf)`` (``ModelConfig.conv_width``),
            which the discriminator widths left at None follow
            (:meth:`~worldmodel.antiblur.discriminator.DiscriminatorConfig.resolved`).

    Accuracy logs count a real sample as recognised when its logit is above 0 (0.5 for lsgan) and
    a generated one when at or below; for wgan-gp they only show the sign of the critic.

    Attributes:
        schedule: the progressive-growing schedule of ``cfg.progressive`` (a fixed one at
            ``image_size`` when growing is off); the discriminator accepts every size on it.
        paused: whether the last :meth:`d_step` skipped its update.
        paused_steps: total number of skipped updates; ``pause_events``: how often a pause began.
    """

    def __init__(
        self,
        cfg: AntiBlurConfig,
        image_size: int,
        channels: int = 3,
        device: str | torch.device | None = None,
        generator_grows: bool = False,
        conv_width: int = DEFAULT_CONV_WIDTH,
    ) -> None:
        self.cfg = cfg.validate()
        self.form = cfg.adv_form
        self.generator_grows = generator_grows
        self.schedule = cfg.progressive.schedule(image_size)
        self.discriminator = MultiScaleDiscriminator(
            cfg.discriminator,
            image_size,
            channels,
            min_resolution=self.schedule.start_resolution,
            conv_width=conv_width,
        ).to(device)
        self.d_module: nn.Module = self.discriminator
        betas = (float(cfg.discriminator.betas[0]), float(cfg.discriminator.betas[1]))
        self.optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=cfg.discriminator.lr, betas=betas
        )
        self.paused = False
        self.paused_steps = 0
        self.pause_events = 0
        self._last_g_adv: Tensor | None = None

    # -- set-up ------------------------------------------------------------------------------

    def wrap(self, wrapper: Any) -> None:
        """Wrap the discriminator for :meth:`d_step`, e.g. ``lambda d: DDP(d, ...)``."""
        self.d_module = wrapper(self.discriminator)

    def as_comparator(self, point: Point | None = None) -> DiscriminatorComparator:
        """The discriminator's features as a DeePSiM comparator, its inputs prepared like D's at
        ``point`` (None: fully grown; a light object, make one per step while growing)."""

        def prepare(
            frames: Tensor, context: Tensor | None
        ) -> tuple[Tensor | list[Tensor], Tensor | None, float]:
            return self.prepare(frames, context, point=point)

        return DiscriminatorComparator(self.discriminator, prepare=prepare)

    def _point(self, point: Point | None) -> Point:
        """``point``, or the fully grown ``(image_size, 1.0)`` when None."""
        return (self.schedule.final_resolution, 1.0) if point is None else point

    def prepare(
        self,
        frames: Tensor | Sequence[Tensor],
        context: Tensor | None = None,
        *,
        generated: bool = False,
        point: Point | None = None,
    ) -> tuple[Tensor | list[Tensor], Tensor | None, float]:
        """Bring frames ``(..., C, H, W)`` (and context) to ``point``'s resolution and blend.

        Without progressive growing this is the identity (``alpha = 1``). With it, every input --
        real, generated and context -- is average-pooled to the current resolution and, during a
        fade-in, blended with its 2x-downsampled-upsampled self
        (:func:`~worldmodel.antiblur.pggan.blend_resolution`), so the discriminator sees real and
        generated frames prepared the same way from a generator that does not grow itself.
        With ``generated=True`` and ``generator_grows`` the frames (already at the resolution,
        faded in by the decoder) are left as they are, as in PGGAN; the context is real and is
        blended. A sequence of frames (one candidate per scale, from a multi-scale generator) is
        returned as it is; it does not combine with progressive growing.

        ``point``: the ``(resolution, alpha)`` of the schedule at this step (None: fully grown).
        Returns ``(frames, context, alpha)``.
        """
        res, alpha = self._point(point)

        def go(x: Tensor) -> Tensor:
            return blend_resolution(resize_to(x, res), alpha)

        if not isinstance(frames, Tensor):
            if (res, alpha) != (self.schedule.final_resolution, 1.0):
                raise ValueError(
                    "one candidate per scale (a multi-scale decoder) does not combine with "
                    "progressive growing; set loss.progressive.enabled=false"
                )
            return list(frames), context, alpha

        frames = resize_to(frames, res) if generated and self.generator_grows else go(frames)
        return frames, (None if context is None else go(context)), alpha

    # -- discriminator -----------------------------------------------------------------------

    def _threshold(self) -> float:
        return 0.5 if self.form == "lsgan" else 0.0

    def update_pause(self, l_discr: float, l_adv: float | None) -> bool:
        """DeePSiM's rule: pause while ``l_discr / l_adv < pause_threshold`` (set ``paused``).

        ``l_adv`` is the generator's latest adversarial loss (None before the first
        :meth:`g_loss`: never paused then; a non-positive ``l_adv`` means the generator is winning:
        not paused). The pause is released as soon as the ratio is back at or above the threshold.
        Returns the new ``paused`` flag; counts skipped steps and pause events.
        """
        threshold = self.cfg.discriminator.pause_threshold
        was = self.paused
        self.paused = bool(
            threshold > 0 and l_adv is not None and l_adv > 0 and l_discr < threshold * l_adv
        )
        if self.paused:
            self.paused_steps += 1
            if not was:
                self.pause_events += 1
        return self.paused

    def d_step(
        self,
        real: Tensor,
        fake: Tensor | Sequence[Tensor],
        context: Tensor | None = None,
        point: Point | None = None,
    ) -> dict[str, float]:
        """One discriminator update (or a pause).

        Args:
            real: real frames ``(B, C, H, W)`` (or clips ``(B, L, C, H, W)``) in ``[0, 1]``.
            fake: generated frames, same shape (detached here); or one candidate per scale of
                the discriminator (a multi-scale generator, see
                :meth:`~worldmodel.antiblur.discriminator.MultiScaleDiscriminator.scale_inputs`).
            context: ``(B, n, C, H, W)`` real frames before them (conditional discriminator).
            point: the progressive schedule's ``(resolution, alpha)`` at this step (None: fully
                grown); the same point as the :meth:`g_loss` of the step.

        Returns:
            logs (floats): ``d/loss`` (sum over scales, incl. penalties), ``d/loss_s{s}`` per scale
            factor ``s``, ``d/acc_real``/``d/acc_fake`` (mean over scales) and per scale,
            ``d/paused`` (1.0 if the update was skipped), ``d/paused_steps``, ``d/ratio``
            (``L_discr / L_adv`` when known), ``d/resolution``, ``d/alpha``, ``d/gp`` (wgan-gp).
        """
        dcfg = self.cfg.discriminator
        d = self.discriminator
        res, _ = point = self._point(point)
        real_p, ctx_p, alpha = self.prepare(real, context, point=point)
        fake = fake.detach() if isinstance(fake, Tensor) else [f.detach() for f in fake]
        fake_p, _, _ = self.prepare(fake, None, generated=True, point=point)
        logits_real = self.d_module(real_p, ctx_p, alpha=alpha)
        logits_fake = self.d_module(fake_p, ctx_p, alpha=alpha)
        logs: dict[str, float] = {}
        total = torch.zeros((), device=real.device)
        adv_total = torch.zeros((), device=real.device)
        gp_total = torch.zeros((), device=real.device)
        thr = self._threshold()
        acc_r, acc_f = [], []
        if self.form == "wgan-gp":
            pyr_real = multiscale(d.stack_inputs(real_p, ctx_p), d.scales)
            pyr_fake = d.scale_inputs(fake_p, ctx_p)
        for k, (s, real_k, fake_k) in enumerate(
            zip(d.scales, logits_real, logits_fake, strict=True)
        ):
            loss_k = discriminator_loss(real_k, fake_k, self.form)
            adv_total = adv_total + loss_k.detach()
            if self.form == "wgan-gp":
                net = d.scale_nets[k]
                gp = gradient_penalty(lambda x, net=net: net(x, alpha)[0], pyr_real[k], pyr_fake[k])
                gp_total = gp_total + gp.detach()
                drift = real_k.float().pow(2).mean()
                loss_k = loss_k + dcfg.gp_weight * gp + dcfg.wgan_drift * drift
            total = total + loss_k
            a_r = (real_k.detach().float() > thr).float().mean()
            a_f = (fake_k.detach().float() <= thr).float().mean()
            acc_r.append(a_r)
            acc_f.append(a_f)
            logs[f"d/loss_s{s}"] = loss_k.item()
            logs[f"d/acc_real_s{s}"] = a_r.item()
            logs[f"d/acc_fake_s{s}"] = a_f.item()

        l_discr = adv_total.float()
        l_adv = None if self._last_g_adv is None else self._last_g_adv.float()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            pair = torch.stack(
                [l_discr, l_adv if l_adv is not None else torch.full_like(l_discr, -1.0)]
            )
            dist.all_reduce(pair)
            pair /= dist.get_world_size()
            l_discr, l_adv = pair[0], (None if l_adv is None else pair[1])
        l_discr_f = l_discr.item()
        l_adv_f = None if l_adv is None else l_adv.item()
        paused = self.update_pause(l_discr_f, l_adv_f)
        if not paused:
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()

        logs["d/loss"] = total.item()
        logs["d/acc_real"] = torch.stack(acc_r).mean().item()
        logs["d/acc_fake"] = torch.stack(acc_f).mean().item()
        logs["d/paused"] = float(paused)
        logs["d/paused_steps"] = float(self.paused_steps)
        if l_adv_f is not None and l_adv_f > 0:
            logs["d/ratio"] = l_discr_f / l_adv_f
        logs["d/resolution"] = float(res)
        logs["d/alpha"] = float(alpha)
        if self.form == "wgan-gp":
            logs["d/gp"] = gp_total.item()
        return logs

    # -- generator ---------------------------------------------------------------------------

    def g_loss(
        self,
        fake: Tensor | Sequence[Tensor],
        context: Tensor | None = None,
        point: Point | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """The generator's adversarial loss, summed over scales (unweighted).

        Differentiable w.r.t. ``fake``; the discriminator's parameters are frozen during the
        forward pass, so ``backward()`` leaves their ``.grad`` untouched. The value is remembered
        for the pause rule.

        Args:
            fake: generated frames ``(B, C, H, W)`` or clips ``(B, L, C, H, W)`` in ``[0, 1]``;
                or one candidate per discriminator scale (a multi-scale generator).
            context: ``(B, n, C, H, W)`` real context frames.
            point: the progressive schedule's ``(resolution, alpha)`` at this step (None: fully
                grown).

        Returns:
            ``(loss, logs)`` with a float32 scalar loss and logs ``g/adv``, ``g/adv_s{s}``.
        """
        fake_p, ctx_p, alpha = self.prepare(fake, context, generated=True, point=point)
        with frozen(self.discriminator):
            logits = self.discriminator(fake_p, ctx_p, alpha=alpha)
        per_scale = [generator_loss(lg, self.form) for lg in logits]
        total = torch.stack(per_scale).sum()
        self._last_g_adv = total.detach()
        logs = {
            f"g/adv_s{s}": v.item()
            for s, v in zip(self.discriminator.scales, per_scale, strict=True)
        }
        logs["g/adv"] = total.item()
        return total, logs

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Discriminator, optimiser and pause state (loadable with ``weights_only=True``)."""
        return {
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "paused": self.paused,
            "paused_steps": self.paused_steps,
            "pause_events": self.pause_events,
            "last_g_adv": None if self._last_g_adv is None else float(self._last_g_adv),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (older states also hold a ``step`` counter,
        which the trainer's own step has replaced: ignored)."""
        self.discriminator.load_state_dict(state["discriminator"])
        load_optimizer_state(self.optimizer, state["optimizer"])  # lr etc. from this run's config
        self.paused = bool(state["paused"])
        self.paused_steps = int(state["paused_steps"])
        self.pause_events = int(state["pause_events"])
        last = state.get("last_g_adv")
        device = next(self.discriminator.parameters()).device
        self._last_g_adv = None if last is None else torch.tensor(float(last), device=device)


def _per_pixel(frames: Tensor) -> float:
    """``1 / (C * r * r)`` for frames ``(..., C, r, r)``: one over the pixels of a frame."""
    c, h, w = frames.shape[-3:]
    return 1.0 / (c * h * w)


def conditional_pairs(
    obs: Tensor, frames: Tensor, n: int, select: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(real, fake, context) pairs for a conditional discriminator, flattened over time.

    Args:
        obs: ``(B, L, C, H, W)`` the true frames ``0..L-1``.
        frames: ``(B, L-1, C, H, W)`` predictions of frames ``1..L-1``.
        n: context frames per pair (>= 1).
        select: ``(B, k)`` positions ``i`` in ``0..L-n-1`` (frame ``t = n + i``) to keep for each
            sequence; None keeps all ``L - n``.

    Returns:
        real ``(B * k, C, H, W)`` frames ``t`` (``k = L - n``: frames ``n..L-1``); fake, the
        predictions of the same frames; context ``(B * k, n, C, H, W)`` the real frames
        ``t-n..t-1`` before each.
    """
    n = max(1, n)
    real = obs[:, n:]
    fake = frames[:, n - 1 :]
    ctx = context_windows(obs, n, n)
    if select is not None:
        real, fake, ctx = (_take(x, select) for x in (real, fake, ctx))
    return real.flatten(0, 1), fake.flatten(0, 1), ctx.flatten(0, 1)


def _take(x: Tensor, select: Tensor) -> Tensor:
    """``x (B, T, ...)`` at the positions ``select (B, k)`` of each row: ``(B, k, ...)``."""
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, select.to(x.device)]


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


class AntiBlurObjective:
    """The anti-blur terms of the generator loss and the discriminator they train: the one
    composition of :class:`AntiBlurConfig`, used by the trainer, the module docstring and the tests.

    Built from the config: the :class:`AdversarialTrainer` when ``adv_weight > 0`` or the comparator
    is the discriminator, the DeePSiM comparator when ``feature_weight > 0``. Everything is read off
    the training forward pass, a :class:`~worldmodel.model.svg.ModelOutput`
    (``obs (B, L, C, S, S)``, predictions ``frames (B, L-1, C, r, r)`` of frames ``1..L-1``,
    ``pyramid`` for a multi-scale decoder, and the progressive
    ``point = (out.resolution, out.alpha)`` they were predicted at):

    * ``gdl``: GDL between every prediction and its (average-pooled) truth; with a multi-scale
      decoder (Mathieu et al.'s coarse-to-fine form) the sum over its scales.
    * ``adv``: each predicted frame ``t >= n`` judged together with the ``n`` real frames before it
      (Mathieu et al.'s conditional discriminator, ``n = discriminator.context_frames``, at least
      1), as frames of ``point``; a multi-scale decoder's scale-``k`` prediction goes to the
      discriminator of that scale (its finest prediction average-pooled where it has no such scale).
    * ``feat``: the comparator's feature distance between every prediction and its truth, both at
      full size (a growing decoder's ``r`` px frames brought back by nearest-neighbour upsampling:
      the comparators need >= 32 px and their weights were set at full size; for the discriminator
      as comparator the upsampling is undone exactly by its own pooling); the discriminator as
      comparator sees each frame with its real context.

    With ``cfg.judged_per_sequence = k`` the adversarial and the feature terms judge ``k`` frames
    of each sequence (drawn afresh for each forward pass, see :class:`AntiBlurConfig`) instead of
    every one. Every term is divided by the pixels per frame ``C * r * r`` it is computed on (the
    module docstring says why). :meth:`update` then trains the discriminator once on the same
    (detached) pairs and point, when the adversarial term is on.

    Args:
        cfg: the anti-blur config.
        image_size: the frame size ``S`` once fully grown.
        channels: image channels.
        device: where the discriminator and the comparator live.
        generator_grows: the predictions come from a progressively growing decoder (PGGAN); see
            :class:`AdversarialTrainer`.
        conv_width: the generator's conv width ``round(K * nf)``, which the discriminator's
            default widths follow (see
            :class:`~worldmodel.antiblur.discriminator.DiscriminatorConfig`).
        seed: seeds the choice of the judged frames (its state is part of :meth:`state_dict`).

    Attributes:
        adversarial: the :class:`AdversarialTrainer`, or None.
        comparator: the frozen comparator (None for no feature loss or the discriminator kind,
            whose comparator is made at each step's point).
        schedule: the progressive-growing schedule (a fixed one at ``S`` when growing is off);
            the generator must predict at ``schedule.at(step)``.
    """

    def __init__(
        self,
        cfg: AntiBlurConfig,
        image_size: int,
        channels: int = 3,
        device: str | torch.device | None = None,
        *,
        generator_grows: bool = False,
        conv_width: int = DEFAULT_CONV_WIDTH,
        seed: int = 0,
    ) -> None:
        self.cfg = cfg.validate()
        self.image_size = image_size
        self.adversarial: AdversarialTrainer | None = None
        if cfg.needs_discriminator:
            self.adversarial = AdversarialTrainer(
                cfg,
                image_size,
                channels,
                device=device,
                generator_grows=generator_grows,
                conv_width=conv_width,
            )
        self.schedule: ProgressiveSchedule = (
            self.adversarial.schedule
            if self.adversarial is not None
            else cfg.progressive.schedule(image_size)
        )
        self.comparator: Comparator | None = None
        if cfg.feature_weight > 0 and cfg.comparator.kind != "discriminator":
            self.comparator = build_comparator_from_config(cfg.comparator, None, device)
        self.generator = torch.Generator().manual_seed(seed)  # the judged frames
        self._selection: tuple[ModelOutput, Tensor] | None = None  # (forward pass, its choice)

    def weights(self) -> dict[str, float]:
        """The weight of every term :meth:`terms` may return (:meth:`AntiBlurConfig.weights`)."""
        return self.cfg.weights()

    # -- the generator's terms -----------------------------------------------------------------

    def terms(self, out: ModelOutput) -> dict[str, Tensor]:
        """The unweighted terms whose weight is > 0, name -> scalar (``gdl``, ``adv``, ``feat``).

        Differentiable w.r.t. the predictions; the discriminator's and the comparator's
        parameters get no gradient.
        """
        terms: dict[str, Tensor] = {}
        if self.cfg.gdl_weight > 0:
            terms["gdl"] = self.gdl_term(out)
        if self.cfg.adv_weight > 0:
            terms["adv"] = self.adversarial_term(out)
        if self.cfg.feature_weight > 0:
            terms["feat"] = self.feature_term(out)
        return terms

    def gdl_term(self, out: ModelOutput) -> Tensor:
        """GDL per pixel; summed over the scales of a multi-scale decoder."""
        alpha = self.cfg.gdl_alpha
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

    def adversarial_term(self, out: ModelOutput) -> Tensor:
        """The generator's adversarial loss (summed over scales) per pixel."""
        adv = self._need_adversarial()
        _, fake, ctx = self._pairs(out.obs, out.pyramid or out.frames, self.judged(out))
        loss, _ = adv.g_loss(fake, ctx, point=(out.resolution, out.alpha))
        return _per_pixel(out.frames) * loss

    def feature_term(self, out: ModelOutput) -> Tensor:
        """DeePSiM's feature loss per pixel, on full-size frames."""
        select = self.judged(out)
        point = (out.resolution, out.alpha)
        n_ctx = self.cfg.discriminator.context_frames
        if self.cfg.comparator.kind == "discriminator" and n_ctx > 0:
            # the conditional discriminator's features need the context of each frame (its
            # prepare pools real, context and upsampled predictions back to the point)
            frames = self._full_size(out.frames.float())
            real, fake, ctx = conditional_pairs(out.obs, frames, n_ctx, select)
            comparator = self._need_adversarial().as_comparator(point)
            return _per_pixel(frames) * comparator.loss(fake, real, ctx)
        frames, target = out.frames.float(), out.target.float()
        if select is not None:  # the judged frames t = n + i, i.e. predictions[:, t - 1]
            n = self._context_frames()
            frames, target = _take(frames[:, n - 1 :], select), _take(target[:, n - 1 :], select)
        frames, target = self._full_size(frames), self._full_size(target)
        if self.cfg.comparator.kind == "discriminator":
            comparator: Comparator = self._need_adversarial().as_comparator(point)
        else:
            assert self.comparator is not None
            comparator = self.comparator
        pred, target = frames.flatten(0, 1), target.flatten(0, 1)
        return _per_pixel(frames) * comparator.loss(pred, target, None)

    # -- the discriminator ---------------------------------------------------------------------

    def update(self, out: ModelOutput) -> dict[str, float]:
        """One discriminator update on the detached predictions of ``out`` (after the generator's
        step; nothing without the adversarial term). Returns its logs (see
        :meth:`AdversarialTrainer.d_step`)."""
        if self.cfg.adv_weight <= 0:
            return {}
        adv = self._need_adversarial()
        fake: Tensor | list[Tensor] = out.frames.detach().float()
        if out.pyramid is not None:  # the discriminators judge the decoder's own scales
            fake = [p.detach().float() for p in out.pyramid]
        select = self.judged(out)  # the frames the generator's terms judged
        self._selection = None
        real, fake_pairs, ctx = self._pairs(out.obs.detach().float(), fake, select)
        return adv.d_step(real, fake_pairs, ctx, point=(out.resolution, out.alpha))

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The trained discriminator's state (:meth:`AdversarialTrainer.state_dict`, when the
        adversarial term is on) and ``judge_rng``, the state of the judged frames' generator (when
        frames are chosen); ``{}`` when there is nothing to keep."""
        state: dict[str, Any] = {}
        if self.cfg.adv_weight > 0 and self.adversarial is not None:
            state.update(self.adversarial.state_dict())
        if self._chooses_frames:
            state["judge_rng"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            ValueError: the adversarial term is on but ``state`` holds no discriminator.
        """
        if self.cfg.adv_weight > 0 and self.adversarial is not None:
            if "discriminator" not in state:
                raise ValueError("the checkpoint has no discriminator state but this run has one")
            self.adversarial.load_state_dict(state)
        if "judge_rng" in state:
            self.generator.set_state(state["judge_rng"].cpu())

    # -- the judged frames ---------------------------------------------------------------------

    @property
    def _chooses_frames(self) -> bool:
        cfg = self.cfg
        return cfg.judged_per_sequence is not None and (
            cfg.adv_weight > 0 or cfg.feature_weight > 0
        )

    def judged(self, out: ModelOutput) -> Tensor | None:
        """``(B, k)`` positions ``i`` (frame ``t = n + i``, ``n = max(1, context_frames)``) of the
        frames the adversarial and feature terms judge in this forward pass, sorted per row; drawn
        once per ``out`` (the discriminator's update reuses them). None: every frame (no
        ``judged_per_sequence``, or ``k`` >= the ``L - n`` frames there are)."""
        k, n = self.cfg.judged_per_sequence, self._context_frames()
        b, length = out.obs.shape[:2]
        if k is None or k >= length - n:
            return None
        if self._selection is not None and self._selection[0] is out:
            return self._selection[1]
        scores = torch.rand(b, length - n, generator=self.generator)
        select = scores.argsort(dim=1)[:, :k].sort(dim=1).values.to(out.obs.device)
        self._selection = (out, select)
        return select

    # -- helpers -------------------------------------------------------------------------------

    def _need_adversarial(self) -> AdversarialTrainer:
        if self.adversarial is None:
            raise RuntimeError("this anti-blur objective has no discriminator")
        return self.adversarial

    def _context_frames(self) -> int:
        """``n``: real frames before each judged one (at least 1, see :func:`conditional_pairs`)."""
        return max(1, self.cfg.discriminator.context_frames)

    def _pairs(
        self, obs: Tensor, fake: Tensor | Sequence[Tensor], select: Tensor | None = None
    ) -> tuple[Tensor, Tensor | list[Tensor], Tensor]:
        """:func:`conditional_pairs`; a pyramid gives one flattened fake per discriminator scale."""
        n = self._context_frames()
        if isinstance(fake, Tensor):
            return conditional_pairs(obs, fake.float(), n, select)
        d = self._need_adversarial().discriminator
        per_scale = per_scale_candidates(fake, d.scales, d.image_size)
        real, _, ctx = conditional_pairs(obs, fake[-1].float(), n, select)
        fakes = [conditional_pairs(obs, f.float(), n, select)[1] for f in per_scale]
        return real, fakes, ctx

    def _full_size(self, x: Tensor) -> Tensor:
        """``(B, T, C, r, r)`` -> ``(B, T, C, S, S)`` by nearest upsampling (identity at S)."""
        full = self.image_size
        if x.shape[-1] == full:
            return x
        y = F.interpolate(x.flatten(0, 1), size=(full, full), mode="nearest")
        return y.view(*x.shape[:2], *y.shape[1:])


def context_windows(frames: Tensor, n: int, start: int) -> Tensor:
    """The ``n`` frames before each target frame ``t = start .. T-1``.

    ``frames (B, T, C, H, W) -> (B, T - start, n, C, H, W)`` with ``out[:, i] = frames[:, t-n:t]``
    for ``t = start + i``; needs ``start >= n``. Flatten the first two dims to feed
    :meth:`AdversarialTrainer.d_step` with one (context, frame) pair per predicted frame.
    """
    t_total = frames.shape[1]
    if n < 0 or start < n or start > t_total:
        raise ValueError(f"context_windows needs 0 <= n ({n}) <= start ({start}) <= T ({t_total})")
    windows = frames.unfold(1, n, 1) if n > 0 else None  # (B, T-n+1, C, H, W, n)
    if windows is None:
        b = frames.shape[0]
        return frames.new_zeros(b, t_total - start, 0, *frames.shape[2:])
    windows = windows.permute(0, 1, 5, 2, 3, 4)  # (B, T-n+1, n, C, H, W); window j = frames[j:j+n]
    return windows[:, start - n : t_total - n]
