"""Plain configuration dataclasses of the ``envs`` package (no hydra here).

The entry points register them in hydra's ConfigStore as structured configs, so a typo or a wrong
type in a command-line override fails at composition. ``"???"`` marks a required value (hydra /
OmegaConf's "missing" marker).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MISSING = "???"


@dataclass
class EnvConfig:
    """Which environment to make and how (``None`` = the task default from envs/defaults.py).

    Attributes:
        name: preset (cheetah, walker, cartpole, reacher, finger, cup, pendulum, halfcheetah,
            stub), ``dmc:<domain>-<task>`` or ``gym:<id>``.
        size: frame height and width in pixels.
        action_repeat: simulator steps per agent step.
        seed: seed of the first reset when it is given none.
        fast_render: cheaper MuJoCo offscreen settings (same image up to < 1/255 on average).
        camera: camera id to render from.
        max_episode_steps: time limit in agent steps (truncation), on top of the task's own.
        options: further keyword options of the environment class, e.g. ``{random_goal: true}``
            for the stub, ``{task_kwargs: {...}}`` for dm_control, ``{env_kwargs: {...}}`` for
            Gymnasium (override with ``+env.options.random_goal=true``).
    """

    name: str = "cheetah"
    size: int = 64
    action_repeat: int | None = None
    seed: int | None = None
    fast_render: bool = True
    camera: int | None = None
    max_episode_steps: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class CollectConfig:
    """``python -m envs.collect``: record episodes of a (random) policy to a directory.

    Attributes:
        env: the environment.
        episodes: number of episodes to record.
        out: directory of episode files; new episodes continue its numbering.
        seed: episode ``k`` (its file index) is reset with seed ``seed + k`` and its random
            actions are drawn from a generator seeded with ``(seed, k)``, so the files do not
            depend on ``num_envs`` and appending with the same seed gives new episodes.
        policy: ``random`` (uniform in [-1, 1]).
        num_envs: environments stepped in parallel through Gymnasium's vector API.
        vectorization: ``async`` (one process per env) or ``sync`` (one process).
        progress: show a tqdm progress bar.
    """

    env: EnvConfig = field(default_factory=EnvConfig)
    episodes: int = 20
    out: str = MISSING
    seed: int = 0
    policy: str = "random"
    num_envs: int = 1
    vectorization: str = "async"
    progress: bool = True


@dataclass
class ImportVideoConfig:
    """``python -m envs.import_video``: turn videos into action-free episodes.

    Attributes:
        src: a video file (mp4, avi, gif, mov, mkv, webm) or a directory of them.
        out: directory of episode files; new episodes continue its numbering.
        size: frame size in pixels (frames are center-cropped to a square, then resized).
        stride: keep every ``stride``-th frame.
        clip_length: frames per episode (after the stride); a video is cut into consecutive
            clips of this length and a shorter remainder is dropped. ``None``: one clip per video.
        max_clips: stop after this many clips in total (``None``: no limit).
        progress: show a tqdm progress bar.
    """

    src: str = MISSING
    out: str = MISSING
    size: int = 64
    stride: int = 1
    clip_length: int | None = 50
    max_clips: int | None = None
    progress: bool = True
