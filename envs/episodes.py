"""Writing episodes to disk in the project's episode format (read by ``worldmodel/data.py``).

One compressed ``.npz`` per episode, loadable with ``np.load(path, allow_pickle=False)``:

- ``obs`` uint8 ``(T+1, H, W, 3)``: ``obs[0]`` is the reset frame, ``obs[t+1]`` the frame after
  ``action[t]``;
- ``action`` float32 ``(T, A)`` in [-1, 1] and ``reward`` float32 ``(T,)`` (``reward[t]`` is
  received with ``obs[t+1]``); both absent from action-free (video) episodes;
- ``terminated``, ``truncated`` bool ``(T,)`` (only the last entry can be True);
- ``meta``: a 0-d unicode array holding JSON ``{"format": "worldmodel-episode/1", "env",
  "action_repeat", "size", "seed", "source": "env" | "video", ...}``.

Files are named ``episode-{index:06d}-{T}.npz`` and written atomically: a ``.<name>.tmp`` file in
the same directory is written, fsynced and renamed, so readers never see half a file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "worldmodel-episode/1"
EPISODE_RE = re.compile(r"^episode-(\d{6,})-(\d+)\.npz$")
REQUIRED_META = ("env", "action_repeat", "size", "seed", "source")


def episode_filename(index: int, length: int) -> str:
    """``episode-{index:06d}-{length}.npz`` (``length`` = T, the number of transitions)."""
    return f"episode-{index:06d}-{length}.npz"


def episode_paths(directory: str | Path) -> list[Path]:
    """Episode files of a directory sorted by index (dot-files and other names are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := EPISODE_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def next_episode_index(directory: str | Path) -> int:
    """One past the largest episode index in ``directory`` (0 if it holds none or is missing)."""
    paths = episode_paths(directory)
    return int(EPISODE_RE.match(paths[-1].name).group(1)) + 1 if paths else 0


def save_episode(
    directory: str | Path,
    index: int,
    obs: np.ndarray,
    action: np.ndarray | None,
    reward: np.ndarray | None,
    terminated: np.ndarray,
    truncated: np.ndarray,
    meta: Mapping[str, Any],
) -> Path:
    """Validate one episode and write it atomically; returns the file's path.

    Args:
        directory: created if missing.
        index: episode index (file name); an existing episode with this index is an error.
        obs: uint8 ``(T+1, H, W, 3)``.
        action: ``(T, A)`` in [-1, 1], or ``None`` for an action-free (video) episode.
        reward: ``(T,)``, or ``None`` (with ``action=None``).
        terminated, truncated: bool ``(T,)``; only the last entry may be True.
        meta: JSON-serialisable; must hold env, action_repeat, size, seed and source.

    Raises:
        ValueError: shapes, dtypes or meta do not follow the format, or a NaN / inf action or
            reward (the file would be refused by every reader, so it is not written).
        FileExistsError: an episode with this index exists.
        OSError: the file cannot be written (full disk, unwritable directory), naming it; no
            partial file is left.
    """
    directory = Path(directory)
    obs = np.asarray(obs)
    if obs.dtype != np.uint8 or obs.ndim != 4 or obs.shape[-1] != 3 or len(obs) < 2:
        raise ValueError(
            f"obs must be uint8 (T+1, H, W, 3) with T >= 1, got {obs.dtype} {obs.shape}"
        )
    length = len(obs) - 1
    arrays: dict[str, np.ndarray] = {"obs": obs}
    if (action is None) != (reward is None):
        raise ValueError("action and reward must both be given, or both be None (video)")
    if action is not None:
        action = np.asarray(action, dtype=np.float32)
        reward = np.asarray(reward, dtype=np.float32)
        if action.ndim != 2 or len(action) != length:
            raise ValueError(f"action must have shape (T={length}, A), got {action.shape}")
        if reward.shape != (length,):
            raise ValueError(f"reward must have shape (T={length},), got {reward.shape}")
        for key, values in (("action", action), ("reward", reward)):
            finite = np.isfinite(values.reshape(length, -1)).all(axis=1)
            if not finite.all():  # readers refuse such a file: never write one
                raise ValueError(
                    f"episode {index}: {key} is not finite (NaN or inf) at step "
                    f"{int(np.argmin(finite))}; nothing was written"
                )
        if not np.all(np.abs(action) <= 1.0):
            raise ValueError("actions must lie in [-1, 1] (normalised actions)")
        arrays.update(action=action, reward=reward)
    for key, flags in (("terminated", terminated), ("truncated", truncated)):
        flags = np.asarray(flags)
        if flags.shape != (length,) or flags.dtype != np.bool_:
            raise ValueError(
                f"{key} must be bool of shape (T={length},), got {flags.dtype} {flags.shape}"
            )
        if flags[:-1].any():
            raise ValueError(f"{key} is True before the last step: an episode ends only once")
        arrays[key] = flags
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise ValueError(f"episode meta lacks {', '.join(missing)}")
    arrays["meta"] = np.array(json.dumps({"format": FORMAT, **meta}))

    directory.mkdir(parents=True, exist_ok=True)
    clash = [p.name for p in directory.glob(f"episode-{index:06d}-*.npz")]
    if clash:
        raise FileExistsError(
            f"episode index {index} already exists in {directory} ({clash[0]}); "
            "use next_episode_index() to append"
        )
    path = directory / episode_filename(index, length)
    tmp = directory / f".{path.name}.tmp"
    try:
        with open(tmp, "wb") as f:  # a file object: numpy appends no .npz suffix
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # e.g. a full disk: name the file, keep the errno
        tmp.unlink(missing_ok=True)
        raise OSError(
            e.errno,
            f"cannot write episode {path} ({e.strerror or e}); the episodes written before it "
            "are intact",
        ) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class EpisodeRecorder:
    """Accumulates one episode step by step, then writes it with :func:`save_episode`.

    Example::

        recorder = EpisodeRecorder(env="cheetah", action_repeat=4, size=64, source="env")
        obs, _ = env.reset(seed=0)
        recorder.reset(obs, seed=0)
        while not recorder.done:
            action = policy(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            recorder.step(action, reward, terminated, truncated, obs)
        recorder.save("data/cheetah", next_episode_index("data/cheetah"))

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
    ) -> None:
        """Record one transition: ``action`` (A,), the ``reward`` for it and the frame it led to."""
        if not self._obs:
            raise RuntimeError("EpisodeRecorder.step() before reset()")
        if self.done:
            raise RuntimeError("EpisodeRecorder.step() after the episode ended: call reset()")
        self._action.append(np.array(action, dtype=np.float32))
        self._reward.append(float(reward))
        self._obs.append(np.array(next_obs, dtype=np.uint8))
        self._terminated, self._truncated = bool(terminated), bool(truncated)

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

    def save(self, directory: str | Path, index: int) -> Path:
        """Write the episode (an unfinished one is stored as truncated at its last step)."""
        length = len(self)
        if length == 0:
            raise ValueError("cannot save an episode without transitions")
        terminated = np.zeros(length, dtype=bool)
        truncated = np.zeros(length, dtype=bool)
        terminated[-1] = self._terminated
        truncated[-1] = self._truncated or not self._terminated
        return save_episode(
            directory,
            index,
            obs=np.stack(self._obs),
            action=np.stack(self._action),
            reward=np.asarray(self._reward, dtype=np.float32),
            terminated=terminated,
            truncated=truncated,
            meta=self._meta,
        )
