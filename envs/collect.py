"""Record episodes of a random policy: ``python -m envs.collect env=cheetah episodes=20 out=DIR``.

Options (configs/collect.yaml, :class:`envs.config.CollectConfig`): ``seed``, ``num_envs`` (parallel
environments through Gymnasium's vector API), ``vectorization=async|sync``, ``progress``, and any
env field (``env.size=128``, ``env.name=dmc:hopper-hop``, ...). New episodes continue the
numbering of the files already in ``out``.

Episode ``k`` (its file index) is reset with seed ``seed + k`` and its actions come from a
generator seeded with ``(seed, k)``, so the files are the same whatever ``num_envs`` is.

Vector envs run with Gymnasium's autoreset *disabled*: a finished sub-environment is reset
explicitly (``reset(options={"reset_mask": ...})``) with its next episode's seed. With the
default next-step autoreset, the step after an episode's end would return the reset frame with a
zero reward and ignore the action, which a recorder must special-case to avoid splicing two
episodes together; explicit resets leave nothing to special-case.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import hydra
import numpy as np
from gymnasium.vector import AutoresetMode
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig
from tqdm import tqdm

from envs.config import MISSING, CollectConfig
from envs.episodes import EpisodeRecorder, next_episode_index
from envs.registry import make_env_from_config, resolve_name
from wmcommon.cli import exit_on, preflight, to_dataclass

POLICIES = ("random",)
VECTORIZATIONS = ("async", "sync")

ConfigStore.instance().store(name="collect_schema", node=CollectConfig)


@dataclass
class _Episode:
    """One episode in flight in a sub-environment."""

    index: int
    recorder: EpisodeRecorder
    rng: np.random.Generator


def _validate(cfg: CollectConfig) -> None:
    if cfg.out in ("", MISSING):
        raise ValueError("out is required: the directory to write episodes to (out=DIR)")
    if cfg.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {cfg.episodes}")
    if cfg.num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {cfg.num_envs}")
    if cfg.seed < 0:
        raise ValueError(f"seed must be >= 0, got {cfg.seed}")
    if cfg.policy not in POLICIES:
        raise ValueError(f"unknown policy {cfg.policy!r}; available: {', '.join(POLICIES)}")
    if cfg.vectorization not in VECTORIZATIONS:
        raise ValueError(
            f"vectorization must be one of {', '.join(VECTORIZATIONS)}, got {cfg.vectorization!r}"
        )
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={cfg.out} exists and is not a directory")
    resolve_name(cfg.env.name)  # an unknown name fails here, before any process starts


def _make_vector_env(cfg: CollectConfig, num_envs: int) -> gym.vector.VectorEnv:
    make = functools.partial(make_env_from_config, cfg.env)
    if num_envs == 1 or cfg.vectorization == "sync":
        return gym.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=AutoresetMode.DISABLED)
    # "spawn": a fresh interpreter per worker, so no OpenGL / EGL state is inherited by fork.
    return gym.vector.AsyncVectorEnv(
        [make] * num_envs, autoreset_mode=AutoresetMode.DISABLED, context="spawn"
    )


def run(cfg: CollectConfig) -> dict[str, Any]:
    """Record ``cfg.episodes`` episodes into ``cfg.out``.

    Returns:
        ``{"out", "paths", "first_index", "episodes", "steps", "mean_return"}``.
    """
    _validate(cfg)
    out = Path(cfg.out)
    first_index = next_episode_index(out)
    num_envs = min(cfg.num_envs, cfg.episodes)
    vec = _make_vector_env(cfg, num_envs)
    try:
        action_dim = vec.single_action_space.shape[0]
        meta = dict(
            env=cfg.env.name,
            action_repeat=int(vec.get_attr("action_repeat")[0]),
            size=cfg.env.size,
            source="env",
            policy=cfg.policy,
        )
        next_index = first_index
        last_index = first_index + cfg.episodes - 1
        slots: list[_Episode | None] = [None] * num_envs
        paths: list[Path] = []
        returns: list[float] = []
        steps = 0

        def reset(mask: np.ndarray) -> None:
            """Reset the masked sub-envs, starting the next episodes in them while any are left."""
            nonlocal next_index
            seeds: list[int | None] = [None] * num_envs
            for i in np.flatnonzero(mask):
                slots[i] = None
                if next_index <= last_index:
                    seeds[i] = cfg.seed + next_index
                    slots[i] = _Episode(
                        next_index,
                        EpisodeRecorder(**meta),
                        np.random.default_rng([cfg.seed, next_index]),
                    )
                    next_index += 1
            obs, _ = vec.reset(seed=seeds, options={"reset_mask": mask})
            for i in np.flatnonzero(mask):
                if slots[i] is not None:
                    slots[i].recorder.reset(obs[i], seed=seeds[i])

        progress = tqdm(
            total=cfg.episodes, unit="episode", desc="collect", disable=not cfg.progress
        )
        reset(np.ones(num_envs, dtype=bool))
        while any(slot is not None for slot in slots):
            actions = np.zeros((num_envs, action_dim), dtype=np.float32)
            for i, slot in enumerate(slots):
                if slot is not None:
                    actions[i] = slot.rng.uniform(-1.0, 1.0, action_dim)
            obs, reward, terminated, truncated, infos = vec.step(actions)
            done = terminated | truncated
            # vector infos: an array of values and a "_<key>" mask per key
            no_error = np.zeros(num_envs, dtype=bool)
            physics_error = infos.get("physics_error", no_error) & infos.get(
                "_physics_error", no_error
            )
            for i, slot in enumerate(slots):
                if slot is None:
                    continue
                info = {"physics_error": bool(physics_error[i])}
                slot.recorder.step(actions[i], reward[i], terminated[i], truncated[i], obs[i], info)
                steps += 1
                if done[i]:
                    paths.append(slot.recorder.save(out, slot.index))
                    returns.append(slot.recorder.episode_return)
                    slots[i] = None
                    progress.update()
            # Disabled autoreset: every finished sub-env must be reset before the next step.
            if done.any() and (next_index <= last_index or any(s is not None for s in slots)):
                reset(done)
        progress.close()
    finally:
        vec.close()
    return {
        "out": str(out),
        "paths": paths,
        "first_index": first_index,
        "episodes": len(paths),
        "steps": steps,
        "mean_return": float(np.mean(returns)),
    }


@hydra.main(version_base="1.3", config_path="../configs", config_name="collect")
def main(cfg: DictConfig) -> None:
    with exit_on(ValueError, OSError):
        result = run(to_dataclass(cfg))
    last = result["first_index"] + result["episodes"] - 1
    print(
        f"wrote {result['episodes']} episodes (indices {result['first_index']}-{last}, "
        f"{result['steps']} steps, mean return {result['mean_return']:.2f}) to {result['out']}"
    )


if __name__ == "__main__":
    preflight("collect", CollectConfig, sys.argv)  # a bad command line: one line, before hydra runs
    main()
