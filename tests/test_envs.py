"""Real environments through ``envs.make_env``: dm_control and Gymnasium (the stub: test_stub.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import EnvConfig, PhysicsError, make_env, make_env_from_config, rescale_action
from envs.registry import DMC_DEFAULTS, PRESETS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cheetah():
    env = make_env("cheetah")
    yield env
    env.close()


def _check_env_strict(env: gym.Env) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)


# ---- spaces, frames, check_env ----------------------------------------------------------------
def test_cheetah_spaces_and_frames(cheetah):
    assert cheetah.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert cheetah.action_space == gym.spaces.Box(-1, 1, (6,), np.float32)
    assert cheetah.action_repeat == 4
    obs, info = cheetah.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and isinstance(info, dict)
    assert obs.std() > 5  # a real picture, not a blank frame
    obs2, reward, terminated, truncated, _ = cheetah.step(np.zeros(6, np.float32))
    assert obs2.shape == (64, 64, 3) and isinstance(reward, float)
    assert terminated is False and truncated is False
    np.testing.assert_array_equal(cheetah.render(), obs2)


@pytest.mark.parametrize("name", ["cheetah", "pendulum", "halfcheetah"])
def test_check_env_without_warnings(name):
    env = make_env(name)
    assert env.unwrapped is env
    _check_env_strict(env)
    env.close()
    env.close()  # closing twice is fine


def test_128_pixels():
    env = make_env("cheetah", size=128)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (128, 128, 3)
    assert env.observation_space.shape == (128, 128, 3)
    env.close()


def test_walker_preset_defaults():
    env = make_env("walker")
    assert env.action_repeat == DMC_DEFAULTS["walker"].action_repeat == 2
    assert env.action_space.shape == (6,)
    env.close()


# ---- actions ----------------------------------------------------------------------------------
def test_rescale_action():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 10.0])
    np.testing.assert_allclose(rescale_action(np.array([-1.0, -1.0]), low, high), low)
    np.testing.assert_allclose(rescale_action(np.array([1.0, 1.0]), low, high), high)
    np.testing.assert_allclose(rescale_action(np.array([0.5, 0.0]), low, high), [1.0, 5.0])
    np.testing.assert_allclose(rescale_action(np.array([3.0, -7.0]), low, high), [2.0, 0.0])


def test_pendulum_receives_rescaled_torque():
    env = make_env("pendulum")
    assert env.action_space.high[0] == 1.0
    assert env.gym_env.action_space.high[0] == 2.0  # the real torque bound
    env.reset(seed=0)
    for action, torque in [(1.0, 2.0), (0.5, 1.0), (-1.0, -2.0), (-0.25, -0.5)]:
        env.step(np.array([action], np.float32))
        assert env.gym_env.unwrapped.last_u == pytest.approx(torque)
    env.close()


def test_dmc_receives_action(cheetah):
    cheetah.reset(seed=0)
    action = np.linspace(-1, 1, 6, dtype=np.float32)
    cheetah.step(action)
    np.testing.assert_allclose(cheetah.physics.data.ctrl, action, atol=1e-6)


def test_dmc_action_repeat_sums_rewards(cheetah):
    cheetah.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(5):  # get moving: rewards then differ from step to step
        cheetah.step(rng.uniform(-1, 1, 6).astype(np.float32))
    physics = cheetah.physics
    state = physics.get_state()
    action = rng.uniform(-1, 1, 6).astype(np.float32)
    obs, reward, *_ = cheetah.step(action)
    after = physics.get_state()

    with physics.reset_context():
        physics.set_state(state)
    raw = [cheetah.dm_env.step(action).reward for _ in range(4)]
    np.testing.assert_allclose(physics.get_state(), after)
    assert reward == pytest.approx(sum(raw))
    assert len(set(raw)) > 1  # so the sum is really a sum, not 4x one reward
    raw_frame = physics.render(height=64, width=64, camera_id=0)
    np.testing.assert_array_equal(obs, raw_frame)


def test_gym_action_repeat_sums_rewards():
    env = make_env("pendulum")
    assert env.action_repeat == 2
    env.reset(seed=0)
    inner = env.gym_env.unwrapped
    state = inner.state.copy()
    _, reward, *_ = env.step(np.array([0.3], np.float32))
    inner.state = state
    raw = [env.gym_env.step(np.array([0.6], np.float32))[1] for _ in range(2)]
    assert reward == pytest.approx(sum(raw))
    env.close()


# ---- seeding, time limits ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cheetah", "walker"])
def test_seeded_resets_are_reproducible(name):
    env = make_env(name)
    actions = np.random.default_rng(0).uniform(-1, 1, (3,) + env.action_space.shape)

    def rollout(seed):
        obs, _ = env.reset(seed=seed)
        frames, rewards = [obs], []
        for a in actions:
            obs, r, *_ = env.step(a.astype(np.float32))
            frames.append(obs)
            rewards.append(r)
        return np.stack(frames), rewards

    frames, rewards = rollout(5)
    frames2, rewards2 = rollout(5)
    np.testing.assert_array_equal(frames, frames2)
    assert rewards == rewards2
    frames3, _ = rollout(6)
    assert not np.array_equal(frames[0], frames3[0])
    env.close()


def test_max_episode_steps_truncates():
    env = make_env("cheetah", max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(np.zeros(6, np.float32))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(6, np.float32))
    env.reset()
    assert env.step(np.zeros(6, np.float32))[3] is False
    env.close()


def test_dm_control_time_limit_is_truncation():
    # 0.1 s of cheetah = 10 control steps = 4 + 4 + 2 with action repeat 4.
    env = make_env("cheetah", task_kwargs={"time_limit": 0.1})
    env.reset(seed=0)
    results = [env.step(np.zeros(6, np.float32)) for _ in range(3)]
    assert [(r[2], r[3]) for r in results] == [(False, False), (False, False), (False, True)]
    env.close()


def test_gym_time_limit_is_truncation():
    # The registered time limit (200 steps for Pendulum-v1), here shortened to 10 = 5 x 2.
    env = make_env("pendulum", env_kwargs={"max_episode_steps": 10})
    env.reset(seed=0)
    results = [env.step(np.zeros(1, np.float32)) for _ in range(5)]
    assert [r[3] for r in results] == [False] * 4 + [True]
    assert not any(r[2] for r in results)
    env.close()


# ---- physics errors ---------------------------------------------------------------------------
def test_physics_error_truncates_by_default(cheetah):
    obs, _ = cheetah.reset(seed=0)
    cheetah.physics.data.qvel[:] = np.inf
    with pytest.warns(RuntimeWarning, match="unstable"):
        obs2, _, terminated, truncated, info = cheetah.step(np.zeros(6, np.float32))
    assert (terminated, truncated, info.get("physics_error")) == (False, True, True)
    np.testing.assert_array_equal(obs2, obs)  # the last valid frame
    cheetah.reset(seed=0)  # the env recovers
    assert cheetah.step(np.zeros(6, np.float32))[3] is False


def test_physics_error_can_raise():
    env = make_env("cheetah", on_physics_error="raise")
    env.reset(seed=0)
    env.physics.data.qvel[:] = np.inf
    with pytest.raises(PhysicsError, match="unstable") as caught:
        env.step(np.zeros(6, np.float32))
    from dm_control.rl.control import PhysicsError as DMPhysicsError

    assert isinstance(caught.value.__cause__, DMPhysicsError)
    env.close()


def test_gym_mujoco_physics_error_truncates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = make_env("halfcheetah")
    env.reset(seed=0)
    env.gym_env.unwrapped.data.qvel[:] = np.inf
    with pytest.warns(RuntimeWarning, match="unstable"):
        _, _, terminated, truncated, info = env.step(np.zeros(6, np.float32))
    assert (terminated, truncated, info.get("physics_error")) == (False, True, True)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()  # MuJoCo warnings go to logging
    env.close()


# ---- rendering --------------------------------------------------------------------------------
def test_fast_render_matches_default_render():
    actions = np.random.default_rng(0).uniform(-1, 1, (10, 6)).astype(np.float32)
    frames = {}
    for fast in (True, False):
        env = make_env("cheetah", fast_render=fast)
        frames[fast] = [env.reset(seed=0)[0]] + [env.step(a)[0] for a in actions]
        env.close()
    diff = np.abs(np.stack(frames[True]).astype(float) - np.stack(frames[False]))
    # Measured: ~0.8 / 255 on average (a few shadow-edge pixels differ).
    assert diff.mean() < 2.0
    assert diff.mean() > 0  # the switch does change the renderer settings


def test_no_egl_noise_at_exit():
    code = textwrap.dedent(
        """
        import numpy as np, envs
        a = envs.make_env("cheetah"); a.reset(seed=0)
        b = envs.make_env("halfcheetah"); b.reset(seed=0); b.step(np.zeros(6, np.float32))
        cycle = [a, b]; cycle.append(cycle)  # only freed by the garbage collector
        print("done")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
    assert "Exception ignored" not in result.stderr and "EGL" not in result.stderr, result.stderr


# ---- names, options, config -------------------------------------------------------------------
def test_any_dm_control_task():
    env = make_env("dmc:hopper-hop", max_episode_steps=2)
    assert env.action_space.shape == (4,) and env.action_repeat == 2
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3)
    env.step(env.action_space.sample())
    env.close()


def test_any_gymnasium_id_with_resized_frames():
    # MountainCarContinuous draws 600x400 frames with pygame: resized to 64x64.
    env = make_env("gym:MountainCarContinuous-v0", seed=0)
    obs, _ = env.reset()
    assert obs.shape == (64, 64, 3) and obs.std() > 1
    env.step(np.ones(1, np.float32))
    _check_env_strict(env)
    env.close()


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("nope", "unknown environment 'nope'.*dmc:<domain>-<task>.*gym:<id>"),
        ("dmc:cheetah", "unknown environment"),
        ("dmc:cheetah-fly", "tasks of cheetah: run"),
        ("dmc:nodomain-run", "domains: .*cheetah"),
        ("gym:NoSuchEnv-v0", "unknown Gymnasium id"),
        ("gym:CartPole-v1", "only 1-D continuous"),
    ],
)
def test_unknown_names(name, match):
    with pytest.raises(ValueError, match=match) as caught:
        make_env(name)
    assert "\n" not in str(caught.value)


def test_unknown_option():
    with pytest.raises(ValueError, match="unknown option.*colour.*valid options"):
        make_env("cheetah", colour=1)


def test_vector_env_and_wrappers():
    def make():
        return gym.wrappers.RecordEpisodeStatistics(make_env("cheetah", max_episode_steps=2))

    vec = gym.vector.SyncVectorEnv([make, make])
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
    assert not np.array_equal(obs[0], obs[1])  # seeds 0 and 1
    total = np.zeros(2)
    for _ in range(2):
        obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
        total += reward
    assert truncated.all() and not terminated.any()
    np.testing.assert_allclose(info["episode"]["r"], total, rtol=1e-5)
    vec.close()


def test_env_config():
    cfg = EnvConfig(name="stub", size=32, max_episode_steps=5, options={"encode_step": True})
    env = make_env_from_config(cfg)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and env.max_episode_steps == 5
    assert env.encode_step
    with pytest.raises(ValueError, match="set env.camera"):
        make_env_from_config(EnvConfig(name="stub", options={"camera": 1}))


def test_every_preset_has_a_config(compose):
    import envs.collect  # noqa: F401  (registers collect_schema)

    yaml_names = {p.stem for p in (ROOT / "configs" / "env").glob("*.yaml")}
    assert yaml_names == set(PRESETS)
    for name in PRESETS:
        cfg = compose("collect", [f"env={name}", "out=x"])
        assert cfg.env.name == name
        assert cfg.env.action_repeat is None  # the task default, defined in envs/defaults.py


def test_envs_package_exports():
    assert envs.make_env is make_env
    assert set(PRESETS) == {
        "cheetah",
        "walker",
        "cartpole",
        "reacher",
        "finger",
        "cup",
        "pendulum",
        "halfcheetah",
        "stub",
    }


# ---- image helpers ----------------------------------------------------------------------------
def test_resize_and_center_crop():
    from envs.image import center_crop, resize

    constant = np.full((37, 53, 3), 200, np.uint8)
    assert np.all(resize(constant, 16) == 200) and np.all(resize(constant, 100) == 200)
    ramp = np.arange(36, dtype=np.uint8).reshape(6, 6, 1).repeat(3, axis=2)
    small = resize(ramp, 2)  # 3x3 block averages
    expected = ramp[:, :, 0].reshape(2, 3, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(small[:, :, 0], expected, atol=0.5)
    assert resize(ramp, 4, 8).shape == (4, 8, 3)
    wide = np.zeros((40, 60, 3), np.uint8)
    wide[:, 10:50] = 255
    crop = center_crop(wide)
    assert crop.shape == (40, 40, 3) and np.all(crop == 255)
