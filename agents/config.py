"""Plain configuration dataclasses of the model-based RL loop (no hydra here).

``python -m agents.cem_planner`` registers :class:`CEMPlannerConfig` in hydra's ConfigStore as
``cem_planner_schema``, so a typo or a wrong type in a command-line override fails at
composition. Every value is defined once: here, or in a preset of configs/ (env/, model/, loss/,
planner/, profile/). Tests and library users build the dataclasses directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.cem import CEMConfig
from envs.config import EnvConfig
from envs.registry import resolve_name
from worldmodel.antiblur.adversarial import AntiBlurConfig
from worldmodel.antiblur.comparator import ComparatorConfig
from worldmodel.model.nets import num_levels
from worldmodel.model.svg import ModelConfig
from worldmodel.training.train import ObjectiveConfig, TrainConfig

__all__ = ["PlannerConfig", "CEMPlannerConfig", "MODES", "OBJECTIVES"]

MODES = ("train", "eval")
OBJECTIVES = ("reward", "goal")
DISTANCES = ("l2", "feature")
PLAN_PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class PlannerConfig:
    """Model-predictive control with CEM on the world model (group ``planner/``).

    Attributes:
        objective: ``reward``: PlaNet's sum of predicted rewards, rolled out in latent space;
            ``goal``: Visual Foresight's distance of the predicted frames to a goal image
            (:mod:`agents.goals` makes the goal image; the stub and reacher envs have one).
        cem: CEM hyper-parameters (population, elites, iterations, horizon, ...); the sizes come
            from ``planner/cem/<objective>_<profile>.yaml``.
        samples: latent samples per candidate, averaged (PlaNet: 1).
        discount: per-step discount of the predicted rewards (``reward`` only).
        precision: ``fp32`` (default), ``bf16`` (autocast of the imagined rollouts) or ``auto``
            (bf16 where the device runs it natively: CPUs with AMX / AVX512-BF16, CUDA GPUs with
            bf16; fp32 elsewhere). bf16 pays with the default M = K = 1 model (2x at the cpu
            profile's population, 1.5x at PlaNet's; bench/bench_planner.py) but not with the cpu
            profile's M = K = 0.5 model (50 vs 51 ms per action), hence fp32 by default; use
            ``auto`` with larger models. Planning quality: on the loop's key stub test
            (tests/test_loop.py LEARN) bf16 scored 23.1 / 40.3 / 38.7 / 41.0 against fp32's
            >= 23.8 / 24.4 / 27.4 / 33.0 for seeds 0-3, so it is not worse.
        distance: ``l2`` (mean squared pixel difference) or ``feature`` (DeePSiM comparator
            features, see ``comparator``); ``goal`` only.
        which_frames: ``last`` (the final predicted frame is compared with the goal) or ``all``.
        comparator: the comparator network for ``distance=feature``.
    """

    objective: str = "reward"
    cem: CEMConfig = field(default_factory=CEMConfig)
    samples: int = 1
    discount: float = 1.0
    precision: str = "fp32"
    distance: str = "l2"
    which_frames: str = "last"
    comparator: ComparatorConfig = field(default_factory=ComparatorConfig)

    def validate(self) -> PlannerConfig:
        """Raise ValueError naming the first bad field; return self."""
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"planner.objective={self.objective!r}; expected one of {OBJECTIVES} "
                "(choose a preset with planner=reward or planner=goal)"
            )
        if self.samples < 1:
            raise ValueError(f"planner.samples={self.samples}; expected an integer >= 1")
        if not 0 < self.discount <= 1:
            raise ValueError(f"planner.discount={self.discount}; expected a value in (0, 1]")
        if self.precision not in PLAN_PRECISIONS:
            raise ValueError(
                f"planner.precision={self.precision!r}; expected one of {PLAN_PRECISIONS}"
            )
        if self.distance not in DISTANCES:
            raise ValueError(f"planner.distance={self.distance!r}; expected one of {DISTANCES}")
        if self.which_frames not in ("last", "all"):
            raise ValueError(
                f"planner.which_frames={self.which_frames!r}; expected 'last' or 'all'"
            )
        self.cem.validate()
        self.comparator.validate()
        return self


@dataclass
class CEMPlannerConfig:
    """Everything ``python -m agents.cem_planner`` reads (configs/cem_planner.yaml).

    The loop (PlaNet, Hafner et al. 2019): ``seed_episodes`` episodes of random actions, then
    repeatedly ``train_steps`` gradient steps of the world model on the replay data followed by
    one episode acting with CEM plus Gaussian exploration noise; every ``eval_every`` episodes
    ``eval_episodes`` episodes without noise.

    Attributes:
        env: the environment (group ``env/``).
        model: world-model architecture (group ``model/``).
        objective: base loss weights of the world model (reconstruction, beta, reward, ...).
        loss: anti-blur losses (group ``loss/``: ``mse`` = plain SVG, ``full``).
        train: optimiser, batch size, sequence length, precision of the world-model training.
        planner: the planner (group ``planner/``: ``reward`` = PlaNet, ``goal`` = Visual Foresight).
        mode: ``train`` (the RL loop) or ``eval`` (load ``ckpt``, run ``eval_episodes`` episodes
            without noise, report the mean and std return; nothing is trained or written).
        episodes: training episodes in total, seed episodes included (PlaNet: 1000 on cheetah);
            a resumed run continues up to this number.
        max_env_steps: budget of environment steps: the run ends after the training episode that
            reaches it, or at ``episodes``, whichever comes first (0 = no budget; the cpu profile:
            100,000, where the published references are measured).
        seed_episodes: episodes of uniformly random actions before the first training.
        train_steps: gradient steps of the world model before each planned episode (PlaNet: 100).
        exploration_noise: std of the Gaussian noise added to planned actions in training
            episodes (actions live in [-1, 1]; PlaNet: 0.3).
        eval_every: evaluate after every this many planned episodes (and at the end);
            0 evaluates only at the end.
        eval_episodes: episodes per evaluation (and in ``mode=eval``).
        replay_capacity: frames kept in the replay buffer (~12 KB per 64 px frame); the oldest
            episodes are dropped beyond it.
        ckpt: ``mode=eval``: the checkpoint to load (e.g. ``runs/x/checkpoints/last.pt``).
        resume: continue the run in the work directory (``hydra.run.dir=runs/x``) from its last
            checkpoint; its episode files are reloaded into the replay buffer.
        seed: seeds the environment resets, the model's initialisation and every random draw.
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ...
        video_every: log a video of the first evaluation episode every this many evaluations
            (0 = never).
        strip_every: log an open-loop prediction strip every this many evaluations (0 = never).
        progress: show a progress bar over environment steps.
    """

    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    loss: AntiBlurConfig = field(default_factory=AntiBlurConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    mode: str = "train"
    episodes: int = 1000
    max_env_steps: int = 0
    seed_episodes: int = 5
    train_steps: int = 100
    exploration_noise: float = 0.3
    eval_every: int = 10
    eval_episodes: int = 1
    replay_capacity: int = 1_000_000
    ckpt: str | None = None
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    video_every: int = 1
    strip_every: int = 1
    progress: bool = True

    def validate(self) -> CEMPlannerConfig:
        """Raise ValueError naming the first bad field and what to do; return self."""
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}; expected one of {MODES}")
        if self.mode == "eval" and not self.ckpt:
            raise ValueError("mode=eval needs a checkpoint: ckpt=runs/x/checkpoints/last.pt")
        if self.mode == "eval" and self.resume:
            raise ValueError("resume=true is for mode=train; mode=eval only reads ckpt=...")
        for name in ("episodes", "seed_episodes", "eval_episodes", "replay_capacity"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; expected an integer >= 1")
        if self.seed_episodes > self.episodes:
            raise ValueError(
                f"seed_episodes={self.seed_episodes} exceeds episodes={self.episodes}: "
                "raise episodes (the total, seed episodes included)"
            )
        for name in (
            "train_steps",
            "eval_every",
            "video_every",
            "strip_every",
            "seed",
            "max_env_steps",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}; expected an integer >= 0")
        if not self.exploration_noise >= 0:
            raise ValueError(f"exploration_noise={self.exploration_noise}; expected >= 0")
        self.model.validate()
        self.train.validate()
        self.objective.validate()
        self.loss.validate()
        self.planner.validate()
        resolve_name(self.env.name)  # an unknown environment name: the list of accepted ones
        try:
            num_levels(self.env.size)
        except ValueError:
            raise ValueError(
                f"env.size={self.env.size!r}; the world model takes square frames whose side is "
                "a power of two >= 32 (e.g. 64 or 128)"
            ) from None
        if self.mode == "train":
            self._check_lengths()
            self._check_growing()
        return self

    def _check_growing(self) -> None:
        """Progressive growing (``loss.progressive``) must be over by the first evaluation.

        Its phases are counted in gradient steps, and the loop takes ``train_steps`` of them per
        planned episode (50-100), where pretraining takes tens of thousands: with the pretraining
        schedule (10,000-step phases) the decoder's full-size head would get its first gradient
        after hundreds of episodes, while evaluation strips, videos and goal planning decode full
        size frames from the start. So the decoder must be fully grown after the planned episodes
        before the first evaluation (``eval_every``, or the whole run when it evaluates only at
        the end). The profiles set phases that fit (``profile=cpu``: 50 steps, one episode;
        ``profile=gpu``: 200 steps, two episodes).
        """
        grow = self.loss.progressive
        planned = self.episodes - self.seed_episodes
        if not grow.enabled or self.train_steps == 0 or planned == 0:
            return
        schedule = grow.schedule(self.env.size)
        first_eval = self.eval_every if 0 < self.eval_every <= planned else planned
        budget = first_eval * self.train_steps
        if schedule.total_steps <= budget:
            return
        phases = 1 + 2 * (len(schedule.resolutions) - 1)  # stabilize, then (fade, stabilize) each
        fit = budget // phases
        fix = (
            f"use loss.progressive.stabilize_steps={fit} loss.progressive.fade_steps={fit} (or "
            "less), or loss.progressive.enabled=false"
            if fit > 0
            else "use loss.progressive.enabled=false (or train longer per episode)"
        )
        raise ValueError(
            f"loss.progressive grows the decoder from {schedule.start_resolution} to "
            f"{schedule.final_resolution} px over {schedule.total_steps} gradient steps "
            f"({schedule.total_steps / self.train_steps:g} planned episodes at train_steps="
            f"{self.train_steps}), but the first evaluation, which decodes full-size frames, comes "
            f"after {first_eval} planned episodes ({budget} steps); {fix}"
        )

    def _check_lengths(self) -> None:
        """The plan, the training sequences and the episodes must fit into each other.

        The world model learns from windows of ``train.seq_len`` frames, i.e. to predict
        ``seq_len - 1`` steps ahead of a window's first frame; a plan of ``planner.cem.horizon``
        actions imagines that many steps ahead of the current frame. A longer horizon would plan
        on predictions beyond anything the model was trained on. The windows are cut from the
        episodes, so they cannot be longer than an episode (``env.max_episode_steps + 1`` frames).
        """
        horizon, seq_len = self.planner.cem.horizon, self.train.seq_len
        if horizon > seq_len - 1:
            raise ValueError(
                f"planner.cem.horizon={horizon} is longer than the training sequences: the model "
                f"learns to predict train.seq_len - 1 = {seq_len - 1} steps ahead; use "
                f"planner.cem.horizon <= {seq_len - 1} or train.seq_len >= {horizon + 1}"
            )
        limit = self.env.max_episode_steps
        if limit is not None and seq_len > limit + 1:
            raise ValueError(
                f"train.seq_len={seq_len} is longer than an episode: env.max_episode_steps={limit} "
                f"gives {limit + 1} frames; use train.seq_len <= {limit + 1}"
            )
