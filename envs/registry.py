"""Environment names, the families of environments they name, and the ``make_env`` factory.

Names:

- a preset from :data:`PRESETS` (``cheetah``, ``walker``, ..., ``stub``),
- ``dmc:<domain>-<task>``: any dm_control suite task, e.g. ``dmc:hopper-hop``,
- ``gym:<id>``: any Gymnasium id with ``rgb_array`` rendering, e.g. ``gym:Hopper-v5``,
- ``stub``: the stub environment.

A preset is only a short name for a target: its defaults (action repeat, camera) are those of the
target, defined once in :mod:`envs.defaults` (:data:`DMC_DEFAULTS` / :data:`GYM_DEFAULTS`, re-exported
here), so ``make_env("cheetah")`` and ``make_env("dmc:cheetah-run")`` are the same environment.
Each family of targets (:data:`FAMILIES`) names its environment class and how the rest of a name
becomes the class's arguments; the classes take the shared options (``size``, ``action_repeat``,
``seed``, ``fast_render``, ``max_episode_steps``, ...) as keyword arguments and check their own
values, so nothing here is specific to one family.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envs.defaults import (
    DMC_DEFAULTS,
    DMC_FALLBACK,
    GYM_DEFAULTS,
    GYM_FALLBACK,
    TaskDefaults,
    dmc_defaults,
    gym_defaults,
)

if TYPE_CHECKING:
    import gymnasium as gym

    from envs.config import EnvConfig

__all__ = [
    "DMC_DEFAULTS",
    "DMC_FALLBACK",
    "FAMILIES",
    "GYM_DEFAULTS",
    "GYM_FALLBACK",
    "PRESETS",
    "EnvFamily",
    "TaskDefaults",
    "dmc_defaults",
    "gym_defaults",
    "make_env",
    "make_env_from_config",
    "resolve_name",
    "unknown_env_message",
]

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
class EnvFamily:
    """A family of targets: ``<family>:<rest>``, or the bare family name when ``args`` takes none.

    Attributes:
        entry_point: ``"module:Class"`` of the environment class (imported when an environment
            of the family is made, so dm_control loads only for dm_control tasks).
        args: the class's positional arguments from the rest of the name (``None`` for a bare
            name); raises ValueError when the rest is malformed.
    """

    entry_point: str
    args: Callable[[str | None], tuple[str, ...]]

    def env_class(self) -> type:
        module, _, name = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), name)


def _dmc_args(rest: str | None) -> tuple[str, ...]:
    domain, dash, task = (rest or "").partition("-")
    if not (domain and dash and task):
        raise ValueError("expected dmc:<domain>-<task>")
    return domain, task


def _gym_args(rest: str | None) -> tuple[str, ...]:
    if not rest:
        raise ValueError("expected gym:<id>")
    return (rest,)


def _no_args(rest: str | None) -> tuple[str, ...]:
    if rest is not None:
        raise ValueError("the name takes no ':' part")
    return ()


#: Family name -> its environment class and name syntax.
FAMILIES: dict[str, EnvFamily] = {
    "dmc": EnvFamily("envs.dmc:DMCPixelEnv", _dmc_args),
    "gym": EnvFamily("envs.gym_pixels:GymPixelEnv", _gym_args),
    "stub": EnvFamily("envs.stub:StubPixelEnv", _no_args),
}


def unknown_env_message(name: str) -> str:
    """The one-line error for a name that is neither a preset nor a dmc:/gym: name."""
    return (
        f"unknown environment {name!r}: use a preset ({', '.join(PRESETS)}), "
        "'dmc:<domain>-<task>' for any dm_control suite task (e.g. dmc:hopper-hop) or "
        "'gym:<id>' for any Gymnasium id with rgb_array rendering (e.g. gym:Hopper-v5)"
    )


def _parse(name: str) -> tuple[EnvFamily, tuple[str, ...]]:
    """The family of a name (a preset or a target) and its class's positional arguments."""
    target = PRESETS.get(name, name)
    family, colon, rest = target.partition(":")
    try:
        return FAMILIES[family], FAMILIES[family].args(rest if colon else None)
    except (KeyError, ValueError):
        raise ValueError(unknown_env_message(name)) from None


def resolve_name(name: str) -> str:
    """The target of a preset or a ``dmc:`` / ``gym:`` name (checks the syntax only).

    Raises:
        ValueError: for an unknown preset or a malformed name.
    """
    _parse(name)
    return PRESETS.get(name, name)


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
        name: preset, ``dmc:<domain>-<task>``, ``gym:<id>`` or ``stub``.
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
    family, args = _parse(name)
    return _construct(
        family.env_class(),
        name,
        *args,
        size=size,
        action_repeat=action_repeat,
        seed=seed,
        **options,
    )


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
