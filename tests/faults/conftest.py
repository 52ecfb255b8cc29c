"""Shared set-up of the fault tests: tiny stub data, tiny configs, the entry points as processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from envs.episodes import save_episode
from envs.stub import StubPixelEnv

ROOT = Path(__file__).resolve().parents[2]

# pretraining: a tiny model on 32 px stub episodes, every step checkpointed
PRETRAIN = [
    "model=tiny",
    "train.batch_size=2",
    "train.seq_len=4",
    "train.precision=fp32",
    "video_every=0",
    "log_every=1",
    "progress=false",
    "device=cpu",
]

# the RL loop: 10-step 32 px stub episodes, a tiny model, a small CEM search
LOOP = [
    "profile=cpu",
    "env=stub",
    "env.size=32",
    "env.max_episode_steps=10",
    "model=tiny",
    "model.M=1",
    "model.K=1",
    "train.batch_size=4",
    "train.seq_len=6",
    "train.precision=fp32",
    "train_steps=2",
    "planner.cem.population=16",
    "planner.cem.elites=4",
    "planner.cem.iterations=2",
    "planner.cem.horizon=3",
    "planner.precision=fp32",
    "seed_episodes=2",
    "episodes=4",
    "eval_every=1",
    "video_every=0",
    "strip_every=0",
    "device=cpu",
    "progress=false",
]


def write_stub_episodes(directory: Path, n: int = 3, steps: int = 12, size: int = 32) -> Path:
    """``n`` stub episodes of ``steps`` random actions (seeded) in the episode file format."""
    env = StubPixelEnv(size=size, max_steps=steps)
    rng = np.random.default_rng(0)
    for i in range(n):
        obs, _ = env.reset(seed=i)
        frames, actions, rewards = [obs], [], []
        for _ in range(steps):
            action = rng.uniform(-1, 1, 2).astype(np.float32)
            obs, reward, _, _, _ = env.step(action)
            frames.append(obs)
            actions.append(action)
            rewards.append(reward)
        truncated = np.arange(steps) == steps - 1
        meta = {"env": "stub", "action_repeat": 1, "size": size, "seed": i, "source": "env"}
        save_episode(
            directory,
            i,
            np.stack(frames),
            np.stack(actions),
            np.asarray(rewards, np.float32),
            np.zeros(steps, bool),
            truncated,
            meta,
        )
    return directory


def tmp_files(directory: Path) -> list[Path]:
    """Temporary files of interrupted atomic writes anywhere under ``directory``."""
    return sorted(p for p in Path(directory).rglob("*.tmp") if p.is_file())


def child_env(**extra: str) -> dict[str, str]:
    """The environment of an entry point run as a process: one thread, headless rendering."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MUJOCO_GL="egl", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def cli(
    module: str, *args: str, cwd: Path = ROOT, timeout: float = 180
) -> subprocess.CompletedProcess:
    """Run ``python -m module args...`` (no shell) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
    )


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """The non-empty stderr lines of a process."""
    return [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every fault test runs on one thread (tests/conftest.py); it also makes runs repeatable."""


@pytest.fixture(scope="session")
def stub_data(tmp_path_factory) -> Path:
    """Three 12-step 32 px stub episodes (read-only: tests copy it before breaking files)."""
    return write_stub_episodes(tmp_path_factory.mktemp("stub_data"))


@pytest.fixture
def pretrain_cfg(compose) -> Callable[..., object]:
    """``pretrain_cfg(*overrides)``: the composed PretrainConfig with :data:`PRETRAIN`."""
    from worldmodel import pretrain

    def make(*overrides: str):
        pretrain.register_configs()
        return OmegaConf.to_object(compose("pretrain", [*PRETRAIN, *overrides]))

    return make


@pytest.fixture
def loop_cfg(compose) -> Callable[..., object]:
    """``loop_cfg(*overrides)``: the composed CEMPlannerConfig with :data:`LOOP`."""
    from agents import cem_planner  # noqa: F401 - registers cem_planner_schema

    def make(*overrides: str):
        return OmegaConf.to_object(compose("cem_planner", [*LOOP, *overrides]))

    return make
