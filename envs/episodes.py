"""Recording episodes of an environment in the episode file format.

The format (arrays, file names, listing, validation, atomic writes and the in-memory
:class:`episode_format.Episode`) is defined once, in the leaf package :mod:`episode_format`, which
the readers of ``worldmodel`` share; its writer's functions are re-exported here. This module adds
the env side: :class:`EpisodeRecorder`, which every rollout of the project records with
(``envs.collect`` and the RL loop's ``agents.acting.run_episode``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from episode_format import (
    FORMAT,
    REQUIRED_META,
    Episode,
    episode_filename,
    episode_index,
    episode_paths,
    next_episode_index,
    save_episode,
)

__all__ = [
    "FORMAT",
    "REQUIRED_META",
    "Episode",
    "EpisodeRecorder",
    "episode_filename",
    "episode_index",
    "episode_paths",
    "next_episode_index",
    "save_episode",
]


class EpisodeRecorder:
    """Accumulates one episode step by step into an :class:`~episode_format.Episode`.

    Example::

        recorder = EpisodeRecorder(env="cheetah", action_repeat=4, size=64, source="env")
        obs, _ = env.reset(seed=0)
        recorder.reset(obs, seed=0)
        while not recorder.done:
            action = policy(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            recorder.step(action, reward, terminated, truncated, obs, info)
        recorder.save("data/cheetah", next_episode_index("data/cheetah"))

    An episode that an unstable simulation cut short (``info["physics_error"]``, see
    :class:`envs.base.PhysicsError`) gets ``"physics_error": true`` in its meta.

    Args:
        **meta: meta data common to all episodes (env, action_repeat, size, source, ...).
    """

    def __init__(self, **meta: Any) -> None:
        self._base_meta = dict(meta)
        self._meta: dict[str, Any] = {}
        self._obs: list[np.ndarray] = []
        self._action: list[np.ndarray] = []
        self._reward: list[float] = []
        self._terminated = False
        self._truncated = False

    def reset(self, obs: np.ndarray, **meta: Any) -> None:
        """Start an episode with its reset frame ``(H, W, 3)``; ``meta`` adds per-episode entries
        (e.g. ``seed``)."""
        self._meta = {**self._base_meta, **meta}
        self._meta.setdefault("size", int(np.shape(obs)[0]))
        self._meta.setdefault("seed", None)
        self._meta.setdefault("source", "env")
        self._obs = [np.array(obs, dtype=np.uint8)]
        self._action, self._reward = [], []
        self._terminated = self._truncated = False

    def step(
        self,
        action: np.ndarray,
        reward: float,
        terminated: bool,
        truncated: bool,
        next_obs: np.ndarray,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Record one transition: ``action`` (A,), the ``reward`` for it, the frame it led to and
        (optionally) the step's ``info``."""
        if not self._obs:
            raise RuntimeError("EpisodeRecorder.step() before reset()")
        if self.done:
            raise RuntimeError("EpisodeRecorder.step() after the episode ended: call reset()")
        self._action.append(np.array(action, dtype=np.float32))
        self._reward.append(float(reward))
        self._obs.append(np.array(next_obs, dtype=np.uint8))
        self._terminated, self._truncated = bool(terminated), bool(truncated)
        if info is not None and info.get("physics_error"):
            self._meta["physics_error"] = True

    @property
    def done(self) -> bool:
        """Whether the episode has terminated or been truncated."""
        return self._terminated or self._truncated

    def __len__(self) -> int:
        """Number of transitions T recorded so far."""
        return len(self._action)

    @property
    def episode_return(self) -> float:
        """Sum of the rewards so far."""
        return float(sum(self._reward))

    def episode(self) -> Episode:
        """The episode recorded so far (an unfinished one ends truncated at its last step)."""
        length = len(self)
        if length == 0:
            raise ValueError("an episode needs at least one transition")
        last = np.arange(length) == length - 1
        return Episode(
            obs=np.stack(self._obs),
            action=np.stack(self._action),
            reward=np.asarray(self._reward, dtype=np.float32),
            terminated=last & self._terminated,
            truncated=last & (self._truncated or not self._terminated),
            meta=dict(self._meta),
        )

    def save(self, directory: str | Path, index: int) -> Path:
        """Write the episode (an unfinished one is stored as truncated at its last step)."""
        return self.episode().save(directory, index)
