"""The stub pixel environment: API, exact dynamics, step encoding, optimal return."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from envs import StubPixelEnv, make_env
from envs.stub import GOAL_COLOUR, POINT_COLOUR


def test_passes_check_env_without_warnings():
    env = StubPixelEnv()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)


def test_preset_spaces_and_frames():
    env = make_env("stub", size=32)
    assert env.observation_space.shape == (32, 32, 3)
    assert env.observation_space.dtype == np.uint8
    assert env.action_space.shape == (2,)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    # The point is drawn at its position, in its colour; the goal at (0.5, 0.5) in another.
    row, col = env._pixel(info["pos"])
    assert tuple(obs[row, col]) == POINT_COLOUR
    goal_row, goal_col = env._pixel(np.array([0.5, 0.5]))
    if abs(goal_row - row) > 3 or abs(goal_col - col) > 3:
        assert tuple(obs[goal_row, goal_col]) == GOAL_COLOUR
    np.testing.assert_array_equal(env.render(), obs)


def test_no_action_repeat():
    with pytest.raises(ValueError, match="no action repeat"):
        make_env("stub", action_repeat=2)
    assert make_env("stub", action_repeat=1).action_repeat == 1


def test_the_stub_is_a_registry_family_like_the_others():
    from envs.registry import FAMILIES, resolve_name

    assert FAMILIES["stub"].env_class() is StubPixelEnv
    assert resolve_name("stub") == "stub"
    for bad in ("stub:x", "stub:"):
        with pytest.raises(ValueError, match="unknown environment"):
            resolve_name(bad)


def test_seeded_reset_is_reproducible():
    env = StubPixelEnv(random_goal=True)
    first, info1 = env.reset(seed=7)
    second, info2 = env.reset(seed=7)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(info1["goal"], info2["goal"])
    third, info3 = env.reset(seed=8)
    assert not np.array_equal(info1["pos"], info3["pos"])
    # The constructor seed makes the first unseeded reset reproducible.
    a, _ = StubPixelEnv(seed=3).reset()
    b, _ = StubPixelEnv(seed=3).reset()
    np.testing.assert_array_equal(a, b)


def test_step_encoding_matches_step_count():
    env = make_env("stub", encode_step=True, max_episode_steps=20)
    obs, _ = env.reset(seed=0)
    assert StubPixelEnv.decode_step(obs) == 0
    for t in range(1, 21):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert StubPixelEnv.decode_step(obs) == t
        assert not terminated
        assert truncated == (t == 20)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2))


def test_truncates_after_50_steps():
    env = StubPixelEnv()
    env.reset(seed=1)
    flags = [env.step(np.zeros(2))[2:4] for _ in range(50)]
    assert flags[-1] == (False, True)
    assert all(f == (False, False) for f in flags[:-1])
    # max_steps (the stub's own name) and max_episode_steps (the name all envs share) agree.
    for env in (make_env("stub", max_steps=5), make_env("stub", max_episode_steps=5)):
        env.reset(seed=0)
        assert [env.step(np.zeros(2))[3] for _ in range(5)] == [False] * 4 + [True]
        assert env.max_steps == env.max_episode_steps == 5
    with pytest.raises(ValueError, match="not both"):
        make_env("stub", max_steps=5, max_episode_steps=5)


def test_true_dynamics_matches_env_step():
    env = StubPixelEnv()
    _, info = env.reset(seed=2)
    rng = np.random.default_rng(0)
    goal = torch.as_tensor(env.goal)
    for _ in range(30):
        action = rng.uniform(-1.5, 1.5, 2)  # out-of-range actions are clipped by both
        pos = torch.as_tensor(env.pos)[None]
        _, reward, _, _, info = env.step(action)
        next_pos, model_reward = StubPixelEnv.true_dynamics(
            pos, torch.as_tensor(action)[None], goal
        )
        np.testing.assert_allclose(next_pos[0].numpy(), env.pos, atol=1e-12)
        np.testing.assert_allclose(model_reward[0].item(), reward, atol=1e-12)
        np.testing.assert_allclose(info["pos"], env.pos, atol=1e-6)


def test_true_dynamics_is_batched_and_rewards_the_goal():
    pos = torch.tensor([[0.5, 0.5], [0.4, 0.5], [-1.0, -1.0], [1.0, 1.0]])
    action = torch.tensor([[0.0, 0.0], [0.5, 0.0], [-1.0, -1.0], [1.0, 1.0]])
    next_pos, reward = StubPixelEnv.true_dynamics(pos, action, torch.tensor([0.5, 0.5]))
    assert next_pos.shape == (4, 2) and reward.shape == (4,)
    torch.testing.assert_close(next_pos[1], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(next_pos[2:], pos[2:])  # clipped at the walls
    torch.testing.assert_close(reward[:2], torch.ones(2))
    assert reward[2] == 0.0  # far from the goal: no reward
    expected = 1 - np.sqrt(0.5) / 0.5  # (1, 1) is sqrt(0.5) from the goal
    assert reward[3].item() == pytest.approx(max(0.0, expected))


def test_optimal_return_is_achieved_greedily_and_beats_random_play():
    env = StubPixelEnv()
    env.reset(seed=4)
    best = env.optimal_return()
    state = env.pos
    greedy_total = 0.0
    for _ in range(50):
        _, reward, *_ = env.step(StubPixelEnv.greedy_action(env.pos, env.goal))
        greedy_total += reward
    assert greedy_total == pytest.approx(best)
    assert best > 40  # reaches the goal within a few steps, then ~1 per step
    rng = np.random.default_rng(1)
    for _ in range(20):
        env.reset(seed=4)
        np.testing.assert_array_equal(env.pos, state)
        total = sum(env.step(rng.uniform(-1, 1, 2))[1] for _ in range(50))
        assert total < best
    env.reset(seed=4)
    assert env.optimal_return(horizon=3) < env.optimal_return(horizon=10)
