"""The model-based RL loop (PlaNet, Hafner et al. 2019) as plain code: ``run(cfg, workdir)``.

::

    seed episodes with uniformly random actions
    repeat until cfg.episodes episodes (or cfg.max_env_steps env steps):
        cfg.train_steps gradient steps of the world model on sequences from the replay buffer
        one episode acting with CEM on the model (MPC: re-plan every step, warm-started)
            + N(0, exploration_noise) on the actions
        every cfg.eval_every episodes: cfg.eval_episodes episodes without noise

The pieces, one job each:

- :mod:`agents.acting`: the policies (:class:`MPCAgent`: CEM on the model's imagination,
  :class:`RandomPolicy`) and :func:`run_episode`, :func:`episode_seed`;
- :mod:`agents.loop_state`: the counters (:class:`LoopState`, in every checkpoint), when to
  evaluate and stop, the ETA, the wall-time breakdown, ``evaluations.csv``;
- :mod:`agents.loop_log`: TensorBoard and the progress bar (:class:`~agents.loop_log.LoopLogger`);
- here: set-up, resume, checkpoints, the training, collection and evaluation steps and the loop
  itself (``_Run``), :func:`run` and :func:`evaluate_checkpoint`. The names above are re-exported.

Work directory layout::

    episodes/episode-000000-250.npz   every training episode, written atomically as it ends
    eval_episodes/...                 the evaluation episodes (not trained on, as in PlaNet)
    checkpoints/last.pt               after every episode: model, optimiser, loop counters, RNG
                                      states and the list of episode files it covers
    evaluations.csv                   the evaluation curve (seed,env_steps,wall_s,eval_return)
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
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.acting import (
    FlatFeatures,
    MPCAgent,
    Policy,
    RandomPolicy,
    episode_seed,
    run_episode,
)
from agents.config import CEMPlannerConfig
from agents.goals import goal_image
from agents.loop_log import LoopLogger
from agents.loop_state import (
    EVALUATIONS_CSV,
    EVALUATIONS_HEADER,
    TIME_PARTS,
    LoopState,
    WallClock,
    eval_due,
    finished,
    format_duration,
    time_breakdown,
    timed,
    write_evaluations,
)
from envs.registry import make_env_from_config
from episode_format import Episode, episode_index, episode_paths, next_episode_index
from worldmodel.data import ReplayBuffer, SequenceSampler, load_episode
from worldmodel.device import resolve_device, seed_everything
from worldmodel.model.svg import WorldModel
from worldmodel.training.checkpoint import load_checkpoint, model_from_checkpoint, write_text_atomic
from worldmodel.training.run_dir import RunDirectory
from worldmodel.training.train import Trainer
from worldmodel.training.training_setup import build_trainer, resolve_model_config

__all__ = [
    "EPISODES",
    "EVALUATIONS_CSV",
    "EVALUATIONS_HEADER",
    "TIME_PARTS",
    "FlatFeatures",
    "LoopState",
    "MPCAgent",
    "Policy",
    "RandomPolicy",
    "episode_seed",
    "evaluate_checkpoint",
    "format_duration",
    "run",
    "run_episode",
]

log = logging.getLogger("agents.loop")

CHECKPOINT = Path("checkpoints") / "last.pt"
EPISODES = "episodes"
EVAL_EPISODES = "eval_episodes"


class _Run:
    """One training session of the loop (state shared by the steps of :func:`run`): set-up,
    resume and checkpoints, the steps (train, collect, evaluate) and the loop over them. The
    counters are :attr:`state` (:class:`LoopState`), the reporting :attr:`logger`
    (:class:`~agents.loop_log.LoopLogger`), the run's wall time :attr:`clock`."""

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
        # TensorBoard and the progress bar (run() opens its writer and bar)
        self.logger = LoopLogger(
            cfg,
            self.model,
            self.device,
            self.action_repeat,
            fps=float(self.env.metadata.get("render_fps", 30)),
        )
        self.clock = WallClock()  # the earlier sessions' time is set by prepare()
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
        self.clock.earlier = self.state.wall_seconds

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
            self.state.count_episode(episode.num_steps, episode.total_reward, self.action_repeat)
            log.info("resume: kept %s, written after the last checkpoint", path.name)

    def save_checkpoint(self) -> None:
        s = self.state
        s.wall_seconds = self.clock.now()
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
            on_step=self.logger.on_env_step,
            meta=self._meta(policy="cem" if planned else "random"),
        )
        s.add_time("planning", act_seconds)
        s.add_time("environment", time.perf_counter() - start - act_seconds)
        with timed(s, "writing"):
            episode.save(self.episodes_dir, s.episodes)
        assert self.replay is not None
        self.replay.add(episode)
        if planned:
            s.plan_seconds += act_seconds
            s.planned_actions += episode.num_steps
        s.physics_errors += bool(episode.meta.get("physics_error"))
        s.count_episode(episode.num_steps, episode.total_reward, self.action_repeat)
        return episode, act_seconds if planned else None

    def _meta(self, policy: str) -> dict[str, Any]:
        return {
            "env": self.cfg.env.name,
            "action_repeat": self.action_repeat,
            "size": self.cfg.env.size,
            "source": "env",
            "policy": policy,
        }

    def evaluate(self) -> list[Episode]:
        cfg, s = self.cfg, self.state
        episodes = []
        for i in range(cfg.eval_episodes):
            reset_seed = episode_seed(cfg.seed, 1, i)
            tick = self.logger.ticker(f"evaluating {i + 1}/{cfg.eval_episodes}")
            start = time.perf_counter()
            episode, act_seconds = run_episode(
                self.env,
                self.agent,
                seed=reset_seed,
                goal_fn=self.goal_fn,
                on_step=tick,
                meta=self._meta(policy="cem-eval"),
            )
            s.add_time("planning", act_seconds)
            s.add_time("environment", time.perf_counter() - start - act_seconds)
            with timed(s, "writing"):
                episode.save(self.eval_dir, next_episode_index(self.eval_dir))
            s.plan_seconds += act_seconds
            s.planned_actions += episode.num_steps
            s.physics_errors += bool(episode.meta.get("physics_error"))
            episodes.append(episode)
        s.count_evaluation([e.total_reward for e in episodes], self.clock.now())
        with timed(s, "writing"):
            write_evaluations(self.workdir / EVALUATIONS_CSV, s, cfg.seed)
        return episodes

    # -- main -------------------------------------------------------------------------------

    def loop(self) -> None:
        cfg, s, logger = self.cfg, self.state, self.logger
        while True:
            if eval_due(s, cfg):
                start = time.perf_counter()
                logger.stage("evaluating")
                episodes = self.evaluate()
                with timed(s, "writing"):
                    logger.evaluation(s, episodes)
                    self.save_checkpoint()
                self.durations["eval"].append(time.perf_counter() - start)
                logger.progress(s, self.durations, self.clock.now())
            if finished(s, cfg):
                break
            start = time.perf_counter()
            planned = s.episodes >= cfg.seed_episodes
            train_logs: dict[str, float] = {}
            if planned and cfg.train_steps:
                logger.stage("training")
                with timed(s, "training"):
                    train_logs = self.train_model()
            logger.stage("acting" if planned else "seeding")
            episode, plan_seconds = self.collect(planned)
            with timed(s, "writing"):
                times = time_breakdown(s, self.clock.now())
                logger.episode(
                    s, episode, plan_seconds, train_logs, self.trainer.global_step, times
                )
                self.save_checkpoint()
            self.durations["planned" if planned else "seed"].append(time.perf_counter() - start)
            logger.progress(s, self.durations, self.clock.now(), episode)

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
            "time_s": {k: round(v, 1) for k, v in time_breakdown(s, self.clock.now()).items()},
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
        session.logger.writer = run_dir.open_writer(
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

            session.logger.bar = run_dir.open_bar(
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
            session.logger.progress(session.state, session.durations, session.clock.now())
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
