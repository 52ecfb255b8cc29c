"""Environment names, per-task defaults (the single source of them) and the ``make_env`` factory.

Names:

- a preset from :data:`PRESETS` (``cheetah``, ``walker``, ..., ``stub``),
- ``dmc:<domain>-<task>``: any dm_control suite task, e.g. ``dmc:hopper-hop``,
- ``gym:<id>``: any Gymnasium id with ``rgb_array`` rendering, e.g. ``gym:Hopper-v5``.

A preset is only a short name for a ``dmc:`` / ``gym:`` target: its defaults (action repeat,
camera) are those of the target, looked up in :data:`DMC_DEFAULTS` / :data:`GYM_DEFAULTS`, so
``make_env("cheetah")`` and ``make_env("dmc:cheetah-run")`` are the same environment.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gymnasium as gym

    from envs.config import EnvConfig

#: Preset name -> target name.
PRESETS: dict[str, str] = {
    "cheetah": "dmc:cheetah-run",
    "walker": "dmc:walker-walk",
    "cartpole": "dmc:cartpole-swingup",
    "reacher": "dmc:reacher-easy",
    "finger": "dmc:finger-spin",
    "cup": "dmc:ball_in_cup-catch",
    "pendulum": "gym:Pendulum-v1",
    "halfcheetah": "gym:HalfCheetah-v5",
    "stub": "stub",
}


@dataclass(frozen=True)
class TaskDefaults:
    """Defaults of one task; every field can be overridden per environment.

    Attributes:
        action_repeat: simulator steps per agent step (rewards summed).
        camera: camera id to render from; ``None`` keeps the environment's own default view.
    """

    action_repeat: int
    camera: int | None = None


#: dm_control defaults by domain. Action repeats are PlaNet's (Hafner et al. 2019, table of
#: hyper-parameters); the quadruped is filmed by its camera 2 as in Dreamer.
DMC_DEFAULTS: dict[str, TaskDefaults] = {
    "cheetah": TaskDefaults(action_repeat=4, camera=0),
    "cartpole": TaskDefaults(action_repeat=8, camera=0),
    "walker": TaskDefaults(action_repeat=2, camera=0),
    "reacher": TaskDefaults(action_repeat=4, camera=0),
    "finger": TaskDefaults(action_repeat=2, camera=0),
    "ball_in_cup": TaskDefaults(action_repeat=4, camera=0),
    "quadruped": TaskDefaults(action_repeat=2, camera=2),
}
#: Any other dm_control domain: Dreamer's action repeat of 2, camera 0.
DMC_FALLBACK = TaskDefaults(action_repeat=2, camera=0)

#: Gymnasium defaults by id. Pendulum-v1 runs at 20 Hz for 200 steps: a repeat of 2 gives
#: 100-step episodes. HalfCheetah-v5 already skips 5 MuJoCo frames (20 Hz, close to the
#: 25 Hz of dm_control's cheetah with repeat 4), and its default free camera does not follow the
#: robot: camera 0 is the model's "track" camera, as in dm_control.
GYM_DEFAULTS: dict[str, TaskDefaults] = {
    "Pendulum-v1": TaskDefaults(action_repeat=2),
    "HalfCheetah-v5": TaskDefaults(action_repeat=1, camera=0),
}
#: Any other Gymnasium id: no action repeat, the environment's own camera.
GYM_FALLBACK = TaskDefaults(action_repeat=1)


def dmc_defaults(domain: str) -> TaskDefaults:
    """Defaults for a dm_control domain."""
    return DMC_DEFAULTS.get(domain, DMC_FALLBACK)


def gym_defaults(env_id: str) -> TaskDefaults:
    """Defaults for a Gymnasium id."""
    return GYM_DEFAULTS.get(env_id, GYM_FALLBACK)


def unknown_env_message(name: str) -> str:
    """The one-line error for a name that is neither a preset nor a dmc:/gym: name."""
    return (
        f"unknown environment {name!r}: use a preset ({', '.join(PRESETS)}), "
        "'dmc:<domain>-<task>' for any dm_control suite task (e.g. dmc:hopper-hop) or "
        "'gym:<id>' for any Gymnasium id with rgb_array rendering (e.g. gym:Hopper-v5)"
    )


def resolve_name(name: str) -> str:
    """The target of a preset or a ``dmc:`` / ``gym:`` name (checks the syntax only).

    Raises:
        ValueError: for an unknown preset or a malformed name.
    """
    target = PRESETS.get(name, name)
    kind, _, rest = target.partition(":")
    domain, dash, task = rest.partition("-")
    if target == "stub" or (kind == "dmc" and domain and dash and task) or (kind == "gym" and rest):
        return target
    raise ValueError(unknown_env_message(name))


def make_env(
    name: str,
    *,
    size: int = 64,
    action_repeat: int | None = None,
    seed: int | None = None,
    **options: Any,
) -> gym.Env:
    """Create a pixel environment by name (see the module docstring for names).

    Every environment observes uint8 ``(size, size, 3)`` frames and acts in ``Box(-1, 1, (A,))``.

    Args:
        name: preset, ``dmc:<domain>-<task>`` or ``gym:<id>``.
        size: frame height and width in pixels.
        action_repeat: simulator steps per agent step; ``None`` = the task default.
        seed: seed of the first ``reset()`` when it is called without one (``reset(seed=...)``
            always wins); also seeds ``action_space.sample()``.
        **options: passed to the environment class, e.g. ``fast_render`` (default True),
            ``camera``, ``max_episode_steps``, ``on_physics_error`` ("truncate" | "raise"),
            ``task_kwargs`` (dm_control), ``env_kwargs`` (Gymnasium), ``random_goal`` and
            ``encode_step`` (stub). See :class:`envs.dmc.DMCPixelEnv`,
            :class:`envs.gym_pixels.GymPixelEnv` and :class:`envs.stub.StubPixelEnv`.

    Raises:
        ValueError: unknown name, unknown option or bad value (one line saying what to do).
    """
    target = resolve_name(name)
    kind, _, rest = target.partition(":")
    if target == "stub":
        from envs.stub import StubPixelEnv

        if action_repeat not in (None, 1):
            raise ValueError(
                f"the stub env has no action repeat, got action_repeat={action_repeat}"
            )
        if "max_episode_steps" in options:  # the shared option name -> the stub's own
            if "max_steps" in options:
                raise ValueError("give the stub max_steps or max_episode_steps, not both")
            options["max_steps"] = options.pop("max_episode_steps")
        return _construct(StubPixelEnv, name, size=size, seed=seed, **options)
    common = dict(size=size, action_repeat=action_repeat, seed=seed, **options)
    if kind == "dmc":
        from envs.dmc import DMCPixelEnv

        domain, _, task = rest.partition("-")
        return _construct(DMCPixelEnv, name, domain, task, **common)
    from envs.gym_pixels import GymPixelEnv

    return _construct(GymPixelEnv, name, rest, **common)


def _construct(cls: type, name: str, *args: Any, **kwargs: Any) -> gym.Env:
    """``cls(*args, **kwargs)``, turning unknown keyword options into a clear ValueError."""
    params = inspect.signature(cls).parameters
    valid = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(k for k in kwargs if k not in valid)
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for environment {name!r}; "
            f"valid options: {', '.join(valid)}"
        )
    return cls(*args, **kwargs)


def make_env_from_config(cfg: EnvConfig) -> gym.Env:
    """:func:`make_env` from an :class:`envs.config.EnvConfig` (``None`` fields = task default)."""
    options = dict(cfg.options)
    fields = {
        "fast_render": cfg.fast_render,
        "camera": cfg.camera,
        "max_episode_steps": cfg.max_episode_steps,
    }
    for key, value in fields.items():
        if key in options:
            raise ValueError(f"env option {key!r} is a field of the env config: set env.{key}")
        if value is not None:
            options[key] = value
    return make_env(
        cfg.name, size=cfg.size, action_repeat=cfg.action_repeat, seed=cfg.seed, **options
    )
