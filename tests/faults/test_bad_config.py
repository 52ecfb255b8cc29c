"""Bad configuration: unknown keys, wrong types, zero or negative sizes, a planning horizon longer
than the training sequences, an unknown environment or model variant give one line
``error: ...`` naming the key and what it accepts, exit status 1, before any expensive work (no
environment made, no data loaded, nothing written)."""

from __future__ import annotations

import re

import pytest

from agents import cem_planner, loop  # cem_planner registers cem_planner_schema
from agents.config import CEMPlannerConfig
from wmcommon.cli import job_overrides, preflight
from worldmodel import pretrain
from worldmodel.pretrain import PretrainConfig

from .conftest import LOOP, PRETRAIN, cli, error_lines

# (override, what the error line must say): every kind of mistake, for the RL loop
LOOP_CASES = [
    ("nonsense=1", ["unknown option 'nonsense'", "episodes", "seed_episodes"]),
    ("planner.cem.populaton=5", ["unknown option 'planner.cem.populaton'", "population, elites"]),
    ("episodes=many", ["episodes=many", "expected int"]),
    ("env.size=big", ["env.size=big", "expected int"]),
    ("exploration_noise=[1]", ["exploration_noise=[1]", "expected float"]),
    ("episodes=0", ["episodes=0", "expected an integer >= 1"]),
    ("seed_episodes=-1", ["seed_episodes=-1", "expected an integer >= 1"]),
    ("planner.cem.population=0", ["population", "int >= 1, got 0"]),
    ("planner.cem.elites=99", ["elites", "[1, population=16]"]),
    ("train.batch_size=0", ["train.batch_size=0", ">= 1"]),
    ("model.M=-1", ["model.M=-1", "> 0"]),
    ("env.size=-3", ["env.size=-3", "power of two >= 32"]),
    ("planner.cem.horizon=6", ["planner.cem.horizon=6", "train.seq_len - 1 = 5", "<= 5"]),
    ("train.n_past=6", ["train.seq_len=6 must be > train.n_past=6"]),
    ("train.seq_len=12", ["train.seq_len=12", "env.max_episode_steps=10", "<= 11"]),
    ("env=nope", ["env=nope", "available: cartpole, cheetah", "stub"]),
    ("env.name=nope", ["unknown environment 'nope'", "cheetah", "dmc:<domain>-<task>"]),
    ("model=nope", ["model=nope", "available: cnn, lstm, svg, tiny"]),
    ("model.variant=gru", ["model.variant='gru'", "('svg', 'lstm', 'cnn')"]),
    ("planner=fast", ["planner=fast", "goal, reward"]),
    ("loss=nope", ["loss=nope", "full, mse"]),
    ("mode=play", ["mode='play'", "('train', 'eval')"]),
    # the nested anti-blur / discriminator / comparator / progressive configs are reached
    ("loss.adv_form=foo", ["unknown adv_form 'foo'", "'bce', 'hinge'"]),
    ("loss.discriminator.dropout=1.5", ["discriminator.dropout must be in [0, 1), got 1.5"]),
    ("planner.comparator.kind=vgg", ["unknown comparator kind 'vgg'", "'alexnet_random'"]),
    ("loss.progressive.fade_steps=-1", ["progressive.fade_steps=-1", "expected an integer >= 0"]),
    ("model.M=1,2", ["model.M=1,2", "--multirun"]),
    ("a=[", ["'a=['"]),
]


@pytest.fixture(autouse=True)
def schemas() -> None:
    assert cem_planner.CEMPlannerConfig is CEMPlannerConfig
    pretrain.register_configs()


def _preflight_error(capsys, config: str, schema: type, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        preflight(config, schema, ["prog", *argv], check=schema.validate)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line ...
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("override", "expected"), LOOP_CASES, ids=[c[0] for c in LOOP_CASES])
def test_loop_config_errors_are_one_line_naming_the_key(capsys, override, expected):
    line = _preflight_error(capsys, "cem_planner", CEMPlannerConfig, [*LOOP, override])
    for text in expected:  # ... naming the key and what it accepts
        assert text in line, line


PRETRAIN_CASES = [
    ("steps=0", ["steps=0", "expected an integer >= 1"]),
    ("ckpt_every=-5", ["ckpt_every=-5", ">= 1"]),
    ("steps=lots", ["steps=lots", "expected int"]),
    ("train.lr=-1", ["train.lr=-1", "(0, 1]"]),
    ("train.lr=1e38", ["train.lr=1e+38", "(0, 1]"]),
    ("train.seq_len=2", ["train.seq_len=2 must be > train.n_past=2"]),
    ("train.sequence=3", ["unknown option 'train.sequence'", "seq_len", "n_past"]),
    ("model=nope", ["model=nope", "available: cnn, lstm, svg, tiny"]),
    ("model.variant=gru", ["model.variant='gru'", "('svg', 'lstm', 'cnn')"]),
    ("model.rnn_units=0", ["model.rnn_units=0", ">= 1"]),
    ("on_bad_file=ignore", ["on_bad_file='ignore'", "'skip' or 'raise'"]),
    ("train.precision=fp8", ["train.precision='fp8'", "'auto', 'fp32' or 'bf16'"]),
    ("loss.gdl_weight=-1", ["anti-blur weights", "must be >= 0"]),
    ("loss.discriminator.scales=[]", ["discriminator.scales must be a non-empty list"]),
    ("loss.comparator.kind=vgg", ["unknown comparator kind 'vgg'"]),
    ("loss.progressive.stabilize_steps=-1", ["progressive.stabilize_steps=-1", ">= 0"]),
]


@pytest.mark.parametrize(
    ("override", "expected"), PRETRAIN_CASES, ids=[c[0] for c in PRETRAIN_CASES]
)
def test_pretrain_config_errors_are_one_line_naming_the_key(capsys, override, expected):
    line = _preflight_error(capsys, "pretrain", PretrainConfig, [*PRETRAIN, "data=/d", override])
    for text in expected:
        assert text in line, line


def test_missing_required_value_is_one_line(capsys):
    line = _preflight_error(capsys, "pretrain", PretrainConfig, PRETRAIN)
    assert "missing required option(s) data" in line


def test_good_command_lines_pass_and_hydra_modes_are_left_to_hydra(capsys):
    preflight("cem_planner", CEMPlannerConfig, ["prog", *LOOP], check=CEMPlannerConfig.validate)
    preflight("pretrain", PretrainConfig, ["prog", *PRETRAIN, "data=/d", "hydra.run.dir=/x"])
    assert capsys.readouterr().err == ""
    assert job_overrides(["prog", "a=1", "hydra.run.dir=x", "hydra/launcher=slurm"]) == ["a=1"]
    assert job_overrides(["prog", "a=1", "--cfg", "job", "--resolve"]) == ["a=1"]
    for flags in (["-m"], ["--multirun"], ["--help"], ["--info"], ["--config-name", "x"]):
        assert job_overrides(["prog", "a=1", *flags]) is None


def test_bad_configs_fail_before_any_expensive_work(loop_cfg, pretrain_cfg, tmp_path, monkeypatch):
    """run() validates first: no environment is made, no data read, no directory created."""

    def expensive(*args, **kwargs):
        raise AssertionError("expensive work started before the config was checked")

    monkeypatch.setattr(loop, "make_env_from_config", expensive)
    monkeypatch.setattr(loop, "WorldModel", expensive)
    monkeypatch.setattr(pretrain, "EpisodeDataset", expensive)
    monkeypatch.setattr(pretrain, "WorldModel", expensive)
    with pytest.raises(ValueError, match=r"planner\.cem\.horizon=9"):
        loop.run(loop_cfg("planner.cem.horizon=9"), tmp_path / "loop")
    with pytest.raises(ValueError, match=r"env\.size=48"):
        loop.run(loop_cfg("env.size=48"), tmp_path / "loop")
    with pytest.raises(ValueError, match=r"unknown environment 'dmc:cheetah'"):
        loop.run(loop_cfg("env.name=dmc:cheetah"), tmp_path / "loop")
    with pytest.raises(ValueError, match=r"train\.n_past=4"):
        pretrain.run(pretrain_cfg("data=/d", "train.n_past=4"), tmp_path / "pretrain")
    assert not any(tmp_path.iterdir())


# -- through the real command lines -------------------------------------------------------------

CLI_LOOP_CASES = [
    ("planner.cem.populaton=5", "population"),
    ("episodes=many", "expected int"),
    ("planner.cem.horizon=40", "train.seq_len"),
    ("env=nope", "available: cartpole"),
    ("model=nope", "available: cnn, lstm, svg, tiny"),
]


@pytest.mark.parametrize(
    ("override", "expected"), CLI_LOOP_CASES, ids=[c[0] for c in CLI_LOOP_CASES]
)
def test_cem_planner_cli_refuses_a_bad_config_in_one_line_and_writes_nothing(
    tmp_path, override, expected
):
    run_dir = tmp_path / "run"
    proc = cli("agents.cem_planner", *LOOP, override, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc)
    # the profile line (the entry point says which one runs), then the error
    assert len(lines) <= 2 and lines[-1].startswith("error: "), proc.stderr
    key = re.split(r"[=,]", override)[0]
    assert key in lines[-1] and expected in lines[-1], lines[-1]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not run_dir.exists()  # refused before hydra made the run directory


def test_pretrain_cli_refuses_a_bad_config_in_one_line_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    for override, expected in [("model.variant=gru", "expected one of"), ("steps=-3", ">= 1")]:
        proc = cli(
            "worldmodel.pretrain", *PRETRAIN, "data=/d", override, f"hydra.run.dir={run_dir}"
        )
        assert proc.returncode == 1, proc.stderr
        lines = error_lines(proc)
        assert len(lines) == 1 and override.split("=")[0] in lines[0] and expected in lines[0]
        assert not run_dir.exists()


def test_pretrain_cli_missing_data_directory_is_one_line(tmp_path):
    """Found only when the run starts (the data is read): still one line, and no checkpoint."""
    run_dir = tmp_path / "run"
    proc = cli(
        "worldmodel.pretrain", *PRETRAIN, f"data={tmp_path / 'none'}", f"hydra.run.dir={run_dir}"
    )
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "none" in lines[0], proc.stderr
    assert "envs.collect" in lines[0]  # what to do
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "tb").exists()


@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [
        ("envs.collect", ["env=stub", "foo=1"], ["unknown option 'foo'", "episodes, out"]),
        ("envs.collect", ["env=nope"], ["env=nope", "available: cartpole, cheetah"]),
        ("envs.collect", ["env=stub", "env.size=abc"], ["env.size=abc", "Integer"]),
        ("envs.collect", ["env=stub", "env.nosuch=1"], ["'env.nosuch'", "name, size"]),
        ("envs.import_video", ["src=x", "bogus=2"], ["unknown option 'bogus'", "src, out"]),
    ],
)
def test_envs_clis_refuse_a_bad_command_line_in_one_line(tmp_path, module, args, expected):
    out = tmp_path / "episodes"
    proc = cli(module, *args, f"out={out}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert not out.exists() and not (tmp_path / "run").exists()
