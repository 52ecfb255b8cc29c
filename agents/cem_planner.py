"""Model-based RL with a video world model and CEM planning (PlaNet's loop).

    python -m agents.cem_planner env=cheetah                       # train; profile from the hardware
    python -m agents.cem_planner env=walker profile=gpu episodes=500
    python -m agents.cem_planner env=reacher planner=goal          # Visual Foresight-style goals
    python -m agents.cem_planner env=walker resume=true hydra.run.dir=runs/x  # continue a run
                                                                   # (with its own overrides)
    python -m agents.cem_planner mode=eval ckpt=runs/x/checkpoints/last.pt env=cheetah eval_episodes=10
    python -m agents.cem_planner env=cheetah --cfg job             # print what would run

Config groups: ``env/`` (cheetah, walker, cartpole, reacher, finger, cup, pendulum, halfcheetah,
stub, or ``env.name=dmc:<domain>-<task>`` / ``gym:<id>``), ``model/``, ``loss/`` (mse | full),
``planner/`` (reward | goal) and ``profile/`` (gpu | cpu). The fields and their meaning are those
of :class:`agents.config.CEMPlannerConfig`.

Profiles: ``profile=gpu`` holds PlaNet's sizes (1000 candidates x 10 iterations, 100 gradient steps
of batch 50 x 50 per episode); ``profile=cpu`` shrinks the model, the CEM search, the batches and
the gradient steps so that a run makes visible progress on a few CPU cores. When the command line
names no profile, :func:`with_profile` picks ``gpu`` if CUDA is available and ``cpu`` otherwise,
says so on stderr, and adds the choice to the overrides, so ``--cfg job`` shows exactly what runs.

Hydra lives only here: :func:`main` converts the composed config to
:class:`~agents.config.CEMPlannerConfig` and calls :func:`agents.loop.run`.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from agents.cem import NonFiniteObjectiveError
from agents.config import CEMPlannerConfig
from agents.loop import run
from agents.references import REFERENCE_ENV_STEPS, references_for
from wmcommon.cli import exit_on, preflight, to_dataclass
from worldmodel.training.checkpoint import CheckpointError
from worldmodel.training.train import TrainingDiverged

__all__ = ["main", "with_profile", "format_summary"]

ConfigStore.instance().store(name="cem_planner_schema", node=CEMPlannerConfig)

_PROFILE_ARG = re.compile(r"^[+~]{0,2}profile=")
# hydra flags after which no job runs (no profile needed)
_NO_JOB_FLAGS = ("--shell-completion", "-sc", "--version")
EXPECTED_ERRORS = (
    ValueError,
    OSError,  # FileNotFoundError, an unwritable work directory, a full disk
    CheckpointError,
    TrainingDiverged,
    NonFiniteObjectiveError,
)


def with_profile(argv: Sequence[str], cuda_available: bool | None = None) -> tuple[list[str], str]:
    """``argv`` with ``profile=gpu|cpu`` added when it names no profile.

    Args:
        argv: the command line (``sys.argv``).
        cuda_available: for tests; default ``torch.cuda.is_available()``.

    Returns:
        The new argv and a one-line message saying which profile runs and why.
    """
    argv = list(argv)
    given = [a for a in argv[1:] if _PROFILE_ARG.match(a)]
    if given:
        return argv, f"profile: {given[-1].split('=', 1)[1]} (from the command line)"
    if any(flag in argv[1:] for flag in _NO_JOB_FLAGS):
        return argv, ""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if cuda_available:
        profile, why = "gpu", "a CUDA GPU is available: PlaNet's sizes"
    else:
        profile, why = "cpu", "no CUDA GPU found: smaller model, CEM search and training batches"
    # first, so that hydra flags such as --cfg job may follow (argparse takes one positional run)
    argv = argv[:1] + [f"profile={profile}"] + argv[1:]
    return argv, f"profile: {profile} ({why}; force one with profile=gpu|cpu)"


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary of :func:`agents.loop.run` as one printable block."""
    if summary["mode"] == "eval":
        return "\n".join(
            [
                f"== evaluation of {summary['checkpoint']} on {summary['env']}",
                f"episodes        {summary['episodes']}",
                f"return          {_fmt(summary['mean_return'])} +- {_fmt(summary['std_return'])}"
                " (mean +- std)",
                f"planning        {_fmt(summary['plan_ms_per_action'], 0)} ms/action",
            ]
        )
    evals = summary["eval_returns"]
    minutes = summary["wall_time_s"] / 60
    refs = references_for(summary["env"])
    reference_line = (
        [
            f"references      at {REFERENCE_ENV_STEPS:,} env steps from pixels: "
            + ", ".join(f"{name} {value:g}" for name, value in refs.items())
        ]
        if refs
        else []
    )
    times = summary.get("time_s") or {}
    total = max(times.get("total", 0.0), 1e-9)
    time_line = (
        [
            "time            "
            + ", ".join(
                f"{part} {100 * seconds / total:.0f}%"
                for part, seconds in times.items()
                if part != "total"
            )
        ]
        if times
        else []
    )
    return "\n".join(
        [
            f"== cem_planner on {summary['env']}: {summary['workdir']}",
            f"episodes        {summary['episodes']}",
            f"env steps       {summary['env_steps']:,} ({summary['agent_steps']:,} agent steps)",
            f"gradient steps  {summary['gradient_steps']:,}",
            f"random return   {_fmt(summary['random_return'])} (mean of the seed episodes)",
            f"eval return     best {_fmt(summary['best_eval_return'])}, "
            f"last {_fmt(summary['last_eval_return'])} "
            f"({len(evals)} evaluation{'s' if len(evals) != 1 else ''}; "
            f"random policy {_fmt(summary['random_return'])})",
            *reference_line,
            f"planning        {_fmt(summary['plan_ms_per_action'], 0)} ms/action",
            f"wall time       {minutes:.1f} min",
            *time_line,
            f"physics errors  {summary['physics_errors']}",
            f"checkpoint      {summary['checkpoint']}",
            f"tensorboard     tensorboard --logdir {summary['workdir']}/tb",
        ]
    )


@hydra.main(version_base="1.3", config_path="../configs", config_name="cem_planner")
def _main(dict_cfg: DictConfig) -> None:
    workdir = HydraConfig.get().runtime.output_dir
    try:
        with exit_on(*EXPECTED_ERRORS):
            summary = run(to_dataclass(dict_cfg), workdir)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; every finished episode is checkpointed. Continue with:\n"
            f"  python -m agents.cem_planner resume=true hydra.run.dir={workdir} <same overrides>",
            file=sys.stderr,
        )
        sys.exit(130)
    print(format_summary(summary), flush=True)


def main() -> None:
    """Pick the profile (see :func:`with_profile`), then run the hydra app."""
    sys.argv, message = with_profile(sys.argv)
    if message:
        print(message, file=sys.stderr, flush=True)
    # a bad override or value: one line and exit 1, before hydra creates the run directory
    preflight("cem_planner", CEMPlannerConfig, sys.argv, check=CEMPlannerConfig.validate)
    _main()


if __name__ == "__main__":
    main()
