"""agents.cem_planner: the composed config (every env preset, both profiles, both planners), the
automatic profile choice and the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from agents import cem_planner  # registers cem_planner_schema
from agents.config import CEMPlannerConfig

ROOT = Path(__file__).resolve().parents[1]
ENV_PRESETS = sorted(p.stem for p in (ROOT / "configs" / "env").glob("*.yaml"))


def _cfg(compose, *overrides: str) -> CEMPlannerConfig:
    return OmegaConf.to_object(compose("cem_planner", list(overrides)))


def test_env_presets_found():
    assert {"cheetah", "walker", "reacher", "stub", "halfcheetah", "pendulum"} <= set(ENV_PRESETS)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
@pytest.mark.parametrize("planner", ["reward", "goal"])
@pytest.mark.parametrize("env", ENV_PRESETS)
def test_composes_with_every_env_profile_and_planner(compose, env, profile, planner):
    cfg = _cfg(compose, f"env={env}", f"profile={profile}", f"planner={planner}")
    assert isinstance(cfg, CEMPlannerConfig)
    assert cfg.env.name == env
    assert cfg.planner.objective == planner
    cfg.validate()


def test_gpu_profile_is_planet(compose):
    cfg = _cfg(compose, "profile=gpu")
    cem = cfg.planner.cem
    assert (cem.population, cem.elites, cem.iterations, cem.horizon) == (1000, 100, 10, 12)
    assert (cfg.train.batch_size, cfg.train.seq_len, cfg.train_steps) == (50, 50, 100)
    assert (cfg.seed_episodes, cfg.exploration_noise, cfg.train.lr) == (5, 0.3, 1e-3)
    assert (cfg.model.M, cfg.model.K) == (1.0, 1.0)
    goal = _cfg(compose, "profile=gpu", "planner=goal").planner.cem
    assert (goal.population, goal.elites, goal.iterations, goal.horizon) == (200, 10, 3, 15)


def test_cpu_profile_is_smaller(compose):
    cpu, gpu = _cfg(compose, "profile=cpu"), _cfg(compose, "profile=gpu")
    assert cpu.planner.cem.population < gpu.planner.cem.population
    assert cpu.planner.cem.iterations < gpu.planner.cem.iterations
    assert cpu.model.M < gpu.model.M and cpu.model.K < gpu.model.K
    assert cpu.train_steps < gpu.train_steps
    assert cpu.train.seq_len < gpu.train.seq_len
    assert cpu.train.batch_size < gpu.train.batch_size


def test_command_line_beats_profile(compose):
    cfg = _cfg(compose, "profile=cpu", "planner.cem.population=77", "model.M=1", "train_steps=3")
    assert (cfg.planner.cem.population, cfg.model.M, cfg.train_steps) == (77, 1, 3)
    # a model preset chosen on the command line keeps its architecture under the cpu profile
    cfg = _cfg(compose, "profile=cpu", "model=lstm")
    assert cfg.model.variant == "lstm"


def test_profile_is_required(compose):
    with pytest.raises(Exception, match="profile"):
        compose("cem_planner", [])


@pytest.mark.parametrize(
    "override", ["planner.cem.populaton=5", "episodes=many", "nonsense=1", "planner=fast"]
)
def test_bad_overrides_fail_at_composition(compose, override):
    with pytest.raises(ConfigCompositionException):
        compose("cem_planner", ["profile=cpu", override])


def test_bad_values_fail_validation(compose):
    with pytest.raises(ValueError, match="ckpt"):
        _cfg(compose, "profile=cpu", "mode=eval").validate()
    with pytest.raises(ValueError, match="seed_episodes"):
        _cfg(compose, "profile=cpu", "episodes=2", "seed_episodes=5").validate()
    with pytest.raises(ValueError, match="planner.objective"):
        _cfg(compose, "profile=cpu", "planner.objective=reach").validate()


def test_with_profile_picks_from_hardware():
    argv, message = cem_planner.with_profile(["prog", "env=walker"], cuda_available=False)
    assert argv == ["prog", "profile=cpu", "env=walker"]
    assert "cpu" in message and "no CUDA" in message
    argv, message = cem_planner.with_profile(["prog", "--cfg", "job"], cuda_available=True)
    assert argv == ["prog", "profile=gpu", "--cfg", "job"] and "gpu" in message


def test_with_profile_keeps_the_users_choice():
    argv = ["prog", "env=stub", "profile=gpu"]
    new, message = cem_planner.with_profile(argv, cuda_available=False)
    assert new == argv and "command line" in message


def test_format_summary():
    summary = {
        "mode": "train",
        "env": "stub",
        "workdir": "runs/x",
        "episodes": 7,
        "env_steps": 350,
        "agent_steps": 350,
        "gradient_steps": 40,
        "random_return": 3.5,
        "best_eval_return": 30.25,
        "last_eval_return": float("nan"),
        "eval_returns": [30.25],
        "plan_ms_per_action": 12.0,
        "wall_time_s": 90.0,
        "physics_errors": 0,
        "checkpoint": "runs/x/checkpoints/last.pt",
    }
    text = cem_planner.format_summary(summary)
    assert "best 30.2" in text and "last n/a" in text and "1.5 min" in text
    assert "3.5" in text
    assert "references" not in text  # none published for the stub


def test_format_summary_puts_the_return_next_to_the_references_and_breaks_down_the_time():
    summary = {
        "mode": "train",
        "env": "cheetah",
        "workdir": "runs/x",
        "episodes": 100,
        "env_steps": 100_000,
        "agent_steps": 25_000,
        "gradient_steps": 4750,
        "random_return": 13.7,
        "best_eval_return": 150.0,
        "last_eval_return": 140.0,
        "eval_returns": [140.0],
        "plan_ms_per_action": 200.0,
        "wall_time_s": 100.0,
        "time_s": {
            "planning": 50.0,
            "environment": 5.0,
            "training": 40.0,
            "writing": 1.0,
            "other": 4.0,
            "total": 100.0,
        },
        "physics_errors": 0,
        "checkpoint": "runs/x/checkpoints/last.pt",
    }
    text = cem_planner.format_summary(summary)
    assert "random policy 13.7" in text
    assert "PlaNet 138" in text and "Dreamer 238" in text and "100,000 env steps" in text
    assert "planning 50%" in text and "training 40%" in text and "other 4%" in text


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agents.cem_planner", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_announces_profile_and_prints_config():
    out = _cli("env=stub", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    assert "profile:" in out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["env"]["name"] == "stub" and "cem" in cfg["planner"]


def test_cli_bad_value_is_one_clear_line(tmp_path):
    out = _cli("env=stub", "mode=eval", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("error: mode=eval needs a checkpoint")
    assert "Traceback" not in out.stderr
