"""The episode file format, defined once: what ``envs`` writes and ``worldmodel`` reads.

A leaf package (it imports numpy only), so that ``envs``, which never imports ``worldmodel``, and
``worldmodel``, which never imports ``envs`` or Gymnasium, share one definition of the format,
the file names, the file listing, the in-memory :class:`Episode` and its validation.

One compressed ``.npz`` per episode, loadable with ``np.load(path, allow_pickle=False)``:

* ``obs``        uint8   ``(T+1, H, W, 3)``: ``obs[0]`` is the reset frame, ``obs[t+1]`` the frame
  after ``action[t]``.
* ``action``     float32 ``(T, A)`` in ``[-1, 1]``; absent from action-free (video) episodes.
* ``reward``     float32 ``(T,)``: ``reward[t]`` is the reward for ``action[t]`` (received with
  ``obs[t+1]``); absent from action-free episodes.
* ``terminated``, ``truncated`` bool ``(T,)``: only the last entry can be True.
* ``meta``       0-d unicode string holding a JSON object: ``{"format": "worldmodel-episode/1",
  "env", "action_repeat", "size", "seed", "source": "env" | "video", ...}`` (writers may add
  entries, e.g. ``policy``, or ``physics_error: true`` for an episode cut short by an unstable
  simulation).

Files are named ``episode-{index:06d}-{T}.npz`` and written atomically: a ``.<name>.tmp`` file
in the same directory is written, fsynced and renamed, so readers never see half a file. The
episode files of a directory are the files with such a name, in the order of their index
(:func:`episode_paths`); dot-files and other names are not episodes.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT",
    "REQUIRED_META",
    "Episode",
    "EpisodeError",
    "check_episode",
    "episode_filename",
    "episode_index",
    "episode_paths",
    "load_episode",
    "next_episode_index",
    "save_episode",
]

FORMAT = "worldmodel-episode/1"
#: Meta entries every writer must give (readers accept files without them).
REQUIRED_META = ("env", "action_repeat", "size", "seed", "source")
_FILENAME = re.compile(r"^episode-(\d{6,})-(\d+)\.npz$")
_REQUIRED_KEYS = ("obs", "terminated", "truncated", "meta")
_OPTIONAL_KEYS = ("action", "reward")
# float32 rounding of a clipped action can land a hair outside [-1, 1]
_ACTION_BOUND_TOL = 1e-5
# what np.load / zipfile / zlib raise on a truncated or corrupt archive
_ARCHIVE_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


class EpisodeError(ValueError):
    """An episode file that cannot be used: unreadable, truncated, or with invalid content.

    Attributes:
        path: the offending file (None for in-memory episodes).
        reason: what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str) -> None:
        super().__init__(path, reason)
        self.path = Path(path) if path is not None else None
        self.reason = reason

    def __str__(self) -> str:
        return f"bad episode file {self.path}: {self.reason}"


@dataclass(frozen=True, eq=False)
class Episode:
    """One episode in memory, with the arrays of its file.

    Attributes:
        obs: uint8 ``(T+1, H, W, 3)``.
        action: float32 ``(T, A)`` or None for action-free video.
        reward: float32 ``(T,)`` or None.
        terminated: bool ``(T,)``.
        truncated: bool ``(T,)``.
        meta: the metadata (JSON-serialisable).
        path: the file it was loaded from, or None.
    """

    obs: np.ndarray
    action: np.ndarray | None
    reward: np.ndarray | None
    terminated: np.ndarray
    truncated: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def num_frames(self) -> int:
        """``T + 1``."""
        return int(self.obs.shape[0])

    @property
    def num_steps(self) -> int:
        """``T``, the number of transitions (actions)."""
        return int(self.obs.shape[0]) - 1

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.obs.shape[1]), int(self.obs.shape[2])

    @property
    def action_dim(self) -> int | None:
        """``A``, or None for an action-free episode."""
        return None if self.action is None else int(self.action.shape[1])

    @property
    def total_reward(self) -> float:
        """The return: the sum of the rewards (0 for an action-free episode)."""
        return 0.0 if self.reward is None else float(self.reward.sum())

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays of the episode."""
        arrays = (self.obs, self.action, self.reward, self.terminated, self.truncated)
        return sum(a.nbytes for a in arrays if a is not None)

    def describe(self) -> str:
        """A short name for messages: the file name, or ``<in-memory episode>``."""
        return str(self.path) if self.path is not None else "<in-memory episode>"

    def save(self, directory: str | os.PathLike, index: int) -> Path:
        """Write it as episode ``index`` of ``directory`` with :func:`save_episode`."""
        return save_episode(
            directory,
            index,
            self.obs,
            self.action,
            self.reward,
            self.terminated,
            self.truncated,
            self.meta,
        )


# ------------------------------------------------------------------------------ file names


def episode_filename(index: int, length: int) -> str:
    """``episode-{index:06d}-{length}.npz`` (``length`` = T, the number of transitions)."""
    return f"episode-{index:06d}-{length}.npz"


def episode_index(path: str | os.PathLike) -> int | None:
    """The index in an episode file's name, or None if the name is not an episode file's."""
    match = _FILENAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def episode_paths(directory: str | os.PathLike) -> list[Path]:
    """The episode files of a directory in the order of their index (``[]`` for a missing
    directory). Dot-files (the ``.<name>.tmp`` of an unfinished write), other names and
    subdirectories are ignored."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(episode_index(p), p) for p in directory.iterdir() if p.is_file()]
    return [p for _, p in sorted((i, p) for i, p in found if i is not None)]


def next_episode_index(directory: str | os.PathLike) -> int:
    """One past the largest episode index in ``directory`` (0 if it holds none or is missing)."""
    paths = episode_paths(directory)
    return episode_index(paths[-1]) + 1 if paths else 0


# ------------------------------------------------------------------------------ validation


def check_episode(
    obs: np.ndarray,
    action: np.ndarray | None,
    reward: np.ndarray | None,
    terminated: np.ndarray,
    truncated: np.ndarray,
) -> None:
    """Raise ``ValueError(reason)`` unless the arrays form a valid episode (dtypes, shapes,
    finite values, actions in ``[-1, 1]``, flags set only at the last step)."""
    if obs.dtype != np.uint8:
        raise ValueError(f"obs has dtype {obs.dtype}, expected uint8 frames in [0, 255]")
    if obs.ndim != 4 or obs.shape[-1] != 3:
        raise ValueError(f"obs has shape {obs.shape}, expected (T+1, H, W, 3) RGB frames")
    if min(obs.shape[:3]) < 1:
        raise ValueError(
            f"obs has shape {obs.shape}: an episode needs at least one non-empty frame"
        )
    steps = obs.shape[0] - 1
    if action is not None:
        if action.dtype != np.float32:
            raise ValueError(f"action has dtype {action.dtype}, expected float32")
        if action.ndim != 2 or action.shape[0] != steps or action.shape[1] < 1:
            raise ValueError(
                f"action has shape {action.shape} but obs has {steps + 1} frames: expected "
                f"({steps}, A), one action between consecutive frames"
            )
        finite = np.isfinite(action).all(axis=1)
        if not finite.all():
            raise ValueError(f"action is not finite (NaN/inf) at step {int(np.argmin(finite))}")
        if action.size and np.abs(action).max() > 1 + _ACTION_BOUND_TOL:
            raise ValueError(
                f"action has values up to {np.abs(action).max():.4g} in magnitude; actions must be "
                "normalised to [-1, 1]"
            )
    if reward is not None:
        if reward.dtype != np.float32:
            raise ValueError(f"reward has dtype {reward.dtype}, expected float32")
        if reward.shape != (steps,):
            raise ValueError(
                f"reward has shape {reward.shape} but obs has {steps + 1} frames: expected "
                f"({steps},), one reward per action"
            )
        finite = np.isfinite(reward)
        if not finite.all():
            raise ValueError(f"reward is not finite (NaN/inf) at step {int(np.argmin(finite))}")
    for name, flags in (("terminated", terminated), ("truncated", truncated)):
        if flags.dtype != np.bool_:
            raise ValueError(f"{name} has dtype {flags.dtype}, expected bool")
        if flags.shape != (steps,):
            raise ValueError(f"{name} has shape {flags.shape}, expected ({steps},)")
        if steps > 1 and flags[:-1].any():
            raise ValueError(
                f"{name} is True at step {int(np.argmax(flags))} of {steps}; only the last step "
                "of an episode can end it"
            )


def _parse_meta(meta: np.ndarray) -> dict[str, Any]:
    if meta.ndim != 0 or meta.dtype.kind != "U":
        raise ValueError(
            f"meta is a {meta.dtype} array of shape {meta.shape}; expected a 0-d unicode string "
            "holding JSON"
        )
    try:
        decoded = json.loads(str(meta[()]))
    except json.JSONDecodeError as e:
        raise ValueError(f"meta is not valid JSON ({e})") from None
    if not isinstance(decoded, dict):
        raise ValueError(f"meta must be a JSON object, got {type(decoded).__name__}")
    fmt = decoded.get("format", FORMAT)
    if fmt != FORMAT:
        raise ValueError(f"unsupported episode format {fmt!r}; this version reads {FORMAT!r}")
    return decoded


# ------------------------------------------------------------------------------ writing


def save_episode(
    directory: str | os.PathLike,
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
        obs: uint8 ``(T+1, H, W, 3)`` with ``T >= 1``.
        action: ``(T, A)`` in [-1, 1] (stored as float32), or ``None`` for an action-free
            (video) episode.
        reward: ``(T,)`` (stored as float32), or ``None`` (with ``action=None``).
        terminated, truncated: bool ``(T,)``; only the last entry may be True.
        meta: JSON-serialisable; must hold :data:`REQUIRED_META`.

    Raises:
        ValueError: shapes, dtypes or meta do not follow the format, or a NaN / inf action or
            reward (the file would be refused by every reader, so it is not written).
        FileExistsError: an episode with this index exists.
        OSError: the file cannot be written (full disk, unwritable directory), naming it; no
            partial file is left.
    """
    directory = Path(directory)
    arrays: dict[str, np.ndarray] = {
        "obs": np.asarray(obs),
        "terminated": np.asarray(terminated),
        "truncated": np.asarray(truncated),
    }
    if action is not None:
        arrays["action"] = np.asarray(action, dtype=np.float32)
    if reward is not None:
        arrays["reward"] = np.asarray(reward, dtype=np.float32)
    try:
        if (action is None) != (reward is None):
            raise ValueError("action and reward must both be given, or both be None (video)")
        if arrays["obs"].ndim >= 1 and len(arrays["obs"]) < 2:
            raise ValueError("obs holds a single frame: an episode needs T >= 1 transitions")
        check_episode(
            arrays["obs"],
            arrays.get("action"),
            arrays.get("reward"),
            arrays["terminated"],
            arrays["truncated"],
        )
    except ValueError as e:
        raise ValueError(f"episode {index}: {e}; nothing was written") from None
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise ValueError(f"episode {index}: meta lacks {', '.join(missing)}")
    if meta.get("format", FORMAT) != FORMAT:
        raise ValueError(f"episode {index}: meta says format {meta['format']!r}, not {FORMAT!r}")
    arrays["meta"] = np.array(json.dumps({"format": FORMAT, **meta}))

    directory.mkdir(parents=True, exist_ok=True)
    clash = [p.name for p in directory.glob(f"episode-{index:06d}-*.npz")]
    if clash:
        raise FileExistsError(
            f"episode index {index} already exists in {directory} ({clash[0]}); "
            "use next_episode_index() to append"
        )
    path = directory / episode_filename(index, len(arrays["obs"]) - 1)
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


# ------------------------------------------------------------------------------ reading


def load_episode(path: str | os.PathLike) -> Episode:
    """Load and validate one episode file.

    Args:
        path: an ``episode-*.npz`` file (any name is read).

    Returns:
        The :class:`Episode`, with ``obs`` uint8 ``(T+1, H, W, 3)``.

    Raises:
        FileNotFoundError: the file does not exist.
        EpisodeError: the file is truncated or corrupt, holds pickled objects, or its content breaks
            the format (missing key, wrong dtype, inconsistent lengths, non-finite values, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"episode file {path} does not exist")
    try:
        archive = np.load(path, allow_pickle=False)
    except _ARCHIVE_ERRORS as e:
        raise EpisodeError(
            path, f"truncated, corrupt or not an .npz archive ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise EpisodeError(path, "not an .npz archive (a plain .npy array?)")

    arrays: dict[str, np.ndarray] = {}
    with archive:
        missing = [k for k in _REQUIRED_KEYS if k not in archive.files]
        if missing:
            raise EpisodeError(
                path, f"missing key(s) {missing}; found {sorted(archive.files)} (see {FORMAT})"
            )
        for key in _REQUIRED_KEYS + _OPTIONAL_KEYS:
            if key not in archive.files:
                continue
            try:
                arrays[key] = archive[key]
            except ValueError as e:
                if "allow_pickle" in str(e):
                    raise EpisodeError(
                        path, f"array {key!r} holds pickled Python objects, which are not allowed"
                    ) from e
                raise EpisodeError(path, f"cannot read array {key!r}: {e}") from e
            except _ARCHIVE_ERRORS as e:
                raise EpisodeError(
                    path,
                    f"truncated or corrupt archive while reading {key!r} ({type(e).__name__}: {e})",
                ) from e
    try:
        meta = _parse_meta(arrays["meta"])
        check_episode(
            arrays["obs"],
            arrays.get("action"),
            arrays.get("reward"),
            arrays["terminated"],
            arrays["truncated"],
        )
    except ValueError as e:
        raise EpisodeError(path, str(e)) from None
    return Episode(
        obs=arrays["obs"],
        action=arrays.get("action"),
        reward=arrays.get("reward"),
        terminated=arrays["terminated"],
        truncated=arrays["truncated"],
        meta=meta,
        path=path,
    )
