"""dm_control suite tasks as pixel Gymnasium environments (``dmc:<domain>-<task>``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from gymnasium.envs.registration import EnvSpec

from envs.base import (
    PhysicsError,
    PixelEnv,
    configure_headless_gl,
    configure_mujoco_rendering,
    register_renderer_cleanup,
)
from envs.defaults import dmc_defaults


class _DropHarmlessCompilerWarnings(logging.Filter):
    """dm_control's suite XMLs use ``settotalmass``, which MuJoCo 3.x deprecates: each model load
    logs a warning through absl that says nothing actionable to our users."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "'settotalmass' is deprecated" not in record.getMessage()


def _dm_control() -> tuple[Any, type[Exception]]:
    """``(dm_control.suite, dm_control's PhysicsError)``, imported once a GL backend is chosen."""
    configure_headless_gl()
    from dm_control import suite
    from dm_control.rl.control import PhysicsError as DMPhysicsError

    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _DropHarmlessCompilerWarnings) for f in absl_logger.filters):
        absl_logger.addFilter(_DropHarmlessCompilerWarnings())
    return suite, DMPhysicsError


def dmc_tasks() -> list[str]:
    """All dm_control suite tasks as ``domain-task`` strings."""
    suite, _ = _dm_control()
    return [f"{domain}-{task}" for domain, task in suite.ALL_TASKS]


class DMCPixelEnv(PixelEnv):
    """A dm_control suite task observed through one camera (see :class:`envs.base.PixelEnv`).

    Episodes end by dm_control's time limit (1000 simulator steps for most tasks, i.e.
    ``1000 / action_repeat`` agent steps), reported as ``truncated=True``; a task that ends an
    episode with discount 0 reports ``terminated=True``. The dm_control environment is available
    as ``env.dm_env`` and its physics as ``env.physics``.

    Args:
        domain, task: a dm_control suite task, e.g. ``"cheetah", "run"``.
        size: frame height and width.
        action_repeat: ``None`` = the domain default (``envs.defaults.DMC_DEFAULTS``).
        camera: camera id; ``None`` = the domain default.
        seed: seed of the first reset when it is given none.
        fast_render: cheaper offscreen settings (:func:`envs.base.configure_mujoco_rendering`).
        max_episode_steps: extra time limit in agent steps.
        on_physics_error: ``"truncate"`` or ``"raise"`` (:class:`envs.base.PhysicsError`).
        task_kwargs: extra keyword arguments of ``suite.load``'s task (e.g. ``time_limit``).
        render_mode: only ``"rgb_array"``.
    """

    def __init__(
        self,
        domain: str,
        task: str,
        *,
        size: int = 64,
        action_repeat: int | None = None,
        camera: int | None = None,
        seed: int | None = None,
        fast_render: bool = True,
        max_episode_steps: int | None = None,
        on_physics_error: str = "truncate",
        task_kwargs: dict[str, Any] | None = None,
        render_mode: str | None = "rgb_array",
    ) -> None:
        suite, self._dm_physics_error = _dm_control()
        name = f"dmc:{domain}-{task}"
        if (domain, task) not in suite.ALL_TASKS:
            domains = sorted({d for d, _ in suite.ALL_TASKS})
            if domain in domains:
                tasks = sorted(t for d, t in suite.ALL_TASKS if d == domain)
                hint = f"tasks of {domain}: {', '.join(tasks)}"
            else:
                hint = f"domains: {', '.join(domains)}"
            raise ValueError(f"unknown dm_control task {name!r}; {hint}")
        defaults = dmc_defaults(domain)
        action_repeat = defaults.action_repeat if action_repeat is None else action_repeat
        camera = defaults.camera if camera is None else camera
        task_kwargs = dict(task_kwargs or {})
        task_kwargs.setdefault("random", seed)

        self._env = suite.load(domain, task, task_kwargs=task_kwargs)
        physics = self._env.physics
        if not 0 <= camera < physics.model.ncam:
            self._env.physics.free()
            raise ValueError(
                f"{name}: camera {camera} does not exist (the model has {physics.model.ncam})"
            )
        spec = self._env.action_spec()
        super().__init__(
            name=name,
            size=size,
            action_repeat=action_repeat,
            low=spec.minimum,
            high=spec.maximum,
            seed=seed,
            max_episode_steps=max_episode_steps,
            on_physics_error=on_physics_error,
            render_mode=render_mode,
            simulator_fps=1.0 / self._env.control_timestep(),
        )
        self.camera = camera
        self.fast_render = fast_render
        configure_mujoco_rendering(physics.model, size, fast_render)
        self._renderer_registered = False
        # Lets gymnasium.make / check_env re-create this environment.
        self.spec = EnvSpec(
            id=f"worldmodel/{name}",
            entry_point="envs.dmc:DMCPixelEnv",
            nondeterministic=False,
            kwargs=dict(
                domain=domain,
                task=task,
                size=size,
                action_repeat=action_repeat,
                camera=camera,
                seed=seed,
                fast_render=fast_render,
                max_episode_steps=max_episode_steps,
                on_physics_error=on_physics_error,
                task_kwargs=task_kwargs,
            ),
        )

    @property
    def dm_env(self) -> Any:
        """The wrapped ``dm_control.rl.control.Environment``."""
        return self._env

    @property
    def physics(self) -> Any:
        """The dm_control ``Physics`` of the task."""
        return self._env.physics

    def _reset_simulation(self, seed: int) -> None:
        # The task draws its initial state from task.random: reseed it in place.
        self._env.task.random.seed(seed)
        self._env.reset()

    def _step_simulation(self, action: np.ndarray) -> tuple[float, bool, bool, dict[str, Any]]:
        try:
            time_step = self._env.step(action)
        except self._dm_physics_error as err:
            raise PhysicsError(f"{self.name}: unstable simulation ({err})") from err
        terminated = truncated = False
        if time_step.last():
            terminated = time_step.discount == 0.0
            truncated = not terminated
        return float(time_step.reward or 0.0), terminated, truncated, {}

    def _render_frame(self) -> np.ndarray:
        frame = self._env.physics.render(height=self.size, width=self.size, camera_id=self.camera)
        if not self._renderer_registered:
            register_renderer_cleanup(self)
            self._renderer_registered = True
        return np.ascontiguousarray(frame)

    def _close_simulation(self) -> None:
        # Frees the OpenGL and MuJoCo rendering contexts (and the simulation data) now, while
        # the EGL display is valid, instead of in a __del__ at interpreter exit.
        self._env.physics.free()
