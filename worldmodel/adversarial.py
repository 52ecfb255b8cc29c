"""The anti-blur objective's configuration and the discriminator side of adversarial training.

* :class:`AntiBlurConfig` -- every anti-blur option in one plain dataclass (the ``loss`` config
  group's presets ``configs/loss/mse.yaml`` and ``full.yaml`` override it): GDL, the multi-scale
  conditional adversarial loss (with PGGAN options and progressive growing) and DeePSiM's feature
  loss with its comparator.
* :class:`AdversarialTrainer` -- owns the :class:`~worldmodel.discriminator.MultiScaleDiscriminator`
  and its own Adam optimiser: :meth:`~AdversarialTrainer.d_step` updates the discriminator (with
  DeePSiM's pause rule), :meth:`~AdversarialTrainer.g_loss` gives the generator's adversarial term.
* :func:`generator_terms` -- the named, *unweighted* anti-blur terms of the generator loss; the
  training step multiplies them by :meth:`AntiBlurConfig.weights`.

Typical use in a training step (``pred``/``real``: ``(B, 3, H, W)`` frames in ``[0, 1]``,
``ctx``: ``(B, n, 3, H, W)`` the real frames before them)::

    adv = AdversarialTrainer(cfg, image_size=64, device=device)
    comparator = build_comparator_from_config(cfg.comparator, adv, device)
    terms = generator_terms(cfg, pred, real, context=ctx, adversarial=adv, comparator=comparator)
    g_loss = recon + beta * kl + sum(cfg.weights()[k] * v for k, v in terms.items())
    g_loss.backward(); g_opt.step()                  # D's parameters get no gradient
    d_logs = adv.d_step(real, pred.detach(), ctx)    # one discriminator update (or a pause)

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
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from worldmodel.checkpoint import load_optimizer_state
from worldmodel.comparator import Comparator, ComparatorConfig, DiscriminatorComparator, frozen
from worldmodel.discriminator import DiscriminatorConfig, MultiScaleDiscriminator
from worldmodel.losses import (
    ADV_FORMS,
    discriminator_loss,
    gdl,
    generator_loss,
    gradient_penalty,
    multiscale,
)
from worldmodel.pggan import ProgressiveConfig, blend_resolution, resize_to

__all__ = [
    "AntiBlurConfig",
    "AdversarialTrainer",
    "generator_terms",
    "context_windows",
]


@dataclass
class AntiBlurConfig:
    """Losses against blur, on top of SVG's ``L2 + beta * KL``. All weights default to 0 (plain SVG).

    Weights multiply the *unweighted* terms of :func:`generator_terms`, whose scale matches
    :func:`~worldmodel.losses.reconstruction_loss` with ``reduction="batch"`` (sum over a frame's
    pixels, mean over frames) at weight 1:

    * ``gdl_weight``: GDL with the same reduction; Mathieu et al. used 1 with ``alpha = 1``. It is
      an L1-like quantity: on a 5x5-box-blurred 64 px frame GDL is ~16x the pixel L2 sum, so at
      weight 1 it dominates the data term (which lowers SVG's effective ``beta``); try 0.1-1.
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
        pixel_norm: PGGAN pixelwise feature normalisation after each conv of the generator. Not
            used by the losses: the training entry points switch on ``ModelConfig.pixel_norm``
            from it (:func:`~worldmodel.training_setup.resolve_model_config`), so checkpoints
            record it with the architecture.
        discriminator: :class:`~worldmodel.discriminator.DiscriminatorConfig` (architecture,
            Adam, pause rule, gradient penalty).
        comparator: :class:`~worldmodel.comparator.ComparatorConfig`.
        progressive: :class:`~worldmodel.pggan.ProgressiveConfig` (progressive growing of the
            discriminator's input resolution and, through ``ModelConfig.progressive_heads``
            switched on by the entry points, of the decoder's output resolution).
    """

    gdl_weight: float = 0.0
    gdl_alpha: float = 1.0
    adv_weight: float = 0.0
    adv_form: str = "bce"
    feature_weight: float = 0.0
    pixel_norm: bool = False
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    comparator: ComparatorConfig = field(default_factory=ComparatorConfig)
    progressive: ProgressiveConfig = field(default_factory=ProgressiveConfig)

    def __post_init__(self) -> None:
        if min(self.gdl_weight, self.adv_weight, self.feature_weight) < 0:
            raise ValueError(
                "anti-blur weights (gdl_weight, adv_weight, feature_weight) must be >= 0"
            )
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

    def weights(self) -> dict[str, float]:
        """Weights of the terms returned by :func:`generator_terms`."""
        return {"gdl": self.gdl_weight, "adv": self.adv_weight, "feat": self.feature_weight}

    @property
    def needs_discriminator(self) -> bool:
        """True when a discriminator must be built and trained."""
        return self.adv_weight > 0 or (
            self.feature_weight > 0 and self.comparator.kind == "discriminator"
        )


class AdversarialTrainer:
    """The discriminator side of adversarial training (not an ``nn.Module``).

    Owns the :class:`~worldmodel.discriminator.MultiScaleDiscriminator`, its Adam optimiser (separate
    from the generator's), the progressive-growing schedule and DeePSiM's pause rule.

    Args:
        cfg: the anti-blur config (``discriminator``, ``adv_form``, ``progressive`` are used).
        image_size: frame size once fully grown.
        channels: image channels.
        device: where the discriminator lives.
        generator_grows: the generator's frames come from a progressively growing decoder that
            already fades in the current resolution (PGGAN): they are then judged as they are,
            while real frames and the context are still blended (see :meth:`prepare`).

    Accuracy logs count a real sample as recognised when its logit is above 0 (0.5 for lsgan) and
    a generated one when at or below; for wgan-gp they only show the sign of the critic.

    Attributes:
        step: number of :meth:`d_step` calls so far (drives the progressive schedule; call
            :meth:`g_loss` before :meth:`d_step` in an iteration so both see the same point).
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
    ) -> None:
        self.cfg = cfg
        self.form = cfg.adv_form
        self.generator_grows = generator_grows
        self.schedule = cfg.progressive.schedule(image_size)
        self.discriminator = MultiScaleDiscriminator(
            cfg.discriminator, image_size, channels, min_resolution=self.schedule.start_resolution
        ).to(device)
        self.d_module: nn.Module = self.discriminator
        betas = (float(cfg.discriminator.betas[0]), float(cfg.discriminator.betas[1]))
        self.optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=cfg.discriminator.lr, betas=betas
        )
        self.step = 0
        self.paused = False
        self.paused_steps = 0
        self.pause_events = 0
        self._last_g_adv: Tensor | None = None

    # -- set-up ------------------------------------------------------------------------------

    def wrap(self, wrapper: Any) -> None:
        """Wrap the discriminator for :meth:`d_step`, e.g. ``lambda d: DDP(d, ...)``."""
        self.d_module = wrapper(self.discriminator)

    def as_comparator(self) -> DiscriminatorComparator:
        """The discriminator's features as a DeePSiM comparator (inputs prepared like D's)."""
        return DiscriminatorComparator(self.discriminator, prepare=self.prepare)

    @property
    def resolution_alpha(self) -> tuple[int, float]:
        """Current ``(resolution, alpha)`` of the progressive schedule."""
        return self.schedule.at(self.step)

    def prepare(
        self,
        frames: Tensor | Sequence[Tensor],
        context: Tensor | None = None,
        *,
        generated: bool = False,
    ) -> tuple[Tensor | list[Tensor], Tensor | None, float]:
        """Bring frames ``(..., C, H, W)`` (and context) to the schedule's resolution and blend.

        Without progressive growing this is the identity (``alpha = 1``). With it, every input --
        real, generated and context -- is average-pooled to the current resolution and, during a
        fade-in, blended with its 2x-downsampled-upsampled self
        (:func:`~worldmodel.pggan.blend_resolution`), so the discriminator sees real and
        generated frames prepared the same way from a generator that does not grow itself.
        With ``generated=True`` and ``generator_grows`` the frames (already at the resolution,
        faded in by the decoder) are left as they are, as in PGGAN; the context is real and is
        blended. A sequence of frames (one candidate per scale, from a multi-scale generator) is
        returned as it is; it does not combine with progressive growing.
        """
        res, alpha = self.schedule.at(self.step)

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
        self, real: Tensor, fake: Tensor | Sequence[Tensor], context: Tensor | None = None
    ) -> dict[str, float]:
        """One discriminator update (or a pause).

        Args:
            real: real frames ``(B, C, H, W)`` (or clips ``(B, L, C, H, W)``) in ``[0, 1]``.
            fake: generated frames, same shape (detached here); or one candidate per scale of
                the discriminator (a multi-scale generator, see
                :meth:`~worldmodel.discriminator.MultiScaleDiscriminator.scale_inputs`).
            context: ``(B, n, C, H, W)`` real frames before them (conditional discriminator).

        Returns:
            logs (floats): ``d/loss`` (sum over scales, incl. penalties), ``d/loss_s{s}`` per scale
            factor ``s``, ``d/acc_real``/``d/acc_fake`` (mean over scales) and per scale,
            ``d/paused`` (1.0 if the update was skipped), ``d/paused_steps``, ``d/ratio``
            (``L_discr / L_adv`` when known), ``d/resolution``, ``d/alpha``, ``d/gp`` (wgan-gp).
        """
        dcfg = self.cfg.discriminator
        d = self.discriminator
        real_p, ctx_p, alpha = self.prepare(real, context)
        fake = fake.detach() if isinstance(fake, Tensor) else [f.detach() for f in fake]
        fake_p, _, _ = self.prepare(fake, None, generated=True)
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

        res, _ = self.schedule.at(self.step)
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
        self.step += 1
        return logs

    # -- generator ---------------------------------------------------------------------------

    def g_loss(
        self, fake: Tensor | Sequence[Tensor], context: Tensor | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """The generator's adversarial loss, summed over scales (unweighted).

        Differentiable w.r.t. ``fake``; the discriminator's parameters are frozen during the
        forward pass, so ``backward()`` leaves their ``.grad`` untouched. The value is remembered
        for the pause rule.

        Args:
            fake: generated frames ``(B, C, H, W)`` or clips ``(B, L, C, H, W)`` in ``[0, 1]``;
                or one candidate per discriminator scale (a multi-scale generator).
            context: ``(B, n, C, H, W)`` real context frames.

        Returns:
            ``(loss, logs)`` with a float32 scalar loss and logs ``g/adv``, ``g/adv_s{s}``.
        """
        fake_p, ctx_p, alpha = self.prepare(fake, context, generated=True)
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
        """Discriminator, optimiser and counters (loadable with ``weights_only=True``)."""
        return {
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "paused": self.paused,
            "paused_steps": self.paused_steps,
            "pause_events": self.pause_events,
            "last_g_adv": None if self._last_g_adv is None else float(self._last_g_adv),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.discriminator.load_state_dict(state["discriminator"])
        load_optimizer_state(self.optimizer, state["optimizer"])  # lr etc. from this run's config
        self.step = int(state["step"])
        self.paused = bool(state["paused"])
        self.paused_steps = int(state["paused_steps"])
        self.pause_events = int(state["pause_events"])
        last = state.get("last_g_adv")
        device = next(self.discriminator.parameters()).device
        self._last_g_adv = None if last is None else torch.tensor(float(last), device=device)


def generator_terms(
    cfg: AntiBlurConfig,
    pred: Tensor,
    target: Tensor,
    *,
    context: Tensor | None = None,
    adversarial: AdversarialTrainer | None = None,
    comparator: Comparator | None = None,
) -> dict[str, Tensor]:
    """The unweighted anti-blur terms of the generator loss whose weight is > 0.

    Args:
        cfg: the anti-blur config.
        pred: predicted frames in ``[0, 1]``; ``(B, C, H, W)``, or ``(B, L, C, H, W)`` clips when
            the discriminator judges clips (GDL and the feature loss accept any leading dims
            when the adversarial term is off).
        target: the real frames, same shape.
        context: ``(B, n, C, H, W)`` real context frames for the conditional discriminator (and
            the discriminator comparator).
        adversarial: the :class:`AdversarialTrainer` (needed when ``adv_weight > 0``).
        comparator: the comparator (needed when ``feature_weight > 0``).

    Returns:
        ``{"gdl": ..., "adv": ..., "feat": ...}`` (only the enabled terms), float32 scalars, to be
        multiplied by :meth:`AntiBlurConfig.weights`.
    """
    terms: dict[str, Tensor] = {}
    if cfg.gdl_weight > 0:
        terms["gdl"] = gdl(pred.float(), target.float(), cfg.gdl_alpha, reduction="batch")
    if cfg.adv_weight > 0:
        if adversarial is None:
            raise ValueError("adv_weight > 0 needs the AdversarialTrainer (adversarial=...)")
        terms["adv"], _ = adversarial.g_loss(pred, context)
    if cfg.feature_weight > 0:
        if comparator is None:
            raise ValueError("feature_weight > 0 needs a comparator (comparator=...)")
        terms["feat"] = comparator.loss(pred, target, context)
    return terms


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
