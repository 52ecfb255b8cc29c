"""The evaluation clips: which windows of the held-out episodes every model is scored on.

Each episode of ``F`` frames is cut into the windows of ``length`` frames starting at ``0, length,
2 length, ...`` (no overlap, so no two clips share a frame). :func:`select_clips` takes exactly
``num`` of them (an error when the data holds fewer); :func:`clips_up_to` takes all of them up to a
cap, which is what the evaluation does, and :func:`describe_selection` says which it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from worldmodel.data import EpisodeDataset

__all__ = ["Clips", "clip_windows", "select_clips", "clips_up_to", "describe_selection"]


@dataclass
class Clips:
    """The evaluation clips: every model sees exactly these.

    Attributes:
        obs: uint8 ``(N, L, 3, H, W)`` with ``L = n_past + n_future``.
        action: float32 ``(N, L-1, A)`` or None (action-free data).
        sources: ``(episode file, first frame)`` of each clip.
        available: the non-overlapping windows of ``L`` frames the data holds (``N`` of them were
            taken).
    """

    obs: Tensor
    action: Tensor | None
    sources: list[tuple[str, int]]
    available: int = 0

    def __len__(self) -> int:
        return int(self.obs.shape[0])


def clip_windows(dataset: EpisodeDataset, length: int) -> list[tuple[int, int]]:
    """``(episode index, first frame)`` of every non-overlapping window of ``length`` frames.

    Raises:
        ValueError: no episode holds ``length`` frames.
    """
    episodes = dataset.episodes
    windows = [
        (i, start)
        for i, ep in enumerate(episodes)
        for start in range(0, ep.num_frames - length + 1, length)
    ]
    if not windows:
        longest = max(ep.num_frames for ep in episodes)
        raise ValueError(
            f"n_past + n_future = {length} frames is longer than every episode of the data (the "
            f"longest has {longest} frames); lower n_past / n_future to at most {longest} frames "
            "in total, or evaluate on longer episodes"
        )
    return windows


def select_clips(dataset: EpisodeDataset, length: int, num: int | None, seed: int) -> Clips:
    """Draw exactly ``num`` distinct non-overlapping clips of ``length`` frames (all if None).

    ``num`` of the windows are drawn without replacement by a CPU generator seeded with ``seed``
    and kept in file order.

    Raises:
        ValueError: no episode holds ``length`` frames, or fewer than ``num`` clips exist.
    """
    windows = clip_windows(dataset, length)
    if num is None:
        chosen = list(range(len(windows)))
    elif num > len(windows):
        raise ValueError(
            f"num_videos={num} but the data offers only {len(windows)} non-overlapping clips of "
            f"{length} frames ({len(dataset.episodes)} episodes); set num_videos <= "
            f"{len(windows)} (num_videos=null takes them all), shorten the clips or add episodes"
        )
    else:
        gen = torch.Generator().manual_seed(seed)
        chosen = sorted(torch.randperm(len(windows), generator=gen)[:num].tolist())
    obs, action, sources = [], [], []
    for k in chosen:
        i, start = windows[k]
        ep = dataset.episodes[i]
        obs.append(torch.from_numpy(ep.obs[start : start + length]).permute(0, 3, 1, 2))
        if ep.action is not None:
            action.append(torch.from_numpy(ep.action[start : start + length - 1]))
        sources.append((ep.describe(), start))
    return Clips(
        obs=torch.stack(obs).contiguous(),
        action=torch.stack(action) if action else None,
        sources=sources,
        available=len(windows),
    )


def clips_up_to(dataset: EpisodeDataset, length: int, cap: int | None, seed: int) -> Clips:
    """All non-overlapping clips of ``length`` frames, at most ``cap`` of them (None: no cap).

    When the data holds more than ``cap`` windows, ``cap`` are drawn with ``seed`` exactly as
    :func:`select_clips` draws them; otherwise every window is taken, in file order.

    Raises:
        ValueError: no episode holds ``length`` frames.
    """
    available = len(clip_windows(dataset, length))
    return select_clips(dataset, length, None if cap is None else min(cap, available), seed)


def describe_selection(clips: Clips, length: int, cap: int | None, seed: int) -> str:
    """One sentence: how many clips were used, out of how many, and why."""
    n, available = len(clips), clips.available
    windows = f"non-overlapping windows of {length} frames"
    if n < available:
        drawn = f"drawn with seed {seed} (num_videos={cap})"
        return f"{n} of the {available} {windows} in the data, {drawn}"
    if cap is None:
        return f"all {n} {windows} in the data (num_videos=null: no cap)"
    if n < cap:
        return f"all {n} {windows} in the data: fewer than the cap num_videos={cap}"
    return f"all {n} {windows} in the data (num_videos={cap})"
