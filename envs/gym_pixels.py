"""Gymnasium environments observed through their ``rgb_array`` rendering (``gym:<id>``)."""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec, load_env_creator

from envs.base import (
    PhysicsError,
    PixelEnv,
    configure_headless_gl,
    configure_mujoco_rendering,
    register_renderer_cleanup,
)
from envs.defaults import gym_defaults
from envs.image import resize, to_rgb


def _env_class(env_id: str) -> Any:
    """The registered entry point of a Gymnasium id (a class or a factory function)."""
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as err:
        raise ValueError(
            f"unknown Gymnasium id {env_id!r} ({err}); gym: names take any registered id, "
            "e.g. gym:Hopper-v5"
        ) from err
    if callable(spec.entry_point):
        return spec.entry_point
    return load_env_creator(spec.entry_point)


def _is_mujoco_env(creator: Any) -> bool:
    try:
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
    except ImportError:  # gymnasium installed without its mujoco extra
        return False
    return inspect.isclass(creator) and issubclass(creator, MujocoEnv)


_MUJOCO_LOG = logging.getLogger("mujoco")


def _log_mujoco_warning(message: str) -> None:
    """MuJoCo warnings go to Python logging (MuJoCo's default handler prints them and appends
    them to a MUJOCO_LOG.TXT in the working directory). Gymnasium's XMLs use ``settotalmass``,
    which MuJoCo 3.x deprecates: that warning says nothing actionable and is dropped."""
    if "'settotalmass' is deprecated" not in message:
        _MUJOCO_LOG.warning(message)


# MuJoCo warnings that mean the simulation blew up (MuJoCo then silently resets the state).
_UNSTABLE_WARNINGS = ("mjWARN_BADQPOS", "mjWARN_BADQVEL", "mjWARN_BADQACC")


class GymPixelEnv(PixelEnv):
    """A Gymnasium environment with continuous actions, observed as frames of its ``render()``.

    The environment's own observation is discarded. MuJoCo environments render at ``size``
    directly (their ``width`` / ``height`` arguments) with the fast offscreen settings; other
    environments' frames are resized (area average, no crop: a non-square frame is squashed).
    Time limits of the Gymnasium registration (e.g. 200 steps for Pendulum-v1, i.e. 100 agent
    steps with action repeat 2) are kept and reported as truncation. For MuJoCo environments a
    blown-up simulation (MuJoCo's bad qpos / qvel / qacc warnings) is a
    :class:`envs.base.PhysicsError`. The inner environment is available as ``env.gym_env``.

    Args:
        env_id: a registered Gymnasium id, e.g. ``"HalfCheetah-v5"``.
        size, action_repeat, camera, seed, fast_render, max_episode_steps, on_physics_error,
            render_mode: as for :class:`envs.dmc.DMCPixelEnv` (``camera`` is a MuJoCo camera id
            and works for MuJoCo environments only).
        env_kwargs: extra keyword arguments for ``gymnasium.make``.
    """

    def __init__(
        self,
        env_id: str,
        *,
        size: int = 64,
        action_repeat: int | None = None,
        camera: int | None = None,
        seed: int | None = None,
        fast_render: bool = True,
        max_episode_steps: int | None = None,
        on_physics_error: str = "truncate",
        env_kwargs: dict[str, Any] | None = None,
        render_mode: str | None = "rgb_array",
    ) -> None:
        configure_headless_gl()
        # Pygame-drawn environments (classic control) must never open a window.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        name = f"gym:{env_id}"
        creator = _env_class(env_id)
        if "rgb_array" not in getattr(creator, "metadata", {}).get("render_modes", ["rgb_array"]):
            raise ValueError(f"{name} cannot render frames (it has no 'rgb_array' render mode)")
        defaults = gym_defaults(env_id)
        action_repeat = defaults.action_repeat if action_repeat is None else action_repeat
        camera = defaults.camera if camera is None else camera
        self._is_mujoco = _is_mujoco_env(creator)
        kwargs = dict(env_kwargs or {})
        if self._is_mujoco:
            import mujoco

            mujoco.set_mju_user_warning(_log_mujoco_warning)
            kwargs.update(width=size, height=size)
            if camera is not None:
                kwargs["camera_id"] = camera
        elif camera is not None:
            raise ValueError(f"{name}: the camera option works for MuJoCo environments only")

        self._env = gym.make(env_id, render_mode="rgb_array", disable_env_checker=True, **kwargs)
        space = self._env.action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            self._env.close()
            raise ValueError(
                f"{name} has action space {space}; only 1-D continuous (Box) actions are supported"
            )
        fps = self._env.metadata.get("render_fps") or 30
        super().__init__(
            name=name,
            size=size,
            action_repeat=action_repeat,
            low=space.low,
            high=space.high,
            seed=seed,
            max_episode_steps=max_episode_steps,
            on_physics_error=on_physics_error,
            render_mode=render_mode,
            simulator_fps=fps,
        )
        self.camera = camera
        self.fast_render = fast_render
        self._inner_dtype = space.dtype
        self._warning_ids: list[int] = []
        if self._is_mujoco:
            model = self._env.unwrapped.model
            configure_mujoco_rendering(model, size, fast_render)
            self._warning_ids = [int(getattr(mujoco.mjtWarning, w)) for w in _UNSTABLE_WARNINGS]
        self._renderer_registered = False
        self.spec = EnvSpec(
            id=f"worldmodel/{name}",
            entry_point="envs.gym_pixels:GymPixelEnv",
            nondeterministic=False,
            kwargs=dict(
                env_id=env_id,
                size=size,
                action_repeat=action_repeat,
                camera=camera,
                seed=seed,
                fast_render=fast_render,
                max_episode_steps=max_episode_steps,
                on_physics_error=on_physics_error,
                env_kwargs=env_kwargs,
            ),
        )

    @property
    def gym_env(self) -> gym.Env:
        """The inner Gymnasium environment (as made by ``gymnasium.make``)."""
        return self._env

    def _reset_simulation(self, seed: int) -> None:
        self._env.reset(seed=seed)

    def _unstable_count(self) -> int:
        if not self._warning_ids:
            return 0
        warning = self._env.unwrapped.data.warning
        return sum(int(warning[i].number) for i in self._warning_ids)

    def _step_simulation(self, action: np.ndarray) -> tuple[float, bool, bool, dict[str, Any]]:
        before = self._unstable_count()
        _, reward, terminated, truncated, info = self._env.step(action.astype(self._inner_dtype))
        if self._unstable_count() > before:
            raise PhysicsError(f"{self.name}: unstable simulation (MuJoCo reset the state)")
        return float(reward), bool(terminated), bool(truncated), dict(info)

    def _render_frame(self) -> np.ndarray:
        frame = to_rgb(np.asarray(self._env.render()))
        if not self._renderer_registered:
            register_renderer_cleanup(self)
            self._renderer_registered = True
        if frame.shape[:2] != (self.size, self.size):
            return resize(frame, self.size)
        return np.array(frame)  # a new contiguous array (MuJoCo returns a flipped view)

    def _close_simulation(self) -> None:
        self._env.close()
