"""A generic, batched cross-entropy method (CEM) optimiser over action sequences, plain or iCEM.

CEM knows nothing about models: it maximises any :data:`Objective`, a function that maps a batch of
``N`` action sequences ``(N, H, A)`` to their returns ``(N,)``. Each iteration draws a population
from a diagonal Gaussian over the whole sequence, clamps it to the action bounds, evaluates it in ONE
call of the objective, keeps the top ``elites`` and refits the Gaussian to them (Rubinstein 1999;
used for MPC by PlaNet, Hafner et al. 2019, with 1000 candidates, 100 elites, 10 iterations and a
horizon of 12, which are the defaults here).

``kind="icem"`` is the improved CEM of Pinneri et al. 2020 (iCEM), the same loop with a different
way of proposing candidates (:class:`_ICEMProposal`, the only place it differs):

* the noise is coloured, with power spectrum ``1/f^noise_beta`` along the horizon
  (:func:`coloured_noise`): successive actions are correlated, as good controls usually are;
  ``noise_beta=0`` is white noise, plain CEM's;
* the best ``floor(keep_elites * elites)`` elites of an iteration are kept into the next iteration
  with their returns (not evaluated again), and, shifted by one step, into the first iteration of
  the next time step's plan (evaluated again there: the state has changed);
* the population shrinks: iteration ``i`` samples ``N_i = max(floor(population * gamma^-i),
  2 * elites)`` fresh candidates (``gamma = population_decay``, and never more than ``population``;
  :func:`population_sizes`); the shifted elites come on top in the first iteration;
* the mean is evaluated as a candidate in the last iteration, and the best candidate is returned
  (``return_mean=None`` means the kind's default: the mean for ``cem``, the best for ``icem``).
  Since the kept elites carry their returns, the best of the last iteration is the best of the
  whole plan whenever at least one elite is kept.

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
    icem = CEM(CEMConfig(kind="icem", population=300, elites=20, iterations=4), low, high)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from wmcommon.checks import is_int, is_number

__all__ = [
    "Objective",
    "CEMConfig",
    "CEMInfo",
    "CEM",
    "NonFiniteObjectiveError",
    "KINDS",
    "coloured_noise",
    "population_sizes",
]

Objective = Callable[[Tensor], Tensor]
"""Maps action sequences ``(N, H, A)`` to returns ``(N,)`` (higher is better)."""

KINDS = ("cem", "icem")


class NonFiniteObjectiveError(RuntimeError):
    """Raised when every candidate of a CEM iteration has a non-finite return."""


@dataclass
class CEMConfig:
    """Hyper-parameters of :class:`CEM` (defaults: PlaNet's planner).

    Attributes:
        kind: ``cem`` (plain CEM, PlaNet's) or ``icem`` (Pinneri et al. 2020: coloured noise, kept
            elites, a shrinking population, the best candidate returned; the ``noise_beta``,
            ``keep_elites`` and ``population_decay`` fields are read only by ``icem``).
        population: candidates sampled and evaluated per iteration (``N``), int >= 1; with
            ``icem`` the first iteration's (``N_0``), see :func:`population_sizes`.
        elites: best candidates the Gaussian is refit to, int in ``[1, population]``.
        iterations: refits per plan, int >= 1.
        horizon: planning horizon ``H`` in (agent) steps, int >= 1.
        init_std: initial standard deviation as a fraction of the half-range ``(high - low) / 2``;
            1.0 on ``[-1, 1]`` is PlaNet's ``N(0, 1)`` (then clamped to the bounds). Float > 0.
        min_std: floor on the refit standard deviation, same unit as ``init_std``; keeps some
            exploration when the elites collapse early (PlaNet has none; TD-MPC2 uses 0.05). Float in
            ``[0, init_std]``; 0 disables the floor.
        alpha: smoothing of the refit, ``mean = alpha * old + (1 - alpha) * elite_mean`` (same for
            the std); 0 = plain CEM (PlaNet), 0.1 is mbrl-lib's default and iCEM's. Float in
            ``[0, 1)``.
        warm_start: keep the solution between calls; :meth:`CEM.act` shifts it by one step. With
            ``icem`` the kept elites are carried over (and shifted) the same way.
        return_mean: True returns the final mean of the Gaussian (PlaNet), which averages out the
            noise of a stochastic objective; False returns the single best candidate evaluated over
            all iterations, which keeps a rare good sample that the refit would average away
            (sparse rewards) and suits a deterministic objective. None (the default) is the kind's
            own choice: the mean for ``cem``, the best candidate for ``icem``.
        evaluate_mean: make the current mean the first candidate of every iteration's population
            (the population size is unchanged), so that with ``return_mean=False`` the result is
            never worse than the mean. ``icem`` always does this in its last iteration.
        noise_beta: ``icem``: exponent of the noise's power spectrum ``1/f^beta`` along the horizon
            (:func:`coloured_noise`); 0 is white noise (plain CEM's), 2 is Brownian-like, larger
            values give smoother sequences. iCEM used 2-4 on most tasks and 0.25 on HalfCheetah,
            whose good gaits switch fast. Float >= 0.
        keep_elites: ``icem``: fraction of the elites kept into the next iteration and, shifted, into
            the next step's first iteration (``floor(keep_elites * elites)`` sequences; 0 keeps
            none). Float in ``[0, 1]``.
        population_decay: ``icem``: ``gamma`` of ``N_i = max(population * gamma^-i, 2 * elites)``;
            1 keeps the population constant. Float >= 1.
    """

    population: int = 1000
    elites: int = 100
    iterations: int = 10
    horizon: int = 12
    init_std: float = 1.0
    min_std: float = 0.05
    alpha: float = 0.0
    warm_start: bool = True
    return_mean: bool | None = None
    evaluate_mean: bool = False
    kind: str = "cem"
    noise_beta: float = 2.0
    keep_elites: float = 0.3
    population_decay: float = 1.25

    @property
    def returns_mean(self) -> bool:
        """Whether a plan returns the mean (``return_mean``, or the kind's default when None)."""
        return self.kind == "cem" if self.return_mean is None else self.return_mean

    @property
    def kept_elites(self) -> int:
        """Number of elites an ``icem`` plan keeps between iterations and steps (0 for ``cem``)."""
        return math.floor(self.keep_elites * self.elites) if self.kind == "icem" else 0

    def validate(self) -> CEMConfig:
        """Raise ValueError naming the first bad field and its accepted range; return self."""
        if self.kind not in KINDS:
            raise ValueError(f"CEMConfig.kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("population", "elites", "iterations", "horizon"):
            value = getattr(self, name)
            if not is_int(value, 1):
                raise ValueError(f"CEMConfig.{name} must be an int >= 1, got {value!r}")
        if self.elites > self.population:
            raise ValueError(
                f"CEMConfig.elites must be in [1, population={self.population}], got {self.elites}"
            )
        if not is_number(self.init_std, finite=True) or self.init_std <= 0:
            raise ValueError(
                f"CEMConfig.init_std must be a finite float > 0, got {self.init_std!r}"
            )
        if not is_number(self.min_std, finite=True) or not 0 <= self.min_std <= self.init_std:
            raise ValueError(
                f"CEMConfig.min_std must be a float in [0, init_std={self.init_std}], "
                f"got {self.min_std!r}"
            )
        if not is_number(self.alpha, finite=True) or not 0 <= self.alpha < 1:
            raise ValueError(f"CEMConfig.alpha must be a float in [0, 1), got {self.alpha!r}")
        for name in ("warm_start", "evaluate_mean"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"CEMConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.return_mean is not None and not isinstance(self.return_mean, bool):
            raise ValueError(
                f"CEMConfig.return_mean must be a bool or None (the kind's default), "
                f"got {self.return_mean!r}"
            )
        if not is_number(self.noise_beta, finite=True) or self.noise_beta < 0:
            raise ValueError(
                f"CEMConfig.noise_beta must be a finite float >= 0, got {self.noise_beta!r}"
            )
        if not is_number(self.keep_elites, finite=True) or not 0 <= self.keep_elites <= 1:
            raise ValueError(
                f"CEMConfig.keep_elites must be a float in [0, 1], got {self.keep_elites!r}"
            )
        if not is_number(self.population_decay, finite=True) or self.population_decay < 1:
            raise ValueError(
                f"CEMConfig.population_decay must be a finite float >= 1, "
                f"got {self.population_decay!r}"
            )
        return self


def population_sizes(cfg: CEMConfig) -> list[int]:
    """Fresh candidates sampled in each iteration of a plan.

    ``cem``: ``population`` every iteration. ``icem``: ``N_i = max(floor(N_0 * gamma^-i), 2K)``
    with ``N_0 = population``, ``gamma = population_decay`` and ``K = elites``, capped at ``N_0``
    (so ``2K > N_0`` keeps ``N_0``). An ``icem`` plan that follows :meth:`CEM.act` also evaluates
    the ``cfg.kept_elites`` shifted elites in its first iteration.
    """
    n0, k = cfg.population, cfg.elites
    if cfg.kind == "cem":
        return [n0] * cfg.iterations
    return [
        min(n0, max(math.floor(n0 * cfg.population_decay**-i), 2 * k))
        for i in range(cfg.iterations)
    ]


def coloured_noise(
    n: int,
    horizon: int,
    action_dim: int,
    beta: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Gaussian noise ``(n, horizon, action_dim)`` with power spectrum ``1/f^beta`` over the horizon.

    Each of the ``n * action_dim`` sequences is an independent stationary Gaussian process of
    ``horizon`` steps with unit variance at every step; ``beta = 0`` is white noise (exactly
    ``torch.randn`` of that shape, so plain CEM's draws), ``beta = 1`` pink, ``beta = 2`` red.

    Made in the frequency domain (Timmer & König 1995): the Fourier coefficient of frequency ``f``
    (``f = k / horizon``, ``k = 0 .. horizon // 2``) is a complex Gaussian of amplitude
    ``f^(-beta / 2)``, the zero frequency taking the amplitude of the lowest non-zero one (``1 /
    horizon``) so that it stays finite; the inverse real FFT makes the sequence, and one analytic
    factor scales it to unit variance.
    """
    shape = (n, horizon, action_dim)
    if beta == 0:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    freqs = torch.fft.rfftfreq(horizon, device=device, dtype=work)  # (F,) 0, 1/H, .., ~1/2
    amplitude = freqs.clamp(min=1.0 / horizon).pow(-beta / 2)  # (F,)
    # the zero frequency and, for an even horizon, the Nyquist one are their own mirror images:
    # real coefficients, with twice the variance of each part so that E|X_f|^2 is the same rule
    self_mirror = torch.zeros_like(freqs, dtype=torch.bool)
    self_mirror[0] = True
    if horizon % 2 == 0:
        self_mirror[-1] = True
    parts = torch.randn(
        (2, n, len(freqs), action_dim), generator=generator, device=device, dtype=work
    )
    real = parts[0] * torch.where(self_mirror, math.sqrt(2.0), 1.0)[:, None]
    imag = parts[1].masked_fill(self_mirror[:, None], 0.0)
    spectrum = torch.complex(real, imag) * amplitude[:, None]  # (n, F, A)
    x = torch.fft.irfft(spectrum, n=horizon, dim=1)  # (n, H, A)
    # Var(x_t) = (2 / H^2) * sum over the full spectrum of amplitude^2; the mirrored frequencies
    # (all but the self-mirrored) appear twice in it
    multiplicity = torch.where(self_mirror, 1.0, 2.0)
    variance = 2 * (multiplicity * amplitude.square()).sum() / horizon**2
    return (x / variance.sqrt()).to(dtype)


@dataclass
class CEMInfo:
    """Diagnostics of the last :meth:`CEM.plan` (tensors on the planner's device; ``.tolist()``
    them for logging).

    Attributes:
        elite_return: ``(iterations,)`` mean return of the (finite) elites of each iteration.
        best_return: ``(iterations,)`` best finite return of each iteration (kept elites included).
        nonfinite: ``(iterations,)`` number of evaluated candidates with a non-finite return.
        std: ``(H, A)`` standard deviation of the Gaussian after the last refit.
        evaluated: candidates the objective evaluated in each iteration (host ints; their sum is
            the plan's cost in imagined rollouts).
    """

    elite_return: Tensor
    best_return: Tensor
    nonfinite: Tensor
    std: Tensor
    evaluated: tuple[int, ...] = ()


class _CEMProposal:
    """Plain CEM's candidates: white noise, the same population each iteration, nothing carried
    over. :class:`CEM` calls these hooks; :class:`_ICEMProposal` overrides them."""

    kept: Tensor | None = None  # elites carried over (none here)

    def __init__(self, cfg: CEMConfig, cem: CEM) -> None:
        self.cfg = cfg
        self.cem = cem
        self.sizes = population_sizes(cfg)

    def noise(self, n: int) -> Tensor:
        """``(n, H, A)`` standard noise."""
        low = self.cem.low
        shape = (n, self.cfg.horizon, low.shape[0])
        return torch.randn(shape, generator=self.cem.generator, device=low.device, dtype=low.dtype)

    def evaluates_mean(self, it: int) -> bool:
        return self.cfg.evaluate_mean

    def start(self, carry_over: bool) -> None:
        """A plan begins; ``carry_over`` is False when it ignores the warm start."""

    def add_candidates(self, it: int, samples: Tensor) -> Tensor:
        """Candidates to evaluate with the fresh ``samples`` ``(n, H, A)`` of iteration ``it``."""
        return samples

    def add_evaluated(self, it: int, samples: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
        """Already evaluated candidates (and their scores) to rank with this iteration's."""
        return samples, scores

    def keep(self, elites: Tensor, scores: Tensor) -> None:
        """The iteration's elites ``(K, H, A)``, best first, and their scores ``(K,)``."""

    def shift(self) -> None:
        """One step has been executed (:meth:`CEM.act`)."""

    def reset(self) -> None:
        """Forget everything carried over (a new episode)."""


class _ICEMProposal(_CEMProposal):
    """iCEM's candidates (Pinneri et al. 2020): coloured noise, a shrinking population (the sizes
    come from :func:`population_sizes`), the best ``cfg.kept_elites`` elites carried into the next
    iteration with their scores and, shifted by one step, into the next plan, and the mean
    evaluated in the last iteration."""

    def __init__(self, cfg: CEMConfig, cem: CEM) -> None:
        super().__init__(cfg, cem)
        self.count = cfg.kept_elites
        self.kept: Tensor | None = None  # (k, H, A), best first
        self.kept_scores: Tensor | None = None  # (k,) scores of ``kept`` within the current plan
        self.previous: Tensor | None = None  # (k, H, A) the last plan's kept elites, to re-evaluate

    def noise(self, n: int) -> Tensor:
        low = self.cem.low
        return coloured_noise(
            n,
            self.cfg.horizon,
            low.shape[0],
            self.cfg.noise_beta,
            generator=self.cem.generator,
            device=low.device,
            dtype=low.dtype,
        )

    def evaluates_mean(self, it: int) -> bool:
        return self.cfg.evaluate_mean or it == self.cfg.iterations - 1

    def start(self, carry_over: bool) -> None:
        self.previous = self.kept if carry_over and self.cfg.warm_start else None
        self.kept = self.kept_scores = None

    def add_candidates(self, it: int, samples: Tensor) -> Tensor:
        if it > 0 or self.previous is None:
            return samples
        return torch.cat([samples, self.previous])  # their scores changed with the state

    def add_evaluated(self, it: int, samples: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
        if self.kept is None or self.kept_scores is None:
            return samples, scores
        return torch.cat([samples, self.kept]), torch.cat([scores, self.kept_scores])

    def keep(self, elites: Tensor, scores: Tensor) -> None:
        if self.count > 0:
            self.kept, self.kept_scores = elites[: self.count], scores[: self.count]

    def shift(self) -> None:
        """Drop the executed first step of the kept elites; their new last step is drawn from the
        re-initialised Gaussian (the centre of the box, ``init_std``), clamped to the box."""
        if self.kept is None or not self.cfg.warm_start:
            return
        cem = self.cem
        last = cem.centre + self.cfg.init_std * cem.half_range * self.noise(len(self.kept))[:, -1:]
        last = last.clamp(cem.low, cem.high)  # (k, 1, A)
        self.kept = torch.cat([self.kept[:, 1:], last], dim=1)

    def reset(self) -> None:
        self.kept = self.kept_scores = self.previous = None


_PROPOSALS: dict[str, type[_CEMProposal]] = {"cem": _CEMProposal, "icem": _ICEMProposal}


class CEM:
    """Batched cross-entropy method over action sequences in a box (plain CEM or iCEM, after
    ``cfg.kind``).

    Args:
        cfg: hyper-parameters (validated here).
        low, high: ``(A,)`` action bounds, ``low < high``; their device and (floating) dtype are
            those of every sampled sequence.
        generator: optional ``torch.Generator`` on the same device as the bounds, for
            reproducible plans; None uses torch's global RNG.

    The planner's state is the warm-start mean (``warm_start_mean``) and, with ``icem``, the kept
    elites (``kept_elites``), forgotten by :meth:`reset` (call it at the start of every episode).
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
        self.centre = (low + high) / 2  # (A,)
        self.half_range = (high - low) / 2  # (A,)
        self._warm: Tensor | None = None  # (H, A)
        self._proposal = _PROPOSALS[cfg.kind](cfg, self)
        self.last_info: CEMInfo | None = None

    @property
    def action_dim(self) -> int:
        return self.low.shape[0]

    @property
    def warm_start_mean(self) -> Tensor | None:
        """``(H, A)`` mean the next plan starts from, or None (start at the centre of the box)."""
        return self._warm

    @property
    def kept_elites(self) -> Tensor | None:
        """``icem``: ``(k, H, A)`` elites kept from the last plan (best first; shifted by
        :meth:`act`), which the next plan evaluates in its first iteration; None for ``cem``."""
        return self._proposal.kept

    def reset(self) -> None:
        """Forget the warm start and the kept elites (call at the start of an episode)."""
        self._warm = None
        self._proposal.reset()
        self.last_info = None

    @torch.no_grad()
    def plan(self, objective: Objective, init_mean: Tensor | None = None) -> Tensor:
        """Optimise an action sequence.

        Args:
            objective: maps ``(N, H, A)`` sequences (within the bounds) to ``(N,)`` returns; called
                exactly ``iterations`` times, once per iteration, with ``N = population`` (``cem``)
                or ``N = population_sizes(cfg)[i]`` plus, in the first iteration after
                :meth:`act`, the kept elites (``icem``).
            init_mean: optional ``(H, A)`` initial mean (clamped to the bounds); overrides the warm
                start (and the kept elites) for this call.

        Returns:
            ``(H, A)`` the final mean (``return_mean``) or the best candidate seen. With
            ``warm_start`` it is also kept as the next plan's initial mean (unshifted: use
            :meth:`act` to advance it).

        Raises:
            NonFiniteObjectiveError: an iteration had no candidate with a finite return.
            ValueError: the objective returned the wrong shape.
        """
        cfg = self.cfg
        h, a = cfg.horizon, self.action_dim
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
            mean = self.centre.expand(h, a)
        std = (cfg.init_std * self.half_range).expand(h, a)
        min_std = cfg.min_std * self.half_range  # (A,)

        proposal = self._proposal
        proposal.start(carry_over=init_mean is None)
        neg_inf = torch.tensor(-math.inf, device=low.device)
        best_return = neg_inf
        best_seq = mean
        elite_log, best_log, nonfinite_log, evaluated = [], [], [], []
        for it, n in enumerate(proposal.sizes):
            # sample the population and keep it in the box: (N, H, A)
            samples = torch.addcmul(mean, std, proposal.noise(n)).clamp_(low, high)
            if proposal.evaluates_mean(it):
                samples[0] = mean
            samples = proposal.add_candidates(it, samples)  # iCEM: the last plan's elites

            returns = objective(samples)
            m = len(samples)
            if returns.shape != (m,):
                raise ValueError(
                    f"the objective must map action sequences (N, H, A) = {(m, h, a)} to returns "
                    f"of shape (N,) = ({m},), got {tuple(returns.shape)}"
                )
            returns = returns.to(device=low.device, dtype=torch.float32)
            finite = torch.isfinite(returns)
            if not bool(finite.any()):
                raise NonFiniteObjectiveError(
                    f"CEM iteration {it}: the objective returned no finite value for any of the "
                    f"{m} candidates; the model or cost produces NaN/inf (diverged weights? "
                    "bad input scaling?)"
                )
            scores = torch.where(finite, returns, neg_inf)  # non-finite ranks last
            nonfinite_log.append((~finite).sum())
            evaluated.append(m)
            samples, scores = proposal.add_evaluated(it, samples, scores)  # iCEM: kept elites

            # elites: (K, H, A); top.values sorted, so values[0] is the iteration's best
            top = torch.topk(scores, cfg.elites, sorted=True)
            elites = samples[top.indices]
            proposal.keep(elites, top.values)
            # refit to the finite elites only (fewer than K when many returns are non-finite)
            finite_top = torch.isfinite(top.values)
            w = finite_top.to(low.dtype)  # (K,)
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

            elite_log.append((w.flatten() * torch.where(finite_top, top.values, 0)).sum())
            best_log.append(top.values[0])

        solution = (mean if cfg.returns_mean else best_seq).clone()
        if cfg.warm_start:
            self._warm = solution
        self.last_info = CEMInfo(
            elite_return=torch.stack(elite_log),
            best_return=torch.stack(best_log),
            nonfinite=torch.stack(nonfinite_log),
            std=std,
            evaluated=tuple(evaluated),
        )
        return solution

    def act(self, objective: Objective) -> Tensor:
        """Plan and return the first action ``(A,)``; with ``warm_start``, shift the kept plan by one
        step (its last step restarts at the centre of the box), and with ``icem`` the kept elites
        too."""
        solution = self.plan(objective)
        if self.cfg.warm_start:
            self._warm = torch.cat([solution[1:], self.centre[None]], dim=0)
            self._proposal.shift()
        return solution[0].clone()


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether a generator on ``a`` can drive sampling on ``b`` (``cuda`` == ``cuda:current``)."""
    if a.type != b.type:
        return False
    if a.type == "cpu" or a.index is None or b.index is None:
        return True
    return a.index == b.index
