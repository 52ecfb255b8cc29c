"""A tiny pixel environment with known dynamics and reward, for fast and exact tests.

A point moves in ``[-1, 1]^2`` toward a goal:

- action ``a`` in ``[-1, 1]^2``; ``pos' = clip(pos + step_size * a, -1, 1)`` (step_size 0.2);
- reward ``max(0, 1 - ||pos' - goal|| / radius)`` (radius 0.5): random play scores little,
  sitting on the goal scores 1 per step;
- goal fixed at (0.5, 0.5) (``random_goal=True``: uniform in ``[-0.8, 0.8]^2`` at each reset);
  start uniform in ``[-1, 1]^2`` (seeded); episodes are truncated after ``max_steps`` (50)
  steps and never terminate (``max_episode_steps``, the name every environment shares, sets it
  too).

Frames (uint8 ``(size, size, 3)``): dark background, the goal as a green square, the point as a
smaller red square drawn on top; x grows to the right, y upward. With ``encode_step=True`` the
first pixel row holds the step count in binary (least significant bit in column 0, blue 255 for
a set bit, black otherwise), so ``obs[t]`` of an episode encodes ``t``: tests use it to check
that frames, actions and rewards stay aligned through the data pipeline (:meth:`decode_step`).

:meth:`true_dynamics` (batched, torch) and :meth:`optimal_return` give planners a perfect model
and the best achievable return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

if TYPE_CHECKING:
    from torch import Tensor

BACKGROUND = (30, 30, 30)
GOAL_COLOUR = (40, 200, 60)
POINT_COLOUR = (230, 40, 40)
_MAX_BITS = 32  # bits of the step count written by encode_step


class StubPixelEnv(gym.Env[np.ndarray, np.ndarray]):
    """The stub environment (see the module docstring).

    Args:
        size: frame height and width.
        max_steps: episode length (truncation, 50 by default); also readable as
            ``max_episode_steps``.
        max_episode_steps: the same, under the name every environment shares (give one of the
            two).
        action_repeat: accepted for a uniform interface: the stub has none (``None`` or 1).
        step_size: largest move per step along each coordinate.
        radius: distance to the goal at which the reward reaches 0.
        goal: the fixed goal ``(x, y)``.
        random_goal: draw a new goal at each reset instead.
        encode_step: write the step count into the first pixel row.
        seed: seed of the first reset when it is given none.
        fast_render: accepted for a uniform interface with the MuJoCo envs (no effect).
        render_mode: only ``"rgb_array"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    STEP_SIZE = 0.2
    RADIUS = 0.5
    action_repeat = 1

    def __init__(
        self,
        *,
        size: int = 64,
        max_steps: int | None = None,
        max_episode_steps: int | None = None,
        action_repeat: int | None = None,
        step_size: float = STEP_SIZE,
        radius: float = RADIUS,
        goal: tuple[float, float] = (0.5, 0.5),
        random_goal: bool = False,
        encode_step: bool = False,
        seed: int | None = None,
        fast_render: bool = True,
        render_mode: str | None = "rgb_array",
    ) -> None:
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"stub: size must be an integer >= 8, got {size!r}")
        if action_repeat not in (None, 1):
            raise ValueError(
                f"the stub env has no action repeat, got action_repeat={action_repeat}"
            )
        if max_steps is not None and max_episode_steps is not None:
            raise ValueError("give the stub max_steps or max_episode_steps, not both")
        max_steps = next((n for n in (max_steps, max_episode_steps) if n is not None), 50)
        if max_steps < 1:
            raise ValueError(f"stub: max_steps must be >= 1, got {max_steps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(
                f"stub: only render_mode='rgb_array' is supported, got {render_mode!r}"
            )
        if encode_step and 2 ** min(size, _MAX_BITS) <= max_steps:
            raise ValueError(f"stub: {size} pixels cannot encode {max_steps} steps")
        self.name = "stub"
        self.size = size
        self.max_steps = max_steps
        self.step_size = float(step_size)
        self.radius = float(radius)
        self.random_goal = random_goal
        self.encode_step = encode_step
        self.render_mode = "rgb_array"
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8, seed=seed)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32, seed=seed)
        self._seed = seed
        self._fixed_goal = np.asarray(goal, dtype=np.float64)
        self._goal = self._fixed_goal.copy()
        self._pos = np.zeros(2)
        self._steps = 0
        self._started = False
        self._point_half = max(1, round(size / 32))  # 5x5 px at 64 px
        self._goal_half = max(2, round(size / 16))  # 9x9 px at 64 px
        self.spec = EnvSpec(
            id="worldmodel/stub",
            entry_point="envs.stub:StubPixelEnv",
            nondeterministic=False,
            kwargs=dict(
                size=size,
                max_steps=max_steps,
                step_size=step_size,
                radius=radius,
                goal=tuple(goal),
                random_goal=random_goal,
                encode_step=encode_step,
                seed=seed,
            ),
        )

    # ---- the true model -------------------------------------------------------------------
    @staticmethod
    def true_dynamics(
        pos: Tensor,
        action: Tensor,
        goal: Tensor,
        *,
        step_size: float = STEP_SIZE,
        radius: float = RADIUS,
    ) -> tuple[Tensor, Tensor]:
        """The exact dynamics, batched in torch.

        Args:
            pos: ``(N, 2)`` positions.
            action: ``(N, 2)`` actions (clipped to [-1, 1]).
            goal: ``(2,)`` (or ``(N, 2)``) goal.

        Returns:
            ``(next_pos (N, 2), reward (N,))``.
        """
        next_pos = (pos + step_size * action.clamp(-1.0, 1.0)).clamp(-1.0, 1.0)
        distance = (next_pos - goal).square().sum(-1).sqrt()
        return next_pos, (1.0 - distance / radius).clamp_min(0.0)

    @staticmethod
    def greedy_action(
        pos: np.ndarray, goal: np.ndarray, step_size: float = STEP_SIZE
    ) -> np.ndarray:
        """The optimal action ``(2,)``: move each coordinate as far toward the goal as allowed."""
        return np.clip((np.asarray(goal) - np.asarray(pos)) / step_size, -1.0, 1.0)

    def optimal_return(self, horizon: int | None = None) -> float:
        """The best return from the current state over ``horizon`` steps.

        ``None`` = the steps left in the episode. Greedy per-coordinate moves are exactly optimal:
        they bring every coordinate as close to the goal as possible at every step at once.
        """
        horizon = self.max_steps - self._steps if horizon is None else horizon
        pos, total = self._pos.copy(), 0.0
        for _ in range(horizon):
            pos, reward = self._move(pos, self.greedy_action(pos, self._goal, self.step_size))
            total += reward
        return total

    def _move(self, pos: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, float]:
        next_pos = np.clip(pos + self.step_size * np.clip(action, -1.0, 1.0), -1.0, 1.0)
        distance = float(np.sqrt(np.square(next_pos - self._goal).sum()))
        return next_pos, max(0.0, 1.0 - distance / self.radius)

    @property
    def max_episode_steps(self) -> int:
        """The episode length (the same as ``max_steps``; the name every env shares)."""
        return self.max_steps

    @property
    def pos(self) -> np.ndarray:
        """The point's position ``(2,)``."""
        return self._pos.copy()

    @property
    def goal(self) -> np.ndarray:
        """The goal ``(2,)``."""
        return self._goal.copy()

    # ---- gymnasium API --------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and self._np_random is None:
            seed = self._seed
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(-1.0, 1.0, 2)
        if self.random_goal:
            self._goal = self.np_random.uniform(-0.8, 0.8, 2)
        self._steps = 0
        self._started = True
        return self._draw(), self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("stub: call reset() before step() (the episode is over)")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(f"stub: expected a finite action of shape (2,), got {action!r}")
        self._pos, reward = self._move(self._pos, action)
        self._steps += 1
        truncated = self._steps >= self.max_steps
        self._started = not truncated
        return self._draw(), reward, False, truncated, self._info()

    def render(self) -> np.ndarray:
        """The current frame, uint8 ``(size, size, 3)``."""
        return self._draw()

    def _info(self) -> dict[str, Any]:
        return {"pos": self._pos.astype(np.float32), "goal": self._goal.astype(np.float32)}

    # ---- drawing --------------------------------------------------------------------------
    def _pixel(self, xy: np.ndarray) -> tuple[int, int]:
        """(row, column) of a point of [-1, 1]^2 (y upward)."""
        col = round((xy[0] + 1.0) / 2.0 * (self.size - 1))
        row = round((1.0 - xy[1]) / 2.0 * (self.size - 1))
        return row, col

    def _square(self, frame: np.ndarray, xy: np.ndarray, half: int, colour: tuple) -> None:
        row, col = self._pixel(xy)
        frame[max(0, row - half) : row + half + 1, max(0, col - half) : col + half + 1] = colour

    def _draw(self) -> np.ndarray:
        frame = np.empty((self.size, self.size, 3), dtype=np.uint8)
        frame[:] = BACKGROUND
        self._square(frame, self._goal, self._goal_half, GOAL_COLOUR)
        self._square(frame, self._pos, self._point_half, POINT_COLOUR)
        if self.encode_step:
            frame[0] = 0
            bits = (self._steps >> np.arange(min(self.size, _MAX_BITS))) & 1
            frame[0, : len(bits), 2] = 255 * bits.astype(np.uint8)
        return frame

    @staticmethod
    def decode_step(frame: np.ndarray) -> int:
        """The step count written by ``encode_step=True`` into a frame ``(H, W, 3)``."""
        bits = np.asarray(frame)[0, :, 2] > 127
        return int(sum(1 << i for i in np.flatnonzero(bits)))
