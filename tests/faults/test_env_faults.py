"""Environment faults in the RL loop: a MuJoCo physics error (a real unstable dm_control
simulation, forced by infinite joint velocities) ends that episode, is logged and counted, and the
run goes on to its configured number of episodes.

The environments' own handling (truncation with ``info["physics_error"]``, the last valid frame,
recovery on reset; dm_control and Gymnasium MuJoCo) is tested in tests/test_envs.py, and
:func:`agents.acting.run_episode` on a stub that reports one in tests/test_loop.py.
"""

from __future__ import annotations

import logging
import warnings

import gymnasium as gym
import numpy as np

from agents import loop
from envs.registry import make_env_from_config
from worldmodel.data import load_episode
from worldmodel.training.checkpoint import load_checkpoint


class _Unstable(gym.Wrapper):
    """A real env whose simulation blows up at step 3 of its second episode."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.resets = 0
        self.steps = 0

    def reset(self, **kwargs):
        self.resets += 1
        self.steps = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        self.steps += 1
        if self.resets == 2 and self.steps == 3:
            self.env.physics.data.qvel[:] = np.inf
        return self.env.step(action)


def test_a_physics_error_ends_the_episode_and_the_run_goes_on(
    loop_cfg, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(
        loop, "make_env_from_config", lambda cfg: _Unstable(make_env_from_config(cfg))
    )
    cfg = loop_cfg("env=cheetah", "env.size=32", "env.max_episode_steps=5", "episodes=4")
    with caplog.at_level(logging.WARNING, logger="agents.acting"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the env's own warning
        summary = loop.run(cfg, tmp_path)

    assert summary["episodes"] == 4 and summary["physics_errors"] == 1
    assert "the simulation became unstable after 3 steps: episode ended" in caplog.text
    names = sorted(p.name for p in (tmp_path / "episodes").iterdir())
    assert names == [f"episode-00000{i}-{3 if i == 1 else 5}.npz" for i in range(4)]
    cut = load_episode(tmp_path / "episodes" / names[1])
    assert cut.truncated[-1] and not cut.terminated.any()
    assert np.isfinite(cut.reward).all() and len(cut.obs) == 4  # the frames it had, no garbage
    assert summary["gradient_steps"] == 2 * 2  # training went on after it
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["extra"]["loop"]
    assert state["physics_errors"] == 1 and state["episodes"] == 4
