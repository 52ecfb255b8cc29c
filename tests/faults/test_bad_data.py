"""Bad data at the entry points: truncated, corrupt, non-finite or mistyped episode files are skipped
and reported (``on_bad_file=skip``, the default) or a clear error naming the file
(``on_bad_file=raise``); data that cannot be trained on is refused before anything is written; a
non-finite value is never written to an episode file in the first place.

The loaders' checks themselves (every field, dtype, shape, NaN/inf, frame sizes, empty
directories) are tested in tests/test_data.py, undecodable videos in tests/test_collect.py.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents import loop
from envs.episodes import save_episode
from envs.stub import StubPixelEnv
from worldmodel import pretrain
from worldmodel.data import EpisodeError
from worldmodel.training.checkpoint import load_checkpoint

from .conftest import PRETRAIN, cli, error_lines, tmp_files, write_stub_episodes


@pytest.fixture
def bad_data(stub_data, tmp_path) -> tuple[Path, dict[str, str]]:
    """The three good stub episodes plus four broken ones: file name -> why it is refused."""
    data = tmp_path / "data"
    shutil.copytree(stub_data, data)
    good = data / "episode-000000-12.npz"
    with np.load(good, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}

    def broken(index: int, **changes: np.ndarray) -> None:  # as a buggy writer would write it
        with open(data / f"episode-{index:06d}-12.npz", "wb") as f:
            np.savez_compressed(f, **{**arrays, **changes})

    (data / "episode-000003-12.npz").write_bytes(good.read_bytes()[:900])  # half copied
    action, reward = arrays["action"].copy(), arrays["reward"].copy()
    action[5, 1], reward[7] = np.nan, np.inf
    broken(4, action=action)
    broken(5, reward=reward)
    broken(6, obs=arrays["obs"].astype(np.float32))
    return data, {
        "episode-000003-12.npz": "truncated",
        "episode-000004-12.npz": "action is not finite",
        "episode-000005-12.npz": "reward is not finite",
        "episode-000006-12.npz": "obs has dtype float32",
    }


def test_pretrain_skips_and_reports_every_bad_file(bad_data, tmp_path, pretrain_cfg, caplog):
    data, reasons = bad_data
    with caplog.at_level(logging.WARNING):
        summary = pretrain.run(pretrain_cfg(f"data={data}", "steps=2"), tmp_path / "run")
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])
    assert sorted(Path(p).name for p in summary["skipped_files"]) == sorted(reasons)
    log = caplog.text
    for name, reason in reasons.items():  # each named with its reason
        assert any(name in line and reason in line for line in log.splitlines()), (name, log)


def test_pretrain_cli_on_bad_file_raise_names_the_file_in_one_line(bad_data, tmp_path):
    data, reasons = bad_data
    for name in reasons:  # keep one broken file: the NaN action
        if name != "episode-000004-12.npz":
            (data / name).unlink()
    run_dir = tmp_path / "run"
    proc = cli("worldmodel.pretrain", *PRETRAIN, f"data={data}", "on_bad_file=raise",
               "steps=2", f"hydra.run.dir={run_dir}")  # fmt: skip
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert "episode-000004-12.npz" in lines[0] and "action is not finite" in lines[0]
    assert "step 5" in lines[0]
    assert not (run_dir / "checkpoints").exists()


def test_pretrain_refuses_data_it_cannot_train_on_before_writing(stub_data, tmp_path, pretrain_cfg):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"sequence length 20 exceeds every episode.*13 frames"):
        pretrain.run(pretrain_cfg(f"data={stub_data}", "train.seq_len=20"), out)
    mixed = tmp_path / "mixed"
    shutil.copytree(stub_data, mixed)
    write_stub_episodes(tmp_path / "big", n=1, size=64)
    shutil.copy(tmp_path / "big" / "episode-000000-12.npz", mixed / "episode-000009-12.npz")
    with pytest.raises(ValueError, match=r"episode-000009-12.npz has 64x64 frames but .* 32x32"):
        pretrain.run(pretrain_cfg(f"data={mixed}"), out)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no episode files.*envs\.collect"):
        pretrain.run(pretrain_cfg(f"data={empty}"), out)
    assert not out.exists()


def test_pretrain_resume_on_data_of_another_frame_size_is_refused(
    stub_data, tmp_path, pretrain_cfg
):
    pretrain.run(pretrain_cfg(f"data={stub_data}", "steps=1"), tmp_path / "run")
    big = write_stub_episodes(tmp_path / "big", n=2, size=64)
    with pytest.raises(Exception, match=r"image_size: saved 32, current 64"):
        pretrain.run(pretrain_cfg(f"data={big}", "steps=2", "resume=true"), tmp_path / "run")
    assert (
        load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]["global_step"] == 1
    )


@pytest.mark.parametrize(("key", "value"), [("action", np.nan), ("reward", np.inf)])
def test_a_non_finite_action_or_reward_is_never_written(tmp_path, key, value):
    steps = 4
    arrays = {
        "obs": np.zeros((steps + 1, 32, 32, 3), np.uint8),
        "action": np.zeros((steps, 2), np.float32),
        "reward": np.zeros(steps, np.float32),
        "terminated": np.zeros(steps, bool),
        "truncated": np.arange(steps) == steps - 1,
    }
    arrays[key][2] = value
    meta = {"env": "stub", "action_repeat": 1, "size": 32, "seed": 0, "source": "env"}
    with pytest.raises(ValueError, match=rf"episode 7: {key} is not finite .* at step 2"):
        save_episode(tmp_path, 7, **arrays, meta=meta)
    assert not any(tmp_path.iterdir())


class _NaNReward(StubPixelEnv):
    """The stub, whose reward becomes NaN at step 3 of its third episode."""

    episodes = 0

    def reset(self, **kwargs):
        type(self).episodes += 1
        return super().reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if type(self).episodes == 3 and self._steps == 3:
            reward = float("nan")
        return obs, reward, terminated, truncated, info


def test_loop_stops_on_a_non_finite_reward_without_writing_it(loop_cfg, tmp_path, monkeypatch):
    """A NaN reward from the environment is a clear error naming it; nothing of that episode is
    written, the checkpoint before it stays, and the run can be resumed."""
    monkeypatch.setattr(loop, "make_env_from_config", lambda cfg: _NaNReward(size=32, max_steps=10))
    with pytest.raises(ValueError, match=r"episode 2: reward is not finite .* at step 2"):
        loop.run(loop_cfg("episodes=4", "seed_episodes=3"), tmp_path)
    names = sorted(p.name for p in (tmp_path / "episodes").iterdir())
    assert names == ["episode-000000-10.npz", "episode-000001-10.npz"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["extra"]["loop"]["episodes"] == 2
    assert tmp_files(tmp_path) == []


def test_loop_resume_with_a_corrupt_episode_file_names_it(loop_cfg, tmp_path):
    loop.run(loop_cfg("episodes=2", "seed_episodes=2"), tmp_path)
    bad = tmp_path / "episodes" / "episode-000001-10.npz"
    bad.write_bytes(bad.read_bytes()[:1000])  # e.g. a half-copied run directory
    with pytest.raises(EpisodeError, match=r"episode-000001-10\.npz"):
        loop.run(loop_cfg("episodes=3", "seed_episodes=2", "resume=true"), tmp_path)
