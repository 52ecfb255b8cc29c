"""One optimisation step of the world model, checkpoints, and a prediction helper for evaluation.

The generator loss is a weighted sum of NAMED terms::

    loss = sum_name weight[name] * term[name]

with the base terms of :class:`ObjectiveConfig` (see :func:`objective_terms`)

* ``recon``:  per-pixel mean of ``(x_hat - x)^2`` (or ``|x_hat - x|``) over frames ``1..L-1``,
* ``kl``:     ``KL(q(z_t|.) || p(z_t|.))`` summed over ``z``, floored at ``free_nats`` per step,
  averaged over batch and time, weight ``beta``. Together with the per-pixel mean this is the
  balance of the SVG code (``nn.MSELoss()`` + ``beta * KL / batch``), where ``beta = 1e-4`` was tuned,
* ``reward``: mean squared error of the predicted rewards,
* ``latent``: ``mean (g_t - stopgrad(E(x_t)))^2``, keeps latent imagination on the data,
* ``rollout_reward``, ``rollout_latent`` (weight ``rollout_weight``, default 0): the reward and
  latent errors of an open-loop rollout from the context frames under the true actions, the
  rollout planning imagines (one prior sample, predicted embeddings fed back; TD-MPC trains its
  latent dynamics the same way over the planning horizon). The terms above are one-step,
  teacher-forced with posterior samples; the planner never sees a posterior sample.

plus the terms of an ``objective`` given to the :class:`Trainer` (an :class:`ExtraObjective`, e.g.
:class:`worldmodel.antiblur.adversarial.AntiBlurObjective`: GDL, adversarial, feature losses, with
their weights). Terms with weight 0 are not computed. The objective's ``update(out)`` (the
discriminator's step) runs after each successful generator step, on the same forward pass.

Progressive growing: given a :class:`~worldmodel.antiblur.pggan.ProgressiveSchedule`, each step
predicts frames at the schedule's ``(resolution, alpha)`` for the current ``global_step`` (the
decoder fades the resolution in; ``ModelOutput.target`` is then average-pooled to it, so every term
compares at that resolution). After the schedule's last phase the step is exactly the normal
full-size one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from worldmodel.antiblur.pggan import ProgressiveSchedule
from worldmodel.device import PRECISIONS, autocast, autocast_dtype
from worldmodel.model.svg import ModelConfig, ModelOutput, WorldModel
from worldmodel.training.checkpoint import (
    CHECKPOINT_FORMAT,
    check_config_compatible,
    load_checkpoint,
    load_optimizer_state,
    save_checkpoint,
    with_config_defaults,
)
from worldmodel.training.losses import apply_free_nats, kl_normal, reconstruction_loss

__all__ = [
    "ExtraObjective",
    "ObjectiveConfig",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "objective_terms",
    "predict",
]

RECON_KINDS = ("l2", "l1")


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient."""


@dataclass
class TrainConfig:
    """Optimisation settings.

    ``lr = 1e-3``: SVG used 2e-3 at batch 100; at the smaller batches used here (16-50) 1e-3 (also
    PlaNet's value) is the safer default.
    """

    lr: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    batch_size: int = 16  # sequences per step (used by the data sampler)
    seq_len: int = 12  # frames per sequence L (used by the data sampler)
    n_past: int = 2  # context frames (skip connections; SVG uses 2 on BAIR)
    grad_clip: float = 100.0  # max global grad norm; 0 disables clipping (the norm is still logged)
    precision: str = "auto"  # "auto" | "fp32" | "bf16" (see worldmodel.device.autocast_dtype)
    max_nonfinite: int = 10  # consecutive skipped (non-finite) steps before TrainingDiverged
    seed: int = 0  # seeds the posterior-sample generator (offset by the rank under DDP)

    def validate(self) -> TrainConfig:
        if not 0 < self.lr <= 1:  # NaN and inf too (Adam's step overflows float32 beyond ~1e38)
            raise ValueError(f"train.lr={self.lr!r}; expected a number in (0, 1] (e.g. 1e-3)")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"train.{name}={getattr(self, name)!r}; expected 0 <= value < 1")
        for name in ("batch_size", "n_past", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}={getattr(self, name)!r}; expected an integer >= 1")
        if self.seq_len < self.n_past + 1:
            raise ValueError(
                f"train.seq_len={self.seq_len} must be > train.n_past={self.n_past} "
                "(at least one frame to predict)"
            )
        if self.grad_clip < 0:
            raise ValueError(f"train.grad_clip={self.grad_clip!r}; expected >= 0 (0 disables)")
        if self.precision not in PRECISIONS or self.precision == "fp16":
            raise ValueError(
                f"train.precision={self.precision!r}; expected 'auto', 'fp32' or 'bf16'"
            )
        return self


@dataclass
class ObjectiveConfig:
    """Weights of the base objective (see the module docstring)."""

    recon: str = "l2"  # "l2" | "l1"
    recon_weight: float = 1.0
    beta: float = 1e-4  # KL weight (SVG, Villegas et al.)
    free_nats: float = 0.0  # per-step KL floor (PlaNet uses 3 with its own balance)
    reward_weight: float = 1.0
    latent_weight: float = 1.0
    rollout_weight: float = 0.0  # open-loop rollout losses (reward + latent), see module docs

    def validate(self) -> ObjectiveConfig:
        if self.recon not in RECON_KINDS:
            raise ValueError(f"objective.recon={self.recon!r}; expected one of {RECON_KINDS}")
        for name in (
            "recon_weight",
            "beta",
            "free_nats",
            "reward_weight",
            "latent_weight",
            "rollout_weight",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"objective.{name}={getattr(self, name)!r}; expected >= 0")
        return self

    def weights(self) -> dict[str, float]:
        return {
            "recon": self.recon_weight,
            "kl": self.beta,
            "reward": self.reward_weight,
            "latent": self.latent_weight,
            "rollout_reward": self.rollout_weight,
            "rollout_latent": self.rollout_weight,
        }


def kl_per_step(out: ModelOutput) -> Tensor | None:
    """``(B, L-1)`` KL(posterior || prior) summed over ``z``; None for deterministic models."""
    if out.posterior_mu is None:
        return None
    return kl_normal(
        out.posterior_mu, out.posterior_logvar, out.prior_mu, out.prior_logvar, reduction="none"
    )


def objective_terms(out: ModelOutput, cfg: ObjectiveConfig) -> dict[str, Tensor]:
    """The base loss terms (unweighted scalars, float32) whose weight is non-zero and that apply.

    ``kl`` is absent for deterministic models and ``reward`` when the batch has no rewards.
    """
    w = cfg.weights()
    terms: dict[str, Tensor] = {}
    if w["recon"] > 0:
        terms["recon"] = reconstruction_loss(out.frames.float(), out.target, cfg.recon, "mean")
    if w["kl"] > 0 and out.posterior_mu is not None:
        terms["kl"] = apply_free_nats(kl_per_step(out), cfg.free_nats).mean()
    if w["reward"] > 0 and out.reward is not None:
        terms["reward"] = (out.reward.float() - out.reward_target.float()).pow(2).mean()
    if w["latent"] > 0:
        terms["latent"] = (out.embedding.float() - out.target_embedding.float()).pow(2).mean()
    if w["rollout_latent"] > 0 and out.rollout_embedding is not None:
        target = out.target_embedding[:, out.n_past - 1 :].float()
        terms["rollout_latent"] = (out.rollout_embedding.float() - target).pow(2).mean()
    if w["rollout_reward"] > 0 and out.rollout_reward is not None:
        target = out.reward_target[:, out.n_past - 1 :].float()
        terms["rollout_reward"] = (out.rollout_reward.float() - target).pow(2).mean()
    return terms


class ExtraObjective(Protocol):
    """Generator terms beyond the base objective, and the adversary they may train.

    * ``weights()``: name -> weight of every term ``terms`` may return (names other than the base
      terms'); ``terms(out)``: name -> unweighted scalar for the terms with weight > 0, from the
      training forward pass ``out`` (:class:`~worldmodel.model.svg.ModelOutput`);
    * ``update(out)``: called with the same ``out`` after each successful generator step (it
      detaches what it uses), e.g. one discriminator update; returns logs (logged as ``disc/...``);
    * ``state_dict()`` / ``load_state_dict(state)``: its part of the trainer's checkpoints
      (``{}``: nothing to keep; a checkpoint without it loads ``{}``).
    """

    def weights(self) -> dict[str, float]: ...

    def terms(self, out: ModelOutput) -> dict[str, Tensor]: ...

    def update(self, out: ModelOutput) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def _unwrap(model: nn.Module) -> WorldModel:
    return model.module if isinstance(model, DistributedDataParallel) else model


class Trainer:
    """Adam on the world model, one :meth:`step` per batch.

    Args:
        model: a :class:`WorldModel` on ``device``, or one already wrapped in
            ``DistributedDataParallel``. If ``torch.distributed`` is initialised and the model is not
            wrapped, it is wrapped here (``find_unused_parameters=True`` so that batches without
            rewards work); the forward always goes through the wrapper.
        train_cfg: optimiser / precision / robustness settings.
        objective_cfg: base loss weights.
        device: where the batches go.
        objective: more generator terms and their discriminator (:class:`ExtraObjective`, e.g. the
            :class:`~worldmodel.antiblur.adversarial.AntiBlurObjective`); None: the base objective
            only.
        progressive: the progressive-growing schedule of the decoder (the model needs
            ``cfg.progressive_heads``), read at ``global_step``, the one step counter: the
            objective's terms and its discriminator judge each step's predictions at the point
            they were made at (``ModelOutput.resolution``, ``.alpha``). None: always full size.

    Attributes:
        global_step: optimiser steps taken (skipped steps do not count).
        nonfinite_steps: consecutive skipped steps so far (reset by a good step).
        total_nonfinite: all skipped steps.
    """

    def __init__(
        self,
        model: nn.Module,
        train_cfg: TrainConfig,
        objective_cfg: ObjectiveConfig,
        device: torch.device | str,
        objective: ExtraObjective | None = None,
        progressive: ProgressiveSchedule | None = None,
    ) -> None:
        self.train_cfg = train_cfg.validate()
        self.objective_cfg = objective_cfg.validate()
        if progressive is not None:
            progressive.validate()
        self.device = torch.device(device)
        self.objective = objective
        if objective is not None:
            clash = set(objective.weights()) & set(objective_cfg.weights())
            if clash:
                raise ValueError(f"extra loss terms {sorted(clash)} clash with the base terms")
        if (
            dist.is_available()
            and dist.is_initialized()
            and not isinstance(model, DistributedDataParallel)
        ):
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
        self.module = model  # what forward goes through (maybe DDP)
        self.model = _unwrap(model)  # the WorldModel itself
        if progressive is not None and not self.model.cfg.progressive_heads:
            raise ValueError(
                "a progressive schedule needs a model with progressive heads "
                "(model.progressive_heads=true)"
            )
        self.progressive = progressive
        self.rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=train_cfg.lr,
            betas=(train_cfg.adam_beta1, train_cfg.adam_beta2),
            eps=train_cfg.adam_eps,
        )
        self.amp_dtype = autocast_dtype(self.device, train_cfg.precision)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(train_cfg.seed + self.rank)
        self.global_step = 0
        self.nonfinite_steps = 0
        self.total_nonfinite = 0

    # -- the step --------------------------------------------------------------------------------

    @property
    def resolution_alpha(self) -> tuple[int, float]:
        """``(resolution, alpha)`` the next :meth:`step` trains at (full size, 1 without growing)."""
        if self.progressive is None:
            return self.model.image_size, 1.0
        return self.progressive.at(self.global_step)

    def loss_terms(self, out: ModelOutput) -> dict[str, tuple[float, Tensor]]:
        """All generator terms with a non-zero weight: name -> (weight, unweighted scalar)."""
        weights = self.objective_cfg.weights()
        terms = {k: (weights[k], v) for k, v in objective_terms(out, self.objective_cfg).items()}
        if self.objective is not None:
            extra = self.objective.weights()
            for name, value in self.objective.terms(out).items():
                terms[name] = (extra[name], value.float())
        if not terms:
            raise ValueError("every loss weight is zero (or no term applies to this batch)")
        return terms

    def step(self, batch: Any) -> dict[str, float]:
        """One optimisation step on a :class:`worldmodel.data.Batch` (any device).

        Returns:
            Logs: ``loss`` (weighted total), ``loss/<term>`` (unweighted terms), ``kl`` (raw KL per
            step, stochastic models), ``grad_norm`` (before clipping), ``lr``, ``nonfinite`` (1 if
            this step was skipped), ``nonfinite_steps`` (consecutive), ``step``; ``disc/<key>``
            from the discriminator; with progressive growing ``progressive/resolution`` and
            ``progressive/alpha`` of this step.

        Raises:
            TrainingDiverged: after ``max_nonfinite`` consecutive non-finite steps.
        """
        batch = batch.to(self.device)
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        # BatchNorm statistics change in the forward pass: keep a copy to undo a skipped step
        buffers = [b.detach().clone() for b in self.model.buffers()]
        grow: dict[str, Any] = {}
        if self.progressive is not None:
            res, alpha = self.progressive.at(self.global_step)
            grow = {"resolution": res, "alpha": alpha}
        with autocast(self.device, self.amp_dtype):
            out: ModelOutput = self.module(
                batch.obs,
                batch.action,
                batch.reward,
                n_past=self.train_cfg.n_past,
                generator=self.generator,
                rollout=self.objective_cfg.rollout_weight > 0,
                **grow,
            )
        terms = self.loss_terms(out)
        loss = sum(w * v for w, v in terms.values())
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.train_cfg.grad_clip if self.train_cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip) if params else loss.new_zeros(())
        finite = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
        if dist.is_available() and dist.is_initialized():  # all ranks skip together
            flag = finite.to(torch.float32)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag > 0

        names = ["loss", "grad_norm", *(f"loss/{k}" for k in terms)]
        values = [loss, grad_norm, *(v for _, v in terms.values())]
        kl = kl_per_step(out)
        if kl is not None:
            names.append("kl")
            values.append(kl.mean())
        # one device-to-host transfer for all the logs
        logs = dict(
            zip(names, torch.stack([v.detach().float() for v in values]).tolist(), strict=True)
        )
        logs["lr"] = self.optimizer.param_groups[0]["lr"]
        if grow:
            logs["progressive/resolution"] = float(grow["resolution"])
            logs["progressive/alpha"] = float(grow["alpha"])

        if bool(finite):
            self.optimizer.step()
            self.global_step += 1
            self.nonfinite_steps = 0
            if self.objective is not None:
                disc_logs = self.objective.update(out)
                logs.update({f"disc/{k}": float(v) for k, v in disc_logs.items()})
        else:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), buffers, strict=True):
                    b.copy_(saved)
            self.nonfinite_steps += 1
            self.total_nonfinite += 1
            if self.nonfinite_steps >= self.train_cfg.max_nonfinite:
                raise TrainingDiverged(
                    f"training diverged: {self.nonfinite_steps} consecutive steps with a non-finite "
                    f"loss or gradient (last loss {logs['loss']}, grad norm {logs['grad_norm']}) at "
                    f"step {self.global_step}; lower train.lr, use train.precision=fp32, or raise "
                    "train.max_nonfinite"
                )
        logs.update(
            nonfinite=float(not bool(finite)),
            nonfinite_steps=float(self.nonfinite_steps),
            step=float(self.global_step),
        )
        return logs

    @torch.no_grad()
    def recalibrate_batchnorm(self, batches: Iterable[Any], seed: int = 0) -> int:
        """Recompute the BatchNorm running statistics under the current weights ("precise BN").

        In training mode BatchNorm normalises with the batch's statistics and keeps an exponential
        average of them (momentum 0.1: mostly the last ~10-20 steps, each under older weights)
        for evaluation mode, which everything after training uses: evaluation, generation and
        planning. When the weights move quickly that average is stale; on cheetah-run a model
        trained with the adversarial and the feature terms together lost 2.5 dB between its
        training-mode and its evaluation-mode reconstruction of the same frames, and its prior
        rollouts fell below copy-last-frame. This replaces the running statistics by the plain
        average over ``batches`` (training-mode forward passes, no gradient, as Wu & Johnson's
        PreciseBN), which closes that gap.

        Training is not affected: running statistics are not used in training mode, the
        optimiser and the training generator are untouched (the forward passes draw their
        posterior samples from a generator seeded with ``seed``), and the caller provides the
        batches (from a sampler of its own, so the training data order does not change).

        Returns:
            The number of batches used (0: nothing changed, e.g. no BatchNorm or no batches).
        """
        norms = [
            m
            for m in self.model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]
        if not norms:
            return 0
        momenta = [m.momentum for m in norms]
        # restored when no batch (or an error) came; cloned: reset_running_stats works in place
        saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in norms]
        gen = torch.Generator(device=self.device).manual_seed(seed)
        resolution, alpha = self.resolution_alpha
        was_training = self.model.training
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: every batch counts the same
        n, done = 0, False
        self.model.train()
        try:
            for batch in batches:
                batch = batch.to(self.device)
                with autocast(self.device, self.amp_dtype):
                    self.model(
                        batch.obs,
                        batch.action,
                        batch.reward,
                        n_past=self.train_cfg.n_past,
                        generator=gen,
                        resolution=resolution,
                        alpha=alpha,
                    )
                n += 1
            done = True
        finally:
            if n == 0 or not done:
                for m, state in zip(norms, saved, strict=True):
                    m.load_state_dict(state)
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum
            self.model.train(was_training)
        return n

    # -- state and checkpoints -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "global_step": self.global_step,
            "nonfinite_steps": self.nonfinite_steps,
            "total_nonfinite": self.total_nonfinite,
            "generator": self.generator.get_state(),
        }
        # the objective's state (its discriminator) keeps the key it had before objectives existed
        extra = self.objective.state_dict() if self.objective is not None else {}
        if extra:
            state["discriminator"] = extra
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])  # lr etc. from this run's config
        self.global_step = int(state["global_step"])
        self.nonfinite_steps = int(state["nonfinite_steps"])
        self.total_nonfinite = int(state["total_nonfinite"])
        self.generator.set_state(state["generator"].cpu())
        if self.objective is not None:  # it raises if it misses a state it needs
            self.objective.load_state_dict(state.get("discriminator", {}))

    def model_spec(self) -> dict[str, Any]:
        """The model's constructor arguments as a plain dict (stored in checkpoints)."""
        m = self.model
        return {
            "config": asdict(m.cfg),
            "image_size": m.image_size,
            "action_dim": m.action_dim,
            "channels": m.channels,
        }

    def save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write an atomic checkpoint: model spec, configs, state, and ``extra`` (plain data)."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "model": self.model_spec(),
            "train_config": asdict(self.train_cfg),
            "objective_config": asdict(self.objective_cfg),
            "state": self.state_dict(),
            "extra": dict(extra or {}),
        }
        return save_checkpoint(path, payload)

    def load(self, path: str | Path, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Restore from :meth:`save`; returns its ``extra``.

        ``payload``: the checkpoint already read from ``path`` (by :func:`load_checkpoint`), so
        that a caller who looked into it first does not read the file twice.

        Raises:
            CheckpointError: the checkpoint's model differs from this trainer's (naming the keys).
        """
        if payload is None:
            payload = load_checkpoint(path, map_location=self.device)
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"{path} is not a trainer checkpoint (format {payload.get('format')!r})"
            )
        current = self.model_spec()
        # every architecture field; channels_last only changes the memory layout, not the weights
        keys = [
            f"config.{f.name}" for f in dataclasses.fields(ModelConfig) if f.name != "channels_last"
        ]
        keys += ["image_size", "action_dim", "channels"]
        check_config_compatible(with_config_defaults(payload["model"]), current, keys, source=path)
        self.load_state_dict(payload["state"])
        return payload["extra"]


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def predict(
    model: nn.Module,
    obs: Tensor,
    action: Tensor | None,
    n_past: int,
    n_future: int,
    samples: int = 1,
    generator: torch.Generator | None = None,
    feedback: str = "decode",
) -> Tensor:
    """Sample future frames from the learned prior after ``n_past`` context frames (eval mode).

    Args:
        model: a :class:`WorldModel` (or DDP-wrapped one).
        obs: ``(B, T, C, S, S)`` with ``T >= n_past`` (only the context is used).
        action: ``(B, >= n_past - 1 + n_future, A)``, the actions from the first frame on; None
            for action-free data.
        n_past, n_future: context frames and frames to predict.
        samples: S samples per sequence.
        generator: for the prior samples.
        feedback: ``"decode"`` (SVG's generation: decoded frames are re-encoded) or ``"latent"``.

    Returns:
        ``(B, S, n_future, C, S, S)`` predicted frames ``n_past .. n_past + n_future - 1`` in [0, 1].
    """
    model = _unwrap(model)
    if obs.shape[1] < n_past:
        raise ValueError(f"obs has {obs.shape[1]} frames but n_past={n_past}")
    if action is not None and action.shape[1] < n_past - 1 + n_future:
        raise ValueError(
            f"action has {action.shape[1]} steps; need n_past - 1 + n_future = {n_past - 1 + n_future}"
        )
    was_training = model.training
    model.eval()
    try:
        ctx_actions = None if action is None else action[:, : n_past - 1]
        state = model.observe(obs[:, :n_past], ctx_actions)
        future = None if action is None else action[:, n_past - 1 : n_past - 1 + n_future]
        out = model.imagine(
            state,
            future,
            samples=samples,
            decode=True,
            generator=generator,
            horizon=n_future,
            feedback=feedback,
        )
    finally:
        model.train(was_training)
    return out.frames
