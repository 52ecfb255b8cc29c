"""worldmodel.evaluation.reward: teacher-forced vs imagined reward accuracy of a world model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from episode_format import Episode
from worldmodel.evaluation.reward import reward_accuracy
from worldmodel.model.svg import WorldModel

pytestmark = pytest.mark.usefixtures("one_thread")


def _episode(steps: int, seed: int) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        obs=rng.integers(0, 255, (steps + 1, 32, 32, 3), dtype=np.uint8),
        action=rng.uniform(-1, 1, (steps, 2)).astype(np.float32),
        reward=rng.uniform(0, 1, steps).astype(np.float32),
        terminated=np.zeros(steps, bool),
        truncated=np.zeros(steps, bool),
    )


def test_reward_accuracy_scores_both_paths_against_the_constant_floor(model_config):
    model = WorldModel(model_config("tiny"), 32, 2)
    episodes = [_episode(30, 0), _episode(30, 1), _episode(5, 2)]  # the last is too short
    acc = reward_accuracy(model, episodes, horizon=6, n_past=2, samples=2, stride=5)
    assert acc.windows == 2 * 5 and acc.horizon == 6  # starts 0, 5, ..., 20 per long episode
    assert model.training  # the mode is restored
    for name in ("teacher_forced_mse", "imagined_mse", "constant_mse"):
        assert math.isfinite(getattr(acc, name)) and getattr(acc, name) >= 0
    assert -1 <= acc.imagined_corr <= 1 and -1 <= acc.teacher_forced_corr <= 1
    again = reward_accuracy(model, episodes, horizon=6, n_past=2, samples=2, stride=5)
    assert again == acc  # seeded

    # a model whose reward head outputs the windows' true mean scores the constant floor
    target_mean = float(np.mean([e.reward[1:].mean() for e in episodes[:2]]))
    with torch.no_grad():
        last = model.reward_head[-1]
        last.weight.zero_()
        last.bias.fill_(target_mean)
    flat = reward_accuracy(model, episodes, horizon=6, n_past=2, samples=2, stride=5)
    assert flat.imagined_mse == pytest.approx(flat.constant_mse, rel=0.05)
    assert math.isnan(flat.imagined_corr)  # constant predictions: no ranking


def test_reward_accuracy_needs_rewards_and_long_enough_episodes(model_config):
    model = WorldModel(model_config("tiny"), 32, 2)
    with pytest.raises(ValueError, match="frames"):
        reward_accuracy(model, [_episode(5, 0)], horizon=6)
    free = WorldModel(model_config("tiny"), 32, 0)
    with pytest.raises(ValueError, match="reward head"):
        reward_accuracy(free, [_episode(30, 0)])
