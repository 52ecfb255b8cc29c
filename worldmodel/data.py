"""Episodes on disk, sequence sampling and a bounded replay buffer.

Episode files
-------------
The format (``worldmodel-episode/1``: one compressed ``.npz`` per episode holding ``obs`` uint8
``(T+1, H, W, 3)``, ``action`` float32 ``(T, A)``, ``reward`` float32 ``(T,)``, ``terminated`` /
``truncated`` bool ``(T,)`` and a JSON ``meta``; files named ``episode-{index:06d}-{T}.npz``) is
defined once, in the leaf package :mod:`episode_format`, which the writers in ``envs`` share.
:class:`Episode`, :class:`EpisodeError`, :func:`load_episode` and :data:`EPISODE_FORMAT` are
re-exported from it.

Data flow
---------
:func:`load_episode` validates one file into an :class:`Episode` (frames stay uint8, ``H, W, 3`` as on
disk). :class:`EpisodeDataset` holds the episodes of a directory and :class:`ReplayBuffer` a bounded,
growing set of episodes for online RL; both are sampled by :class:`SequenceSampler`, which draws
windows of ``L`` consecutive frames uniformly over every valid start position and returns a
:class:`Batch` of torch tensors with frames ``(B, L, 3, H, W)`` uint8. The model converts frames to
float once, on its device: ``x = batch.obs.float() / 255``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from episode_format import FORMAT as EPISODE_FORMAT
from episode_format import (
    Episode,
    EpisodeError,
    check_episode,
    episode_index,
    episode_paths,
    load_episode,
)

__all__ = [
    "EPISODE_FORMAT",
    "Batch",
    "Episode",
    "EpisodeDataset",
    "EpisodeError",
    "ReplayBuffer",
    "SequenceSampler",
    "list_episode_files",
    "load_episode",
]

log = logging.getLogger(__name__)

_HOW_TO_CREATE = (
    "create episodes with `python -m envs.collect env=cheetah episodes=20 out=DIR` "
    "or import videos with `python -m envs.import_video src=... out=DIR`"
)


def list_episode_files(directory: str | os.PathLike) -> list[Path]:
    """The episode files of a directory, in the order of their index.

    The rule of :func:`episode_format.episode_paths` (files named ``episode-<index>-<T>.npz``;
    dot-files, such as the ``.<name>.tmp`` of an unfinished write, other names and
    subdirectories are ignored), with clear errors for a missing directory. Other ``*.npz`` files
    are named in a warning (pass them to :class:`EpisodeDataset` as a list to read them).

    Raises:
        FileNotFoundError: the directory does not exist.
        NotADirectoryError: the path is not a directory.
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"episode directory {directory} does not exist; {_HOW_TO_CREATE}")
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a directory of episode files")
    others = sorted(
        p.name
        for p in directory.glob("*.npz")
        if not p.name.startswith(".") and episode_index(p) is None
    )
    if others:
        log.warning(
            "ignoring %d .npz file(s) in %s not named episode-<index>-<T>.npz: %s",
            len(others),
            directory,
            ", ".join(others[:3]) + (", ..." if len(others) > 3 else ""),
        )
    return episode_paths(directory)


class _EpisodeCollection:
    """What :class:`EpisodeDataset` and :class:`ReplayBuffer` share: the episode list, consistency
    checks across episodes, and summary properties. :class:`SequenceSampler` reads ``episodes`` and
    ``version`` (incremented on every change)."""

    def __init__(self) -> None:
        self._episodes: list[Episode] = []
        self._version = 0

    @property
    def episodes(self) -> Sequence[Episode]:
        """The episodes, oldest first."""
        return self._episodes

    @property
    def version(self) -> int:
        """Changes whenever episodes are added or removed."""
        return self._version

    def _check_compatible(self, episode: Episode) -> None:
        """Raise ValueError if ``episode`` does not match the episodes already held."""
        if not self._episodes:
            return
        ref = self._episodes[0]
        name, ref_name = episode.describe(), ref.describe()
        if episode.frame_shape != ref.frame_shape:
            (h, w), (rh, rw) = episode.frame_shape, ref.frame_shape
            raise ValueError(
                f"{name} has {h}x{w} frames but {ref_name} has {rh}x{rw}; all episodes must have "
                "the same frame size (collect them with the same size=...)"
            )
        if episode.action_dim != ref.action_dim:
            has, want = (
                "no actions" if e.action_dim is None else f"{e.action_dim}-dim actions"
                for e in (episode, ref)
            )
            raise ValueError(
                f"{name} has {has} but {ref_name} has {want}; all episodes must come from the "
                "same action space"
            )
        if (episode.reward is None) != (ref.reward is None):
            has, want = ("no rewards" if e.reward is None else "rewards" for e in (episode, ref))
            raise ValueError(
                f"{name} has {has} but {ref_name} has {want}; do not mix reward-labelled and "
                "unlabelled episodes"
            )

    def _require_episodes(self) -> Episode:
        if not self._episodes:
            raise ValueError(f"{type(self).__name__} holds no episodes yet")
        return self._episodes[0]

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_frames(self) -> int:
        """Total number of frames, ``sum(T + 1)``."""
        return sum(e.num_frames for e in self._episodes)

    @property
    def num_steps(self) -> int:
        """Total number of transitions, ``sum(T)``."""
        return sum(e.num_steps for e in self._episodes)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(H, W)`` of every frame."""
        return self._require_episodes().frame_shape

    @property
    def image_size(self) -> int:
        """The side of the (square) frames, as the model's ``image_size`` argument expects."""
        h, w = self.frame_shape
        if h != w:
            raise ValueError(
                f"frames are {h}x{w}, not square; the world model expects square frames"
            )
        return h

    @property
    def action_dim(self) -> int | None:
        """``A``, or None for action-free video."""
        return self._require_episodes().action_dim

    @property
    def has_action(self) -> bool:
        return self._require_episodes().action is not None

    @property
    def has_reward(self) -> bool:
        return self._require_episodes().reward is not None

    @property
    def nbytes(self) -> int:
        """Bytes held by the episode arrays (frames dominate)."""
        return sum(e.nbytes for e in self._episodes)


class EpisodeDataset(_EpisodeCollection):
    """The episodes of a directory (or an explicit list of files), loaded into memory.

    Frames are stored once, as the uint8 ``(T+1, H, W, 3)`` array of each episode.

    Args:
        source: a directory of ``episode-*.npz`` files (read in the order of their index, see
            :func:`list_episode_files`), one episode file (any name), or a list of files.
        on_error: ``"skip"`` (default) drops unreadable or invalid files, records them in
            :attr:`skipped` and logs a warning; ``"raise"`` raises the first :class:`EpisodeError`.
        min_length: episodes with fewer frames (``T + 1``) than this are left out (recorded in
            :attr:`skipped` too, without being an error).

    Raises:
        FileNotFoundError: the directory does not exist.
        ValueError: no usable episode, or episodes that do not fit together (frame size, action
            size, rewards present or not), naming the first offending file.
    """

    def __init__(
        self,
        source: str | os.PathLike | Iterable[str | os.PathLike],
        *,
        on_error: str = "skip",
        min_length: int = 2,
    ) -> None:
        super().__init__()
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        if min_length < 1:
            raise ValueError(f"min_length must be >= 1 frame, got {min_length}")
        self.skipped: list[tuple[Path, str]] = []
        self.min_length = min_length

        if isinstance(source, (str, os.PathLike)):
            root = Path(source)
            paths = list_episode_files(root) if not root.is_file() else [root]
            where = str(root)
        else:
            paths = [Path(p) for p in source]
            where = "the given file list"
        if not paths:
            raise ValueError(
                f"no episode files (episode-<index>-<T>.npz) in {where}; {_HOW_TO_CREATE}"
            )

        errors: list[tuple[Path, str]] = []
        for path in paths:
            try:
                episode = load_episode(path)
            except (EpisodeError, FileNotFoundError) as e:
                if on_error == "raise":
                    raise
                errors.append((path, str(e)))
                self.skipped.append((path, str(e)))
                continue
            if episode.num_frames < min_length:
                self.skipped.append(
                    (path, f"{episode.num_frames} frames, fewer than min_length={min_length}")
                )
                continue
            self._check_compatible(episode)
            self._episodes.append(episode)

        if errors:
            log.warning(
                "skipped %d unreadable or invalid episode file(s) of %d in %s; first: %s",
                len(errors),
                len(paths),
                where,
                errors[0][1],
            )
        if not self._episodes:
            first = self.skipped[0][1] if self.skipped else ""
            raise ValueError(
                f"none of the {len(paths)} episode file(s) in {where} is usable (first problem: "
                f"{first}); {_HOW_TO_CREATE}"
            )

    @property
    def paths(self) -> list[Path]:
        """The files of the loaded episodes, in order."""
        return [e.path for e in self._episodes if e.path is not None]

    def __len__(self) -> int:
        """Number of episodes."""
        return len(self._episodes)

    def __getitem__(self, index: int) -> Episode:
        return self._episodes[index]

    def __repr__(self) -> str:
        return (
            f"EpisodeDataset(episodes={self.num_episodes}, frames={self.num_frames}, "
            f"frame_shape={self.frame_shape}, action_dim={self.action_dim}, "
            f"skipped={len(self.skipped)})"
        )


class ReplayBuffer(_EpisodeCollection):
    """A bounded buffer of whole episodes for the online RL loop.

    Frames are stored once (uint8, one array per episode, copied on insertion), so
    :attr:`nbytes` stays within a fraction of a percent of the raw frame bytes. When the total
    number of frames exceeds ``capacity_frames`` the oldest episodes are evicted. ``len(buffer)`` is
    the number of stored frames (the unit of the capacity).

    Args:
        capacity_frames: maximum number of frames held.
    """

    def __init__(self, capacity_frames: int) -> None:
        super().__init__()
        if int(capacity_frames) < 1:
            raise ValueError(f"capacity_frames must be >= 1, got {capacity_frames}")
        self.capacity_frames = int(capacity_frames)
        self._num_frames = 0

    def add_episode(
        self,
        obs: np.ndarray | Sequence[np.ndarray],
        action: np.ndarray | Sequence[np.ndarray] | None = None,
        reward: np.ndarray | Sequence[float] | None = None,
        terminated: np.ndarray | Sequence[bool] | None = None,
        truncated: np.ndarray | Sequence[bool] | None = None,
        *,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Copy in one finished episode, then evict the oldest episodes beyond capacity.

        Args:
            obs: uint8 ``(T+1, H, W, 3)`` (or a list of ``(H, W, 3)`` frames).
            action: ``(T, A)`` in ``[-1, 1]`` (any float dtype, stored as float32) or None.
            reward: ``(T,)`` (stored as float32) or None.
            terminated, truncated: ``(T,)`` bools; default all False.
            meta: optional metadata kept with the episode.

        Raises:
            ValueError: invalid arrays, an episode that does not match the others, or an episode
                longer than the capacity.
        """
        obs_arr = np.array(obs, copy=True)
        steps = obs_arr.shape[0] - 1 if obs_arr.ndim >= 1 else 0

        def as_float32(x: Any, name: str) -> np.ndarray | None:
            if x is None:
                return None
            arr = np.array(x, copy=True)
            if arr.dtype.kind != "f":
                raise ValueError(f"add_episode: {name} has dtype {arr.dtype}, expected floats")
            return arr.astype(np.float32, copy=False)

        def as_flags(x: Any) -> np.ndarray:
            if x is None:
                return np.zeros(steps, dtype=bool)
            return np.array(x, dtype=bool, copy=True)

        episode = Episode(
            obs=obs_arr,
            action=as_float32(action, "action"),
            reward=as_float32(reward, "reward"),
            terminated=as_flags(terminated),
            truncated=as_flags(truncated),
            meta=dict(meta or {}),
        )
        try:
            check_episode(
                episode.obs, episode.action, episode.reward, episode.terminated, episode.truncated
            )
        except ValueError as e:
            raise ValueError(f"add_episode: {e}") from None
        self.add(episode)

    def add(self, episode: Episode) -> None:
        """Append an already validated episode (e.g. from :func:`load_episode`), then evict."""
        if episode.num_frames > self.capacity_frames:
            raise ValueError(
                f"{episode.describe()} has {episode.num_frames} frames, more than the replay "
                f"capacity of {self.capacity_frames} frames; raise the capacity"
            )
        self._check_compatible(episode)
        self._episodes.append(episode)
        self._num_frames += episode.num_frames
        evicted = 0
        while self._num_frames > self.capacity_frames:
            self._num_frames -= self._episodes[evicted].num_frames
            evicted += 1
        del self._episodes[:evicted]
        self._version += 1

    @classmethod
    def from_directory(
        cls, directory: str | os.PathLike, capacity_frames: int, *, on_error: str = "skip"
    ) -> ReplayBuffer:
        """Rebuild a buffer from an episode directory (e.g. on resume).

        Keeps the newest episodes that fit in ``capacity_frames`` (the same episodes as adding every
        file in order), loading only those. An empty directory gives an empty buffer.

        Args:
            directory: the run's episode directory.
            capacity_frames: maximum number of frames held.
            on_error: ``"skip"`` (log a warning and go on) or ``"raise"`` for a bad file.

        Raises:
            FileNotFoundError: the directory does not exist.
        """
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        buffer = cls(capacity_frames)
        kept: list[Episode] = []
        total = 0
        for path in reversed(list_episode_files(directory)):
            try:
                episode = load_episode(path)
            except EpisodeError as e:
                if on_error == "raise":
                    raise
                log.warning("replay buffer: skipping %s", e)
                continue
            if total + episode.num_frames > buffer.capacity_frames:
                if not kept:  # the newest episode alone is too long: same error as add()
                    buffer.add(episode)
                break
            kept.append(episode)
            total += episode.num_frames
        for episode in reversed(kept):
            buffer.add(episode)
        return buffer

    @property
    def num_frames(self) -> int:
        return self._num_frames

    def __len__(self) -> int:
        """Number of stored frames."""
        return self._num_frames

    def __repr__(self) -> str:
        return (
            f"ReplayBuffer(frames={self._num_frames}/{self.capacity_frames}, "
            f"episodes={self.num_episodes})"
        )


@dataclass
class Batch:
    """A batch of sequences (CPU tensors as sampled; frames stay uint8 until on the device).

    Attributes:
        obs: uint8 ``(B, L, 3, H, W)``: ``L`` consecutive frames.
        action: float32 ``(B, L-1, A)``: ``action[:, t]`` leads from ``obs[:, t]`` to
            ``obs[:, t+1]``; None for action-free video.
        reward: float32 ``(B, L-1)``: the reward for ``action[:, t]``; None when unlabelled.
    """

    obs: Tensor
    action: Tensor | None = None
    reward: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.obs.shape[0])

    @property
    def seq_len(self) -> int:
        """``L``, the number of frames per sequence."""
        return int(self.obs.shape[1])

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Batch:
        """The batch on ``device`` (asynchronous copy from pinned memory to CUDA)."""

        def move(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.to(device, non_blocking=non_blocking)

        return Batch(obs=move(self.obs), action=move(self.action), reward=move(self.reward))

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory (needs CUDA)."""

        def pin(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.pin_memory()

        return Batch(obs=pin(self.obs), action=pin(self.action), reward=pin(self.reward))


class SequenceSampler:
    """Draws batches of ``seq_len`` consecutive frames (with the actions and rewards between them).

    Start positions are uniform over every valid window of every episode: an episode of ``F``
    frames offers ``F - L + 1`` windows, episodes shorter than ``L`` offer none. The source may grow
    (a :class:`ReplayBuffer`); the window index is rebuilt when its ``version`` changes. Gathering
    copies one contiguous slice per sequence straight into the output tensor, transposing
    ``HWC -> CHW`` on the way (no per-frame Python loop).

    Iterating yields batches forever; :meth:`sample` draws one.

    Args:
        source: an :class:`EpisodeDataset` or :class:`ReplayBuffer` (anything with ``episodes`` and
            ``version``).
        seq_len: ``L``, frames per sequence (>= 1).
        batch_size: ``B``.
        seed: seed of the sampler's own generator (deterministic draws).
        generator: a CPU ``torch.Generator`` to draw from instead of ``seed``. With neither, the
            generator is seeded from torch's global RNG (so ``seed_everything`` makes it
            reproducible).
        pin_memory: allocate batches in page-locked memory for fast ``batch.to("cuda")`` (needs CUDA).
    """

    def __init__(
        self,
        source: EpisodeDataset | ReplayBuffer,
        seq_len: int,
        batch_size: int,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        pin_memory: bool = False,
    ) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1 frame, got {seq_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seed is not None and generator is not None:
            raise ValueError("pass either seed or generator, not both")
        if pin_memory and not torch.cuda.is_available():
            raise ValueError(
                "pin_memory=True needs CUDA, which is not available; use pin_memory=False"
            )
        self.source = source
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.pin_memory = pin_memory
        if generator is None:
            if seed is None:
                seed = int(torch.randint(0, 2**62, (1,)).item())
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator
        self._index_version: int | None = None
        self._episodes: list[Episode] = []
        self._cum_windows = np.zeros(0, dtype=np.int64)
        self._first_window = np.zeros(0, dtype=np.int64)
        if isinstance(source, EpisodeDataset):  # immutable: fail early on an impossible seq_len
            self._refresh_index()

    @property
    def num_windows(self) -> int:
        """Number of distinct sequences the source currently offers."""
        self._refresh_index()
        return int(self._cum_windows[-1]) if len(self._cum_windows) else 0

    def _refresh_index(self) -> None:
        version = self.source.version
        if version == self._index_version:
            return
        episodes = list(self.source.episodes)
        if not episodes:
            raise ValueError(
                f"cannot sample: the {type(self.source).__name__} holds no episodes yet"
            )
        frames = np.fromiter((e.num_frames for e in episodes), dtype=np.int64, count=len(episodes))
        windows = np.maximum(frames - self.seq_len + 1, 0)
        if windows.sum() == 0:
            longest = int(np.argmax(frames))
            raise ValueError(
                f"sequence length {self.seq_len} exceeds every episode's length (the longest, "
                f"{episodes[longest].describe()}, has {frames[longest]} frames); use "
                f"seq_len <= {frames[longest]} or collect longer episodes"
            )
        self._episodes = episodes
        self._cum_windows = np.cumsum(windows)  # (E,)
        self._first_window = (
            self._cum_windows - windows
        )  # (E,) flat index of each episode's start 0
        self._index_version = version

    def sample(self) -> Batch:
        """Draw one batch.

        Returns:
            :class:`Batch` with ``obs`` uint8 ``(B, L, 3, H, W)``, ``action`` float32
            ``(B, L-1, A)`` or None, ``reward`` float32 ``(B, L-1)`` or None.
        """
        self._refresh_index()
        B, L = self.batch_size, self.seq_len
        # uniform over all windows -> (episode, start) pairs
        flat = torch.randint(int(self._cum_windows[-1]), (B,), generator=self.generator).numpy()
        ep_idx = np.searchsorted(self._cum_windows, flat, side="right")
        starts = flat - self._first_window[ep_idx]

        first = self._episodes[ep_idx[0]]
        H, W = first.frame_shape
        obs = torch.empty((B, L, 3, H, W), dtype=torch.uint8, pin_memory=self.pin_memory)
        obs_np = obs.numpy()  # shares memory (pinned or not)
        actions = [] if first.action is not None else None
        rewards = [] if first.reward is not None else None
        for b, (e, s) in enumerate(zip(ep_idx.tolist(), starts.tolist(), strict=True)):
            episode = self._episodes[e]
            # (L, H, W, 3) -> (L, 3, H, W) in one strided copy (numpy's is ~2x torch's copy_ here)
            obs_np[b] = episode.obs[s : s + L].transpose(0, 3, 1, 2)
            if actions is not None:
                actions.append(episode.action[s : s + L - 1])
            if rewards is not None:
                rewards.append(episode.reward[s : s + L - 1])
        action = None if actions is None else torch.from_numpy(np.stack(actions))  # (B, L-1, A)
        reward = None if rewards is None else torch.from_numpy(np.stack(rewards))  # (B, L-1)
        if self.pin_memory:
            action = None if action is None else action.pin_memory()
            reward = None if reward is None else reward.pin_memory()
        return Batch(obs=obs, action=action, reward=reward)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        return self.sample()
