"""A full disk or an unwritable output directory, at the level of whole runs: a clear error naming
the file, the previous checkpoint intact (it loads, at the step it had), no partial file left,
and the run can be resumed once there is room again.

The checkpoint writer's own atomicity (tmp file, fsync, rename; ENOSPC and torch's I/O errors;
interrupted writes; read-only directories) is tested in tests/test_checkpoint.py.
"""

from __future__ import annotations

import errno
import subprocess
import sys

import numpy as np
import pytest
import torch

from agents import loop
from worldmodel import pretrain
from worldmodel.training.checkpoint import CheckpointError, load_checkpoint

from .conftest import LOOP, PRETRAIN, ROOT, child_env, cli, error_lines, tmp_files

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _full_disk_on_call(monkeypatch, target, name: str, fail_on: int) -> list[int]:
    """From its ``fail_on``-th call on, ``target.name`` (``torch.save(obj, f)`` or
    ``np.savez_compressed(f, ...)``) writes some bytes to its file, then fails with ENOSPC."""
    real = getattr(target, name)
    file_arg = 1 if name == "save" else 0
    calls = []

    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) >= fail_on:
            args[file_arg].write(b"PK\x03\x04 the first bytes of a file that did not fit")
            raise ENOSPC
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, write)
    return calls


def test_pretrain_full_disk_keeps_the_previous_checkpoint(
    stub_data, tmp_path, pretrain_cfg, monkeypatch
):
    ckpt = tmp_path / "checkpoints" / "last.pt"
    _full_disk_on_call(monkeypatch, torch, "save", fail_on=3)  # saves after steps 1, 2, 3
    with pytest.raises(
        CheckpointError, match=r"failed to write checkpoint .*last\.pt.*No space left.*intact"
    ):
        pretrain.run(pretrain_cfg(f"data={stub_data}", "steps=5", "ckpt_every=1"), tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(ckpt)["state"]["global_step"] == 2
    assert tmp_files(tmp_path) == [] and not (tmp_path / "summary.json").exists()
    # room again: it resumes from step 2
    summary = pretrain.run(pretrain_cfg(f"data={stub_data}", "steps=5", "resume=true"), tmp_path)
    assert summary["start_step"] == 2 and summary["steps"] == 5


# injected into the child process: the disk "fills up" when the 3rd checkpoint is synced
_SITECUSTOMIZE = """
import errno, os
_fsync, _calls = os.fsync, []
def _full(fd):
    try:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        name = ""
    if name.startswith(".last.pt."):
        _calls.append(name)
        if len(_calls) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
    return _fsync(fd)
os.fsync = _full
"""


def test_pretrain_cli_full_disk_is_one_error_line(stub_data, tmp_path):
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "worldmodel.pretrain", *PRETRAIN, f"data={stub_data}",
         "steps=5", "ckpt_every=1", f"hydra.run.dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env=child_env(PYTHONPATH=str(inject)),
    )  # fmt: skip
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: failed to write checkpoint") and "No space left" in lines[0]
    assert str(run_dir / "checkpoints" / "last.pt") in lines[0] and "intact" in lines[0]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]["global_step"] == 2
    assert tmp_files(run_dir) == []


def test_pretrain_cli_unwritable_output_directory_is_one_error_line(stub_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output directory should go")
    proc = cli("worldmodel.pretrain", *PRETRAIN, f"data={stub_data}", "steps=2",
               f"out={blocker / 'run'}", f"hydra.run.dir={tmp_path / 'hydra'}")  # fmt: skip
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: ") and str(blocker / "run") in lines[0]
    assert "Not a directory" in lines[0]


def test_loop_full_disk_while_writing_an_episode(loop_cfg, tmp_path, monkeypatch):
    calls = _full_disk_on_call(monkeypatch, np, "savez_compressed", fail_on=3)  # episode 2
    with pytest.raises(
        OSError, match=r"cannot write episode .*episode-000002-10\.npz.*No space left"
    ):
        loop.run(loop_cfg("episodes=4", "eval_every=0"), tmp_path)
    monkeypatch.undo()
    assert len(calls) == 3
    names = sorted(p.name for p in (tmp_path / "episodes").iterdir())
    assert names == ["episode-000000-10.npz", "episode-000001-10.npz"]  # no partial file
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["extra"]["loop"]["episodes"] == 2
    assert tmp_files(tmp_path) == []
    summary = loop.run(loop_cfg("episodes=4", "eval_every=0", "resume=true"), tmp_path)
    assert summary["episodes"] == 4 and summary["resumed_at_episode"] == 2


def test_loop_full_disk_while_writing_a_checkpoint(loop_cfg, tmp_path, monkeypatch):
    ckpt = tmp_path / "checkpoints" / "last.pt"
    _full_disk_on_call(monkeypatch, torch, "save", fail_on=3)  # the checkpoint after episode 2
    with pytest.raises(CheckpointError, match=r"last\.pt.*No space left.*intact"):
        loop.run(loop_cfg("episodes=4", "eval_every=0"), tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(ckpt)["extra"]["loop"]["episodes"] == 2
    assert tmp_files(tmp_path) == []
    # episode 2 was written before its checkpoint failed: kept on resume, not collected again
    summary = loop.run(loop_cfg("episodes=4", "eval_every=0", "resume=true"), tmp_path)
    assert summary["episodes"] == 4
    names = sorted(p.name for p in (tmp_path / "episodes").iterdir())
    assert names == [f"episode-{i:06d}-10.npz" for i in range(4)]


def test_loop_cli_unwritable_work_directory_is_one_error_line(tmp_path):
    """The run's episodes/ directory cannot be created (a file is in the way)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "episodes").write_text("not a directory")
    proc = cli("agents.cem_planner", *LOOP, "resume=true", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert lines[-1].startswith("error: ") and "episodes" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "checkpoints" / "last.pt").exists()


def test_summary_files_are_written_atomically(tmp_path, monkeypatch):
    from worldmodel.training.checkpoint import write_text_atomic

    path = write_text_atomic(tmp_path / "summary.json", '{"steps": 1}')
    monkeypatch.setattr("os.fsync", lambda fd: (_ for _ in ()).throw(ENOSPC))
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(path, '{"steps": 2}')
    monkeypatch.undo()
    assert path.read_text() == '{"steps": 1}' and tmp_files(tmp_path) == []
