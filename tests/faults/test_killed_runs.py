"""Killed runs: SIGKILL at random (seeded) moments of one pretraining run and of one RL-loop run,
each killed session continued with ``resume=true`` in the same run directory, until the run is
let finish.

Four kills per run: one during start-up, three while the run works (training, acting, writing
checkpoints and episode files). After every kill the checkpoint loads (it is never half written)
and the next session resumes exactly from it: the same step / episode / gradient-step counters,
and the stale temporary files of the killed writes (and planted ones) removed. At the end the
counters add up, the episode files are contiguous and complete (none lost, none duplicated,
every one loads), no temporary file is left, and the killed pretraining run ends with the same
weights as an uninterrupted one. Each kill costs a process start-up, so there are few of them:
the narrow windows (between a write and its checkpoint, in the middle of a write) are hit on
purpose by the tests at the end of this file, not by chance.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from agents import loop
from agents.loop import episode_seed
from episode_format import episode_index, episode_paths
from worldmodel import pretrain
from worldmodel.data import load_episode
from worldmodel.training.checkpoint import load_checkpoint

from .conftest import LOOP, PRETRAIN, ROOT, child_env, tmp_files

KILLS = 4  # kills per run, at random moments (one during start-up)
STARTUP_KILLS = (1,)  # these kills land during start-up (imports, config, set-up)


class Session:
    """One process of an entry point; its output is read line by line in a thread."""

    def __init__(self, module: str, args: list[str], marker: re.Pattern[str]) -> None:
        self.marker = marker
        self.lines: list[str] = []
        self.ready = threading.Event()  # the marker line was printed (or the process ended)
        self.seen = threading.Event()  # the marker line was printed
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env(),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.marker.search(line):
                self.seen.set()
                self.ready.set()
        self.ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 120) -> None:
        assert self.ready.wait(timeout), f"no start-up line after {timeout} s:\n{self.output}"
        if self.proc.poll() not in (None, 0):
            pytest.fail(f"the run failed (exit {self.proc.returncode}):\n{self.output[-3000:]}")

    def kill(self) -> bool:
        """SIGKILL now; False if the process had already ended."""
        if self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.reader.join(timeout=60)
        return True

    def finish(self, timeout: float = 300) -> int:
        returncode = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=60)
        return returncode


def _kill_at_random_moment(
    session: Session,
    rng: random.Random,
    kill: int,
    delay: float,
    progress: Callable[[], bool] | None = None,
) -> str:
    """Kill number ``kill`` (0-based): during start-up for the kills in :data:`STARTUP_KILLS`
    (0.3-1.5 s after the process started), else ``delay`` s after the start-up line, or after
    ``progress()`` first holds when it is given (e.g. "a new checkpoint was written": on a loaded
    machine a fixed delay after the start-up line can land every kill before any work is done).

    Returns where it landed, ``"startup"`` or ``"working"``, after checking that the process was
    still running.
    """
    if kill in STARTUP_KILLS:
        time.sleep(rng.uniform(0.3, 1.5))
    else:
        session.wait_ready()
        deadline = time.monotonic() + 300
        while progress is not None and not progress() and session.proc.poll() is None:
            assert time.monotonic() < deadline, f"no progress after 300 s:\n{session.output}"
            time.sleep(0.05)
        time.sleep(delay)
    where = "working" if session.seen.is_set() else "startup"
    if not session.kill():
        pytest.fail(
            f"the run ended before it was killed; make it longer:\n{session.output[-2000:]}"
        )
    return where


def _new_file_version(path: Path) -> Callable[[], bool]:
    """A predicate that holds once ``path`` has been (re)written since this call (atomic writes
    replace the file, so its mtime changes)."""
    before = path.stat().st_mtime_ns if path.exists() else None
    return lambda: path.exists() and path.stat().st_mtime_ns != before


def _plant_leftovers(*directories: Path) -> list[Path]:
    """Temporary files as a write killed half-way leaves them (the kills themselves land in a
    write only now and then), so that every restart must clean up."""
    planted = []
    for directory in directories:
        if directory.is_dir():
            planted.append(directory / f".planted-{len(planted)}.npz.0badc0de.tmp")
            planted[-1].write_bytes(b"PK\x03\x04 half a file")
    return planted


# ---------------------------------------------------------------------------------------------
# worldmodel.pretrain

PRETRAIN_READY = re.compile(r"^model \w+ M=")
PRETRAIN_RESUMED = re.compile(r"resumed from \S+ at step (\d+)")


@pytest.mark.slow
def test_pretrain_killed_repeatedly_resumes_and_ends_like_an_uninterrupted_run(
    stub_data, tmp_path, pretrain_cfg
):
    steps = 100
    args = [*PRETRAIN, f"data={stub_data}", f"steps={steps}", "ckpt_every=1"]
    run_dir = tmp_path / "killed"
    ckpt = run_dir / "checkpoints" / "last.pt"
    rng = random.Random(7)

    working_kills, startup_kills, ckpt_step, leftovers = 0, 0, 0, []
    while working_kills + startup_kills < KILLS:
        session = Session(
            "worldmodel.pretrain",
            [*args, "resume=true", f"hydra.run.dir={run_dir}"],
            PRETRAIN_READY,
        )
        where = _kill_at_random_moment(
            session,
            rng,
            working_kills + startup_kills,
            rng.uniform(0.0, 0.5),
            _new_file_version(ckpt),
        )
        working_kills += where == "working"
        startup_kills += where == "startup"
        resumed = PRETRAIN_RESUMED.findall(session.output)
        if resumed:  # it continued from the checkpoint left by the previous kill ...
            assert int(resumed[0]) == ckpt_step > 0, session.output
        elif session.seen.is_set():  # ... or there was none yet
            assert ckpt_step == 0 and "starting from scratch" in session.output, session.output
        if session.seen.is_set():  # start-up is over: the killed writes' temporary files are gone
            assert not [p for p in leftovers if p.exists()], leftovers
        # the checkpoint is whole, and never goes back
        step = load_checkpoint(ckpt)["state"]["global_step"] if ckpt.exists() else 0
        assert step >= ckpt_step
        ckpt_step = step
        leftovers = tmp_files(run_dir) + _plant_leftovers(run_dir, ckpt.parent)

    assert working_kills + startup_kills == KILLS
    assert 0 < ckpt_step < steps, "the kills should land in the middle of the run"
    final = Session(
        "worldmodel.pretrain", [*args, "resume=true", f"hydra.run.dir={run_dir}"], PRETRAIN_READY
    )
    assert final.finish() == 0, final.output[-3000:]
    assert int(PRETRAIN_RESUMED.findall(final.output)[0]) == ckpt_step
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == steps and summary["start_step"] == ckpt_step
    assert summary["nonfinite_steps"] == 0
    assert load_checkpoint(ckpt)["state"]["global_step"] == steps
    assert tmp_files(run_dir) == []

    # killed repeatedly, it ends where an uninterrupted run ends (RNG states are checkpointed too)
    reference = pretrain.run(
        pretrain_cfg(f"data={stub_data}", f"steps={steps}", f"ckpt_every={steps}"),
        tmp_path / "reference",
    )
    assert reference["final_loss"] == pytest.approx(summary["final_loss"], rel=1e-5)
    killed = load_checkpoint(ckpt)["state"]["model"]
    uninterrupted = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")["state"]
    for key, value in uninterrupted["model"].items():
        torch.testing.assert_close(killed[key], value, rtol=1e-5, atol=1e-6, msg=key)


# ---------------------------------------------------------------------------------------------
# agents.cem_planner

LOOP_READY = re.compile(r"\[agents\.loop\]\[INFO\] - (starting|resuming):")
LOOP_RESUMED = re.compile(r"resumed \S+ at episode (\d+), (\d+) env steps, (\d+) gradient steps")


def _episode_names(directory: Path) -> list[str]:
    names = [p.name for p in episode_paths(directory)]
    indices = [episode_index(n) for n in names]
    assert indices == list(range(len(names))), f"episode indices not contiguous: {names}"
    return names


@pytest.mark.slow
def test_rl_loop_killed_repeatedly_loses_and_duplicates_no_episode(tmp_path):
    episodes, seed_episodes, train_steps, eval_every = 40, 2, 2, 10
    args = [
        *LOOP,
        f"episodes={episodes}",
        f"seed_episodes={seed_episodes}",
        f"train_steps={train_steps}",
        f"eval_every={eval_every}",
        "seed=0",
        f"hydra.run.dir={tmp_path}",
    ]
    ckpt_path = tmp_path / "checkpoints" / "last.pt"
    rng = random.Random(11)

    working_kills, startup_kills, leftovers = 0, 0, []
    counters = None  # (episodes, env steps, gradient steps) of the last checkpoint
    unrecorded: list[str] = []  # episode files written after the last checkpoint
    adopted: set[str] = set()  # training episodes kept on resume: their gradient steps are lost
    checked = 0
    while working_kills + startup_kills < KILLS:
        session = Session("agents.cem_planner", [*args, "resume=true"], LOOP_READY)
        where = _kill_at_random_moment(
            session,
            rng,
            working_kills + startup_kills,
            rng.uniform(0.05, 0.8),
            _new_file_version(ckpt_path),
        )
        working_kills += where == "working"
        startup_kills += where == "startup"
        out = session.output
        if session.seen.is_set():
            resumed = LOOP_RESUMED.findall(out)
            if counters is not None:  # resumed with the checkpoint's counters
                assert tuple(map(int, resumed[0])) == counters, out
            else:
                assert not resumed
            for name in unrecorded:  # complete episode files are kept, not redone
                assert f"resume: kept {name}" in out, out
                adopted.add(name)
            assert not [p for p in leftovers if p.exists()], leftovers

        names = _episode_names(tmp_path / "episodes")
        for name in names[checked:]:  # every episode file is whole
            load_episode(tmp_path / "episodes" / name)
        checked = len(names)
        _episode_names(tmp_path / "eval_episodes")
        if ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path)
            loop = ckpt["extra"]["loop"]
            counters = (loop["episodes"], loop["env_steps"], ckpt["state"]["global_step"])
            assert ckpt["extra"]["episode_files"] == names[: loop["episodes"]]
            unrecorded = names[loop["episodes"] :]
        else:
            unrecorded = names
        leftovers = tmp_files(tmp_path)
        leftovers += _plant_leftovers(
            tmp_path, ckpt_path.parent, tmp_path / "episodes", tmp_path / "eval_episodes"
        )

    assert working_kills + startup_kills == KILLS
    assert counters is not None and 0 < counters[0] < episodes, "kills should land mid-run"
    final = Session("agents.cem_planner", [*args, "resume=true"], LOOP_READY)
    assert final.finish() == 0, final.output[-3000:]
    for name in unrecorded:
        assert f"resume: kept {name}" in final.output
        adopted.add(name)
    planned_adopted = [n for n in adopted if episode_index(n) >= seed_episodes]

    names = _episode_names(tmp_path / "episodes")
    assert names == [f"episode-{i:06d}-10.npz" for i in range(episodes)]
    for name in names[checked:]:
        load_episode(tmp_path / "episodes" / name)
    seeds = [load_episode(tmp_path / "episodes" / n).meta["seed"] for n in names]
    assert seeds == [episode_seed(0, 0, i) for i in range(episodes)]  # each reset seed once

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["episodes"] == episodes and summary["env_steps"] == 10 * episodes
    planned = episodes - seed_episodes
    assert summary["gradient_steps"] == train_steps * (planned - len(planned_adopted))
    evaluations = planned // eval_every + (planned % eval_every != 0)
    assert len(summary["eval_returns"]) == evaluations
    assert len(_episode_names(tmp_path / "eval_episodes")) == evaluations  # none duplicated
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt["extra"]["episode_files"] == names
    assert ckpt["state"]["global_step"] == summary["gradient_steps"]
    assert tmp_files(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# the narrow windows, hit on purpose (the random kills above find them only now and then)


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing catches it."""


def test_loop_killed_between_an_evaluation_and_its_checkpoint_redoes_it_once(
    loop_cfg, tmp_path, monkeypatch
):
    real_evaluate, real_save = loop._Run.evaluate, loop._Run.save_checkpoint
    evaluated = []

    def evaluate(self):
        evaluated.append(self.state.episodes)
        return real_evaluate(self)

    def save_checkpoint(self):
        if evaluated:  # the evaluation's files are written, its checkpoint is not
            raise _Killed
        real_save(self)

    monkeypatch.setattr(loop._Run, "evaluate", evaluate)
    monkeypatch.setattr(loop._Run, "save_checkpoint", save_checkpoint)
    with pytest.raises(_Killed):
        loop.run(loop_cfg("episodes=4"), tmp_path)
    assert evaluated == [3] and len(list((tmp_path / "eval_episodes").iterdir())) == 1
    monkeypatch.undo()

    summary = loop.run(loop_cfg("episodes=4", "resume=true"), tmp_path)
    assert len(summary["eval_returns"]) == 2  # after episodes 3 and 4
    names = [p.name for p in episode_paths(tmp_path / "eval_episodes")]
    assert names == ["episode-000000-10.npz", "episode-000001-10.npz"]  # not three
    assert (
        load_checkpoint(tmp_path / "checkpoints" / "last.pt")["extra"]["eval_episode_files"]
        == names
    )


# Injected into a child process: SIGKILL in the middle of writing a file. Every writer of the
# package (checkpoints, episodes, summaries) syncs the file before it renames it into place; at
# that sync, the N-th time for a file whose name contains SUBSTRING, the file is cut to half its
# size (the bytes a killed write never wrote) and the process kills itself.
_KILL_MID_WRITE = """
import os, signal
_spec = os.environ.get("FAULT_KILL_MID_WRITE")
if _spec:
    _what, _n = _spec.rsplit(":", 1)
    _fsync, _seen = os.fsync, []
    def _fsync_or_die(fd):
        try:
            name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            name = ""
        if _what in name:
            _seen.append(name)
            if len(_seen) == int(_n):
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        return _fsync(fd)
    os.fsync = _fsync_or_die
"""


def _run_killed_mid_write(module: str, args: list[str], inject: Path, what: str | None) -> int:
    env = child_env(PYTHONPATH=str(inject))
    if what is not None:
        env["FAULT_KILL_MID_WRITE"] = what
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    if what is None:
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        assert proc.returncode == -signal.SIGKILL, (what, proc.returncode, proc.stderr[-3000:])
    return proc.returncode


@pytest.fixture
def inject(tmp_path) -> Path:
    directory = tmp_path / "inject"
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(_KILL_MID_WRITE)
    return directory


@pytest.mark.slow
def test_loop_killed_in_the_middle_of_each_kind_of_write(tmp_path, inject):
    """Killed while writing an episode file, a checkpoint, an evaluation episode and the summary:
    nothing half written is ever read, nothing is lost or duplicated."""
    run_dir = tmp_path / "run"
    args = [*LOOP, "episodes=5", "resume=true", f"hydra.run.dir={run_dir}"]
    kills = {  # where -> (checkpointed episodes, episode files, evaluation files) after the kill
        "episode-000003-:1": (3, 3, 1),  # training episode 3
        "episode-000001-:1": (4, 4, 1),  # evaluation episode 1 (training episode 1 exists)
        "last.pt:2": (4, 5, 2),  # the checkpoint after training episode 4 (5 files: one kept)
        "summary.json:1": (5, 5, 3),
    }
    for what, expected in kills.items():
        _run_killed_mid_write("agents.cem_planner", args, inject, what)
        saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")["extra"]["loop"]["episodes"]
        files = len(episode_paths(run_dir / "episodes"))
        assert (saved, files, len(episode_paths(run_dir / "eval_episodes"))) == expected, what
        for path in episode_paths(run_dir / "episodes") + episode_paths(run_dir / "eval_episodes"):
            load_episode(path)  # never a half-written file under its real name
        assert not (run_dir / "summary.json").exists()
    _run_killed_mid_write("agents.cem_planner", args, inject, None)
    names = [p.name for p in episode_paths(run_dir / "episodes")]
    assert names == [f"episode-{i:06d}-10.npz" for i in range(5)]
    evals = [p.name for p in episode_paths(run_dir / "eval_episodes")]
    assert evals == [f"episode-{i:06d}-10.npz" for i in range(3)]  # after episodes 3, 4, 5
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["episodes"] == 5 and len(summary["eval_returns"]) == 3
    assert tmp_files(run_dir) == []


@pytest.mark.slow
def test_pretrain_killed_in_the_middle_of_each_kind_of_write(stub_data, tmp_path, inject):
    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoints" / "last.pt"
    args = [*PRETRAIN, f"data={stub_data}", "steps=6", "ckpt_every=2", "resume=true",
            f"hydra.run.dir={run_dir}"]  # fmt: skip
    _run_killed_mid_write("worldmodel.pretrain", args, inject, "last.pt:2")  # at step 4
    assert load_checkpoint(ckpt)["state"]["global_step"] == 2
    _run_killed_mid_write("worldmodel.pretrain", args, inject, "summary.json:1")
    assert load_checkpoint(ckpt)["state"]["global_step"] == 6
    assert not (run_dir / "summary.json").exists()
    _run_killed_mid_write("worldmodel.pretrain", args, inject, None)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["start_step"] == 6
    assert tmp_files(run_dir) == []
