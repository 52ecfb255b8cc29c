"""Episode files, ``python -m envs.collect`` and ``python -m envs.import_video``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import envs.collect
import envs.import_video
from envs import EpisodeRecorder, StubPixelEnv, make_env, next_episode_index, save_episode

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        out = {key: data[key] for key in data.files}
    out["meta"] = json.loads(str(out["meta"]))
    return out


def _episode(length: int = 3, action_dim: int = 2) -> dict:
    rng = np.random.default_rng(0)
    truncated = np.zeros(length, bool)
    truncated[-1] = True
    return dict(
        obs=rng.integers(0, 256, (length + 1, 8, 8, 3), dtype=np.uint8),
        action=rng.uniform(-1, 1, (length, action_dim)).astype(np.float32),
        reward=rng.normal(size=length).astype(np.float32),
        terminated=np.zeros(length, bool),
        truncated=truncated,
        meta=dict(env="stub", action_repeat=1, size=8, seed=3, source="env"),
    )


# ---- episode files ----------------------------------------------------------------------------
def test_save_episode_round_trips(tmp_path):
    episode = _episode()
    path = save_episode(tmp_path / "new", 7, **episode)
    assert path.name == "episode-000007-3.npz"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    loaded = _load(path)
    for key in ("obs", "action", "reward", "terminated", "truncated"):
        np.testing.assert_array_equal(loaded[key], episode[key])
        assert loaded[key].dtype == episode[key].dtype
    assert loaded["meta"] == {"format": "worldmodel-episode/1", **episode["meta"]}
    assert next_episode_index(path.parent) == 8
    with pytest.raises(FileExistsError, match="already exists"):
        save_episode(path.parent, 7, **episode)


def test_save_episode_rejects_bad_episodes(tmp_path):
    bad = [
        dict(obs=_episode()["obs"].astype(np.float32)),  # frames must be uint8
        dict(action=np.zeros((2, 2), np.float32)),  # T mismatch
        dict(action=np.full((3, 2), 2.0, np.float32)),  # not normalised
        dict(truncated=np.array([True, False, True])),  # ends twice
        dict(reward=None),  # action without reward
        dict(meta={"env": "stub"}),  # incomplete meta
    ]
    for change in bad:
        with pytest.raises(ValueError):
            save_episode(tmp_path, 0, **{**_episode(), **change})
    assert not any(tmp_path.iterdir())


def test_next_episode_index_ignores_other_files(tmp_path):
    assert next_episode_index(tmp_path / "missing") == 0
    (tmp_path / ".episode-000009-5.npz.tmp").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("x")
    assert next_episode_index(tmp_path) == 0
    save_episode(tmp_path, 4, **_episode())
    assert next_episode_index(tmp_path) == 5


def test_recorder_aligns_frames_actions_rewards(tmp_path):
    env = make_env("stub", encode_step=True, max_episode_steps=6)
    recorder = EpisodeRecorder(env="stub", action_repeat=1)
    obs, _ = env.reset(seed=0)
    recorder.reset(obs, seed=0)
    rewards = []
    while not recorder.done:
        action = env.action_space.sample()
        obs, reward, terminated, truncated, _ = env.step(action)
        recorder.step(action, reward, terminated, truncated, obs)
        rewards.append(reward)
    with pytest.raises(RuntimeError, match="ended"):
        recorder.step(action, 0.0, False, False, obs)
    episode = _load(recorder.save(tmp_path, 0))
    assert [StubPixelEnv.decode_step(f) for f in episode["obs"]] == list(range(7))
    np.testing.assert_allclose(episode["reward"], rewards, rtol=1e-6)
    assert episode["truncated"].tolist() == [False] * 5 + [True]
    assert episode["meta"]["seed"] == 0 and episode["meta"]["size"] == 64


# ---- collect ----------------------------------------------------------------------------------
def _collect(compose, out: Path, *overrides: str) -> dict:
    cfg = compose("collect", [f"out={out}", "progress=false", *overrides])
    from omegaconf import OmegaConf

    return envs.collect.run(OmegaConf.to_object(cfg))


STUB = ("env=stub", "+env.options.encode_step=true", "env.max_episode_steps=8")


def _replay(path: Path) -> None:
    """Re-run the episode's seed and actions in the env: frames and rewards must match."""
    episode = _load(path)
    env = make_env("stub", encode_step=True, max_episode_steps=8)
    obs, _ = env.reset(seed=episode["meta"]["seed"])
    np.testing.assert_array_equal(episode["obs"][0], obs)
    for t, action in enumerate(episode["action"]):
        obs, reward, _, truncated, _ = env.step(action)
        np.testing.assert_array_equal(episode["obs"][t + 1], obs)
        assert episode["reward"][t] == pytest.approx(reward, rel=1e-6)
        assert episode["truncated"][t] == truncated
    assert [StubPixelEnv.decode_step(f) for f in episode["obs"]] == list(range(9))


def test_collect_writes_aligned_episodes_and_appends(compose, tmp_path):
    result = _collect(compose, tmp_path, *STUB, "episodes=3", "seed=10")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"episode-00000{i}-8.npz" for i in range(3)]
    assert result["episodes"] == 3 and result["steps"] == 24
    for i, name in enumerate(names):
        episode = _load(tmp_path / name)
        assert episode["obs"].shape == (9, 64, 64, 3) and episode["obs"].dtype == np.uint8
        assert episode["action"].shape == (8, 2) and episode["action"].dtype == np.float32
        assert np.all(np.abs(episode["action"]) <= 1)
        assert episode["meta"]["seed"] == 10 + i
        assert episode["meta"]["env"] == "stub" and episode["meta"]["source"] == "env"
        _replay(tmp_path / name)
    # A second run appends, with new seeds.
    result = _collect(compose, tmp_path, *STUB, "episodes=2", "seed=10")
    assert result["first_index"] == 3
    assert _load(tmp_path / "episode-000004-8.npz")["meta"]["seed"] == 14


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_parallel_collection_matches_serial(compose, tmp_path, vectorization):
    _collect(compose, tmp_path / "serial", *STUB, "episodes=5")
    # 3 envs for 5 episodes: two sub-envs run a second episode, one goes idle.
    _collect(
        compose,
        tmp_path / "parallel",
        *STUB,
        "episodes=5",
        "num_envs=3",
        f"vectorization={vectorization}",
    )
    serial = sorted((tmp_path / "serial").iterdir())
    parallel = sorted((tmp_path / "parallel").iterdir())
    assert [p.name for p in serial] == [p.name for p in parallel]
    for a, b in zip(serial, parallel, strict=True):
        ea, eb = _load(a), _load(b)
        for key in ("obs", "action", "reward", "terminated", "truncated"):
            np.testing.assert_array_equal(ea[key], eb[key])
    _replay(parallel[-1])


def test_collect_real_env(compose, tmp_path):
    result = _collect(compose, tmp_path, "env=cheetah", "env.max_episode_steps=3", "episodes=2")
    episode = _load(result["paths"][1])
    assert episode["obs"].shape == (4, 64, 64, 3) and episode["action"].shape == (3, 6)
    assert episode["meta"]["action_repeat"] == 4 and episode["meta"]["seed"] == 1


def test_collect_rejects_bad_config(compose, tmp_path):
    with pytest.raises(ValueError, match="unknown environment 'nope'"):
        _collect(compose, tmp_path, "env.name=nope")
    with pytest.raises(ValueError, match="episodes must be"):
        _collect(compose, tmp_path, "env=stub", "episodes=0")
    assert not any(tmp_path.iterdir())


def test_collect_cli_exits_cleanly_on_unknown_env(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "envs.collect",
            "env.name=dmc:cheetah-fly",
            f"out={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown dm_control task")
    assert "Traceback" not in result.stderr


# ---- import_video -----------------------------------------------------------------------------
def _frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A moving bright bar on a dark background, ``(n, height, width, 3)`` uint8."""
    frames = np.full((n, height, width, 3), 20, np.uint8)
    for t in range(n):
        frames[t, :, (2 * t) % width : (2 * t) % width + 6] = (250, 200, 50)
    return frames


def _import(compose, src: Path, out: Path, *overrides: str) -> dict:
    cfg = compose("import_video", [f"src={src}", f"out={out}", "progress=false", *overrides])
    from omegaconf import OmegaConf

    return envs.import_video.run(OmegaConf.to_object(cfg))


@pytest.fixture
def videos(tmp_path) -> Path:
    import imageio.v3 as iio

    directory = tmp_path / "videos"
    directory.mkdir()
    iio.imwrite(directory / "a.gif", _frames(12), duration=40, loop=0)
    iio.imwrite(directory / "b.mp4", _frames(16), plugin="pyav", fps=10, codec="libx264")
    (directory / "readme.txt").write_text("not a video")
    return directory


def test_import_video_directory(compose, tmp_path, videos):
    out = tmp_path / "out"
    result = _import(compose, videos, out, "clip_length=5", "size=32")
    # a.gif: 12 frames -> 2 clips of 5; b.mp4: 16 frames -> 3 clips of 5.
    assert result["episodes"] == 5 and result["skipped"] == []
    paths = sorted(out.iterdir())
    assert [p.name for p in paths] == [f"episode-00000{i}-4.npz" for i in range(5)]
    episode = _load(paths[0])
    assert set(episode) == {"obs", "terminated", "truncated", "meta"}  # no action, no reward
    assert episode["obs"].shape == (5, 32, 32, 3) and episode["obs"].dtype == np.uint8
    assert episode["truncated"].tolist() == [False, False, False, True]
    assert episode["meta"]["source"] == "video" and episode["meta"]["file"].endswith("a.gif")
    # The gif is lossless: the frames are the center-cropped, resized originals.
    from envs.image import center_crop, resize

    expected = resize(center_crop(_frames(12)[1]), 32)
    np.testing.assert_allclose(episode["obs"][1], expected, atol=1)
    # stride and max_clips; appending continues the numbering
    result = _import(compose, videos, out, "clip_length=4", "stride=2", "max_clips=2")
    assert result["episodes"] == 2
    assert _load(out / "episode-000005-3.npz")["meta"]["frame_stride"] == 2
    assert next_episode_index(out) == 7


def test_import_video_skips_a_corrupt_file(compose, tmp_path, videos, capsys):
    (videos / "c.avi").write_bytes(b"definitely not a video" * 20)
    result = _import(compose, videos, tmp_path / "out", "clip_length=null")
    assert result["episodes"] == 2  # one clip per decodable video
    assert len(result["skipped"]) == 1 and "c.avi" in result["skipped"][0]
    assert "cannot decode video" in capsys.readouterr().err


def test_import_video_errors(compose, tmp_path, videos):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="cannot decode video .*corrupt.mp4"):
        _import(compose, corrupt, tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no video files"):
        _import(compose, empty, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not found"):
        _import(compose, tmp_path / "missing.mp4", tmp_path / "out")
    with pytest.raises(ValueError, match="too short"):
        _import(compose, videos / "a.gif", tmp_path / "out", "clip_length=50")
