"""Per-task defaults of the environments (action repeat, camera), defined once.

A leaf module (it imports nothing of ``envs``): the environment classes (:mod:`envs.dmc`,
:mod:`envs.gym_pixels`) read their defaults here, and :mod:`envs.registry`, which makes those
classes, re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass


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
