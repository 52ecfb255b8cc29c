"""GRAN's generative adversarial metric (GAM, Im et al. 2016): two GANs "battle".

Each model ``i`` has a generator ``G_i`` and a discriminator ``D_i`` (for world models: the
discriminator trained with the predictor). The error rate of a discriminator on a set ``x`` whose true
label is ``y`` (1 = real, 0 = generated) is

    err(D, x, y) = fraction of x that D classifies wrongly, with "real" iff logit >= 0 (p >= 0.5).

Then

    r_test    = err(D1, test, 1) / err(D2, test, 1)
    r_samples = err(D1, G2 samples, 0) / err(D2, G1 samples, 0)

``r_samples < 1``: G1's samples fool D2 more often than G2's samples fool D1 -> model 1 wins;
``r_samples > 1``: model 2 wins. The comparison is only meaningful when both discriminators are
equally good on real test data, i.e. ``r_test`` close to 1: otherwise a low ``r_samples`` may only
mean that one discriminator is biased towards "fake" (or over-fitted), and the battle is undecided.

Zero denominators are not hidden with an epsilon: ``0 / 0 = 1`` (both discriminators equally perfect)
and ``a / 0 = inf`` for ``a > 0``; the consequence for the verdict is explained in the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

__all__ = ["GAMResult", "TEST_RULES", "errors", "gam", "error_rate", "mcnemar_p"]

# when the two judges count as equally good on the real test data
TEST_RULES = ("ratio", "ratio_or_mcnemar")

Discriminator = Callable[..., Tensor]
Inputs = Tensor | Sequence[Tensor]


def _as_tuple(x: Inputs, name: str) -> tuple[Tensor, ...]:
    parts = (x,) if isinstance(x, Tensor) else tuple(x)
    if not parts or not all(isinstance(p, Tensor) for p in parts):
        raise ValueError(f"{name} must be a tensor or a tuple of tensors (e.g. (context, frame))")
    n = parts[0].shape[0]
    if any(p.shape[0] != n for p in parts):
        raise ValueError(
            f"{name}: the tensors of a (context, frame) tuple must have the same batch size, got "
            f"{[tuple(p.shape) for p in parts]}"
        )
    if n == 0:
        raise ValueError(f"{name} is empty")
    return parts


@torch.no_grad()
def error_rate(d: Discriminator, x: Inputs, label: int, batch_size: int = 256) -> float:
    """Fraction of ``x`` that ``d`` classifies wrongly.

    Args:
        d: maps a batch (or ``*x`` for a tuple, e.g. ``d(context, frame)``) to logits ``(N,)`` or
            ``(N, 1)``; positive logits mean "real".
        x: ``(N, ...)`` tensor or tuple of tensors with the same ``N``.
        label: the true label of all of ``x``: 1 (real) or 0 (generated).

    A logit of exactly 0 (probability 0.5) counts as "real".
    """
    wrong = errors(d, x, label, batch_size)
    return int(wrong.sum()) / wrong.shape[0]


@torch.no_grad()
def errors(d: Discriminator, x: Inputs, label: int, batch_size: int = 256) -> Tensor:
    """Which items of ``x`` ``d`` classifies wrongly: bool ``(N,)`` on the CPU (see
    :func:`error_rate` for the arguments)."""
    if label not in (0, 1):
        raise ValueError(f"label must be 0 (generated) or 1 (real), got {label}")
    parts = _as_tuple(x, "x")
    n = parts[0].shape[0]
    wrong = []
    for i in range(0, n, batch_size):
        logits = d(*(p[i : i + batch_size] for p in parts))
        if not isinstance(logits, Tensor):
            raise ValueError(
                f"the discriminator must return a tensor of logits, got {type(logits)}"
            )
        m = min(batch_size, n - i)
        if logits.shape not in ((m,), (m, 1)):
            raise ValueError(
                f"the discriminator must return one logit per sample, shape ({m},) or ({m}, 1), got "
                f"{tuple(logits.shape)}; reduce multi-scale outputs to one logit first"
            )
        predicted_real = logits.reshape(m) >= 0
        wrong.append((predicted_real != bool(label)).cpu())
    return torch.cat(wrong)


def mcnemar_p(wrong1: Tensor, wrong2: Tensor) -> float:
    """Exact two-sided McNemar test: the p-value of "the two judges err equally often" on the
    same items, from the items exactly one of them gets wrong (``b`` and ``c``): the probability
    of a split at least as uneven as ``min(b, c)`` of ``b + c`` under a fair coin."""
    b = int((wrong1 & ~wrong2).sum())
    c = int((~wrong1 & wrong2).sum())
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def _ratio(a: float, b: float) -> float:
    if a == b:
        return 1.0  # includes 0 / 0: both equally good (or equally bad)
    return math.inf if b == 0 else a / b


@dataclass(frozen=True)
class GAMResult:
    """Outcome of a GAM battle, with the error rates it is made of."""

    r_test: float
    r_samples: float
    winner: str  # "model1" | "model2" | "tie" | "undecided"
    explanation: str
    err_d1_test: float
    err_d2_test: float
    err_d1_on_g2: float
    err_d2_on_g1: float
    num_test: int
    num_samples_g1: int
    num_samples_g2: int
    test_tolerance: float
    tie_tolerance: float
    test_p: float = 1.0  # exact McNemar p-value: do D1 and D2 err equally often on the test data?
    test_rule: str = "ratio"

    def to_dict(self) -> dict:
        return asdict(self)


def gam(
    d1: Discriminator,
    d2: Discriminator,
    g1_samples: Inputs,
    g2_samples: Inputs,
    test_data: Inputs,
    test_tolerance: float = 0.2,
    tie_tolerance: float = 0.05,
    batch_size: int = 256,
    test_rule: str = "ratio",
    test_alpha: float = 0.05,
) -> GAMResult:
    """Run the GAM battle between model 1 ``(G1, D1)`` and model 2 ``(G2, D2)``.

    Args:
        d1, d2: discriminators, callables mapping a batch (or ``(context, frame)`` tuple, unpacked as
            ``d(context, frame)``) to logits ``(N,)`` / ``(N, 1)``, positive = real.
        g1_samples, g2_samples: samples of each generator (for world models: predicted frames, with
            the same context tuple structure as ``test_data``).
        test_data: held-out real data, never seen by either discriminator during training.
        test_tolerance: ``r_test`` counts as "close to 1" when ``|r_test - 1| <= test_tolerance``.
            Error rates from a few hundred samples are noisy: choose it (and report it) accordingly.
        tie_tolerance: ``|r_samples - 1| <= tie_tolerance`` is a tie.
        test_rule: ``"ratio"`` (GRAN's rule: the judges are equally good when ``r_test`` is within
            ``test_tolerance`` of 1) or ``"ratio_or_mcnemar"``: also when an exact McNemar test on
            their errors on the same test items cannot tell them apart (``test_p >= test_alpha``).
            Good judges err on almost no real frame, and a ratio of two near-zero counts (1 and 4
            errors in 1,000: ``r_test = 0.25``) fails GRAN's rule although the two are
            indistinguishable; the p-value is reported under either rule.
        test_alpha: the significance level of that test.

    Returns:
        A :class:`GAMResult`. ``winner`` is ``"model1"`` if ``r_samples < 1`` and ``r_test`` is close to
        1, ``"model2"`` if ``r_samples > 1`` and ``r_test`` is close to 1, ``"tie"`` if ``r_samples`` is
        within ``tie_tolerance`` of 1 (and ``r_test`` close to 1), and ``"undecided"`` when ``r_test``
        is not close to 1 (the discriminators differ on real data, so their errors on samples cannot be
        compared); ``explanation`` says why in words.
    """
    if test_rule not in TEST_RULES:
        raise ValueError(f"test_rule={test_rule!r}; expected one of {TEST_RULES}")
    test = _as_tuple(test_data, "test_data")
    s1 = _as_tuple(g1_samples, "g1_samples")
    s2 = _as_tuple(g2_samples, "g2_samples")
    w1_test, w2_test = errors(d1, test, 1, batch_size), errors(d2, test, 1, batch_size)
    e1_test = int(w1_test.sum()) / w1_test.shape[0]
    e2_test = int(w2_test.sum()) / w2_test.shape[0]
    test_p = mcnemar_p(w1_test, w2_test)
    e1_on_g2 = error_rate(d1, s2, 0, batch_size)
    e2_on_g1 = error_rate(d2, s1, 0, batch_size)
    r_test = _ratio(e1_test, e2_test)
    r_samples = _ratio(e1_on_g2, e2_on_g1)

    ratio_ok = abs(r_test - 1.0) <= test_tolerance
    same_judges = ratio_ok or (test_rule == "ratio_or_mcnemar" and test_p >= test_alpha)
    if not same_judges:
        winner = "undecided"
        explanation = (
            f"r_test = {r_test:.3g} is not within {test_tolerance} of 1: D1 errs on "
            f"{e1_test:.1%} of the real test data and D2 on {e2_test:.1%}, so the discriminators are "
            "not equally good judges and their errors on each other's samples are not comparable"
            f" (McNemar p = {test_p:.2g}"
            + (
                "; test_rule=ratio_or_mcnemar would count them as equal)"
                if test_rule == "ratio" and test_p >= test_alpha
                else ")"
            )
        )
    elif abs(r_samples - 1.0) <= tie_tolerance:
        winner = "tie"
        explanation = (
            f"r_samples = {r_samples:.3g} is within {tie_tolerance} of 1: G1's samples fool D2 "
            f"({e2_on_g1:.1%}) about as often as G2's samples fool D1 ({e1_on_g2:.1%})"
        )
    elif r_samples < 1.0:
        winner = "model1"
        explanation = (
            f"r_samples = {r_samples:.3g} < 1: G1's samples fool D2 ({e2_on_g1:.1%} errors) more "
            f"often than G2's samples fool D1 ({e1_on_g2:.1%}); r_test = {r_test:.3g}"
        )
    else:
        winner = "model2"
        explanation = (
            f"r_samples = {r_samples:.3g} > 1: G2's samples fool D1 ({e1_on_g2:.1%} errors) more "
            f"often than G1's samples fool D2 ({e2_on_g1:.1%}); r_test = {r_test:.3g}"
        )
    if same_judges and not ratio_ok:
        explanation += (
            f" (r_test = {r_test:.3g} is not within {test_tolerance} of 1, but the judges' test "
            f"errors are not distinguishable: McNemar p = {test_p:.2g} >= {test_alpha})"
        )
    if math.isinf(r_samples):
        explanation += " (D2 never mistook a G1 sample for real: the ratio is infinite)"
    if e1_test == e2_test == 0.0:
        explanation += " (both discriminators are perfect on the test data: r_test = 0/0 := 1)"
    return GAMResult(
        r_test=r_test,
        r_samples=r_samples,
        winner=winner,
        explanation=explanation,
        err_d1_test=e1_test,
        err_d2_test=e2_test,
        err_d1_on_g2=e1_on_g2,
        err_d2_on_g1=e2_on_g1,
        num_test=test[0].shape[0],
        num_samples_g1=s1[0].shape[0],
        num_samples_g2=s2[0].shape[0],
        test_tolerance=test_tolerance,
        tie_tolerance=tie_tolerance,
        test_p=test_p,
        test_rule=test_rule,
    )
