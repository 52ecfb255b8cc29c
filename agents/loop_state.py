"""The RL loop's bookkeeping as plain data and arithmetic (no model, no environment).

- :class:`LoopState`: the loop's counters, stored in every checkpoint (``extra["loop"]``).
- :func:`finished`, :func:`eval_due`: when the run ends and when an evaluation is due.
- :func:`final_episodes`, :func:`eta_seconds`: the ETA, from the episodes and evaluations still
  to come at the mean duration of each kind; :func:`format_duration` prints it.
- :class:`WallClock`, :func:`timed`, :func:`time_breakdown`: the run's wall time over all its
  sessions and where it went (:data:`TIME_PARTS`).
- :func:`write_evaluations`: ``evaluations.csv``, the evaluation curve.

Each function takes the state and the :class:`~agents.config.CEMPlannerConfig` it needs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agents.config import CEMPlannerConfig
from worldmodel.training.checkpoint import write_text_atomic

__all__ = [
    "EVALUATIONS_CSV",
    "EVALUATIONS_HEADER",
    "TIME_PARTS",
    "LoopState",
    "WallClock",
    "eta_seconds",
    "eval_due",
    "final_episodes",
    "finished",
    "format_duration",
    "time_breakdown",
    "timed",
    "write_evaluations",
]

#: The evaluation curve, rewritten after every evaluation (one row per evaluation).
EVALUATIONS_CSV = "evaluations.csv"
EVALUATIONS_HEADER = "seed,env_steps,wall_s,eval_return"
#: The parts of the loop's wall time (:attr:`LoopState.seconds`; the rest is "other").
TIME_PARTS = ("planning", "environment", "training", "writing")


@dataclass
class LoopState:
    """The loop's counters (stored in every checkpoint).

    Attributes:
        episodes: training episodes collected (= files in ``episodes/``).
        agent_steps: actions taken in training episodes.
        env_steps: simulator steps of training episodes (``agent_steps x action_repeat``).
        train_returns: return of every training episode.
        evaluations: evaluations done; eval_at: episode count of each; eval_env_steps: env steps
            of each; eval_returns / eval_stds: mean / std return of each.
        physics_errors: episodes ended by an unstable simulation.
        plan_seconds, planned_actions: total planning time and actions planned.
        wall_seconds: wall time of the run over all sessions (up to the last checkpoint).
        eval_wall_s: the run's wall time (all sessions) at each evaluation's end.
        seconds: where the wall time went, by part (:data:`TIME_PARTS`: planning, environment,
            training, writing), over all sessions; evaluation episodes count in planning and
            environment, their videos and prediction strips in writing.
    """

    episodes: int = 0
    agent_steps: int = 0
    env_steps: int = 0
    train_returns: list[float] = field(default_factory=list)
    evaluations: int = 0
    eval_at: list[int] = field(default_factory=list)
    eval_env_steps: list[int] = field(default_factory=list)
    eval_returns: list[float] = field(default_factory=list)
    eval_stds: list[float] = field(default_factory=list)
    physics_errors: int = 0
    plan_seconds: float = 0.0
    planned_actions: int = 0
    wall_seconds: float = 0.0
    eval_wall_s: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIME_PARTS, 0.0))

    def count_episode(self, length: int, total_reward: float, action_repeat: int) -> None:
        """A training episode of ``length`` agent steps."""
        self.episodes += 1
        self.agent_steps += length
        self.env_steps += length * action_repeat
        self.train_returns.append(total_reward)

    def count_evaluation(self, returns: list[float], wall_s: float) -> None:
        """An evaluation with these episode returns, ending at the run's wall time ``wall_s``."""
        self.evaluations += 1
        self.eval_at.append(self.episodes)
        self.eval_env_steps.append(self.env_steps)
        self.eval_returns.append(float(np.mean(returns)))
        self.eval_stds.append(float(np.std(returns)))
        self.eval_wall_s.append(wall_s)

    def add_time(self, part: str, seconds: float) -> None:
        """Count ``seconds`` of wall time in ``seconds[part]``."""
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds


# ---------------------------------------------------------------------------------------------
# when the run ends, and the ETA


def finished(state: LoopState, cfg: CEMPlannerConfig) -> bool:
    """``cfg.episodes`` training episodes, or the ``cfg.max_env_steps`` budget, reached."""
    return state.episodes >= cfg.episodes or 0 < cfg.max_env_steps <= state.env_steps


def eval_due(state: LoopState, cfg: CEMPlannerConfig) -> bool:
    """An evaluation is due every ``cfg.eval_every`` planned episodes and at the end (once)."""
    planned = state.episodes - cfg.seed_episodes
    if planned <= 0 or (state.eval_at and state.eval_at[-1] == state.episodes):
        return False
    return finished(state, cfg) or (cfg.eval_every > 0 and planned % cfg.eval_every == 0)


def final_episodes(state: LoopState, cfg: CEMPlannerConfig) -> int:
    """The episode count the run will end at (from the mean episode length so far when a step
    budget ends it first)."""
    s = state
    if finished(s, cfg):
        return s.episodes
    if not cfg.max_env_steps or not s.episodes:
        return cfg.episodes
    per_episode = s.env_steps / s.episodes
    left = math.ceil((cfg.max_env_steps - s.env_steps) / per_episode)
    return min(cfg.episodes, s.episodes + left)


def eta_seconds(
    state: LoopState, cfg: CEMPlannerConfig, durations: dict[str, list[float]]
) -> float | None:
    """Seconds to the end of the run: the episodes and evaluations still to come, each at the
    mean duration of its kind in ``durations`` (this session's wall seconds of each ``"seed"``
    episode, ``"planned"`` episode with its training, and ``"eval"`` evaluation; None before a
    planned episode is timed). Seed episodes, planned episodes and evaluations cost very different times,
    so one average rate over environment steps would be far off early in a run."""
    s, d = state, durations
    if not d["planned"]:
        return None
    final = final_episodes(s, cfg)
    seed_left = max(0, min(cfg.seed_episodes, final) - s.episodes)
    planned_left = max(0, final - s.episodes - seed_left)
    planned_done = max(0, s.episodes - cfg.seed_episodes)
    planned_final = planned_done + planned_left
    evals_left = 0
    if cfg.eval_every > 0:
        evals_left = planned_final // cfg.eval_every - planned_done // cfg.eval_every
    if planned_final > 0 and (cfg.eval_every == 0 or planned_final % cfg.eval_every):
        evals_left += int(not (s.eval_at and s.eval_at[-1] == final))  # the final one
    planned_s = float(np.mean(d["planned"]))
    seed_s = float(np.mean(d["seed"])) if d["seed"] else planned_s
    # before the first evaluation: an episode of planning without the training
    train_per_episode = s.seconds.get("training", 0.0) / max(1, planned_done)
    eval_s = (
        float(np.mean(d["eval"]))
        if d["eval"]
        else cfg.eval_episodes * max(0.0, planned_s - train_per_episode)
    )
    return seed_left * seed_s + planned_left * planned_s + evals_left * eval_s


def format_duration(seconds: float) -> str:
    """``1:02:03`` (hours, minutes, seconds) or ``2:03`` under an hour."""
    total = round(max(0.0, seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# ---------------------------------------------------------------------------------------------
# wall time


class WallClock:
    """The run's wall time over all its sessions: ``earlier`` seconds (the sessions before this
    one, from the checkpoint) plus the time since this session's clock was made."""

    def __init__(self, earlier: float = 0.0) -> None:
        self.session_start = time.perf_counter()
        self.earlier = earlier

    def now(self) -> float:
        return self.earlier + time.perf_counter() - self.session_start


@contextmanager
def timed(state: LoopState, part: str) -> Iterator[None]:
    """Count the wall time of the block in ``state.seconds[part]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        state.add_time(part, time.perf_counter() - start)


def time_breakdown(state: LoopState, total: float) -> dict[str, float]:
    """Seconds per part of :data:`TIME_PARTS`, plus ``other`` (set-up, replay buffer, ...) and
    ``total`` (the run's wall time over all sessions)."""
    parts = {k: state.seconds.get(k, 0.0) for k in TIME_PARTS}
    parts["other"] = max(0.0, total - sum(parts.values()))
    parts["total"] = total
    return parts


# ---------------------------------------------------------------------------------------------
# files


def write_evaluations(path: Path, state: LoopState, seed: int) -> None:
    """Rewrite ``evaluations.csv`` (:data:`EVALUATIONS_HEADER`) at ``path`` from the state: one
    row per evaluation, so a resumed run's file matches its checkpoint."""
    s = state
    walls = list(s.eval_wall_s) + [math.nan] * (len(s.eval_returns) - len(s.eval_wall_s))
    rows = [EVALUATIONS_HEADER]
    for steps, wall, ret in zip(s.eval_env_steps, walls, s.eval_returns, strict=True):
        wall_text = "" if math.isnan(wall) else f"{wall:.1f}"
        rows.append(f"{seed},{steps},{wall_text},{ret:.4f}")
    write_text_atomic(path, "\n".join(rows) + "\n")
