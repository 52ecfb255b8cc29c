"""Does the model predict rewards the way the planner uses them?

A reward planner ranks action sequences by the rewards the model imagines along open-loop
rollouts (learned prior, predicted embeddings fed back). Training fits the reward head one step at
a time on teacher-forced posterior states. :func:`reward_accuracy` measures both on episodes with
rewards (best: held-out ones, e.g. the RL loop's evaluation episodes):

* ``teacher_forced``: rewards predicted along the training forward (posterior samples, true
  frames in);
* ``imagined``: rewards of :meth:`~worldmodel.model.svg.WorldModel.imagine` from ``n_past`` observed
  frames under the episode's true actions (the mean over ``samples`` prior samples), what the
  planner scores;
* ``constant``: the best constant (the windows' mean reward), the floor any useful model beats.

Each is scored by the mean squared error per step and by the correlation of the ``horizon``-step
sums with the true sums over windows (ranking sums is the planner's job). An imagined correlation
near 0 while the teacher-forced one is high means the planner optimises noise although training
looks fine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from episode_format import Episode
from worldmodel.model.svg import WorldModel

__all__ = ["RewardAccuracy", "reward_accuracy"]


@dataclass
class RewardAccuracy:
    """Scores of :func:`reward_accuracy` (``nan`` where undefined, e.g. constant true sums)."""

    windows: int
    horizon: int
    teacher_forced_mse: float
    imagined_mse: float
    constant_mse: float
    teacher_forced_corr: float
    imagined_corr: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


@torch.no_grad()
def reward_accuracy(
    model: WorldModel,
    episodes: Sequence[Episode],
    horizon: int = 12,
    n_past: int = 2,
    samples: int = 4,
    stride: int | None = None,
    max_windows: int = 64,
    seed: int = 0,
) -> RewardAccuracy:
    """Score the model's reward predictions on windows of ``episodes`` (see the module docs).

    Args:
        model: a world model with a reward head (put in eval mode here).
        episodes: episodes with actions and rewards.
        horizon: imagined steps per window (the planner's horizon).
        n_past: observed frames before each rollout.
        samples: prior samples averaged per window (the planner's ``planner.samples``).
        stride: steps between window starts (default: ``horizon``, non-overlapping).
        max_windows: at most this many windows (the first ones).
        seed: of the posterior and prior samples.

    Raises:
        ValueError: the model has no reward head, or no episode has a full window.
    """
    if not model.has_reward:
        raise ValueError("reward_accuracy needs a model with a reward head (action_dim > 0)")
    stride = stride or horizon
    length = n_past + horizon  # frames per window
    obs, act, rew = [], [], []
    for ep in episodes:
        if ep.action is None or ep.reward is None:
            continue
        for s in range(0, ep.num_steps - length + 2, stride):
            if len(obs) == max_windows:
                break
            obs.append(torch.from_numpy(ep.obs[s : s + length]).permute(0, 3, 1, 2))
            act.append(torch.from_numpy(ep.action[s : s + length - 1]))
            rew.append(torch.from_numpy(ep.reward[s : s + length - 1]))
    if not obs:
        raise ValueError(f"no episode with actions and rewards has {length} frames")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = torch.stack(obs).to(device)  # (W, L, C, H, W)
        a = torch.stack(act).to(device).float()
        r = torch.stack(rew).float()  # (W, L-1)
        gen = torch.Generator(device=device).manual_seed(seed)
        out = model(x, a, r.to(device), n_past=n_past, generator=gen)
        teacher = out.reward[:, n_past - 1 :].float().cpu()  # rewards for a_{n_past-1}...
        state = model.observe(x[:, :n_past], a[:, : n_past - 1])
        imagined = model.imagine(state, a[:, n_past - 1 :], samples=samples, generator=gen)
        imag = imagined.reward.float().mean(1).cpu()  # (W, H)
    finally:
        model.train(was_training)
    target = r[:, n_past - 1 :]
    truth = target.sum(1).numpy()
    return RewardAccuracy(
        windows=len(obs),
        horizon=horizon,
        teacher_forced_mse=float((teacher - target).pow(2).mean()),
        imagined_mse=float((imag - target).pow(2).mean()),
        constant_mse=float((target - target.mean()).pow(2).mean()),
        teacher_forced_corr=_corr(teacher.sum(1).numpy(), truth),
        imagined_corr=_corr(imag.sum(1).numpy(), truth),
    )
