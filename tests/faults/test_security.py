"""Security: a checkpoint that carries pickled code is refused by every entry point that reads one,
and the code never runs; paths from configs are used literally, never interpreted by a shell.

The loader itself (``weights_only=True``, the message naming the culprit) is tested in
tests/test_checkpoint.py.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from agents import loop
from worldmodel.training.checkpoint import CheckpointError

from .conftest import LOOP, PRETRAIN, ROOT, cli, error_lines


class _Payload:
    """Unpickling this calls ``os.mkdir(marker)``: stands in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    """A trainer checkpoint in every other respect, with the payload among its entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": "worldmodel-trainer/1",
            "model": {"config": {}, "image_size": 32, "action_dim": 2, "channels": 3},
            "state": {"model": {"w": torch.zeros(1)}, "global_step": 3},
            "extra": {"env": {"name": "stub", "size": 32}, "payload": _Payload(marker)},
        },
        path,
    )
    return path


def test_the_crafted_checkpoint_really_runs_code_when_unpickled(tmp_path):
    """Otherwise the tests below would prove nothing."""
    marker = tmp_path / "marker"
    torch.load(_evil_checkpoint(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.is_dir()


def _assert_refused(proc, marker: Path, path: Path) -> None:
    assert proc.returncode == 1, proc.stderr
    line = error_lines(proc)[-1]
    assert line.startswith("error: refusing to load checkpoint") and str(path) in line, proc.stderr
    assert "mkdir" in line  # names what it would have run
    assert "Traceback" not in proc.stderr
    assert not marker.exists(), "the checkpoint's code ran"


def test_evaluate_refuses_a_checkpoint_with_code(stub_data, tmp_path):
    marker, evil = tmp_path / "marker", _evil_checkpoint(tmp_path / "evil.pt", tmp_path / "marker")
    proc = cli("worldmodel.evaluate", f"ckpt={evil}", f"data={stub_data}", "device=cpu",
               f"out={tmp_path / 'report'}", f"hydra.run.dir={tmp_path / 'hydra'}")  # fmt: skip
    _assert_refused(proc, marker, evil)
    assert not (tmp_path / "report" / "report.json").exists()


def test_cem_planner_eval_refuses_a_checkpoint_with_code(tmp_path):
    marker, evil = tmp_path / "marker", _evil_checkpoint(tmp_path / "evil.pt", tmp_path / "marker")
    proc = cli("agents.cem_planner", *LOOP, "mode=eval", f"ckpt={evil}",
               f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    _assert_refused(proc, marker, evil)


def test_pretrain_resume_refuses_a_checkpoint_with_code(stub_data, tmp_path):
    run_dir = tmp_path / "run"
    marker = tmp_path / "marker"
    evil = _evil_checkpoint(run_dir / "checkpoints" / "last.pt", marker)
    proc = cli("worldmodel.pretrain", *PRETRAIN, f"data={stub_data}", "steps=2", "resume=true",
               f"hydra.run.dir={run_dir}")  # fmt: skip
    _assert_refused(proc, marker, evil)
    assert not (run_dir / "summary.json").exists()


def test_loop_resume_refuses_a_checkpoint_with_code(loop_cfg, tmp_path):
    marker = tmp_path / "marker"
    _evil_checkpoint(tmp_path / "checkpoints" / "last.pt", marker)
    with pytest.raises(CheckpointError, match="refusing to load checkpoint"):
        loop.run(loop_cfg("resume=true"), tmp_path)
    assert not marker.exists()


# -- paths ----------------------------------------------------------------------------------------

HOSTILE = "run; touch pwned1 && echo $(touch pwned2) `touch pwned3` | tee pwned4"


def _nothing_ran(directory: Path) -> None:
    ran = [p.name for p in directory.rglob("pwned*") if p.name in {f"pwned{i}" for i in range(5)}]
    assert ran == [], f"a shell ran: {ran}"


def test_pretrain_output_path_with_shell_syntax_is_taken_literally(stub_data, tmp_path):
    out = tmp_path / HOSTILE
    proc = cli("worldmodel.pretrain", *PRETRAIN, f"data={stub_data}", "steps=1",
               f"out='{out}'", f"hydra.run.dir={tmp_path / 'hydra'}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "checkpoints" / "last.pt").is_file()  # the literal directory name
    _nothing_ran(tmp_path)


def test_collect_output_path_with_shell_syntax_is_taken_literally(tmp_path):
    out = tmp_path / HOSTILE
    proc = cli("envs.collect", "env=stub", "env.size=32", "env.max_episode_steps=3", "episodes=1",
               "progress=false", f"out='{out}'", f"hydra.run.dir={tmp_path / 'hydra'}",
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "episode-000000-3.npz").is_file()
    _nothing_ran(tmp_path)


_SHELL_CALLS = {("os", "system"), ("os", "popen"), ("os", "execl"), ("os", "execvp")}


def test_no_code_path_goes_through_a_shell_or_eval():
    """No ``shell=True``, ``os.system`` / ``os.popen``, ``eval`` or ``exec`` in the packages."""
    found = []
    for package in ("worldmodel", "agents", "envs"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if isinstance(func, ast.Name) and func.id in ("eval", "exec"):
                    found.append(f"{where} {func.id}()")
                if (
                    isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name)
                    and (func.value.id, func.attr) in _SHELL_CALLS
                ):
                    found.append(f"{where} {func.value.id}.{func.attr}()")
                for kw in node.keywords:
                    if kw.arg == "shell" and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is False
                    ):
                        found.append(f"{where} shell=...")
    assert found == []
