"""agents.loop: the model-based RL loop on the stub env (files, checkpoints, TensorBoard, resume,
evaluation, the goal planner, physics errors and terminations) and, marked slow, that the learned
agent beats a random policy by a clear margin."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from agents import (
    cem_planner,  # noqa: F401 - registers cem_planner_schema
    loop,
)
from agents.config import CEMPlannerConfig
from agents.goals import goal_image, reacher_joint_angles
from agents.loop_state import eta_seconds, final_episodes
from envs import make_env
from envs.stub import StubPixelEnv
from worldmodel.data import load_episode
from worldmodel.training.checkpoint import load_checkpoint

# A tiny run: 32 px stub episodes of 10 steps, a tiny model, a small CEM search.
TINY = [
    "profile=cpu",
    "env=stub",
    "env.size=32",
    "env.max_episode_steps=10",
    "model=tiny",
    "model.M=1",
    "model.K=1",
    "train.batch_size=4",
    "train.seq_len=6",
    "train_steps=2",
    "planner.cem.population=16",
    "planner.cem.elites=4",
    "planner.cem.iterations=2",
    "planner.cem.horizon=3",
    "seed_episodes=2",
    "episodes=4",
    "eval_every=1",
    "device=cpu",
    "progress=false",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(compose):
    def make(*overrides: str) -> CEMPlannerConfig:
        return OmegaConf.to_object(compose("cem_planner", [*TINY, *overrides]))

    return make


def _tb_tags(directory: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in directory.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        for kind in ("scalars", "images", "tensors"):
            tags.update(acc.Tags()[kind])
    return tags


def test_run_writes_episodes_checkpoint_and_tensorboard(tiny, tmp_path):
    summary = loop.run(tiny(), tmp_path)

    files = sorted((tmp_path / "episodes").glob("episode-*.npz"))
    assert [f.name for f in files] == [f"episode-{i:06d}-10.npz" for i in range(4)]
    episodes = [load_episode(f) for f in files]
    assert [e.meta["policy"] for e in episodes] == ["random", "random", "cem", "cem"]
    assert all(e.truncated[-1] and not e.terminated.any() for e in episodes)
    assert len(list((tmp_path / "eval_episodes").glob("episode-*.npz"))) == 2  # after ep 3 and 4

    assert summary["episodes"] == 4 and summary["env_steps"] == 40
    assert summary["gradient_steps"] == 2 * 2
    assert len(summary["eval_returns"]) == 2
    assert summary["random_return"] == pytest.approx(
        np.mean([e.reward.sum() for e in episodes[:2]])
    )
    assert summary["plan_ms_per_action"] > 0
    assert json.loads((tmp_path / "summary.json").read_text())["episodes"] == 4

    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    extra = ckpt["extra"]
    assert extra["loop"]["episodes"] == 4 and extra["episodes_dir"] == "episodes"
    assert extra["episode_files"] == [f.name for f in files]
    assert {"torch", "agent", "noise", "sampler", "random_policy"} <= set(extra["rng"])
    assert ckpt["state"]["global_step"] == 4 and "optimizer" in ckpt["state"]

    tags = _tb_tags(tmp_path / "tb")
    for tag in (
        "return/train",
        "return/eval",
        "planning/ms_per_action",
        "world_model/loss",
        "world_model/loss/recon",
        "world_model/loss/reward",
        "world_model/grad_norm",
        "eval/open_loop_prediction",
        "eval/episode",
        "planning/imagined_reward_corr",
        "planning/teacher_forced_reward_mse_vs_constant",
        "time/planning_fraction",
        "time/training_fraction",
    ):
        assert tag in tags, f"{tag} missing from TensorBoard ({sorted(tags)})"


def test_loss_group_reaches_the_trainer(tiny, tmp_path):
    """loss=full: the anti-blur terms are trained (and logged), the discriminator checkpointed."""
    # (progressive growing is tested in test_progressive_decoder.py: it needs phases that fit)
    full = ("loss=full", "loss.adv_weight=0.05", "loss.progressive.enabled=false", "episodes=3")
    loop.run(tiny(*full, "video_every=0", "strip_every=0"), tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["state"]
    assert "discriminator" in state
    tags = _tb_tags(tmp_path / "tb")
    assert {"world_model/loss/gdl", "world_model/loss/adv", "world_model/loss/feat"} <= tags


def test_refuses_to_overwrite_a_run(tiny, tmp_path):
    loop.run(tiny("episodes=2", "seed_episodes=2"), tmp_path)
    with pytest.raises(ValueError, match="resume=true"):
        loop.run(tiny("episodes=3"), tmp_path)
    with pytest.raises(ValueError, match="env.size=32"):  # resuming with another env
        loop.run(tiny("episodes=3", "resume=true", "env.size=64"), tmp_path)


class _Killed(Exception):
    """Stands in for the process being killed."""


def test_resume_after_interruption_continues_without_duplicates(tiny, tmp_path, monkeypatch):
    played = []
    real_run_episode = loop.run_episode

    def dies_in_episode_four(*args, **kwargs):
        if len(played) == 3:  # the 4th episode played (3rd training, 1st evaluation: 0,1,2,eval)
            raise _Killed
        played.append(kwargs.get("seed"))
        return real_run_episode(*args, **kwargs)

    monkeypatch.setattr(loop, "run_episode", dies_in_episode_four)
    with pytest.raises(_Killed):
        loop.run(tiny("episodes=5", "eval_every=0"), tmp_path)
    monkeypatch.setattr(loop, "run_episode", real_run_episode)
    before = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["extra"]["loop"]
    assert before["episodes"] == 3

    (tmp_path / "episodes" / ".episode-000003-10.npz.tmp").write_bytes(b"half a file")
    summary = loop.run(tiny("episodes=5", "eval_every=0", "resume=true"), tmp_path)

    assert summary["resumed_at_episode"] == 3
    names = sorted(p.name for p in (tmp_path / "episodes").iterdir())
    assert names == [f"episode-{i:06d}-10.npz" for i in range(5)]  # no gap, no duplicate, no tmp
    assert summary["episodes"] == 5 and summary["env_steps"] == 50
    assert summary["gradient_steps"] == 2 * 3  # episodes 2, 3, 4 were planned
    seeds = [load_episode(tmp_path / "episodes" / n).meta["seed"] for n in names]
    assert seeds == [loop.episode_seed(0, 0, i) for i in range(5)]  # each reset seed once


def test_resume_keeps_an_episode_written_after_the_last_checkpoint(tiny, tmp_path):
    loop.run(tiny("episodes=3"), tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["extra"]["loop"]
    # the run was killed after writing episode 3 but before checkpointing it
    src = tmp_path / "episodes" / "episode-000002-10.npz"
    (tmp_path / "episodes" / "episode-000003-10.npz").write_bytes(src.read_bytes())

    summary = loop.run(tiny("episodes=5", "resume=true"), tmp_path)
    assert summary["episodes"] == 5
    assert summary["env_steps"] == ckpt["env_steps"] + 2 * 10
    assert len(list((tmp_path / "episodes").glob("episode-*.npz"))) == 5
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["extra"]["loop"]
    assert len(state["train_returns"]) == 5


def test_eval_mode_reports_mean_and_std(tiny, tmp_path):
    loop.run(tiny("episodes=3"), tmp_path / "train")
    ckpt = tmp_path / "train" / "checkpoints" / "last.pt"
    summary = loop.run(tiny("mode=eval", f"ckpt={ckpt}", "eval_episodes=3"), tmp_path / "eval")
    assert summary["mode"] == "eval" and summary["episodes"] == 3
    assert len(summary["returns"]) == 3
    assert summary["mean_return"] == pytest.approx(np.mean(summary["returns"]))
    assert summary["std_return"] == pytest.approx(np.std(summary["returns"]))
    assert not (tmp_path / "eval" / "episodes").exists()  # nothing trained or collected

    with pytest.raises(ValueError, match="env=stub"):
        loop.run(tiny("mode=eval", f"ckpt={ckpt}", "env=pendulum"), tmp_path / "eval2")


def test_goal_planner_in_the_loop_gets_the_goal_image_of_every_planned_episode(
    tiny, tmp_path, monkeypatch
):
    """planner=goal: every planned training episode and every evaluation episode is planned
    toward the goal image of its own start; the random seed episodes need none. (That planning
    toward it works: test_goal_planning_with_the_learned_model_moves_toward_the_goal.)"""
    planned_from = []  # the frame the env shows when the goal image is asked for

    def recording_goal_image(env):
        planned_from.append(env.render())
        return goal_image(env)

    monkeypatch.setattr(loop, "goal_image", recording_goal_image)
    cfg = tiny("planner=goal", "episodes=3", "planner.cem.horizon=3", "eval_episodes=2")
    summary = loop.run(cfg, tmp_path)
    assert summary["episodes"] == 3 and len(summary["eval_returns"]) == 1
    # training episode 3, then the two evaluation episodes, each right after its reset
    episodes = [tmp_path / "episodes" / "episode-000002-10.npz"]
    episodes += sorted((tmp_path / "eval_episodes").iterdir())
    assert len(planned_from) == len(episodes) == 3
    for frame, path in zip(planned_from, episodes, strict=True):
        np.testing.assert_array_equal(frame, load_episode(path).obs[0])


def test_goal_planner_with_comparator_features(model_config):
    """planner.distance=feature: the DeePSiM comparator's features (random AlexNet) as distance."""
    from agents.config import PlannerConfig
    from worldmodel.model.svg import WorldModel

    model = WorldModel(model_config(), 64, 2)
    cfg = PlannerConfig(objective="goal", distance="feature")
    cfg.cem.population, cfg.cem.elites, cfg.cem.iterations, cfg.cem.horizon = 8, 2, 2, 2
    agent = loop.MPCAgent(model, cfg, torch.device("cpu"))
    assert isinstance(agent.comparator, loop.FlatFeatures)
    env = make_env("stub", size=64, seed=0)
    obs, _ = env.reset(seed=0)
    agent.reset(obs, goal_image(env))
    action = agent.act()
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)
    with pytest.raises(ValueError, match="goal image"):
        agent.reset(obs)


def test_stub_goal_image_shows_the_point_on_the_goal():
    env = make_env("stub", size=32, seed=0)
    obs, _ = env.reset(seed=3)
    goal = goal_image(env)
    twin = StubPixelEnv(size=32)
    twin.reset(seed=3)
    assert goal.shape == obs.shape and goal.dtype == np.uint8
    red = np.all(goal == (230, 40, 40), axis=-1)  # the point, drawn on the goal square
    rows, cols = np.nonzero(red)
    centre = np.array([cols.mean(), rows.mean()])
    goal_px = np.array([(0.5 + 1) / 2 * 31, (1 - 0.5) / 2 * 31])
    assert np.abs(centre - goal_px).max() <= 1.0
    assert np.array_equal(env.render(), obs)  # the episode's env is untouched


def test_reacher_inverse_kinematics_reaches_the_target():
    rng = np.random.default_rng(0)
    for _ in range(50):
        angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.2)
        target = radius * np.array([np.sin(angle), np.cos(angle)])
        q1, q2 = reacher_joint_angles(target, 0.12, 0.12)
        tip = 0.12 * np.array([np.cos(q1), np.sin(q1)])
        tip += 0.12 * np.array([np.cos(q1 + q2), np.sin(q1 + q2)])
        assert np.allclose(tip, target, atol=1e-9)


def test_reacher_goal_image_puts_the_finger_on_the_target():
    env = make_env("reacher", size=64, seed=0)
    try:
        obs, _ = env.reset(seed=1)
        qpos = env.physics.data.qpos.copy()
        goal = goal_image(env)
        assert goal.shape == obs.shape and goal.dtype == np.uint8
        assert not np.array_equal(goal, obs)  # the arm moved
        assert np.array_equal(env.physics.data.qpos, qpos)  # the episode's physics untouched
        assert np.array_equal(env.render(), obs)
    finally:
        env.close()


def test_goal_image_for_other_envs_is_a_clear_error():
    env = make_env("pendulum", size=32)
    try:
        with pytest.raises(ValueError, match="planner=reward"):
            goal_image(env)
    finally:
        env.close()


class _Ending(StubPixelEnv):
    """The stub, ending its episode at step 4 by termination or by a physics error."""

    def __init__(self, how: str) -> None:
        super().__init__(size=32)
        self.how = how

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self._steps == 4:
            if self.how == "terminate":
                terminated = True
            else:
                truncated, info = True, {**info, "physics_error": True}
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize("how", ["terminate", "physics_error"])
def test_episodes_end_on_termination_and_physics_errors(how, tmp_path):
    policy = loop.RandomPolicy(2, torch.Generator().manual_seed(0))
    meta = {"env": "stub", "action_repeat": 1, "source": "env"}
    episode, _ = loop.run_episode(_Ending(how), policy, seed=0, meta=meta)
    assert episode.num_steps == 4 and episode.obs.shape[0] == 5
    assert episode.terminated[-1] == (how == "terminate")
    assert episode.meta.get("physics_error", False) == (how == "physics_error")
    saved = load_episode(episode.save(tmp_path, 0))
    assert saved.terminated[-1] == (how == "terminate")
    assert saved.truncated[-1] == (how != "terminate")
    assert saved.meta.get("physics_error", False) == (how == "physics_error")


def test_mpc_agent_with_the_true_model_reaches_the_goal(model_config):
    """The MPC mechanics (reset / act / observe, warm start) with the stub's exact dynamics as the
    objective: the agent must reach the goal and stay there."""
    from agents.config import PlannerConfig
    from worldmodel.model.svg import WorldModel

    env = StubPixelEnv(size=32)
    model = WorldModel(model_config(), 32, 2)

    def true_objective(model, state):
        pos = torch.as_tensor(env.pos, dtype=torch.float32)
        goal = torch.as_tensor(env.goal, dtype=torch.float32)

        def objective(actions):  # (N, H, 2) -> (N,)
            p, total = pos.expand(actions.shape[0], 2), 0
            for t in range(actions.shape[1]):
                p, r = StubPixelEnv.true_dynamics(p, actions[:, t], goal)
                total = total + r
            return total

        return objective

    cfg = PlannerConfig()
    cfg.cem.population, cfg.cem.elites, cfg.cem.iterations, cfg.cem.horizon = 100, 10, 3, 8
    agent = loop.MPCAgent(model, cfg, torch.device("cpu"), objective_fn=true_objective)
    episode, _ = loop.run_episode(env, agent, seed=0)
    env.reset(seed=0)
    assert episode.total_reward >= 0.8 * env.optimal_return()


# The key test's run: 20 random seed episodes, then 9 episodes planned with a small learned model
# (150 gradient steps before each), then 5 evaluation episodes without noise.
LEARN = [
    "profile=cpu",
    "env=stub",
    "env.size=32",
    "model=lstm",
    "model.M=1",
    "model.K=1",
    "model.rnn_units=64",
    "model.nf=8",
    "model.g_dim=32",
    "model.reward_hidden=64",
    "model.predictor_layers=1",
    "train.batch_size=16",
    "train.seq_len=11",  # the model learns 10 steps ahead: planner.cem.horizon <= seq_len - 1
    "seed_episodes=20",
    "episodes=29",
    "train_steps=150",
    "planner.cem.population=200",
    "planner.cem.elites=20",
    "planner.cem.iterations=4",
    "planner.cem.horizon=10",
    "eval_every=0",
    "eval_episodes=5",
    "video_every=0",
    "strip_every=0",
    "device=cpu",
    "progress=false",
    "seed=0",
]


@pytest.fixture(scope="module")
def learned(compose, tmp_path_factory) -> tuple[CEMPlannerConfig, dict, Path]:
    """The run of :data:`LEARN` (shared by the tests of what its model learned): its config,
    summary and checkpoint."""
    cfg = OmegaConf.to_object(compose("cem_planner", LEARN))
    workdir = tmp_path_factory.mktemp("learned")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as measured (a module fixture runs before the `one_thread` one)
    try:
        summary = loop.run(cfg, workdir)
    finally:
        torch.set_num_threads(threads)
    return cfg, summary, workdir / "checkpoints" / "last.pt"


@pytest.mark.slow
def test_learned_agent_beats_random_policy(learned):
    """THE KEY TEST: the whole loop with a small learned model on the stub beats random play.

    The random policy is measured here on the same evaluation episodes (same reset seeds).
    Measured with seeds 0..5 (one thread): learned 29.2, 35.6, 38.8, 36.1, 41.8, 28.2 against
    random 2.8, 4.0, 3.2, 4.8, 4.3, 1.7 (optimal ~47); with 3 planned episodes instead of 9, two
    seeds of six failed (the planner drives into a wall where the young model predicts reward,
    and needs more episodes of its own data to unlearn it). ~70-110 s on 2 shared cores.
    """
    cfg, summary, _ = learned
    env = make_env("stub", size=32)
    policy = loop.RandomPolicy(2, torch.Generator().manual_seed(0))
    starts = [loop.episode_seed(cfg.seed, 1, i) for i in range(cfg.eval_episodes)]
    random_return = np.mean([loop.run_episode(env, policy, seed=s)[0].total_reward for s in starts])
    optimal = []
    for s in starts:
        env.reset(seed=s)
        optimal.append(env.optimal_return())

    learned = summary["last_eval_return"]
    assert learned >= random_return + 15, (learned, random_return, np.mean(optimal))
    assert learned >= 0.5 * np.mean(optimal)


@pytest.mark.slow
def test_goal_planning_with_the_learned_model_moves_toward_the_goal(learned):
    """Visual Foresight on the stub: CEM over the learned model's predicted frames, scored by their
    pixel distance to the goal image, brings the point to the goal; random actions do not. The
    model was trained for reward planning (test_learned_agent_beats_random_policy) and never saw a
    goal image: the goal planner uses what it learned of the dynamics.

    Starts within 1.2 of the goal: the pixel distance is flat until a predicted point overlaps
    the goal, so it pulls only from within the planning horizon. Measured (seed 0, one thread):
    mean distance 0.60 at the start, 0.09 after 10 planned steps, 0.91 after 10 random ones; with
    the untrained model the goal planner ends at 0.60.
    """
    from agents.config import PlannerConfig
    from worldmodel.training.checkpoint import model_from_checkpoint

    planner = PlannerConfig(objective="goal", distance="l2", which_frames="all")
    planner.cem.population, planner.cem.elites = 100, 10
    planner.cem.iterations, planner.cem.horizon = 3, 8
    agent = loop.MPCAgent(model_from_checkpoint(learned[2]), planner, torch.device("cpu"), seed=0)
    random_policy = loop.RandomPolicy(2, torch.Generator().manual_seed(0))
    env = make_env("stub", size=32, max_episode_steps=10)

    def distance() -> float:
        return float(np.linalg.norm(env.unwrapped.pos - env.unwrapped.goal))

    starts = []
    for seed in range(100):
        env.reset(seed=seed)
        if distance() <= 1.2:
            starts.append(seed)
    distances = {"start": [], "goal planner": [], "random": []}
    for seed in starts[:4]:
        env.reset(seed=seed)
        distances["start"].append(distance())
        for name, policy in (("goal planner", agent), ("random", random_policy)):
            loop.run_episode(env, policy, seed=seed, goal_fn=goal_image)
            distances[name].append(distance())
    start, planned, random = (np.mean(d) for d in distances.values())
    assert planned < 0.5 * start and planned < 0.5 * random, distances


@pytest.mark.parametrize(
    ("precision", "native", "expected"),
    [
        ("auto", True, "bf16"),
        ("auto", False, "fp32"),
        ("fp32", True, "fp32"),
        ("bf16", False, "bf16"),
    ],
)
def test_planning_precision_auto_follows_native_bf16(
    monkeypatch, precision, native, expected, model_config
):
    from agents.config import PlannerConfig
    from worldmodel import device as device_module
    from worldmodel.model.svg import WorldModel

    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    model = WorldModel(model_config(), 32, 2)
    cfg = PlannerConfig(precision=precision)
    cfg.cem.population, cfg.cem.elites, cfg.cem.iterations, cfg.cem.horizon = 8, 2, 1, 3
    agent = loop.MPCAgent(model, cfg, torch.device("cpu"))
    assert agent.precision == expected
    agent.reset(np.zeros((32, 32, 3), np.uint8))
    assert agent.act().shape == (2,)


@pytest.mark.parametrize("env", ["pendulum", "walker", "gym:MountainCarContinuous-v0"])
def test_loop_runs_on_gymnasium_and_dm_control_envs(tiny, tmp_path, env):
    """The same loop on a Gymnasium preset, a dm_control preset and any Gymnasium id."""
    summary = loop.run(tiny(f"env={env}" if ":" not in env else f"env.name={env}"), tmp_path)
    assert summary["episodes"] == 4 and summary["env_steps"] > 0
    files = sorted((tmp_path / "episodes").glob("episode-*.npz"))
    assert len(files) == 4
    episode = load_episode(files[-1])
    assert episode.obs.shape[1:] == (32, 32, 3) and episode.action.shape[1] >= 1
    assert np.isfinite(summary["last_eval_return"])


def test_a_resumed_run_learns_exactly_as_an_uninterrupted_one(tiny, tmp_path, monkeypatch):
    """Issue 12's "jump at a kill and resume": killed in its 4th episode and resumed, a run ends
    with the same weights, returns and replay as the same command run without a break (the RNG
    states, optimizer, replay buffer and sampler all come back from the checkpoint)."""
    args = ("episodes=6", "eval_every=2")
    straight = loop.run(tiny(*args), tmp_path / "straight")

    played = []
    real_run_episode = loop.run_episode

    def dies_in_episode_four(*a, **kw):
        if len(played) == 5:  # dies in the 6th played: episodes 0-3 and the evaluation after 3
            raise _Killed
        played.append(kw.get("seed"))
        return real_run_episode(*a, **kw)

    monkeypatch.setattr(loop, "run_episode", dies_in_episode_four)
    with pytest.raises(_Killed):
        loop.run(tiny(*args), tmp_path / "resumed")
    monkeypatch.setattr(loop, "run_episode", real_run_episode)
    resumed = loop.run(tiny(*args, "resume=true"), tmp_path / "resumed")

    assert resumed["resumed_at_episode"] is not None
    assert resumed["eval_returns"] == straight["eval_returns"]
    assert resumed["gradient_steps"] == straight["gradient_steps"]
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a["extra"]["loop"]["train_returns"] == b["extra"]["loop"]["train_returns"]
    for key, value in a["state"]["model"].items():
        torch.testing.assert_close(b["state"]["model"][key], value, rtol=0, atol=0, msg=key)
    rows = (tmp_path / "resumed" / loop.EVALUATIONS_CSV).read_text().splitlines()
    assert rows[0] == "seed,env_steps,wall_s,eval_return"
    assert len(rows) == 1 + len(straight["eval_returns"])


def test_the_env_step_budget_ends_the_run_and_the_eta_counts_what_is_left(tiny, tmp_path):
    """``max_env_steps`` ends the run at the episode that reaches it (with a final evaluation),
    whatever ``episodes`` says; the time is broken down by part, and ``evaluations.csv`` has a
    row per evaluation."""
    summary = loop.run(tiny("episodes=50", "max_env_steps=45", "eval_every=2"), tmp_path)
    assert summary["episodes"] == 5 and summary["env_steps"] == 50  # 10-step episodes
    assert summary["eval_env_steps"] == [40, 50]  # after 2 planned episodes, and at the end
    times = summary["time_s"]
    assert set(times) == {*loop.TIME_PARTS, "other", "total"}
    assert times["planning"] > 0 and times["training"] > 0 and times["environment"] > 0
    assert sum(v for k, v in times.items() if k != "total") == pytest.approx(
        times["total"], abs=0.5
    )
    rows = (tmp_path / loop.EVALUATIONS_CSV).read_text().splitlines()
    assert rows[0] == loop.EVALUATIONS_HEADER
    assert [r.split(",")[1] for r in rows[1:]] == ["40", "50"]
    walls = [float(r.split(",")[2]) for r in rows[1:]]
    assert 0 < walls[0] < walls[1] <= summary["wall_time_s"]


def test_eta_counts_the_episodes_and_evaluations_left_at_their_own_durations(tiny):
    """The ETA is arithmetic on the loop's state and config (no model, no environment)."""
    cfg = tiny("episodes=12", "seed_episodes=2", "eval_every=4", "eval_episodes=1")
    state = loop.LoopState(episodes=3, env_steps=30)  # 2 seed + 1 planned
    assert eta_seconds(state, cfg, {"seed": [], "planned": [], "eval": []}) is None  # none timed
    durations = {"seed": [1.0], "planned": [10.0], "eval": [4.0]}
    # 9 planned episodes left (4..12 -> planned 2..10): evaluations after planned 4, 8, and
    # at the end (planned 10)
    assert eta_seconds(state, cfg, durations) == pytest.approx(9 * 10.0 + 3 * 4.0)
    cfg.max_env_steps = 60  # 3 more 10-step episodes: planned 4, evaluated, the end
    assert final_episodes(state, cfg) == 6
    assert eta_seconds(state, cfg, durations) == pytest.approx(3 * 10.0 + 1 * 4.0)
    cfg.max_env_steps = 70  # planned 5: an evaluation after 4 and one at the end
    assert eta_seconds(state, cfg, durations) == pytest.approx(4 * 10.0 + 2 * 4.0)


def test_format_duration():
    assert loop.format_duration(59.6) == "1:00"
    assert loop.format_duration(3725) == "1:02:05"


def test_rl_curves_reports_a_run(tiny, tmp_path, bench_script):
    """bench/rl_curves.py turns a run directory into the contracted csv, a markdown report and a
    plot."""
    loop.run(tiny("episodes=4", "eval_every=1"), tmp_path / "run")
    rl_curves = bench_script("rl_curves")
    out = tmp_path / "results"
    rl_curves.main(["--run", f"stub={tmp_path / 'run'}", "--out", str(out)])
    rows = (out / "rl_stub.csv").read_text().splitlines()
    assert rows[0] == "seed,env_steps,wall_s,eval_return" and len(rows) == 1 + 2
    text = (out / "rl_stub.md").read_text()
    assert "machine:" in text and "finished" in text and "| 30 |" in text
    assert (out / "rl_stub.png").stat().st_size > 1000

    # the ETA check needs the run's composed config (Hydra writes it for command-line runs)
    (tmp_path / "run" / ".hydra").mkdir()
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text(
        "episodes: 4\nseed_episodes: 2\neval_every: 1\neval_episodes: 1\nmax_env_steps: 0\n"
    )
    eta = rl_curves.eta_check(tmp_path / "run", at_episode=3)
    assert eta is not None and eta["at_episode"] == 3
    assert eta["eta_s"] > 0 and eta["actual_s"] > 0
    assert rl_curves.eta_check(tmp_path / "run", at_episode=10) is None  # not that long

    # another setting's run (--compare) joins the report, not the csv; a mode=eval is reported
    import shutil

    shutil.copytree(tmp_path / "run", tmp_path / "other")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "eval_summary.json").write_text(
        json.dumps(
            {
                "checkpoint": str(tmp_path / "run" / "checkpoints" / "last.pt"),
                "episodes": 2,
                "mean_return": 5.0,
                "std_return": 1.0,
                "returns": [4.0, 6.0],
            }
        )
    )
    rl_curves.main(
        [
            "--run",
            f"stub={tmp_path / 'run'}",
            "--compare",
            f"stub={tmp_path / 'other'}",
            "--final-eval",
            str(tmp_path / "eval"),
            "--out",
            str(out),
        ]
    )
    assert len((out / "rl_stub.csv").read_text().splitlines()) == 1 + 2
    text = (out / "rl_stub.md").read_text()
    assert "side by side" in text and "## other" in text and "**5.0 +- 1.0**" in text


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_logging_a_video_keeps_sigterm_deadly():
    """TensorBoard's add_video imports moviepy -> pygame -> SDL, which by default catches SIGTERM
    (and never acts on it): a run could no longer be stopped with ``kill``. Checked in a fresh
    interpreter, since this one may have imported pygame already."""
    import subprocess
    import sys

    code = (
        "import torch, tempfile\n"
        "from torch.utils.tensorboard import SummaryWriter\n"
        "from worldmodel.training.run_dir import add_video\n"
        "w = SummaryWriter(tempfile.mkdtemp())\n"
        "add_video(w, 'v', torch.zeros(1, 3, 3, 8, 8, dtype=torch.uint8), 0, fps=4)\n"
        "line = [x for x in open('/proc/self/status') if x.startswith('SigCgt')][0]\n"
        "print(int(line.split()[1], 16))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDL_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    caught = int(done.stdout.strip().splitlines()[-1])
    assert not caught & (1 << (15 - 1)), "SIGTERM is caught after logging a video"
