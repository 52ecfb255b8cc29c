"""Acting in an environment: the policies and the playing of one episode.

- :class:`Policy`: what :func:`run_episode` drives (reset on the first frame, act, observe).
- :class:`RandomPolicy`: uniformly random actions (the RL loop's seed episodes; the baseline).
- :class:`MPCAgent`: model-predictive control with CEM on a world model's imagination. The model
  filters the episode so far into a recurrent state (``model.observe``; each new frame and the
  action that led to it update the state), CEM searches over action sequences by imagining their
  futures from that state in one batched call per iteration (``model.imagine``), and the first
  action of the best plan is executed.
- :func:`run_episode`: one episode, recorded by :class:`envs.episodes.EpisodeRecorder`, with
  optional exploration noise; :func:`episode_seed`: the reset seed of an episode.

The RL loop (:mod:`agents.loop`) and ``mode=eval`` act through these; ``agents.loop`` re-exports
them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from agents.cem import CEM, Objective
from agents.config import PlannerConfig
from agents.objectives import goal_image_objective, latent_reward_objective
from envs.episodes import EpisodeRecorder
from episode_format import Episode
from worldmodel.device import autocast_dtype
from worldmodel.model.svg import ModelState, WorldModel

__all__ = [
    "FlatFeatures",
    "MPCAgent",
    "Policy",
    "RandomPolicy",
    "episode_seed",
    "run_episode",
]

log = logging.getLogger(__name__)


class Policy(Protocol):
    """What :func:`run_episode` drives: reset on the first frame, act, observe the outcome."""

    def reset(self, obs: np.ndarray, goal: np.ndarray | None = None) -> None: ...

    def act(self) -> np.ndarray: ...

    def observe(self, action: np.ndarray, obs: np.ndarray) -> None: ...


class RandomPolicy:
    """Uniformly random actions in ``[-1, 1]^A`` (the seed episodes; the baseline)."""

    def __init__(self, action_dim: int, generator: torch.Generator) -> None:
        self.action_dim = action_dim
        self.generator = generator

    def reset(self, obs: np.ndarray, goal: np.ndarray | None = None) -> None:
        pass

    def act(self) -> np.ndarray:
        return (torch.rand(self.action_dim, generator=self.generator) * 2 - 1).numpy()

    def observe(self, action: np.ndarray, obs: np.ndarray) -> None:
        pass


class FlatFeatures(nn.Module):
    """A comparator's list of feature maps as one ``(B, F)`` vector (for the goal objective)."""

    def __init__(self, comparator: nn.Module) -> None:
        super().__init__()
        self.comparator = comparator

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([f.flatten(1) for f in self.comparator(x)], dim=1)


def _frame(obs: np.ndarray, device: torch.device) -> Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 1, 3, H, W)`` uint8 on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(obs)).permute(2, 0, 1)[None, None].to(device)


class MPCAgent:
    """Model-predictive control with CEM on a world model's imagination.

    Every step the agent re-plans a whole action sequence (``planner.cem.horizon`` steps) with
    CEM, warm-started from the previous plan shifted by one step, and executes its first action.
    The model's recurrent state is updated with each new frame and the action that led to it.

    Example::

        agent = MPCAgent(model, PlannerConfig(), device=torch.device("cpu"))
        agent.reset(obs)                        # first frame (H, W, 3) uint8 (+ goal image)
        while not done:
            action = agent.act()                # (A,) float32 in [-1, 1]
            obs, reward, terminated, truncated, info = env.step(action)
            agent.observe(action, obs)

    Args:
        model: the world model (put in eval mode on every :meth:`reset`).
        cfg: the planner settings.
        device: where the model lives; planning runs there.
        seed: seeds the CEM samples and the latent samples of the imagination.
        comparator: feature network for ``cfg.distance == "feature"`` (frames ``(B, 3, H, W)``
            in [0, 1] -> features ``(B, F)``); built from ``cfg.comparator`` when None.
        objective_fn: replaces the objective: ``fn(model, state) -> Objective`` (see
            :mod:`agents.objectives`); by default it is built from ``cfg.objective``.
    """

    def __init__(
        self,
        model: WorldModel,
        cfg: PlannerConfig,
        device: torch.device,
        seed: int = 0,
        comparator: nn.Module | None = None,
        objective_fn: Callable[[WorldModel, ModelState], Objective] | None = None,
    ) -> None:
        self.model = model
        self.cfg = cfg.validate()
        self.device = torch.device(device)
        self.objective_fn = objective_fn
        # "auto": bf16 autocast where the device runs it natively (AMX CPUs, Ampere+ GPUs)
        amp = autocast_dtype(self.device, cfg.precision)
        self.precision = "bf16" if amp == torch.bfloat16 else "fp32"
        if self.objective_fn is None and cfg.objective == "reward" and not model.has_reward:
            raise ValueError(
                "planner=reward needs a model with a reward head (built with action_dim > 0)"
            )
        low = torch.full((model.action_dim,), -1.0, device=self.device)
        self.cem_generator = torch.Generator(device=self.device).manual_seed(seed)
        self.imagine_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.cem = CEM(cfg.cem, low, -low, generator=self.cem_generator)
        self.comparator = comparator
        if cfg.objective == "goal" and cfg.distance == "feature" and comparator is None:
            from worldmodel.antiblur.comparator import build_comparator_from_config

            self.comparator = FlatFeatures(build_comparator_from_config(cfg.comparator)).to(
                self.device
            )
        self.state: ModelState | None = None
        self.goal: Tensor | None = None

    @torch.inference_mode()
    def reset(self, obs: np.ndarray, goal: np.ndarray | None = None) -> None:
        """Start an episode from its first frame ``(H, W, 3)`` uint8 (and the goal image)."""
        if self.cfg.objective == "goal" and self.objective_fn is None and goal is None:
            raise ValueError("planner=goal needs a goal image at every reset")
        self.model.eval()
        self.cem.reset()
        self.state = self.model.observe(_frame(obs, self.device))
        self.goal = None if goal is None else _frame(goal, self.device)[0, 0]  # (3, H, W) uint8

    def objective(self) -> Objective:
        """The planning objective from the current state: ``(N, H, A) -> (N,)`` returns."""
        if self.state is None:
            raise RuntimeError("MPCAgent.reset(obs) must be called before planning")
        if self.objective_fn is not None:
            return self.objective_fn(self.model, self.state)
        cfg = self.cfg
        if cfg.objective == "reward":
            return latent_reward_objective(
                self.model,
                self.state,
                samples=cfg.samples,
                generator=self.imagine_generator,
                discount=cfg.discount,
                precision=self.precision,
            )
        return goal_image_objective(
            self.model,
            self.state,
            self.goal,
            distance=cfg.distance,
            comparator=self.comparator,
            samples=cfg.samples,
            generator=self.imagine_generator,
            which_frames=cfg.which_frames,
            precision=self.precision,
        )

    def act(self) -> np.ndarray:
        """Plan from the current state; the first action ``(A,)`` float32 in [-1, 1]."""
        return self.cem.act(self.objective()).float().cpu().numpy()

    @torch.inference_mode()
    def observe(self, action: np.ndarray, obs: np.ndarray) -> None:
        """Update the state with the executed ``action`` (A,) and the frame it led to."""
        a = torch.as_tensor(np.asarray(action, dtype=np.float32), device=self.device)
        self.state = self.model.observe(_frame(obs, self.device), a[None, None], state=self.state)

    def rng_state(self) -> dict[str, Tensor]:
        return {
            "cem": self.cem_generator.get_state(),
            "imagine": self.imagine_generator.get_state(),
        }

    def set_rng_state(self, state: dict[str, Tensor]) -> None:
        self.cem_generator.set_state(state["cem"])
        self.imagine_generator.set_state(state["imagine"])


# ---------------------------------------------------------------------------------------------
# episodes


def run_episode(
    env: Any,
    policy: Policy,
    seed: int,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    goal_fn: Callable[[Any], np.ndarray] | None = None,
    on_step: Callable[[], None] | None = None,
    meta: dict[str, Any] | None = None,
) -> tuple[Episode, float]:
    """Play one episode, recorded by :class:`envs.episodes.EpisodeRecorder`.

    Args:
        env: a pixel environment (:func:`envs.make_env`), reset here with ``seed``.
        policy: chooses the actions.
        seed: the reset seed (recorded in the episode's meta).
        noise: std of Gaussian noise added to every action (then clipped to [-1, 1]).
        generator: CPU generator of the noise.
        goal_fn: ``fn(env) -> goal image`` called after the reset (goal-image planning).
        on_step: called after every environment step (e.g. to advance a progress bar).
        meta: the episode's meta data (what :meth:`Episode.save` needs: env, action_repeat, ...).

    Returns:
        ``(episode, act_seconds)``: the :class:`episode_format.Episode` (``meta["physics_error"]``
        is true if an unstable simulation ended it) and the time spent choosing its actions.
    """
    recorder = EpisodeRecorder(**(meta or {}))
    obs, _ = env.reset(seed=seed)
    recorder.reset(obs, seed=seed)
    policy.reset(obs, goal_fn(env) if goal_fn is not None else None)
    act_seconds = 0.0
    while not recorder.done:
        start = time.perf_counter()
        action = np.asarray(policy.act(), dtype=np.float32)
        act_seconds += time.perf_counter() - start
        if noise > 0:
            action = action + noise * torch.randn(action.shape, generator=generator).numpy()
            action = np.clip(action, -1.0, 1.0).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        recorder.step(action, reward, terminated, truncated, obs, info)
        if on_step is not None:
            on_step()
        if info.get("physics_error"):
            log.warning(
                "the simulation became unstable after %d steps: episode ended", len(recorder)
            )
        if not recorder.done:
            policy.observe(action, obs)
    return recorder.episode(), act_seconds


def episode_seed(seed: int, kind: int, index: int) -> int:
    """The reset seed of an episode: independent streams for training (0), in-training
    evaluation (1) and ``mode=eval`` (2) episodes, a function of the run's seed and the index."""
    return int(np.random.SeedSequence([seed, kind, index]).generate_state(1)[0] >> 1)
