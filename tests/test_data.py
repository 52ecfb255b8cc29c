"""Episode files, EpisodeDataset, SequenceSampler and ReplayBuffer (worldmodel/data.py)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from worldmodel.data import (
    Batch,
    Episode,
    EpisodeDataset,
    EpisodeError,
    ReplayBuffer,
    SequenceSampler,
    list_episode_files,
    load_episode,
)

SIZE = 8  # frame side for most tests: small and fast
ACTION_DIM = 2


# --------------------------------------------------------------------------- episode writing helpers
def make_arrays(
    steps: int, *, episode: int = 0, size: int = SIZE, action_dim: int | None = ACTION_DIM
) -> dict[str, np.ndarray]:
    """An episode whose content encodes indices, to check alignment.

    Frame ``t``: channel 0 = t % 256, channel 1 = episode, channel 2 = t // 256.
    ``action[t] = [t / 1000, episode / 1000, 0...]``; ``reward[t] = 1000 * episode + t + 1`` (the
    reward for action t arrives with frame t + 1).
    """
    t = np.arange(steps + 1)
    obs = np.zeros((steps + 1, size, size, 3), dtype=np.uint8)
    obs[..., 0] = (t % 256)[:, None, None]
    obs[..., 1] = episode
    obs[..., 2] = (t // 256)[:, None, None]
    arrays: dict[str, np.ndarray] = {
        "obs": obs,
        "terminated": np.zeros(steps, dtype=bool),
        "truncated": np.zeros(steps, dtype=bool),
    }
    if steps:
        arrays["truncated"][-1] = True
    if action_dim is not None:
        action = np.zeros((steps, action_dim), dtype=np.float32)
        action[:, 0] = np.arange(steps) / 1000
        action[:, 1] = episode / 1000
        arrays["action"] = action
        arrays["reward"] = (1000 * episode + np.arange(steps) + 1).astype(np.float32)
    return arrays


def write_episode(
    directory: Path,
    index: int,
    arrays: dict[str, np.ndarray],
    meta: dict | None = None,
    *,
    raw_meta: np.ndarray | None = None,
) -> Path:
    """Write an episode exactly as COMMON.md specifies (tmp dot-file, fsync, os.replace)."""
    directory.mkdir(parents=True, exist_ok=True)
    steps = len(arrays["truncated"])
    name = f"episode-{index:06d}-{steps}.npz"
    if raw_meta is None:
        size = arrays["obs"].shape[1] if "obs" in arrays and arrays["obs"].ndim == 4 else 0
        meta = {
            "format": "worldmodel-episode/1",
            "env": "test",
            "action_repeat": 1,
            "size": int(size),
            "seed": index,
            "source": "env" if "action" in arrays else "video",
            **(meta or {}),
        }
        raw_meta = np.array(json.dumps(meta))
    tmp = directory / f".{name}.tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays, meta=raw_meta)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / name)
    return directory / name


def write_dataset(directory: Path, lengths: list[int], **kwargs) -> list[Path]:
    return [
        write_episode(directory, i, make_arrays(steps, episode=i, **kwargs))
        for i, steps in enumerate(lengths)
    ]


def decode_frame_index(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 3, H, W) uint8 -> (step index, episode index) from the top-left pixel."""
    px = obs[..., :, 0, 0].long()
    return px[..., 0] + 256 * px[..., 2], px[..., 1]


# --------------------------------------------------------------------------- load_episode
def test_load_episode_round_trip(tmp_path):
    arrays = make_arrays(5, episode=3)
    path = write_episode(tmp_path, 3, arrays, {"extra": "kept"})
    ep = load_episode(path)
    assert isinstance(ep, Episode)
    np.testing.assert_array_equal(ep.obs, arrays["obs"])
    np.testing.assert_array_equal(ep.action, arrays["action"])
    np.testing.assert_array_equal(ep.reward, arrays["reward"])
    assert ep.obs.dtype == np.uint8 and ep.action.dtype == np.float32
    assert ep.truncated[-1] and not ep.terminated.any()
    assert ep.meta["env"] == "test" and ep.meta["extra"] == "kept"
    assert ep.path == path
    assert (ep.num_frames, ep.num_steps, ep.frame_shape, ep.action_dim) == (6, 5, (SIZE, SIZE), 2)


def test_load_action_free_video_episode(tmp_path):
    path = write_episode(tmp_path, 0, make_arrays(4, action_dim=None))
    ep = load_episode(path)
    assert ep.action is None and ep.reward is None and ep.action_dim is None
    assert ep.meta["source"] == "video"


def test_load_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_episode(tmp_path / "nope.npz")


def test_truncated_file_is_an_episode_error_naming_the_file(tmp_path):
    path = write_episode(tmp_path, 0, make_arrays(20))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EpisodeError) as info:
        load_episode(path)
    assert info.value.path == path
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_corrupt_member_data_is_an_episode_error(tmp_path):
    """Bytes flipped inside the compressed obs member (zip directory intact)."""
    rng = np.random.default_rng(0)
    arrays = make_arrays(20)
    arrays["obs"] = rng.integers(0, 256, arrays["obs"].shape, dtype=np.uint8)  # incompressible
    path = write_episode(tmp_path, 0, arrays)
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(EpisodeError, match=str(path.name)):
        load_episode(path)


def test_garbage_and_npy_files_are_episode_errors(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(os.urandom(256))
    with pytest.raises(EpisodeError):
        load_episode(garbage)
    npy = tmp_path / "array.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(EpisodeError, match="not an .npz"):
        load_episode(npy)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a: a.pop("obs"), r"missing key.*obs"),
        (lambda a: a.pop("terminated"), r"missing key.*terminated"),
        (lambda a: a.update(obs=a["obs"].astype(np.float32)), r"obs has dtype float32"),
        (lambda a: a.update(obs=a["obs"][..., :1]), r"obs has shape"),
        (lambda a: a.update(action=a["action"].astype(np.float64)), r"action has dtype float64"),
        (
            lambda a: a.update(action=a["action"][:-1]),
            r"action has shape \(4, 2\).*expected \(5, A\)",
        ),
        (lambda a: a.update(action=a["action"] * 5 + 2), r"normalised to \[-1, 1\]"),
        (lambda a: a["action"].__setitem__((2, 1), np.inf), r"action is not finite.*step 2"),
        (lambda a: a["reward"].__setitem__(3, np.nan), r"reward is not finite.*step 3"),
        (lambda a: a.update(reward=a["reward"].astype(np.float64)), r"reward has dtype float64"),
        (lambda a: a.update(reward=a["reward"][:3]), r"reward has shape"),
        (lambda a: a["terminated"].__setitem__(1, True), r"terminated is True at step 1"),
        (lambda a: a.update(truncated=a["truncated"].astype(np.uint8)), r"truncated has dtype"),
        (lambda a: a.update(obs=np.array([None] * 6, dtype=object)), r"pickled Python objects"),
    ],
)
def test_invalid_content_is_rejected_with_a_clear_reason(tmp_path, mutate, match):
    arrays = make_arrays(5)
    mutate(arrays)
    if any(a.dtype == object for a in arrays.values()):
        path = tmp_path / "episode-000000-5.npz"
        with open(path, "wb") as f:  # savez pickles object arrays; allow_pickle=False must refuse
            np.savez_compressed(f, **arrays, meta=np.array("{}"))
    else:
        path = write_episode(tmp_path, 0, arrays)
    with pytest.raises(EpisodeError, match=match) as info:
        load_episode(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("raw_meta", "match"),
    [
        (np.array("not json"), "not valid JSON"),
        (np.array("[1, 2]"), "JSON object"),
        (np.array(b"{}"), "unicode string"),
        (np.array(json.dumps({"format": "worldmodel-episode/9"})), "unsupported episode format"),
    ],
)
def test_invalid_meta_is_rejected(tmp_path, raw_meta, match):
    path = write_episode(tmp_path, 0, make_arrays(3), raw_meta=raw_meta)
    with pytest.raises(EpisodeError, match=match):
        load_episode(path)


def test_terminal_flag_on_last_step_is_valid(tmp_path):
    arrays = make_arrays(3)
    arrays["terminated"][-1] = True
    assert load_episode(write_episode(tmp_path, 0, arrays)).terminated[-1]


# --------------------------------------------------------------------------- EpisodeDataset
def test_dataset_loads_sorted_and_ignores_dot_and_other_files(tmp_path):
    write_dataset(tmp_path, [5, 6, 7])
    (tmp_path / ".episode-000003-9.npz.tmp").write_bytes(b"half written")
    (tmp_path / ".hidden.npz").write_bytes(b"junk")
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / "sub").mkdir()
    ds = EpisodeDataset(tmp_path)
    assert [p.name for p in ds.paths] == [
        "episode-000000-5.npz",
        "episode-000001-6.npz",
        "episode-000002-7.npz",
    ]
    assert ds.skipped == []
    assert (ds.num_episodes, len(ds), ds.num_steps, ds.num_frames) == (3, 3, 18, 21)
    assert ds.image_size == SIZE and ds.frame_shape == (SIZE, SIZE)
    assert ds.action_dim == ACTION_DIM and ds.has_action and ds.has_reward
    assert ds[1].meta["seed"] == 1


def test_dataset_accepts_a_list_of_files_and_a_single_file(tmp_path):
    paths = write_dataset(tmp_path, [5, 6, 7])
    assert EpisodeDataset([paths[2], paths[0]]).paths == [paths[2], paths[0]]
    assert EpisodeDataset(paths[1]).num_steps == 6


def test_dataset_skips_a_bad_file_reports_it_and_loads_the_rest(tmp_path, caplog):
    paths = write_dataset(tmp_path, [5, 6, 7])
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="worldmodel.data"):
        ds = EpisodeDataset(tmp_path)
    assert ds.paths == [paths[0], paths[2]]
    assert len(ds.skipped) == 1 and ds.skipped[0][0] == paths[1]
    assert paths[1].name in ds.skipped[0][1]
    assert any(
        "skipped 1" in r.getMessage() and paths[1].name in r.getMessage() for r in caplog.records
    )


def test_dataset_on_error_raise(tmp_path):
    paths = write_dataset(tmp_path, [5, 6])
    arrays = make_arrays(4)
    arrays["reward"][0] = np.nan
    write_episode(tmp_path, 2, arrays)
    with pytest.raises(EpisodeError, match="reward is not finite"):
        EpisodeDataset(tmp_path, on_error="raise")
    assert EpisodeDataset(tmp_path).paths == paths


def test_dataset_min_length_drops_short_episodes(tmp_path):
    paths = write_dataset(tmp_path, [2, 9, 3])
    ds = EpisodeDataset(tmp_path, min_length=5)
    assert ds.paths == [paths[1]]
    assert {p for p, _ in ds.skipped} == {paths[0], paths[2]}
    assert "min_length=5" in ds.skipped[0][1]


def test_dataset_mismatched_frame_sizes_name_the_file_and_sizes(tmp_path):
    write_episode(tmp_path, 0, make_arrays(4, size=8))
    write_episode(tmp_path, 1, make_arrays(4, size=8))
    bad = write_episode(tmp_path, 2, make_arrays(4, size=16))
    with pytest.raises(ValueError, match=rf"{bad.name} has 16x16 frames but .* has 8x8"):
        EpisodeDataset(tmp_path)


def test_dataset_mismatched_action_sizes_name_the_file(tmp_path):
    write_episode(tmp_path, 0, make_arrays(4, action_dim=2))
    bad = write_episode(tmp_path, 1, make_arrays(4, action_dim=3))
    with pytest.raises(ValueError, match=rf"{bad.name} has 3-dim actions but .* has 2-dim"):
        EpisodeDataset(tmp_path)
    free = write_episode(tmp_path / "mix", 1, make_arrays(4, action_dim=None))
    write_episode(tmp_path / "mix", 0, make_arrays(4))
    with pytest.raises(ValueError, match=rf"{free.name} has no actions"):
        EpisodeDataset(tmp_path / "mix")


def test_dataset_empty_or_missing_directory_says_how_to_create_data(tmp_path):
    with pytest.raises(ValueError, match=r"no episode files.*python -m envs\.collect"):
        EpisodeDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"does not exist.*envs\.collect"):
        EpisodeDataset(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        list_episode_files(tmp_path / "missing")


def test_dataset_with_only_bad_files_raises(tmp_path):
    (tmp_path / "episode-000000-3.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match=r"none of the 1 episode file.*envs\.collect"):
        EpisodeDataset(tmp_path)


def test_dataset_memory_is_the_raw_frames(tmp_path):
    write_dataset(tmp_path, [30, 40], size=32)
    ds = EpisodeDataset(tmp_path)
    raw = ds.num_frames * 32 * 32 * 3
    assert raw <= ds.nbytes <= 1.03 * raw


# --------------------------------------------------------------------------- SequenceSampler
def test_sampler_shapes_dtypes_and_alignment(tmp_path):
    write_dataset(tmp_path, [12, 30, 7, 300])  # the 300-step episode crosses 256 in the encoding
    ds = EpisodeDataset(tmp_path)
    L, B = 6, 32
    sampler = SequenceSampler(ds, seq_len=L, batch_size=B, seed=0)
    for _ in range(20):
        batch = sampler.sample()
        assert batch.obs.shape == (B, L, 3, SIZE, SIZE) and batch.obs.dtype == torch.uint8
        assert batch.action.shape == (B, L - 1, ACTION_DIM) and batch.action.dtype == torch.float32
        assert batch.reward.shape == (B, L - 1) and batch.reward.dtype == torch.float32
        assert (batch.batch_size, batch.seq_len) == (B, L)
        step, episode = decode_frame_index(batch.obs)  # (B, L)
        # consecutive frames of a single episode
        assert (step[:, 1:] - step[:, :-1] == 1).all()
        assert (episode == episode[:, :1]).all()
        # action[t] is the action taken at frame t; reward[t] is the reward for it
        expected_action = step[:, :-1].float() / 1000
        torch.testing.assert_close(batch.action[..., 0], expected_action)
        torch.testing.assert_close(batch.action[..., 1], episode[:, :-1].float() / 1000)
        torch.testing.assert_close(
            batch.reward, (1000 * episode[:, :-1] + step[:, :-1] + 1).float()
        )
        # every frame lies inside its episode
        lengths = torch.tensor([13, 31, 8, 301])[episode[:, 0]]
        assert (step[:, -1] < lengths).all()


def test_sampler_frames_are_exact_chw_copies(tmp_path):
    rng = np.random.default_rng(1)
    arrays = make_arrays(9)
    arrays["obs"] = rng.integers(0, 256, arrays["obs"].shape, dtype=np.uint8)
    write_episode(tmp_path, 0, arrays)
    ds = EpisodeDataset(tmp_path)
    batch = SequenceSampler(ds, seq_len=10, batch_size=2, seed=0).sample()  # single window
    expected = torch.from_numpy(arrays["obs"]).permute(0, 3, 1, 2)
    assert torch.equal(batch.obs[0], expected) and torch.equal(batch.obs[1], expected)


def test_sampler_is_uniform_over_valid_windows(tmp_path):
    write_dataset(tmp_path, [4, 13])  # 5 and 14 frames
    ds = EpisodeDataset(tmp_path)
    L = 5
    sampler = SequenceSampler(ds, seq_len=L, batch_size=500, seed=0)
    assert sampler.num_windows == 1 + 10
    counts: dict[tuple[int, int], int] = {}
    for _ in range(20):
        step, episode = decode_frame_index(sampler.sample().obs)
        for e, s in zip(episode[:, 0].tolist(), step[:, 0].tolist(), strict=True):
            counts[(e, s)] = counts.get((e, s), 0) + 1
    # every valid start and no invalid one (catches off-by-one at the end of an episode)
    assert set(counts) == {(0, 0)} | {(1, s) for s in range(10)}
    expected = 20 * 500 / 11
    assert all(0.8 * expected < c < 1.2 * expected for c in counts.values()), counts


def test_sampler_is_deterministic_under_a_seed(tmp_path):
    write_dataset(tmp_path, [20, 30])
    ds = EpisodeDataset(tmp_path)
    a = [SequenceSampler(ds, 4, 8, seed=7).sample() for _ in range(2)]
    b = SequenceSampler(ds, 4, 8, generator=torch.Generator().manual_seed(7)).sample()
    c = SequenceSampler(ds, 4, 8, seed=8).sample()
    assert torch.equal(a[0].obs, a[1].obs) and torch.equal(a[0].action, a[1].action)
    assert torch.equal(a[0].obs, b.obs)
    assert not torch.equal(a[0].obs, c.obs)
    torch.manual_seed(3)  # without seed/generator: reproducible through torch's global seed
    d = SequenceSampler(ds, 4, 8).sample()
    torch.manual_seed(3)
    e = SequenceSampler(ds, 4, 8).sample()
    assert torch.equal(d.obs, e.obs)


def test_sampler_iterates_and_batches_differ(tmp_path):
    write_dataset(tmp_path, [50])
    sampler = SequenceSampler(EpisodeDataset(tmp_path), 3, 4, seed=0)
    first, second = next(iter(sampler)), next(sampler)
    assert isinstance(first, Batch)
    assert not torch.equal(first.obs, second.obs)


def test_sampler_action_free_video(tmp_path):
    write_dataset(tmp_path, [10, 10], action_dim=None)
    ds = EpisodeDataset(tmp_path)
    assert ds.action_dim is None and not ds.has_action and not ds.has_reward
    batch = SequenceSampler(ds, 5, 3, seed=0).sample()
    assert batch.obs.shape == (3, 5, 3, SIZE, SIZE)
    assert batch.action is None and batch.reward is None


def test_sampler_skips_short_episodes_and_errors_when_none_is_long_enough(tmp_path):
    write_dataset(tmp_path, [3, 20])
    ds = EpisodeDataset(tmp_path)
    _, episode = decode_frame_index(SequenceSampler(ds, 10, 64, seed=0).sample().obs)
    assert (episode == 1).all()
    with pytest.raises(ValueError, match=r"sequence length 30 exceeds every episode's length.*21"):
        SequenceSampler(ds, 30, 4)


def test_sampler_single_frame_sequences(tmp_path):
    write_dataset(tmp_path, [5])
    batch = SequenceSampler(EpisodeDataset(tmp_path), 1, 4, seed=0).sample()
    assert batch.obs.shape == (4, 1, 3, SIZE, SIZE) and batch.action.shape == (4, 0, ACTION_DIM)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seq_len": 0, "batch_size": 2}, "seq_len"),
        ({"seq_len": 2, "batch_size": 0}, "batch_size"),
        ({"seq_len": 2, "batch_size": 2, "seed": 1, "generator": torch.Generator()}, "either"),
    ],
)
def test_sampler_bad_arguments(tmp_path, kwargs, match):
    write_dataset(tmp_path, [5])
    with pytest.raises(ValueError, match=match):
        SequenceSampler(EpisodeDataset(tmp_path), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_sampler_pin_memory_without_cuda_is_a_clear_error(tmp_path):
    write_dataset(tmp_path, [5])
    with pytest.raises(ValueError, match="pin_memory=True needs CUDA"):
        SequenceSampler(EpisodeDataset(tmp_path), 2, 2, pin_memory=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sampler_pinned_batches_move_to_cuda(tmp_path):
    write_dataset(tmp_path, [5])
    batch = SequenceSampler(EpisodeDataset(tmp_path), 2, 2, seed=0, pin_memory=True).sample()
    assert batch.obs.is_pinned() and batch.action.is_pinned()
    moved = batch.to("cuda")
    assert moved.obs.is_cuda and torch.equal(moved.obs.cpu(), batch.obs)


def test_batch_to_keeps_dtypes_and_none():
    batch = Batch(obs=torch.zeros(2, 3, 3, 4, 4, dtype=torch.uint8), action=None, reward=None)
    moved = batch.to(torch.device("cpu"))
    assert moved.obs.dtype == torch.uint8 and moved.action is None and moved.reward is None
    full = Batch(
        torch.zeros(1, 2, 3, 4, 4, dtype=torch.uint8), torch.ones(1, 1, 2), torch.ones(1, 1)
    )
    assert torch.equal(full.to("cpu").action, full.action)


# --------------------------------------------------------------------------- ReplayBuffer
def add(buffer: ReplayBuffer, steps: int, episode: int, **kwargs) -> None:
    a = make_arrays(steps, episode=episode, **kwargs)
    buffer.add_episode(a["obs"], a.get("action"), a.get("reward"), a["terminated"], a["truncated"])


def test_replay_buffer_evicts_oldest_episodes_beyond_capacity():
    buffer = ReplayBuffer(capacity_frames=100)
    for i in range(5):
        add(buffer, 29, episode=i)  # 30 frames each
        assert len(buffer) <= 100
    assert [int(e.obs[0, 0, 0, 1]) for e in buffer.episodes] == [2, 3, 4]
    assert (buffer.num_episodes, len(buffer), buffer.num_frames, buffer.num_steps) == (
        3,
        90,
        90,
        87,
    )
    _, episode = decode_frame_index(SequenceSampler(buffer, 8, 256, seed=0).sample().obs)
    assert set(episode[:, 0].tolist()) == {2, 3, 4}


def test_replay_buffer_sampler_sees_new_episodes_and_alignment():
    buffer = ReplayBuffer(capacity_frames=1000)
    add(buffer, 10, episode=0)
    sampler = SequenceSampler(buffer, 4, 64, seed=0)
    _, episode = decode_frame_index(sampler.sample().obs)
    assert (episode == 0).all()
    add(buffer, 300, episode=1)
    batch = sampler.sample()
    step, episode = decode_frame_index(batch.obs)
    assert (episode[:, 0] == 1).any()
    assert (step[:, 1:] - step[:, :-1] == 1).all()
    torch.testing.assert_close(batch.action[..., 0], step[:, :-1].float() / 1000)
    torch.testing.assert_close(batch.reward, (1000 * episode[:, :-1] + step[:, :-1] + 1).float())


def test_replay_buffer_memory_stays_at_the_raw_frame_bytes():
    buffer = ReplayBuffer(capacity_frames=2000)
    for i in range(8):
        add(buffer, 249, episode=i, size=64, action_dim=6)
    raw = buffer.num_frames * 64 * 64 * 3
    assert buffer.num_frames == 2000
    assert raw <= buffer.nbytes <= 1.03 * raw


def test_replay_buffer_copies_its_input_and_casts_floats():
    a = make_arrays(5)
    buffer = ReplayBuffer(capacity_frames=10)
    buffer.add_episode(list(a["obs"]), a["action"].astype(np.float64), a["reward"].tolist())
    a["obs"][:] = 255  # the caller reuses its arrays
    ep = buffer.episodes[0]
    assert ep.obs[0].max() < 255 and ep.action.dtype == np.float32 and ep.reward.dtype == np.float32
    assert not ep.terminated.any() and not ep.truncated.any()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a: a.update(obs=a["obs"].astype(np.float32)), "obs has dtype"),
        (lambda a: a.update(action=a["action"][:-1]), "action has shape"),
        (lambda a: a["reward"].__setitem__(0, np.nan), "reward is not finite"),
        (lambda a: a.update(action=a["action"].astype(np.int64)), "action has dtype"),
    ],
)
def test_replay_buffer_rejects_invalid_episodes(mutate, match):
    a = make_arrays(5)
    mutate(a)
    with pytest.raises(ValueError, match=f"add_episode: {match}"):
        ReplayBuffer(100).add_episode(a["obs"], a["action"], a["reward"])


def test_replay_buffer_rejects_mismatched_and_oversized_episodes():
    buffer = ReplayBuffer(capacity_frames=50)
    add(buffer, 5, 0)
    with pytest.raises(ValueError, match="16x16 frames"):
        add(buffer, 5, 1, size=16)
    with pytest.raises(ValueError, match="3-dim actions"):
        add(buffer, 5, 1, action_dim=3)
    a = make_arrays(5)
    with pytest.raises(ValueError, match="has no rewards but .* has rewards"):
        buffer.add_episode(a["obs"], a["action"])
    with pytest.raises(ValueError, match="more than the replay capacity of 50"):
        add(buffer, 60, 1)
    assert buffer.num_episodes == 1
    with pytest.raises(ValueError, match="capacity_frames"):
        ReplayBuffer(0)


def test_empty_replay_buffer_sampling_is_a_clear_error():
    sampler = SequenceSampler(ReplayBuffer(100), 4, 2, seed=0)
    with pytest.raises(ValueError, match="holds no episodes yet"):
        sampler.sample()


def test_replay_buffer_from_directory_keeps_the_newest_that_fit(tmp_path):
    lengths = [9, 19, 29, 9, 19]  # 10, 20, 30, 10, 20 frames
    write_dataset(tmp_path, lengths)
    (tmp_path / ".episode-000005-9.npz.tmp").write_bytes(b"partial")
    buffer = ReplayBuffer.from_directory(tmp_path, capacity_frames=65)
    reference = ReplayBuffer(65)
    for i, steps in enumerate(lengths):
        add(reference, steps, episode=i)
    ids = [int(e.obs[0, 0, 0, 1]) for e in buffer.episodes]
    assert ids == [int(e.obs[0, 0, 0, 1]) for e in reference.episodes] == [2, 3, 4]
    assert buffer.num_frames == 60
    assert buffer.episodes[0].path.name == "episode-000002-29.npz"
    (tmp_path / "empty").mkdir()
    assert ReplayBuffer.from_directory(tmp_path / "empty", 10).num_episodes == 0
    with pytest.raises(FileNotFoundError):
        ReplayBuffer.from_directory(tmp_path / "missing", 10)


def test_replay_buffer_from_directory_skips_a_corrupt_file(tmp_path, caplog):
    paths = write_dataset(tmp_path, [5, 5, 5])
    paths[2].write_bytes(paths[2].read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="worldmodel.data"):
        buffer = ReplayBuffer.from_directory(tmp_path, capacity_frames=100)
    assert [e.path for e in buffer.episodes] == paths[:2]
    assert any(paths[2].name in r.getMessage() for r in caplog.records)
    with pytest.raises(EpisodeError):
        ReplayBuffer.from_directory(tmp_path, capacity_frames=100, on_error="raise")
