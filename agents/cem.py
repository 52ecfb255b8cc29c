"""A generic, batched cross-entropy method (CEM) optimiser over action sequences.

CEM knows nothing about models: it maximises any :data:`Objective`, a function that maps a batch of
``N`` action sequences ``(N, H, A)`` to their returns ``(N,)``. Each iteration draws a population
from a diagonal Gaussian over the whole sequence, clamps it to the action bounds, evaluates it in ONE
call of the objective, keeps the top ``elites`` and refits the Gaussian to them (Rubinstein 1999;
used for MPC by PlaNet, Hafner et al. 2019, with 1000 candidates, 100 elites, 10 iterations and a
horizon of 12, which are the defaults here).

Everything is a batched tensor op on the device of the action bounds (the model's device): sampling,
clamping, top-k, refit. The only host synchronisation is one scalar check per iteration that at least
one candidate had a finite return.

Choices (all documented on :class:`CEMConfig`):

* Standard deviations are given as fractions of the half-range ``(high - low) / 2``, so one config
  fits any action box; ``init_std=1.0`` on ``[-1, 1]`` is PlaNet's ``N(0, 1)``. Samples are clamped
  to the bounds (as in PlaNet), so a bound-hitting optimum is reached exactly.
* A non-finite return (NaN, +inf or -inf) ranks last and never enters the refit. If no candidate of an
  iteration has a finite return, :meth:`CEM.plan` raises :class:`NonFiniteObjectiveError`: a model
  that predicts only NaNs is broken, and acting on a stale plan would hide that.
* With ``warm_start=True`` the solution of a plan is kept; :meth:`CEM.act` shifts it by one step (the
  last step restarts at the centre of the box) and the next plan starts its mean there. The standard
  deviation is always reset to ``init_std``: a warm-started narrow std would stop exploring.
* The result is PlaNet's final mean by default. For a sparse or sharp objective use
  ``return_mean=False, evaluate_mean=True`` (return the best candidate seen, with the mean evaluated
  as one candidate per iteration): a rare rewarded sample, fewer than the elites, is kept instead of
  being averaged away. With the stub environment's exact model and starts far from the goal, the
  mean never reached the goal in some episodes while the best candidate reached >= 97% of the
  optimal return (tests/test_cem.py).

Example::

    cem = CEM(CEMConfig(), low=torch.full((6,), -1.0), high=torch.full((6,), 1.0))
    action = cem.act(objective)   # (6,)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Objective", "CEMConfig", "CEMInfo", "CEM", "NonFiniteObjectiveError"]

Objective = Callable[[Tensor], Tensor]
"""Maps action sequences ``(N, H, A)`` to returns ``(N,)`` (higher is better)."""


class NonFiniteObjectiveError(RuntimeError):
    """Raised when every candidate of a CEM iteration has a non-finite return."""


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class CEMConfig:
    """Hyper-parameters of :class:`CEM` (defaults: PlaNet's planner).

    Attributes:
        population: candidates sampled and evaluated per iteration (``N``), int >= 1.
        elites: best candidates the Gaussian is refit to, int in ``[1, population]``.
        iterations: refits per plan, int >= 1.
        horizon: planning horizon ``H`` in (agent) steps, int >= 1.
        init_std: initial standard deviation as a fraction of the half-range ``(high - low) / 2``;
            1.0 on ``[-1, 1]`` is PlaNet's ``N(0, 1)`` (then clamped to the bounds). Float > 0.
        min_std: floor on the refit standard deviation, same unit as ``init_std``; keeps some
            exploration when the elites collapse early (PlaNet has none; TD-MPC2 uses 0.05). Float in
            ``[0, init_std]``; 0 disables the floor.
        alpha: smoothing of the refit, ``mean = alpha * old + (1 - alpha) * elite_mean`` (same for
            the std); 0 = plain CEM (PlaNet), 0.1 is mbrl-lib's default. Float in ``[0, 1)``.
        warm_start: keep the solution between calls; :meth:`CEM.act` shifts it by one step.
        return_mean: True returns the final mean of the Gaussian (PlaNet), which averages out the
            noise of a stochastic objective; False returns the single best candidate evaluated over
            all iterations, which keeps a rare good sample that the refit would average away
            (sparse rewards) and suits a deterministic objective.
        evaluate_mean: make the current mean the first candidate of every iteration's population
            (the population size is unchanged), so that with ``return_mean=False`` the result is
            never worse than the mean (iCEM, Pinneri et al. 2020, does this at the last iteration).
    """

    population: int = 1000
    elites: int = 100
    iterations: int = 10
    horizon: int = 12
    init_std: float = 1.0
    min_std: float = 0.05
    alpha: float = 0.0
    warm_start: bool = True
    return_mean: bool = True
    evaluate_mean: bool = False

    def validate(self) -> CEMConfig:
        """Raise ValueError naming the first bad field and its accepted range; return self."""
        for name in ("population", "elites", "iterations", "horizon"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"CEMConfig.{name} must be an int >= 1, got {value!r}")
        if self.elites > self.population:
            raise ValueError(
                f"CEMConfig.elites must be in [1, population={self.population}], got {self.elites}"
            )
        if not _is_real(self.init_std) or self.init_std <= 0:
            raise ValueError(
                f"CEMConfig.init_std must be a finite float > 0, got {self.init_std!r}"
            )
        if not _is_real(self.min_std) or not 0 <= self.min_std <= self.init_std:
            raise ValueError(
                f"CEMConfig.min_std must be a float in [0, init_std={self.init_std}], "
                f"got {self.min_std!r}"
            )
        if not _is_real(self.alpha) or not 0 <= self.alpha < 1:
            raise ValueError(f"CEMConfig.alpha must be a float in [0, 1), got {self.alpha!r}")
        for name in ("warm_start", "return_mean", "evaluate_mean"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"CEMConfig.{name} must be a bool, got {getattr(self, name)!r}")
        return self


@dataclass
class CEMInfo:
    """Diagnostics of the last :meth:`CEM.plan` (tensors on the planner's device; ``.tolist()``
    them for logging).

    Attributes:
        elite_return: ``(iterations,)`` mean return of the (finite) elites of each iteration.
        best_return: ``(iterations,)`` best finite return of each iteration.
        nonfinite: ``(iterations,)`` number of candidates with a non-finite return.
        std: ``(H, A)`` standard deviation of the Gaussian after the last refit.
    """

    elite_return: Tensor
    best_return: Tensor
    nonfinite: Tensor
    std: Tensor


class CEM:
    """Batched cross-entropy method over action sequences in a box.

    Args:
        cfg: hyper-parameters (validated here).
        low, high: ``(A,)`` action bounds, ``low < high``; their device and (floating) dtype are
            those of every sampled sequence.
        generator: optional ``torch.Generator`` on the same device as the bounds, for
            reproducible plans; None uses torch's global RNG.

    The planner's only state is the warm-start mean (``warm_start_mean``), forgotten by
    :meth:`reset` (call it at the start of every episode).
    """

    def __init__(
        self,
        cfg: CEMConfig,
        low: Tensor,
        high: Tensor,
        generator: torch.Generator | None = None,
    ) -> None:
        self.cfg = cfg.validate()
        if low.dim() != 1 or low.shape != high.shape:
            raise ValueError(
                f"CEM bounds must both have shape (A,), got low {tuple(low.shape)} and "
                f"high {tuple(high.shape)}"
            )
        if not low.is_floating_point() or high.dtype != low.dtype or high.device != low.device:
            raise ValueError(
                "CEM bounds must be floating-point tensors of one dtype on one device, got "
                f"low {low.dtype} on {low.device} and high {high.dtype} on {high.device}"
            )
        if not (torch.isfinite(low).all() and torch.isfinite(high).all() and (low < high).all()):
            raise ValueError(
                f"CEM bounds must be finite with low < high, got low={low.tolist()} "
                f"high={high.tolist()}"
            )
        if generator is not None and not _same_device(generator.device, low.device):
            raise ValueError(
                f"CEM generator is on {generator.device} but the bounds are on {low.device}; "
                f"create it with torch.Generator(device={str(low.device)!r})"
            )
        self.low = low
        self.high = high
        self.generator = generator
        self._centre = (low + high) / 2  # (A,)
        self._half_range = (high - low) / 2  # (A,)
        self._warm: Tensor | None = None  # (H, A)
        self.last_info: CEMInfo | None = None

    @property
    def action_dim(self) -> int:
        return self.low.shape[0]

    @property
    def warm_start_mean(self) -> Tensor | None:
        """``(H, A)`` mean the next plan starts from, or None (start at the centre of the box)."""
        return self._warm

    def reset(self) -> None:
        """Forget the warm start (call at the start of an episode)."""
        self._warm = None
        self.last_info = None

    @torch.no_grad()
    def plan(self, objective: Objective, init_mean: Tensor | None = None) -> Tensor:
        """Optimise an action sequence.

        Args:
            objective: maps ``(N, H, A)`` sequences (within the bounds) to ``(N,)`` returns; called
                exactly ``iterations`` times, once per iteration, with ``N = population``.
            init_mean: optional ``(H, A)`` initial mean (clamped to the bounds); overrides the warm
                start for this call.

        Returns:
            ``(H, A)`` the final mean (``return_mean=True``) or the best candidate seen. With
            ``warm_start`` it is also kept as the next plan's initial mean (unshifted: use
            :meth:`act` to advance it).

        Raises:
            NonFiniteObjectiveError: an iteration had no candidate with a finite return.
            ValueError: the objective returned the wrong shape.
        """
        cfg = self.cfg
        n, h, a = cfg.population, cfg.horizon, self.action_dim
        low, high = self.low, self.high
        if init_mean is not None:
            if init_mean.shape != (h, a):
                raise ValueError(
                    f"init_mean must have shape (horizon, A) = ({h}, {a}), "
                    f"got {tuple(init_mean.shape)}"
                )
            mean = init_mean.to(low).clamp(low, high)
        elif cfg.warm_start and self._warm is not None:
            mean = self._warm
        else:
            mean = self._centre.expand(h, a)
        std = (cfg.init_std * self._half_range).expand(h, a)
        min_std = cfg.min_std * self._half_range  # (A,)

        neg_inf = torch.tensor(-math.inf, device=low.device)
        best_return = neg_inf
        best_seq = mean
        elite_log, best_log, nonfinite_log = [], [], []
        for it in range(cfg.iterations):
            # sample the population and keep it in the box: (N, H, A)
            noise = torch.randn(
                (n, h, a), generator=self.generator, device=low.device, dtype=low.dtype
            )
            samples = torch.addcmul(mean, std, noise).clamp_(low, high)
            if cfg.evaluate_mean:
                samples[0] = mean

            returns = objective(samples)
            if returns.shape != (n,):
                raise ValueError(
                    f"the objective must map action sequences (N, H, A) = {(n, h, a)} to returns "
                    f"of shape (N,) = ({n},), got {tuple(returns.shape)}"
                )
            returns = returns.to(device=low.device, dtype=torch.float32)
            finite = torch.isfinite(returns)
            scores = torch.where(finite, returns, neg_inf)  # non-finite ranks last

            # elites: (K, H, A); top.values sorted, so values[0] is the iteration's best
            top = torch.topk(scores, cfg.elites, sorted=True)
            if not bool(torch.isfinite(top.values[0])):
                raise NonFiniteObjectiveError(
                    f"CEM iteration {it}: the objective returned no finite value for any of the "
                    f"{n} candidates; the model or cost produces NaN/inf (diverged weights? "
                    "bad input scaling?)"
                )
            elites = samples[top.indices]
            # refit to the finite elites only (fewer than K when many returns are non-finite)
            w = torch.isfinite(top.values).to(low.dtype)  # (K,)
            w = (w / w.sum())[:, None, None]
            elite_mean = (w * elites).sum(0)  # (H, A)
            elite_std = ((w * (elites - elite_mean).square()).sum(0)).sqrt()
            if cfg.alpha > 0:
                elite_mean = cfg.alpha * mean + (1 - cfg.alpha) * elite_mean
                elite_std = cfg.alpha * std + (1 - cfg.alpha) * elite_std
            mean = elite_mean
            std = torch.maximum(elite_std, min_std)

            better = top.values[0] > best_return
            best_seq = torch.where(better, elites[0], best_seq)
            best_return = torch.maximum(top.values[0], best_return)

            elite_log.append((w.flatten() * torch.where(finite[top.indices], top.values, 0)).sum())
            best_log.append(top.values[0])
            nonfinite_log.append((~finite).sum())

        solution = (mean if cfg.return_mean else best_seq).clone()
        if cfg.warm_start:
            self._warm = solution
        self.last_info = CEMInfo(
            elite_return=torch.stack(elite_log),
            best_return=torch.stack(best_log),
            nonfinite=torch.stack(nonfinite_log),
            std=std,
        )
        return solution

    def act(self, objective: Objective) -> Tensor:
        """Plan and return the first action ``(A,)``; with ``warm_start``, shift the kept plan by one
        step (its last step restarts at the centre of the box)."""
        solution = self.plan(objective)
        if self.cfg.warm_start:
            self._warm = torch.cat([solution[1:], self._centre[None]], dim=0)
        return solution[0].clone()


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether a generator on ``a`` can drive sampling on ``b`` (``cuda`` == ``cuda:current``)."""
    if a.type != b.type:
        return False
    if a.type == "cpu" or a.index is None or b.index is None:
        return True
    return a.index == b.index
