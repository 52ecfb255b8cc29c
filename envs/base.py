"""What every pixel environment shares: spaces, action rescaling, action repeat, time limits,
seeding, physics errors and a clean shutdown of MuJoCo's offscreen renderers.

:class:`PixelEnv` is a plain :class:`gymnasium.Env` (not a wrapper, so ``env.unwrapped is env``
and ``gymnasium.utils.env_checker.check_env(env)`` checks the real thing). Subclasses adapt one
simulator by implementing four hooks: ``_reset_simulation``, ``_step_simulation``,
``_render_frame`` and ``_close_simulation``.
"""

from __future__ import annotations

import atexit
import os
import sys
import warnings
import weakref
from typing import Any

import gymnasium as gym
import numpy as np

from wmcommon.checks import is_int

PHYSICS_ERROR_MODES = ("truncate", "raise")


class PhysicsError(RuntimeError):
    """The simulation became unstable (NaN / Inf / huge accelerations); the episode cannot go on.

    What ``env.step`` does about it is chosen with the ``on_physics_error`` option:

    - ``"truncate"`` (default): the episode ends, ``truncated=True``, ``terminated=False``,
      ``info["physics_error"] = True``; the observation is the last valid frame and the reward
      sums the repeated steps before the failure. A :class:`RuntimeWarning` is issued. Collection
      and planning loops (and Gymnasium's vector envs) then simply reset.
    - ``"raise"``: ``env.step`` raises this exception (dm_control's own
      ``dm_control.rl.control.PhysicsError`` is chained as ``__cause__``); reset before stepping on.
    """


def configure_headless_gl() -> None:
    """Default to EGL offscreen rendering on Linux when the user chose no OpenGL backend.

    Must run before dm_control or PyOpenGL is imported (both read the variables once). An explicit
    ``MUJOCO_GL`` (``egl``, ``osmesa``, ``glfw``) is always respected.
    """
    if sys.platform.startswith("linux"):
        os.environ.setdefault("MUJOCO_GL", "egl")
        if os.environ["MUJOCO_GL"] == "egl":
            os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def configure_mujoco_rendering(model: Any, size: int, fast: bool) -> None:
    """Set a MuJoCo model's offscreen rendering options; call it before the first render.

    ``fast=True`` keeps the image but cuts a 64x64 render to about a third of the time: the shadow
    map shrinks from 2048^2 (or the model's value) to 256^2, multisampling is turned off and the
    offscreen buffer is sized to the frame (``size`` x ``size``, so larger renders then fail).
    Frames differ from the default ones by well under 1/255 on average (``tests/test_envs.py``
    measures it). ``fast=False`` only grows the buffer if ``size`` exceeds it.

    Args:
        model: a ``mujoco.MjModel`` or dm_control's wrapped model (``physics.model``).
    """
    vis = model.vis
    if fast:
        vis.quality.shadowsize = 256
        vis.quality.offsamples = 0
        vis.global_.offwidth = size
        vis.global_.offheight = size
    else:
        vis.global_.offwidth = max(vis.global_.offwidth, size)
        vis.global_.offheight = max(vis.global_.offheight, size)


def rescale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map a normalised action in ``[-1, 1]`` (clipped first) linearly onto ``[low, high]``.

    Shapes: ``action``, ``low``, ``high`` broadcast together, e.g. all ``(A,)``; returns float64.
    """
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    return low + (a + 1.0) * 0.5 * (high - low)


# Pixel envs whose renderer is alive, closed at interpreter exit (see register_renderer_cleanup).
_LIVE_ENVS: weakref.WeakSet[PixelEnv] = weakref.WeakSet()


def _close_live_envs() -> None:
    for env in list(_LIVE_ENVS):
        env.close()


def register_renderer_cleanup(env: PixelEnv) -> None:
    """Make sure ``env``'s OpenGL context is freed at interpreter exit while the display lives.

    dm_control and MuJoCo's EGL backend each register ``eglTerminate`` with :mod:`atexit` when
    they first open the display. :mod:`atexit` runs hooks last-registered-first, so a context
    still alive at that point is later freed by a ``__del__`` on a terminated display, which prints
    ``Exception ignored in ... EGL_NOT_INITIALIZED`` tracebacks. Call this right after the env's
    first render (which is when those hooks get registered): re-registering our hook moves it to
    the top of the stack, so it closes every live env before any display is terminated.
    """
    _LIVE_ENVS.add(env)
    atexit.unregister(_close_live_envs)
    atexit.register(_close_live_envs)


def _as_int(value: Any, what: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (Python or numpy integers), else a ValueError."""
    if not is_int(value, minimum):
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class PixelEnv(gym.Env[np.ndarray, np.ndarray]):
    """Base class: uint8 ``(size, size, 3)`` frames, ``Box(-1, 1, (A,))`` actions, action repeat.

    - Actions are clipped to ``[-1, 1]`` and rescaled to the simulator's bounds.
    - One ``step`` repeats the action ``action_repeat`` times and returns the summed reward (the
      repeat stops early if the episode ends inside it).
    - ``max_episode_steps`` (agent steps, i.e. after action repeat) adds a time limit on top of
      the simulator's own; time limits are truncations (``truncated=True, terminated=False``).
    - Seeding: ``reset(seed=s)`` seeds ``self.np_random``, from which every reset draws the
      simulator's seed, so ``reset(seed=s)`` gives identical frames each time and the resets that
      follow it are reproducible too. The constructor's ``seed`` is used by the first reset when
      that reset is given none.
    - Physics errors: see :class:`PhysicsError` (``on_physics_error``).
    - ``render()`` returns (a copy of) the current observation frame.
    """

    # Read from the class by gymnasium.make; instances set their real frame rate.
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        *,
        name: str,
        size: int,
        action_repeat: int,
        low: np.ndarray,
        high: np.ndarray,
        seed: int | None,
        max_episode_steps: int | None,
        on_physics_error: str,
        render_mode: str | None,
        simulator_fps: float,
    ) -> None:
        """Validate and store the shared settings (subclasses create their simulator first).

        Args:
            name: canonical name for messages, e.g. ``"dmc:cheetah-run"``.
            low, high: ``(A,)`` bounds of the simulator's actions (finite).
            simulator_fps: simulator steps per second (``render_fps`` divides it by the repeat).
            Others: see the class docstring and :func:`envs.make_env`.
        """
        size = _as_int(size, f"{name}: size", minimum=1)
        action_repeat = _as_int(action_repeat, f"{name}: action_repeat", minimum=1)
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(
                f"{name}: max_episode_steps must be >= 1 or None, got {max_episode_steps}"
            )
        if on_physics_error not in PHYSICS_ERROR_MODES:
            raise ValueError(
                f"{name}: on_physics_error must be one of {PHYSICS_ERROR_MODES}, got {on_physics_error!r}"
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError(
                f"{name}: only render_mode='rgb_array' is supported, got {render_mode!r}"
            )
        if seed is not None:
            seed = _as_int(seed, f"{name}: seed", minimum=0)
        low = np.asarray(low, dtype=np.float64)
        high = np.asarray(high, dtype=np.float64)
        if (
            low.ndim != 1
            or low.shape != high.shape
            or not np.all(np.isfinite(low) & np.isfinite(high))
        ):
            raise ValueError(
                f"{name}: needs a 1-D action space with finite bounds, got low={low}, high={high}"
            )

        self.name = name
        self.size = size
        self.action_repeat = action_repeat
        self.max_episode_steps = max_episode_steps
        self.on_physics_error = on_physics_error
        self.render_mode = "rgb_array"
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": simulator_fps / action_repeat}
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8, seed=seed)
        self.action_space = gym.spaces.Box(-1.0, 1.0, low.shape, np.float32, seed=seed)
        self._low, self._high = low, high
        self._seed = seed
        self._steps = 0
        self._episode_over = False
        self._last_obs: np.ndarray | None = None
        self._closed = False

    # ---- hooks for subclasses -------------------------------------------------------------
    def _reset_simulation(self, seed: int) -> None:
        """Start a new episode of the simulator, seeded with ``seed``."""
        raise NotImplementedError

    def _step_simulation(self, action: np.ndarray) -> tuple[float, bool, bool, dict[str, Any]]:
        """One simulator step with the rescaled action ``(A,)``.

        Returns ``(reward, terminated, truncated, info)``; raises :class:`PhysicsError`.
        """
        raise NotImplementedError

    def _render_frame(self) -> np.ndarray:
        """A new uint8 ``(size, size, 3)`` array showing the current state."""
        raise NotImplementedError

    def _close_simulation(self) -> None:
        """Free the simulator and its renderer."""

    # ---- gymnasium API --------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; returns ``(obs (size, size, 3) uint8, info)``."""
        if seed is None and self._np_random is None:
            seed = self._seed
        super().reset(seed=seed)
        self._reset_simulation(int(self.np_random.integers(2**31 - 1)))
        self._steps = 0
        self._episode_over = False
        self._last_obs = self._render_frame()
        return self._last_obs.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` (A,) in [-1, 1] for ``action_repeat`` simulator steps.

        Returns ``(obs, summed reward, terminated, truncated, info)``.
        """
        if self._last_obs is None or self._episode_over:
            raise RuntimeError(f"{self.name}: call reset() before step() (the episode is over)")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape or not np.all(np.isfinite(action)):
            raise ValueError(
                f"{self.name}: expected a finite action of shape {self.action_space.shape}, "
                f"got {action!r}"
            )
        real_action = rescale_action(action, self._low, self._high)
        reward, terminated, truncated = 0.0, False, False
        info: dict[str, Any] = {}
        physics_error = False
        for _ in range(self.action_repeat):
            try:
                step_reward, terminated, truncated, info = self._step_simulation(real_action)
            except PhysicsError as err:
                self._episode_over = True
                if self.on_physics_error == "raise":
                    raise
                warnings.warn(f"{err}; the episode is truncated", RuntimeWarning, stacklevel=2)
                physics_error = truncated = True
                break
            reward += step_reward
            if terminated or truncated:
                break
        self._steps += 1
        if self.max_episode_steps is not None and self._steps >= self.max_episode_steps:
            truncated = True
        truncated = truncated and not terminated
        self._episode_over = terminated or truncated
        info = dict(info)
        if physics_error:
            info["physics_error"] = True
        else:
            self._last_obs = self._render_frame()
        return self._last_obs.copy(), float(reward), bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray:
        """The current frame, uint8 ``(size, size, 3)`` (the last observation)."""
        if self._last_obs is None:
            raise RuntimeError(f"{self.name}: call reset() before render()")
        return self._last_obs.copy()

    def close(self) -> None:
        """Free the simulator and its OpenGL context; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        _LIVE_ENVS.discard(self)
        self._close_simulation()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, size={self.size}, "
            f"action_repeat={self.action_repeat})"
        )
