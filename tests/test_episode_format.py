"""episode_format: the one definition of the episode files, shared by the writers (envs) and the
readers (worldmodel); the recorder that every rollout uses."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import episode_format
from envs.episodes import EpisodeRecorder
from envs.stub import StubPixelEnv
from episode_format import Episode, episode_index, episode_paths, load_episode, save_episode
from worldmodel import data


def _arrays(steps: int = 3) -> dict:
    rng = np.random.default_rng(0)
    last = np.arange(steps) == steps - 1
    return dict(
        obs=rng.integers(0, 256, (steps + 1, 8, 8, 3), dtype=np.uint8),
        action=rng.uniform(-1, 1, (steps, 2)).astype(np.float32),
        reward=rng.uniform(0, 1, steps).astype(np.float32),
        terminated=np.zeros(steps, bool),
        truncated=last,
        meta=dict(env="stub", action_repeat=1, size=8, seed=0, source="env"),
    )


def test_one_definition_for_writers_and_readers():
    import envs.episodes

    assert envs.episodes.Episode is data.Episode is Episode
    assert envs.episodes.save_episode is save_episode
    assert data.load_episode is load_episode and data.EpisodeError is episode_format.EpisodeError
    assert data.EPISODE_FORMAT == episode_format.FORMAT == "worldmodel-episode/1"


def test_episode_files_are_listed_by_index_not_by_name(tmp_path):
    for index in (999_999, 1_000_000, 2, 10):  # by name, 1000000 would come before 999999
        save_episode(tmp_path, index, **_arrays())
    (tmp_path / ".episode-000011-3.npz.tmp").write_bytes(b"half written")
    (tmp_path / "other.npz").write_bytes(b"not an episode name")
    (tmp_path / "episode-000012-3.npz").mkdir()  # a directory is not an episode file
    expected = [2, 10, 999_999, 1_000_000]
    assert [episode_index(p) for p in episode_paths(tmp_path)] == expected
    assert episode_format.next_episode_index(tmp_path) == 1_000_001
    assert episode_paths(tmp_path / "missing") == []
    assert episode_index(tmp_path / "other.npz") is None


def test_the_reader_lists_like_the_writer_and_names_ignored_npz_files(tmp_path, caplog):
    for index in (1_000_000, 999_999):
        save_episode(tmp_path, index, **_arrays())
    (tmp_path / "clip.npz").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="worldmodel.data"):
        paths = data.list_episode_files(tmp_path)
    assert paths == episode_paths(tmp_path)
    assert "clip.npz" in caplog.text
    dataset = data.EpisodeDataset(tmp_path)
    assert [episode_index(p) for p in dataset.paths] == [999_999, 1_000_000]


def test_episode_save_and_load_round_trip(tmp_path):
    arrays = _arrays()
    meta = arrays.pop("meta")
    episode = Episode(**arrays, meta=meta)
    loaded = load_episode(episode.save(tmp_path, 4))
    assert loaded.path == tmp_path / "episode-000004-3.npz"
    for key in ("obs", "action", "reward", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(loaded, key), arrays[key])
    assert loaded.meta == {"format": episode_format.FORMAT, **meta}
    assert loaded.total_reward == pytest.approx(float(arrays["reward"].sum()))
    with pytest.raises(ValueError, match="format"):
        save_episode(tmp_path, 5, **arrays, meta={**meta, "format": "other/2"})


def test_the_recorder_builds_the_episode_it_writes_and_flags_physics_errors(tmp_path):
    env = StubPixelEnv(size=16, max_steps=3)
    recorder = EpisodeRecorder(env="stub", action_repeat=1)
    obs, _ = env.reset(seed=1)
    recorder.reset(obs, seed=1)
    with pytest.raises(ValueError, match="at least one transition"):
        recorder.episode()
    while not recorder.done:
        obs, reward, terminated, truncated, info = env.step(np.ones(2, np.float32))
        info = {**info, "physics_error": len(recorder) == 2}  # the last step "blows up"
        recorder.step(np.ones(2), reward, terminated, truncated, obs, info)
    episode = recorder.episode()
    assert (episode.num_steps, episode.action.dtype, episode.meta["physics_error"]) == (
        3,
        np.float32,
        True,
    )
    assert episode.truncated.tolist() == [False, False, True] and not episode.terminated.any()
    loaded = load_episode(recorder.save(tmp_path, 0))
    np.testing.assert_array_equal(loaded.obs, episode.obs)
    assert loaded.meta == {"format": episode_format.FORMAT, **episode.meta}
    assert loaded.meta["seed"] == 1 and loaded.meta["size"] == 16
