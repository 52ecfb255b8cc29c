"""Pixel environments, episode files, data collection and video import.

Everything else in the project makes environments through :func:`make_env` (or
:func:`make_env_from_config`): uint8 ``(size, size, 3)`` frames, ``Box(-1, 1, (A,))`` actions,
action repeat with summed rewards, time limits as truncation. ``envs`` never imports
``worldmodel`` or ``agents``; dm_control and MuJoCo are imported only when such an env is made.

Entry points: ``python -m envs.collect`` and ``python -m envs.import_video``.
"""

from __future__ import annotations

from envs.base import PhysicsError, PixelEnv, rescale_action
from envs.config import CollectConfig, EnvConfig, ImportVideoConfig
from envs.episodes import EpisodeRecorder, next_episode_index, save_episode
from envs.registry import PRESETS, make_env, make_env_from_config
from envs.stub import StubPixelEnv

__all__ = [
    "PRESETS",
    "CollectConfig",
    "EnvConfig",
    "EpisodeRecorder",
    "ImportVideoConfig",
    "PhysicsError",
    "PixelEnv",
    "StubPixelEnv",
    "make_env",
    "make_env_from_config",
    "next_episode_index",
    "rescale_action",
    "save_episode",
]
