"""Goal images for the goal-image planner (Visual Foresight; ``planner=goal``).

A goal image is the frame the environment would show with its task solved, rendered by the
environment itself (same camera, size and look as its observations), for the episode in progress:
call :func:`goal_image` after every ``reset``.

* stub (:class:`envs.stub.StubPixelEnv`): the frame with the point on the goal.
* dm_control reacher (``dmc:reacher-*``): the frame with the finger tip on the target. The two arm
  joints are solved by planar two-link inverse kinematics, with the link lengths read from the
  model, and set on a *copy* of the physics (the episode's own simulation is not touched), which
  is then rendered.

Other environments have no defined goal frame: :func:`goal_image` says so and suggests
``planner=reward``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

__all__ = ["goal_image", "has_goal_image", "reacher_joint_angles"]

_GOAL_ENVS = "the stub env (env=stub) and dm_control reacher (env=reacher, dmc:reacher-hard)"


def has_goal_image(env: Any) -> bool:
    """Whether :func:`goal_image` supports this environment."""
    from envs.stub import StubPixelEnv

    env = env.unwrapped
    return isinstance(env, StubPixelEnv) or _is_reacher(env)


def goal_image(env: Any) -> np.ndarray:
    """The goal frame of the current episode, uint8 ``(size, size, 3)`` like the observations.

    Args:
        env: an environment made by :func:`envs.make_env` (after ``reset``).

    Raises:
        ValueError: the environment has no goal image.
    """
    from envs.stub import StubPixelEnv

    inner = env.unwrapped
    if isinstance(inner, StubPixelEnv):
        return _stub_goal_image(inner)
    if _is_reacher(inner):
        return _reacher_goal_image(inner)
    name = getattr(inner, "name", type(inner).__name__)
    raise ValueError(
        f"planner=goal needs a goal image, which is defined for {_GOAL_ENVS}; {name!r} has none. "
        "Use planner=reward for this environment."
    )


def _is_reacher(env: Any) -> bool:
    return str(getattr(env, "name", "")).startswith("dmc:reacher-") and hasattr(env, "physics")


def _stub_goal_image(env: Any) -> np.ndarray:
    """The stub's frame with the point moved onto the goal (drawn by a copy of the env)."""
    # TODO(envs): StubPixelEnv has no public "render the frame at position p" method; until it
    # does, a copy of the env gets its (private) position set. The episode's env is not touched.
    twin = copy.deepcopy(env)
    twin._pos = env.goal
    return twin.render()


def reacher_joint_angles(
    target_xy: np.ndarray, upper: float, lower: float, elbow: int = 1
) -> tuple[float, float]:
    """Planar two-link inverse kinematics: joint angles that put the tip at ``target_xy``.

    The shoulder is at the origin; with both angles 0 the arm lies along +x; angles grow
    counter-clockwise. The tip is ``upper * (cos q1, sin q1) + lower * (cos(q1+q2), sin(q1+q2))``.

    Args:
        target_xy: ``(2,)`` target position relative to the shoulder.
        upper, lower: link lengths (shoulder to elbow, elbow to tip).
        elbow: +1 or -1, which of the two mirror solutions.

    Returns:
        ``(q1, q2)`` in radians. A target out of reach is projected onto the reachable annulus.
    """
    x, y = float(target_xy[0]), float(target_xy[1])
    r = math.hypot(x, y)
    r = min(max(r, abs(upper - lower)), upper + lower)
    cos_q2 = (r * r - upper * upper - lower * lower) / (2 * upper * lower)
    q2 = elbow * math.acos(max(-1.0, min(1.0, cos_q2)))
    q1 = math.atan2(y, x) - math.atan2(lower * math.sin(q2), upper + lower * math.cos(q2))
    return q1, q2


def _reacher_goal_image(env: Any) -> np.ndarray:
    """Reacher's frame with the finger tip on the target, rendered from a copy of the physics."""
    physics = env.physics
    named = physics.named
    shoulder = named.data.xpos["arm", :2]
    # link lengths from the model: body offsets arm -> hand (elbow) -> finger (tip)
    upper = float(np.linalg.norm(named.model.body_pos["hand", :2]))
    lower = float(np.linalg.norm(named.model.body_pos["finger", :2]))
    target = named.model.geom_pos["target", :2] - shoulder
    wrist_range = named.model.jnt_range["wrist"]

    twin = physics.copy(share_model=True)  # own data, same model (target position, visuals)
    try:
        for elbow in (1, -1):  # both IK branches; the wrist joint is limited to +-160 degrees
            q1, q2 = reacher_joint_angles(target, upper, lower, elbow)
            if wrist_range[0] <= q2 <= wrist_range[1]:
                break
        twin.named.data.qpos["shoulder"] = q1
        twin.named.data.qpos["wrist"] = q2
        twin.named.data.qvel[:] = 0.0
        twin.forward()
        return np.ascontiguousarray(
            twin.render(height=env.size, width=env.size, camera_id=env.camera)
        )
    finally:
        twin.free()
