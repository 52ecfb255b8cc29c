"""Where the time of the main job goes: planning, training, environment and I/O per episode.

    MUJOCO_GL=egl python bench/bench_episode.py [--quick | --smoke] [--episodes 3] [--threads 0]
        [override ...]

Runs the real loop of ``python -m agents.cem_planner env=cheetah profile=cpu`` (the config composed
by hydra as the entry point does, any extra ``key=value`` overrides applied) in a temporary work
directory: one random seed episode, then ``--episodes`` planned training episodes, then one
evaluation episode. Timers are put around the loop's parts (by wrapping the methods, nothing else
changes) and the wall clock of each planned training episode is split into:

* **planning**: ``MPCAgent.act`` (CEM with the latent-reward objective; ``imagine``);
* **filtering**: ``MPCAgent.reset`` / ``observe`` (encoding each new frame into the state);
* **environment**: ``env.reset`` / ``env.step`` (MuJoCo physics and rendering);
* **training**: ``train_steps`` gradient steps before the episode, of which **batch sampling**
  (``SequenceSampler.sample``);
* **episode file**, **checkpoint**, **logging** (TensorBoard scalars, plus videos and prediction
  strips at evaluations), and **other** (the rest of the loop: recording, replay buffer, ...).

Then, from the final state of the run, it plans ``--plan-actions`` actions with the job's agent
twice, through the fused rollout and through ``WorldModel.imagine`` (the planner before
``worldmodel/model/rollout.py``), alternating, and prints ms per action of both. Torch runs with its
default thread count (the job's; ``--threads N`` to change it); times are wall clock and, per
part, process CPU time (all threads).

``--quick``: one planned episode (a few minutes on the project's 2-core machine); ``--smoke``: the
stub environment, the tiny model and toy sizes (seconds, for the test suite). No bf16 here: the
cpu profile trains and plans in fp32 where bf16 is not native (``precision=auto``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.common import add_common_args, apply_threads, clock, machine_line  # noqa: E402

TIMES: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
CPU_TIMES: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))  # process CPU
PHASE = ["setup"]  # "seed" | "train" | "eval" while the loop runs


def timed(category: str, fn):
    """``fn`` with its wall time added to ``TIMES[phase][category]`` and its process CPU time
    (all threads) to ``CPU_TIMES[phase][category]``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[PHASE[0]][category] += time.perf_counter() - start
            CPU_TIMES[PHASE[0]][category] += time.process_time() - cpu

    return wrapper


def in_phase(phase_of, fn):
    """``fn`` that sets ``PHASE`` from its arguments (``phase_of(*args)``) when called; the phase
    lasts until the next such call (so the logging and checkpoint after an episode count in it)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        PHASE[0] = phase_of(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


class TimedEnv:
    """Forwards everything to ``env``; times ``reset`` and ``step``."""

    def __init__(self, env) -> None:
        self._env = env
        self.reset = timed("environment", env.reset)
        self.step = timed("environment", env.step)

    def __getattr__(self, name):
        return getattr(self._env, name)


def instrument() -> None:
    """Wrap the loop's parts with timers (class attributes: the loop itself is not changed)."""
    import agents.loop as loop
    import episode_format
    import worldmodel.data as data

    run_cls, agent = loop._Run, loop.MPCAgent
    make_env = loop.make_env_from_config
    loop.make_env_from_config = lambda *a, **k: TimedEnv(make_env(*a, **k))
    agent.act = timed("planning", agent.act)
    agent.observe = timed("filtering", agent.observe)
    agent.reset = timed("filtering", agent.reset)
    data.SequenceSampler.sample = timed("batch sampling", data.SequenceSampler.sample)
    episode_format.Episode.save = timed("episode file", episode_format.Episode.save)
    run_cls.save_checkpoint = timed("checkpoint", run_cls.save_checkpoint)
    logger_cls = loop.LoopLogger  # TensorBoard
    logger_cls.episode = timed("logging", logger_cls.episode)
    logger_cls.evaluation = timed("logging", logger_cls.evaluation)
    # phases: the training steps and the planned collection belong to a training episode
    run_cls.train_model = in_phase(lambda *a, **k: "train", timed("training", run_cls.train_model))
    run_cls.collect = in_phase(
        lambda self, planned: "train" if planned else "seed", timed("episode", run_cls.collect)
    )
    run_cls.evaluate = in_phase(lambda *a, **k: "eval", timed("episode", run_cls.evaluate))


def compose_config(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    import agents.cem_planner  # noqa: F401  (registers the schema)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("cem_planner", overrides=overrides)
    GlobalHydra.instance().clear()
    return OmegaConf.to_object(cfg)


def plan_both_ways(session, actions: int) -> tuple[float, float]:
    """ms per action of the job's agent from its current state: fused rollout, then through
    ``WorldModel.imagine``, alternating action by action."""
    from agents.loop import MPCAgent
    from agents.objectives import latent_reward_objective

    class ImagineOnly:
        def __init__(self, model) -> None:
            self.model = model

        def imagine(self, *args, **kwargs):
            return self.model.imagine(*args, **kwargs)

    cfg = session.cfg.planner

    def through_imagine(model, state):
        gen = torch.Generator(device=session.device).manual_seed(0)
        return latent_reward_objective(
            ImagineOnly(model), state, cfg.samples, gen, cfg.discount, session.agent.precision
        )

    fused = MPCAgent(session.model, cfg, session.device, seed=0)
    reference = MPCAgent(session.model, cfg, session.device, seed=0, objective_fn=through_imagine)
    from envs.registry import make_env_from_config

    env = make_env_from_config(session.cfg.env)  # the run's own env is closed by now
    try:
        obs = env.reset(seed=0)[0]
    finally:
        env.close()
    for agent in (fused, reference):
        agent.reset(obs)
        agent.act()  # warm-up
    spent = [0.0, 0.0]
    now = clock(session.device)[0]  # process CPU time with one CPU thread, else wall clock
    for _ in range(actions):
        for i, agent in enumerate((fused, reference)):
            start = now()
            agent.act()
            spent[i] += now() - start
    return 1e3 * spent[0] / actions, 1e3 * spent[1] / actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=None, help="planned episodes (3)")
    parser.add_argument("--plan-actions", type=int, default=None, help="default 25")
    parser.add_argument("overrides", nargs="*", help="cem_planner overrides, e.g. env=walker")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)
    planned = args.episodes or (1 if args.smoke or args.quick else 3)
    plan_actions = args.plan_actions or (2 if args.smoke else 10 if args.quick else 25)
    overrides = ["env=cheetah", "profile=cpu"]
    if args.smoke:
        overrides = [
            "env=stub",
            "profile=cpu",
            "model=tiny",
            "train_steps=2",
            "train.batch_size=2",
            "train.seq_len=4",
            "planner.cem.population=8",
            "planner.cem.elites=2",
            "planner.cem.iterations=2",
            "planner.cem.horizon=3",
        ]
    overrides += [
        "seed_episodes=1",
        f"episodes={1 + planned}",
        "eval_every=0",
        "eval_episodes=1",
        "progress=false",
        *args.overrides,
    ]
    print(machine_line())
    cfg = compose_config(overrides)
    instrument()
    import agents.loop as loop

    sessions = []
    original_init = loop._Run.__init__

    def keep(self, *a, **k):  # keep the session for the planning comparison
        original_init(self, *a, **k)
        sessions.append(self)

    loop._Run.__init__ = keep
    with tempfile.TemporaryDirectory(prefix="bench_episode_") as tmp:
        start = time.perf_counter()
        with contextlib.redirect_stderr(sys.stdout) if args.smoke else contextlib.nullcontext():
            summary = loop.run(cfg, Path(tmp) / "run")
        total = time.perf_counter() - start
        session = sessions[0]
        steps = summary["env_steps"] / max(1, summary["episodes"])
        print(
            f"cem_planner {' '.join(overrides)}\n"
            f"model {session.model.num_params():,} parameters, {torch.get_num_threads()} torch "
            f"threads, {summary['episodes']} episodes ({planned} planned) + 1 evaluation, "
            f"{steps:.0f} env steps per episode, {total:.0f} s in all"
        )

        def breakdown(times: dict[str, float]) -> tuple[dict[str, float], float]:
            per = defaultdict(float, {k: v / planned for k, v in times.items()})
            episode = per["episode"] + per["training"] + per["logging"] + per["checkpoint"]
            parts = {
                "planning (MPCAgent.act)": per["planning"],
                "filtering (encode each frame)": per["filtering"],
                "environment (reset, step, render)": per["environment"],
                "training (gradient steps)": per["training"] - per["batch sampling"],
                "training: batch sampling": per["batch sampling"],
                "I/O: episode file": per["episode file"],
                "I/O: checkpoint": per["checkpoint"],
                "I/O: logging (TensorBoard)": per["logging"],
            }
            parts["other (recording, replay buffer, loop)"] = episode - sum(parts.values())
            return parts, episode

        parts, episode = breakdown(TIMES["train"])
        cpu_parts, cpu_episode = breakdown(CPU_TIMES["train"])
        print(
            f"\nper planned training episode ({planned} timed): wall clock, and process CPU time "
            "(all threads; on a shared machine the wall clock is inflated, the CPU time is not)"
        )
        for name, seconds in parts.items():
            print(
                f"  {name:<40} {seconds:8.2f} s  {100 * seconds / episode:5.1f}%   CPU "
                f"{cpu_parts[name]:8.2f} s  {100 * cpu_parts[name] / cpu_episode:5.1f}%"
            )
        print(f"  {'total':<40} {episode:8.2f} s          CPU {cpu_episode:8.2f} s")
        ev = TIMES["eval"]
        print(
            f"evaluation episode: {ev['episode']:.2f} s (planning {ev['planning']:.2f} s, "
            f"environment {ev['environment']:.2f} s), plus logging {ev['logging']:.2f} s "
            "(video and prediction strip)"
        )
        seed = TIMES["seed"]
        print(f"random seed episode: {seed['episode']:.2f} s")
        fused, reference = plan_both_ways(session, plan_actions)
        print(
            f"\nplanning ms per action from the run's final state ({plan_actions} actions, "
            f"alternating, {clock(session.device)[1]}): fused {fused:,.1f}, through imagine {reference:,.1f}: "
            f"{reference / fused:.2f}x faster"
        )


if __name__ == "__main__":
    main()
