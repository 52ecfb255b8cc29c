"""The model-based RL loop (PlaNet, Hafner et al. 2019) as plain code: ``run(cfg, workdir)``.

::

    seed episodes with uniformly random actions
    repeat until cfg.episodes episodes:
        cfg.train_steps gradient steps of the world model on sequences from the replay buffer
        one episode acting with CEM on the model (MPC: re-plan every step, warm-started)
            + N(0, exploration_noise) on the actions
        every cfg.eval_every episodes: cfg.eval_episodes episodes without noise

Acting (:class:`MPCAgent`): the model filters the episode so far into a recurrent state
(``model.observe``; each new frame and the action that led to it update the state), CEM searches
over action sequences by imagining their futures from that state in one batched call per iteration
(``model.imagine``), and the first action of the best plan is executed.

Work directory layout::

    episodes/episode-000000-250.npz   every training episode, written atomically as it ends
    eval_episodes/...                 the evaluation episodes (not trained on, as in PlaNet)
    checkpoints/last.pt               after every episode: model, optimiser, loop counters, RNG
                                      states and the list of episode files it covers
    tb/                               TensorBoard: returns, loss terms, planning time, videos

Resume (``resume=True``): the counters, weights, optimiser and RNG states come from the checkpoint
and the replay buffer is rebuilt from ``episodes/``. An episode file written after the last
checkpoint (the run was killed between writing it and checkpointing) is complete and valid, since
files are written atomically: it is KEPT and counted, so no collected experience is lost or
duplicated; only the gradient steps made just before it are lost (the checkpoint predates them).
Evaluation episode files written after the last checkpoint are removed, since that evaluation is
redone. Stale temporary files of an interrupted write are removed on start.

Episodes: training episode ``k`` is reset with :func:`episode_seed` ``(seed, 0, k)``; every
evaluation replays the same ``eval_episodes`` start states (less noisy curves). Episodes end on
termination (Gymnasium tasks) or truncation (time limits); an episode cut short by an unstable
simulation (the envs' ``PhysicsError``, reported as truncation with ``info["physics_error"]``) is
kept (with ``"physics_error": true`` in its meta), logged and counted (``physics_errors``), and the
run goes on.

:func:`evaluate_checkpoint` (``mode=eval``) loads a checkpoint and reports the mean / std return
over a number of noise-free episodes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from agents.cem import CEM, Objective
from agents.config import CEMPlannerConfig, PlannerConfig
from agents.goals import goal_image
from agents.objectives import goal_image_objective, latent_reward_objective
from envs.episodes import EpisodeRecorder
from envs.registry import make_env_from_config
from episode_format import Episode, episode_index, episode_paths, next_episode_index
from worldmodel.checkpoint import load_checkpoint, write_text_atomic
from worldmodel.data import ReplayBuffer, SequenceSampler, load_episode
from worldmodel.device import autocast_dtype, resolve_device, seed_everything
from worldmodel.run_dir import RunDirectory
from worldmodel.svg import ModelState, WorldModel
from worldmodel.train import Trainer, model_from_checkpoint, predict
from worldmodel.training_setup import build_trainer, resolve_model_config
from worldmodel.viz import prediction_strip

__all__ = [
    "FlatFeatures",
    "LoopState",
    "MPCAgent",
    "Policy",
    "RandomPolicy",
    "episode_seed",
    "evaluate_checkpoint",
    "run",
    "run_episode",
]

log = logging.getLogger("agents.loop")

CHECKPOINT = Path("checkpoints") / "last.pt"
EPISODES = "episodes"
EVAL_EPISODES = "eval_episodes"
#: The evaluation curve, rewritten after every evaluation (one row per evaluation).
EVALUATIONS_CSV = "evaluations.csv"
EVALUATIONS_HEADER = "seed,env_steps,wall_s,eval_return"
#: The parts of the loop's wall time (:attr:`LoopState.seconds`; the rest is "other").
TIME_PARTS = ("planning", "environment", "training", "writing")


# ---------------------------------------------------------------------------------------------
# policies


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


def _quiet_moviepy() -> None:
    """TensorBoard's add_video imports moviepy, whose audio preview module initialises pygame's
    SDL audio at import: on a headless machine that prints a screenful of ALSA errors. Dummy SDL
    drivers (unless the user chose others) keep the console clean; nothing is played anyway."""
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


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
            from worldmodel.comparator import build_comparator_from_config

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


def format_duration(seconds: float) -> str:
    """``1:02:03`` (hours, minutes, seconds) or ``2:03`` under an hour."""
    total = round(max(0.0, seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def episode_seed(seed: int, kind: int, index: int) -> int:
    """The reset seed of an episode: independent streams for training (0), in-training
    evaluation (1) and ``mode=eval`` (2) episodes, a function of the run's seed and the index."""
    return int(np.random.SeedSequence([seed, kind, index]).generate_state(1)[0] >> 1)


# ---------------------------------------------------------------------------------------------
# the loop


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


class _Run:
    """One training session of the loop (state shared by the steps of :func:`run`)."""

    def __init__(self, cfg: CEMPlannerConfig, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.episodes_dir = workdir / EPISODES
        self.eval_dir = workdir / EVAL_EPISODES
        self.ckpt_path = workdir / CHECKPOINT
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)

        self.env = make_env_from_config(cfg.env)
        self.action_repeat = int(getattr(self.env.unwrapped, "action_repeat", 1))
        action_dim = int(self.env.action_space.shape[0])
        model_cfg = resolve_model_config(cfg.model, cfg.loss)  # loss-driven decoder options
        self.model = WorldModel(model_cfg, cfg.env.size, action_dim).to(self.device)
        self.trainer: Trainer = build_trainer(
            self.model, cfg.train, cfg.objective, cfg.loss, self.device
        )
        self.agent = MPCAgent(self.model, cfg.planner, self.device, seed=cfg.seed)
        self.random_policy = RandomPolicy(action_dim, torch.Generator().manual_seed(cfg.seed))
        self.noise_generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.sampler_generator = torch.Generator().manual_seed(cfg.seed + 2)
        self.goal_fn = goal_image if cfg.planner.objective == "goal" else None
        self.state = LoopState()
        self.replay: ReplayBuffer | None = None
        self.sampler: SequenceSampler | None = None
        self.run_dir: RunDirectory | None = None  # made by prepare()
        self.writer: Any = None
        self.bar: Any = None
        self.session_start = time.perf_counter()
        self.wall_at_start = 0.0
        self.resumed_at: int | None = None
        # wall seconds of this session's seed episodes, planned episodes (training, acting and
        # writing) and evaluations: what the ETA extrapolates
        self.durations: dict[str, list[float]] = {"seed": [], "planned": [], "eval": []}

    # -- set-up and checkpoints ---------------------------------------------------------------

    def prepare(self) -> None:
        """Check the work directory, resume if asked, rebuild the replay buffer."""
        cfg = self.cfg
        self.run_dir = RunDirectory(
            self.workdir, subdirs=(self.episodes_dir, self.eval_dir, self.ckpt_path.parent)
        )
        existing = episode_paths(self.episodes_dir)
        if not cfg.resume and (self.ckpt_path.exists() or existing):
            raise ValueError(
                f"{self.workdir} already holds a run ({len(existing)} episodes"
                f"{', a checkpoint' if self.ckpt_path.exists() else ''}); continue it with "
                f"resume=true hydra.run.dir={self.workdir}, or choose a new hydra.run.dir"
            )
        if cfg.resume:
            if self.ckpt_path.exists():
                self._load_checkpoint()
            elif existing:
                log.info("resume: no checkpoint yet in %s; keeping its episode files", self.workdir)
            else:
                log.warning("resume=true but %s holds no run yet: starting a new one", self.workdir)
            self.resumed_at = self.state.episodes
            self._adopt_unrecorded_episodes(existing)
        self.replay = (
            ReplayBuffer.from_directory(self.episodes_dir, cfg.replay_capacity, on_error="raise")
            if self.episodes_dir.exists()
            else ReplayBuffer(cfg.replay_capacity)
        )
        self.sampler = SequenceSampler(
            self.replay,
            cfg.train.seq_len,
            cfg.train.batch_size,
            generator=self.sampler_generator,
            pin_memory=self.device.type == "cuda",
        )
        self.wall_at_start = self.state.wall_seconds

    def _load_checkpoint(self) -> None:
        payload = load_checkpoint(self.ckpt_path, map_location=self.device)  # read once
        payload_env = payload["extra"].get("env", {})
        here = {"name": self.cfg.env.name, "size": self.cfg.env.size}
        if payload_env and payload_env != here:
            raise ValueError(
                f"{self.ckpt_path} was made with env={payload_env['name']} "
                f"env.size={payload_env['size']}; resume with the run's own overrides "
                f"(env={payload_env['name']} env.size={payload_env['size']} ...)"
            )
        extra = self.trainer.load(self.ckpt_path, payload)
        del payload
        loop = extra["loop"]
        self.state = LoopState(**loop)
        rng = extra["rng"]  # generator states are CPU byte tensors (loaded onto the device)
        torch.set_rng_state(rng["torch"].cpu())
        self.agent.set_rng_state({k: v.cpu() for k, v in rng["agent"].items()})
        self.random_policy.generator.set_state(rng["random_policy"].cpu())
        self.noise_generator.set_state(rng["noise"].cpu())
        self.sampler_generator.set_state(rng["sampler"].cpu())
        recorded = list(extra["episode_files"])
        on_disk = [p.name for p in episode_paths(self.episodes_dir)][: len(recorded)]
        if on_disk != recorded:
            missing = sorted(set(recorded) - set(on_disk))
            raise ValueError(
                f"the episode files in {self.episodes_dir} do not match the checkpoint "
                f"{self.ckpt_path} (missing: {', '.join(missing[:3]) or 'none'}); restore them "
                "or start a new run in a new hydra.run.dir"
            )
        if "eval_episode_files" in extra:  # absent from checkpoints of older versions
            self._drop_unrecorded_evaluation(set(extra["eval_episode_files"]))
        log.info(
            "resumed %s at episode %d, %d env steps, %d gradient steps",
            self.workdir,
            self.state.episodes,
            self.state.env_steps,
            self.trainer.global_step,
        )

    def _drop_unrecorded_evaluation(self, recorded: set[str]) -> None:
        """Remove the evaluation episode files written after the last checkpoint: that
        evaluation is not in the checkpoint and is redone (same weights, RNG states and reset
        seeds), so keeping its files would duplicate it."""
        for path in episode_paths(self.eval_dir):
            if path.name not in recorded:
                path.unlink()
                log.info("resume: removed %s of an unrecorded evaluation (redone)", path.name)

    def _adopt_unrecorded_episodes(self, paths: list[Path]) -> None:
        """Count the episode files written after the last checkpoint (they are complete)."""
        for path in paths[self.state.episodes :]:
            if episode_index(path) != self.state.episodes:
                raise ValueError(
                    f"episode file {path.name} breaks the numbering of {self.episodes_dir} "
                    f"(expected index {self.state.episodes}); remove it or start a new run"
                )
            episode = load_episode(path)
            self._count_episode(episode.num_steps, episode.total_reward)
            log.info("resume: kept %s, written after the last checkpoint", path.name)

    def _count_episode(self, length: int, total_reward: float) -> None:
        s = self.state
        s.episodes += 1
        s.agent_steps += length
        s.env_steps += length * self.action_repeat
        s.train_returns.append(total_reward)

    def save_checkpoint(self) -> None:
        s = self.state
        s.wall_seconds = self.wall_now()
        extra = {
            "loop": asdict(s),
            "episodes_dir": EPISODES,  # relative to the work directory
            "episode_files": [p.name for p in episode_paths(self.episodes_dir)][: s.episodes],
            "eval_episode_files": [p.name for p in episode_paths(self.eval_dir)],
            "rng": {
                "torch": torch.get_rng_state(),
                "agent": self.agent.rng_state(),
                "random_policy": self.random_policy.generator.get_state(),
                "noise": self.noise_generator.get_state(),
                "sampler": self.sampler_generator.get_state(),
            },
            "config": asdict(self.cfg),
            "env": {"name": self.cfg.env.name, "size": self.cfg.env.size},
        }
        self.trainer.save(self.ckpt_path, extra=extra)

    # -- the steps ----------------------------------------------------------------------------

    def train_model(self) -> dict[str, float]:
        """``cfg.train_steps`` gradient steps; the mean of each logged value."""
        assert self.sampler is not None
        try:
            self.sampler.num_windows  # noqa: B018 - builds the index, fails clearly if empty
        except ValueError as err:
            raise ValueError(
                f"cannot train the world model on the collected episodes: {err} "
                f"(set train.seq_len=..., now {self.cfg.train.seq_len})"
            ) from None
        sums: dict[str, float] = {}
        for _ in range(self.cfg.train_steps):
            logs = self.trainer.step(self.sampler.sample())
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value
        if sums.get("nonfinite"):
            log.warning(
                "%d of %d gradient steps skipped: non-finite loss or gradient (%d in this run)",
                sums["nonfinite"],
                self.cfg.train_steps,
                self.trainer.total_nonfinite,
            )
        return {k: v / max(1, self.cfg.train_steps) for k, v in sums.items()}

    def collect(self, planned: bool) -> tuple[Episode, float | None]:
        """One training episode, saved and added to the replay buffer; returns it and its
        planning time (None for a random seed episode)."""
        cfg, s = self.cfg, self.state
        policy: Policy = self.agent if planned else self.random_policy
        start = time.perf_counter()
        episode, act_seconds = run_episode(
            self.env,
            policy,
            seed=episode_seed(cfg.seed, 0, s.episodes),
            noise=cfg.exploration_noise if planned else 0.0,
            generator=self.noise_generator,
            goal_fn=self.goal_fn if planned else None,
            on_step=self.on_env_step,
            meta=self._meta(policy="cem" if planned else "random"),
        )
        self._add_time("planning", act_seconds)
        self._add_time("environment", time.perf_counter() - start - act_seconds)
        with self.timed("writing"):
            episode.save(self.episodes_dir, s.episodes)
        assert self.replay is not None
        self.replay.add(episode)
        if planned:
            s.plan_seconds += act_seconds
            s.planned_actions += episode.num_steps
        s.physics_errors += bool(episode.meta.get("physics_error"))
        self._count_episode(episode.num_steps, episode.total_reward)
        return episode, act_seconds if planned else None

    def _meta(self, policy: str) -> dict[str, Any]:
        return {
            "env": self.cfg.env.name,
            "action_repeat": self.action_repeat,
            "size": self.cfg.env.size,
            "source": "env",
            "policy": policy,
        }

    def finished(self) -> bool:
        """``cfg.episodes`` training episodes, or the ``cfg.max_env_steps`` budget, reached."""
        cfg, s = self.cfg, self.state
        return s.episodes >= cfg.episodes or 0 < cfg.max_env_steps <= s.env_steps

    def eval_due(self) -> bool:
        cfg, s = self.cfg, self.state
        planned = s.episodes - cfg.seed_episodes
        if planned <= 0 or (s.eval_at and s.eval_at[-1] == s.episodes):
            return False
        return self.finished() or (cfg.eval_every > 0 and planned % cfg.eval_every == 0)

    def final_episodes(self) -> int:
        """The episode count the run will end at (from the mean episode length so far when a
        step budget ends it first)."""
        cfg, s = self.cfg, self.state
        if self.finished():
            return s.episodes
        if not cfg.max_env_steps or not s.episodes:
            return cfg.episodes
        per_episode = s.env_steps / s.episodes
        left = math.ceil((cfg.max_env_steps - s.env_steps) / per_episode)
        return min(cfg.episodes, s.episodes + left)

    def eta_seconds(self) -> float | None:
        """Seconds to the end of the run: the episodes and evaluations still to come, each at
        the mean duration of its kind in this session (None before a planned episode is timed).
        Seed episodes, planned episodes and evaluations cost very different times, so one
        average rate over environment steps would be far off early in a run."""
        cfg, s = self.cfg, self.state
        d = self.durations
        if not d["planned"]:
            return None
        final = self.final_episodes()
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
        train_per_episode = self.state.seconds.get("training", 0.0) / max(1, planned_done)
        eval_s = (
            float(np.mean(d["eval"]))
            if d["eval"]
            else cfg.eval_episodes * max(0.0, planned_s - train_per_episode)
        )
        return seed_left * seed_s + planned_left * planned_s + evals_left * eval_s

    def evaluate(self) -> list[Episode]:
        cfg, s = self.cfg, self.state
        episodes = []
        for i in range(cfg.eval_episodes):
            reset_seed = episode_seed(cfg.seed, 1, i)
            tick = self._ticker(f"evaluating {i + 1}/{cfg.eval_episodes}")
            start = time.perf_counter()
            episode, act_seconds = run_episode(
                self.env,
                self.agent,
                seed=reset_seed,
                goal_fn=self.goal_fn,
                on_step=tick,
                meta=self._meta(policy="cem-eval"),
            )
            self._add_time("planning", act_seconds)
            self._add_time("environment", time.perf_counter() - start - act_seconds)
            with self.timed("writing"):
                episode.save(self.eval_dir, next_episode_index(self.eval_dir))
            s.plan_seconds += act_seconds
            s.planned_actions += episode.num_steps
            s.physics_errors += bool(episode.meta.get("physics_error"))
            episodes.append(episode)
        returns = [e.total_reward for e in episodes]
        s.evaluations += 1
        s.eval_at.append(s.episodes)
        s.eval_env_steps.append(s.env_steps)
        s.eval_returns.append(float(np.mean(returns)))
        s.eval_stds.append(float(np.std(returns)))
        s.eval_wall_s.append(self.wall_now())
        with self.timed("writing"):
            self.write_evaluations()
        return episodes

    def write_evaluations(self) -> None:
        """Rewrite ``evaluations.csv`` (:data:`EVALUATIONS_HEADER`) from the state: one row per
        evaluation, so a resumed run's file matches its checkpoint."""
        s = self.state
        walls = list(s.eval_wall_s) + [math.nan] * (len(s.eval_returns) - len(s.eval_wall_s))
        rows = [EVALUATIONS_HEADER]
        for steps, wall, ret in zip(s.eval_env_steps, walls, s.eval_returns, strict=True):
            wall_text = "" if math.isnan(wall) else f"{wall:.1f}"
            rows.append(f"{self.cfg.seed},{steps},{wall_text},{ret:.4f}")
        write_text_atomic(self.workdir / EVALUATIONS_CSV, "\n".join(rows) + "\n")

    # -- wall time ----------------------------------------------------------------------------

    def wall_now(self) -> float:
        """Wall time of the run so far, over all its sessions."""
        return self.wall_at_start + time.perf_counter() - self.session_start

    def _add_time(self, part: str, seconds: float) -> None:
        self.state.seconds[part] = self.state.seconds.get(part, 0.0) + seconds

    @contextmanager
    def timed(self, part: str) -> Iterator[None]:
        """Count the wall time of the block in ``state.seconds[part]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._add_time(part, time.perf_counter() - start)

    def time_breakdown(self) -> dict[str, float]:
        """Seconds per part of :data:`TIME_PARTS`, plus ``other`` (set-up, replay buffer, ...)
        and ``total`` (the run's wall time over all sessions)."""
        total = self.wall_now()
        parts = {k: self.state.seconds.get(k, 0.0) for k in TIME_PARTS}
        parts["other"] = max(0.0, total - sum(parts.values()))
        parts["total"] = total
        return parts

    # -- logging ------------------------------------------------------------------------------

    def log_episode(
        self, episode: Episode, plan_seconds: float | None, train_logs: dict[str, float]
    ) -> None:
        w, s = self.writer, self.state
        step = s.env_steps
        w.add_scalar("return/train", episode.total_reward, step)
        w.add_scalar("episode/length", episode.num_steps, step)
        w.add_scalar("progress/episodes", s.episodes, step)
        w.add_scalar("progress/gradient_steps", self.trainer.global_step, step)
        w.add_scalar("progress/physics_errors", s.physics_errors, step)
        if plan_seconds is not None:
            w.add_scalar("planning/ms_per_action", 1000 * plan_seconds / episode.num_steps, step)
        for key, value in train_logs.items():
            if key != "step":
                w.add_scalar(f"world_model/{key}", value, step)
        times = self.time_breakdown()
        for part, seconds in times.items():
            if part != "total":
                w.add_scalar(f"time/{part}_fraction", seconds / max(times["total"], 1e-9), step)
        w.add_scalar("time/wall_minutes", times["total"] / 60, step)
        w.flush()

    def log_evaluation(self, episodes: list[Episode]) -> None:
        cfg, w, s = self.cfg, self.writer, self.state
        step = s.env_steps
        w.add_scalar("return/eval", s.eval_returns[-1], step)
        w.add_scalar("return/eval_std", s.eval_stds[-1], step)
        first = episodes[0]
        if cfg.video_every and (s.evaluations - 1) % cfg.video_every == 0:
            _quiet_moviepy()
            video = torch.from_numpy(first.obs).permute(0, 3, 1, 2)[None]  # (1, T+1, 3, H, W)
            fps = float(self.env.metadata.get("render_fps", 30))
            w.add_video("eval/episode", video, step, fps=max(1, round(fps)))
        if cfg.strip_every and (s.evaluations - 1) % cfg.strip_every == 0:
            strip = self._prediction_strip(first)
            if strip is not None:
                w.add_image("eval/open_loop_prediction", strip, step, dataformats="HWC")
        w.flush()

    def _prediction_strip(self, episode: Episode) -> np.ndarray | None:
        """Open-loop latent predictions (what the planner imagines) under the episode's actions,
        from the middle of the episode: rows truth, sample 1, sample 2."""
        n_past = self.cfg.train.n_past
        n_future = min(self.cfg.planner.cem.horizon, episode.num_frames - n_past)
        if n_future < 1:
            return None
        start = (episode.num_frames - n_past - n_future) // 2
        span = slice(start, start + n_past + n_future)
        obs = torch.from_numpy(episode.obs[span]).permute(0, 3, 1, 2)[None].to(self.device)
        action = torch.from_numpy(episode.action[start : start + n_past - 1 + n_future])[None]
        generator = torch.Generator(device=self.device).manual_seed(0)
        pred = predict(
            self.model,
            obs,
            action.to(self.device),
            n_past,
            n_future,
            samples=2,
            generator=generator,
            feedback="latent",
        )  # (1, 2, n_future, 3, H, W)
        truth = obs[0].float() / 255
        return prediction_strip([truth, *pred[0]])

    def stage(self, name: str) -> None:
        """Show what the loop is doing in the progress bar."""
        if self.bar is not None:
            self.bar.set_description(name, refresh=True)

    def _ticker(self, label: str) -> Callable[[], None]:
        """A step callback showing ``label (step k)`` in the bar (evaluation steps are not part
        of the bar's count, which is the training budget)."""
        steps = 0

        def tick() -> None:
            nonlocal steps
            steps += 1
            self.stage(f"{label} (step {steps})")

        return tick

    def on_env_step(self) -> None:
        """Advance the progress bar by one agent step of a training episode."""
        if self.bar is not None:
            self.bar.update(self.action_repeat)

    def update_bar(self, episode: Episode | None = None) -> None:
        if self.bar is None:
            return
        s = self.state
        if s.episodes:
            per_episode = s.env_steps / s.episodes
            self.bar.total = max(s.env_steps, round(per_episode * self.final_episodes()))
        self.bar.n = s.env_steps
        postfix = {"ep": f"{s.episodes}/{self.final_episodes()}"}
        if episode is not None:
            postfix["return"] = f"{episode.total_reward:.1f}"
        if s.eval_returns:
            postfix["eval"] = f"{s.eval_returns[-1]:.1f}"
        if s.planned_actions:
            postfix["plan"] = f"{1000 * s.plan_seconds / s.planned_actions:.0f}ms"
        eta = self.eta_seconds()
        if eta is not None:
            postfix["eta"] = format_duration(eta)
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def log_progress(self, episode: Episode | None) -> None:
        """Without a progress bar (``progress=false``, e.g. under nohup): one log line per
        episode and evaluation, with the ETA."""
        if self.bar is not None:
            return
        s = self.state
        what = (
            f"return {episode.total_reward:.1f}"
            if episode is not None
            else f"evaluation return {s.eval_returns[-1]:.1f}"
        )
        eta = self.eta_seconds()
        plan = (
            f", planning {1000 * s.plan_seconds / s.planned_actions:.0f} ms/action"
            if s.planned_actions
            else ""
        )
        log.info(
            "episode %d/%d, %s env steps: %s%s; wall %s%s",
            s.episodes,
            self.final_episodes(),
            f"{s.env_steps:,}",
            what,
            plan,
            format_duration(self.wall_now()),
            f", ETA {format_duration(eta)}" if eta is not None else "",
        )

    # -- main -------------------------------------------------------------------------------

    def loop(self) -> None:
        cfg, s = self.cfg, self.state
        while True:
            if self.eval_due():
                start = time.perf_counter()
                self.stage("evaluating")
                episodes = self.evaluate()
                with self.timed("writing"):
                    self.log_evaluation(episodes)
                    self.save_checkpoint()
                self.durations["eval"].append(time.perf_counter() - start)
                self.update_bar()
                self.log_progress(None)
            if self.finished():
                break
            start = time.perf_counter()
            planned = s.episodes >= cfg.seed_episodes
            train_logs: dict[str, float] = {}
            if planned and cfg.train_steps:
                self.stage("training")
                with self.timed("training"):
                    train_logs = self.train_model()
            self.stage("acting" if planned else "seeding")
            episode, plan_seconds = self.collect(planned)
            with self.timed("writing"):
                self.log_episode(episode, plan_seconds, train_logs)
                self.save_checkpoint()
            self.durations["planned" if planned else "seed"].append(time.perf_counter() - start)
            self.update_bar(episode)
            self.log_progress(episode)

    def summary(self) -> dict[str, Any]:
        cfg, s = self.cfg, self.state
        seeds = s.train_returns[: cfg.seed_episodes]
        return {
            "mode": "train",
            "workdir": str(self.workdir),
            "env": cfg.env.name,
            "episodes": s.episodes,
            "env_steps": s.env_steps,
            "agent_steps": s.agent_steps,
            "gradient_steps": self.trainer.global_step,
            "nonfinite_steps": self.trainer.total_nonfinite,  # skipped (non-finite) gradient steps
            "random_return": float(np.mean(seeds)) if seeds else math.nan,
            "last_train_return": s.train_returns[-1] if s.train_returns else math.nan,
            "best_eval_return": max(s.eval_returns) if s.eval_returns else math.nan,
            "last_eval_return": s.eval_returns[-1] if s.eval_returns else math.nan,
            "eval_returns": list(s.eval_returns),
            "eval_env_steps": list(s.eval_env_steps),
            "physics_errors": s.physics_errors,
            "plan_ms_per_action": (
                1000 * s.plan_seconds / s.planned_actions if s.planned_actions else math.nan
            ),
            "wall_time_s": s.wall_seconds,
            "eval_wall_s": list(s.eval_wall_s),
            "time_s": {k: round(v, 1) for k, v in self.time_breakdown().items()},
            "resumed_at_episode": self.resumed_at,
            "checkpoint": str(self.ckpt_path),
            "parameters": self.model.num_params(),
            "device": str(self.device),
        }

    def close(self) -> None:
        if self.run_dir is not None:
            self.run_dir.close()  # the progress bar and the TensorBoard writer
        self.env.close()


def run(cfg: CEMPlannerConfig, workdir: str | Path) -> dict[str, Any]:
    """Run the loop (``mode=train``) or evaluate a checkpoint (``mode=eval``) in ``workdir``.

    Returns:
        A summary dict (also written to ``<workdir>/summary.json``): episodes, env steps, gradient
        steps, the random policy's mean return (seed episodes), best / last evaluation return,
        the evaluation history, planning ms per action, wall time, ...
    """
    cfg.validate()
    workdir = Path(workdir).resolve()
    if cfg.mode == "eval":
        return evaluate_checkpoint(cfg, workdir)
    session = _Run(cfg, workdir)
    try:
        session.prepare()
        run_dir = session.run_dir
        assert run_dir is not None
        new = session.resumed_at is None  # a resumed run logged its config when it started
        session.writer = run_dir.open_writer(
            cfg if new else None, 0, parameters=session.model.num_params() if new else None
        )
        log.info(
            "%s: %s, model %s M=%s K=%s with %s parameters on %s (training precision %s, "
            "planning %s); work directory %s (continue it with resume=true hydra.run.dir=%s)",
            "resuming" if session.resumed_at is not None else "starting",
            cfg.env.name,
            cfg.model.variant,
            cfg.model.M,
            cfg.model.K,
            f"{session.model.num_params():,}",
            session.device,
            session.trainer.amp_dtype or torch.float32,
            session.agent.precision,
            workdir,
            workdir,
        )
        if cfg.progress:
            from tqdm.contrib.logging import logging_redirect_tqdm

            session.bar = run_dir.open_bar(
                total=None,
                # the ETA is the loop's own (eta_seconds): tqdm's, from one average rate over
                # env steps, is far off while seed episodes, training and evaluations alternate
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
                initial=session.state.env_steps,  # a resumed run starts where it stopped
                unit="step",
                desc="cem_planner",
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0,
            )
            session.update_bar()
            with logging_redirect_tqdm():  # log lines above the bar, not through it
                session.loop()
        else:
            session.loop()
        session.save_checkpoint()
        summary = session.summary()
    finally:
        session.close()
    run_dir.write_summary(summary)
    return summary


# ---------------------------------------------------------------------------------------------
# evaluation only


def evaluate_checkpoint(cfg: CEMPlannerConfig, workdir: Path | None = None) -> dict[str, Any]:
    """``mode=eval``: load ``cfg.ckpt`` and play ``cfg.eval_episodes`` noise-free episodes.

    Returns:
        ``{"mode": "eval", "checkpoint", "env", "episodes", "mean_return", "std_return",
        "returns", "plan_ms_per_action"}``.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    payload = load_checkpoint(cfg.ckpt, map_location="cpu")
    trained_on = payload.get("extra", {}).get("env")
    if trained_on and (trained_on["name"], trained_on["size"]) != (cfg.env.name, cfg.env.size):
        raise ValueError(
            f"checkpoint {cfg.ckpt} was trained on env={trained_on['name']} "
            f"env.size={trained_on['size']}, but this run has env={cfg.env.name} "
            f"env.size={cfg.env.size}; pass env={trained_on['name']} env.size={trained_on['size']}"
        )
    model = model_from_checkpoint(cfg.ckpt, device, payload)  # the file is read once
    del payload
    env = make_env_from_config(cfg.env)
    try:
        action_dim = int(env.action_space.shape[0])
        if (model.image_size, model.action_dim) != (cfg.env.size, action_dim):
            raise ValueError(
                f"checkpoint {cfg.ckpt} holds a model for {model.image_size} px frames and "
                f"{model.action_dim}-dim actions; env {cfg.env.name} has {cfg.env.size} px and "
                f"{action_dim}-dim actions"
            )
        agent = MPCAgent(model, cfg.planner, device, seed=cfg.seed)
        goal_fn = goal_image if cfg.planner.objective == "goal" else None
        returns, plan_seconds, actions = [], 0.0, 0
        episodes = range(cfg.eval_episodes)
        if cfg.progress:
            from tqdm import tqdm

            episodes = tqdm(episodes, desc="eval", unit="episode", file=sys.stderr)
        for i in episodes:
            episode, act_seconds = run_episode(
                env, agent, seed=episode_seed(cfg.seed, 2, i), goal_fn=goal_fn
            )
            returns.append(episode.total_reward)
            plan_seconds += act_seconds
            actions += episode.num_steps
    finally:
        env.close()
    summary = {
        "mode": "eval",
        "checkpoint": str(cfg.ckpt),
        "env": cfg.env.name,
        "episodes": len(returns),
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
        "plan_ms_per_action": 1000 * plan_seconds / max(1, actions),
    }
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(workdir / "eval_summary.json", json.dumps(summary, indent=2))
    return summary
