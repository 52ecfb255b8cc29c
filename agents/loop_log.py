"""What the RL loop reports while it runs: :class:`LoopLogger`.

TensorBoard (returns, episode length, progress counters, every world-model loss term, planning
time per action, the wall-time breakdown, an evaluation episode video and an open-loop prediction
strip), and either a progress bar (stage, env steps, episodes, returns, planning time, ETA) or,
without one (``progress=false``, e.g. under nohup), one log line per episode and evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from agents.config import CEMPlannerConfig
from agents.loop_state import LoopState, eta_seconds, final_episodes, format_duration
from episode_format import Episode
from worldmodel.evaluation.reward import reward_accuracy
from worldmodel.model.svg import WorldModel
from worldmodel.training.run_dir import add_video
from worldmodel.training.train import predict
from worldmodel.viz import prediction_strip

__all__ = ["LoopLogger"]

log = logging.getLogger("agents.loop")  # the loop's progress lines keep the loop's name


class LoopLogger:
    """The loop's TensorBoard writer and progress bar (or log lines).

    Args:
        cfg: the run's config (video and strip intervals, horizon, ETA settings).
        model: the world model whose open-loop predictions the strips show.
        device: where the model lives.
        action_repeat: env steps per agent step (the bar counts env steps).
        fps: frame rate of the evaluation videos.

    ``writer`` (a TensorBoard ``SummaryWriter``) and ``bar`` (a tqdm bar, or None for log lines)
    are opened by :func:`agents.loop.run` and closed with the run directory.
    """

    def __init__(
        self,
        cfg: CEMPlannerConfig,
        model: WorldModel,
        device: torch.device,
        action_repeat: int,
        fps: float,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.device = device
        self.action_repeat = action_repeat
        self.fps = fps
        self.writer: Any = None
        self.bar: Any = None

    # -- TensorBoard --------------------------------------------------------------------------

    def episode(
        self,
        state: LoopState,
        episode: Episode,
        plan_seconds: float | None,
        train_logs: dict[str, float],
        gradient_steps: int,
        times: dict[str, float],
    ) -> None:
        """A training episode (``plan_seconds`` None for a random one), the mean logs of the
        gradient steps before it and the wall-time breakdown (:func:`loop_state.time_breakdown`)."""
        w, s = self.writer, state
        step = s.env_steps
        w.add_scalar("return/train", episode.total_reward, step)
        w.add_scalar("episode/length", episode.num_steps, step)
        w.add_scalar("progress/episodes", s.episodes, step)
        w.add_scalar("progress/gradient_steps", gradient_steps, step)
        w.add_scalar("progress/physics_errors", s.physics_errors, step)
        if plan_seconds is not None:
            w.add_scalar("planning/ms_per_action", 1000 * plan_seconds / episode.num_steps, step)
        for key, value in train_logs.items():
            if key != "step":
                w.add_scalar(f"world_model/{key}", value, step)
        for part, seconds in times.items():
            if part != "total":
                w.add_scalar(f"time/{part}_fraction", seconds / max(times["total"], 1e-9), step)
        w.add_scalar("time/wall_minutes", times["total"] / 60, step)
        w.flush()

    def evaluation(self, state: LoopState, episodes: list[Episode]) -> None:
        """The evaluation just counted in ``state``: its returns, and a video and a prediction
        strip of its first episode every ``video_every`` / ``strip_every`` evaluations."""
        cfg, w, s = self.cfg, self.writer, state
        step = s.env_steps
        w.add_scalar("return/eval", s.eval_returns[-1], step)
        w.add_scalar("return/eval_std", s.eval_stds[-1], step)
        first = episodes[0]
        if cfg.video_every and (s.evaluations - 1) % cfg.video_every == 0:
            video = torch.from_numpy(first.obs).permute(0, 3, 1, 2)[None]  # (1, T+1, 3, H, W)
            add_video(w, "eval/episode", video, step, self.fps)
        if cfg.strip_every and (s.evaluations - 1) % cfg.strip_every == 0:
            strip = self.prediction_strip(first)
            if strip is not None:
                w.add_image("eval/open_loop_prediction", strip, step, dataformats="HWC")
        self.reward_accuracy(episodes, step)
        w.flush()

    def reward_accuracy(self, episodes: list[Episode], step: int) -> None:
        """How well the model predicts the rewards of the (held-out) evaluation episodes, along
        the planner's open-loop rollouts and teacher-forced (:mod:`worldmodel.evaluation.reward`):
        ``planning/imagined_reward_corr`` near 0 means the planner ranks noise."""
        if self.cfg.planner.objective != "reward" or not self.model.has_reward:
            return
        horizon = self.cfg.planner.cem.horizon
        try:
            acc = reward_accuracy(
                self.model,
                episodes,
                horizon=horizon,
                n_past=self.cfg.train.n_past,
                samples=self.cfg.planner.samples,
                max_windows=32,
            )
        except ValueError:  # episodes shorter than a window
            return
        w = self.writer
        for name in ("imagined", "teacher_forced"):
            w.add_scalar(f"planning/{name}_reward_corr", getattr(acc, f"{name}_corr"), step)
            mse = getattr(acc, f"{name}_mse") / max(acc.constant_mse, 1e-12)
            w.add_scalar(f"planning/{name}_reward_mse_vs_constant", mse, step)
        log.info(
            "reward prediction on the evaluation episodes (%d windows of %d steps): correlation "
            "of the %d-step sums with the truth %.2f imagined (what the planner ranks), %.2f "
            "teacher-forced; MSE / constant's %.2f imagined, %.2f teacher-forced",
            acc.windows,
            horizon,
            horizon,
            acc.imagined_corr,
            acc.teacher_forced_corr,
            acc.imagined_mse / max(acc.constant_mse, 1e-12),
            acc.teacher_forced_mse / max(acc.constant_mse, 1e-12),
        )

    def prediction_strip(self, episode: Episode) -> np.ndarray | None:
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

    # -- the progress bar or log lines --------------------------------------------------------

    def stage(self, name: str) -> None:
        """Show what the loop is doing in the progress bar."""
        if self.bar is not None:
            self.bar.set_description(name, refresh=True)

    def ticker(self, label: str) -> Callable[[], None]:
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

    def progress(
        self,
        state: LoopState,
        durations: dict[str, list[float]],
        wall: float,
        episode: Episode | None = None,
    ) -> None:
        """After a training ``episode`` (None: after an evaluation, or at the start): update the
        bar or, without one, log a line; with the ETA (:func:`loop_state.eta_seconds` from this
        session's ``durations``) and the run's ``wall`` time."""
        final = final_episodes(state, self.cfg)
        eta = eta_seconds(state, self.cfg, durations)
        if self.bar is not None:
            self._update_bar(state, episode, final, eta)
        else:
            self._log_line(state, episode, final, eta, wall)

    def _update_bar(
        self, state: LoopState, episode: Episode | None, final: int, eta: float | None
    ) -> None:
        s = state
        if s.episodes:
            per_episode = s.env_steps / s.episodes
            self.bar.total = max(s.env_steps, round(per_episode * final))
        self.bar.n = s.env_steps
        postfix = {"ep": f"{s.episodes}/{final}"}
        if episode is not None:
            postfix["return"] = f"{episode.total_reward:.1f}"
        if s.eval_returns:
            postfix["eval"] = f"{s.eval_returns[-1]:.1f}"
        if s.planned_actions:
            postfix["plan"] = f"{1000 * s.plan_seconds / s.planned_actions:.0f}ms"
        if eta is not None:
            postfix["eta"] = format_duration(eta)
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def _log_line(
        self,
        state: LoopState,
        episode: Episode | None,
        final: int,
        eta: float | None,
        wall: float,
    ) -> None:
        s = state
        what = (
            f"return {episode.total_reward:.1f}"
            if episode is not None
            else f"evaluation return {s.eval_returns[-1]:.1f}"
        )
        plan = (
            f", planning {1000 * s.plan_seconds / s.planned_actions:.0f} ms/action"
            if s.planned_actions
            else ""
        )
        log.info(
            "episode %d/%d, %s env steps: %s%s; wall %s%s",
            s.episodes,
            final,
            f"{s.env_steps:,}",
            what,
            plan,
            format_duration(wall),
            f", ETA {format_duration(eta)}" if eta is not None else "",
        )
