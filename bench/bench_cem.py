"""The planner's own cost: CEM overhead per plan with a trivial objective.

Runs CEM at PlaNet's setting (1000 candidates x horizon 12 x 10 iterations, 100 elites) with
A = 6 on ``-sum(a^2)``, whose cost is negligible, so the time printed is CEM's own: sampling,
clamping, top-k and refit. Compare it with the world model's ``imagine`` time per plan.

    python bench/bench_cem.py [--quick | --smoke] [--device cuda] [--repeats 50] [--threads 1]

Prints the machine line, then the median and the minimum over ``repeats`` plans (the minimum is
the better estimate on a shared machine). ``--quick``: 10 repeats; ``--smoke``: 2 repeats at a toy
population (seconds; the test suite runs it). No bf16 here: CEM works in float32.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.cem import CEM, CEMConfig  # noqa: E402
from bench.common import add_common_args, apply_threads, machine_line  # noqa: E402


def sum_of_squares(actions: torch.Tensor) -> torch.Tensor:
    """(N, H, A) -> (N,)"""
    return -actions.square().sum(dim=(1, 2))


def timeit(fn: Callable[[], object], repeats: int, device: torch.device) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` calls of ``fn`` (after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(1000 * (time.perf_counter() - start))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description="CEM overhead per plan")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=None, help="default 50 (quick 10)")
    parser.add_argument("--action-dim", type=int, default=6)
    add_common_args(parser, threads_default=1)
    args = parser.parse_args()
    apply_threads(args)
    device = torch.device(args.device)
    repeats = args.repeats or (2 if args.smoke else 10 if args.quick else 50)
    low = -torch.ones(args.action_dim, device=device)
    high = torch.ones(args.action_dim, device=device)

    base = CEMConfig()  # PlaNet: 1000 x 12 x 10, 100 elites
    if args.smoke:
        base = CEMConfig(population=20, elites=4, iterations=2, horizon=3)
    n, h, a = base.population, base.horizon, args.action_dim
    print(machine_line(device))
    print(
        f"population (N, H, A) = ({n}, {h}, {a}), {base.iterations} iterations, "
        f"{base.elites} elites: {n * h * a * 4 / 2**20:.2f} MiB of float32 samples per iteration"
    )

    x = torch.rand(n, h, a, device=device)
    obj = timeit(lambda: sum_of_squares(x), repeats, device)
    print(
        f"{'objective alone, one call':<32} median {statistics.median(obj):7.3f}  min {min(obj):7.3f} ms"
    )

    variants = [
        ("PlaNet (return mean)", {}),
        ("best sample + evaluate mean", dict(return_mean=False, evaluate_mean=True)),
        ("smoothing alpha=0.1", dict(alpha=0.1)),
    ]
    if "kind" in {f.name for f in dataclasses.fields(CEMConfig)}:
        variants.append(("iCEM (same population start)", dict(kind="icem")))
    for name, overrides in variants:
        cfg = dataclasses.replace(base, **overrides)
        cem = CEM(cfg, low, high, torch.Generator(device=device).manual_seed(0))
        times = timeit(lambda cem=cem: cem.plan(sum_of_squares), repeats, device)
        overhead = min(times) - cfg.iterations * min(obj)
        print(
            f"{name:<32} median {statistics.median(times):7.3f}  min {min(times):7.3f} ms/plan; "
            f"CEM overhead (min) {overhead:.3f} ms/plan = {overhead / cfg.iterations:.3f} ms/iteration"
        )
    compare_cem_icem(quick=args.quick, smoke=args.smoke)


# ------------------------------------------------------------ CEM vs iCEM: return vs samples evaluated
# A smooth control objective: a 2-D double integrator (v += 0.2 a, p += 0.2 v, a in [-1, 1]^2).
# Open loop: one plan of 20 steps from rest at the origin, return -sum_t ||p_t - (1.5, -1)||^2, a
# concave quadratic of the actions whose exact maximum over the box projected-gradient ascent finds.
# Closed loop: MPC with the exact model from random starts to random goals, reward -||p - goal|| per
# step; and, as a contrast, the stub env's point (single integrator, reward cone around the goal).
DT, OPEN_H, OPEN_GOAL = 0.2, 20, (1.5, -1.0)


def double_integrator(p0: torch.Tensor, v0: torch.Tensor, goal: torch.Tensor, squared: bool):
    """Objective ``(N, H, 2) -> (N,)``: minus the summed (squared) distances of the positions."""

    def objective(actions: torch.Tensor) -> torch.Tensor:
        v = v0 + DT * actions.cumsum(1)  # (N, H, 2)
        p = p0 + DT * v.cumsum(1)
        d = (p - goal).square().sum(-1)  # (N, H)
        return -(d if squared else d.sqrt()).sum(1)

    return objective


def open_loop_optimum() -> float:
    """The exact maximum of the open-loop objective (projected gradient ascent, float64)."""
    t = torch.arange(OPEN_H, dtype=torch.float64)
    lag = t[:, None] - t[None, :]
    m = torch.where(lag >= 0, DT * DT * (lag + 1), 0.0)  # positions = m @ actions
    goal = torch.tensor(OPEN_GOAL, dtype=torch.float64)
    step = 1 / (2 * torch.linalg.matrix_norm(m, ord=2) ** 2)
    a = torch.zeros(OPEN_H, 2, dtype=torch.float64)
    for _ in range(5000):
        a = (a - step * 2 * m.T @ (m @ a - goal)).clamp(-1, 1)
    return -(m @ a - goal).square().sum().item()


def mpc_episode(cfg: CEMConfig, task: str, seed: int, steps: int) -> tuple[float, float]:
    """One MPC episode with the exact model: (return, objective evaluations per step); ``steps``
    steps of the double integrator, or a whole stub episode, whose return is given as a fraction
    of the optimal return from the same start."""
    g = torch.Generator().manual_seed(seed)
    cem = CEM(cfg, -torch.ones(2), torch.ones(2), generator=torch.Generator().manual_seed(seed))
    evaluated = 0
    if task == "stub":
        from envs.stub import StubPixelEnv

        env = StubPixelEnv(size=16)
        env.reset(seed=seed)
        optimal, goal, total = env.optimal_return(), torch.as_tensor(env.goal).float(), 0.0
        done, steps = False, 0  # the whole episode: the optimum is the episode's
        while not done:
            pos = torch.as_tensor(env.pos).float()

            def objective(actions: torch.Tensor, pos: torch.Tensor = pos) -> torch.Tensor:
                p, ret = pos.expand(len(actions), 2), torch.zeros(len(actions))
                for t in range(actions.shape[1]):
                    p, reward = StubPixelEnv.true_dynamics(p, actions[:, t], goal)
                    ret = ret + reward
                return ret

            _, reward, terminated, truncated, _ = env.step(cem.act(objective).numpy())
            evaluated += sum(cem.last_info.evaluated)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        return total / optimal, evaluated / steps
    p, v = torch.rand(2, generator=g) * 2 - 1, torch.zeros(2)
    goal, total = torch.rand(2, generator=g) * 2 - 1, 0.0
    for _ in range(steps):
        a = cem.act(double_integrator(p, v, goal, squared=False))
        evaluated += sum(cem.last_info.evaluated)
        v = v + DT * a
        p = p + DT * v
        total -= (p - goal).norm().item()
    return total, evaluated / steps


def compare_cem_icem(quick: bool = False, smoke: bool = False) -> None:
    """Print the return CEM and iCEM reach against the objective evaluations they spend (CPU,
    float32; counts, not times)."""
    seeds = range(1 if smoke else 3 if quick else 5)
    budgets = [250, 500] if smoke else [250, 500, 1000, 2000, 4000]
    optimum = open_loop_optimum()
    start = double_integrator(torch.zeros(2), torch.zeros(2), torch.tensor(OPEN_GOAL), True)
    print(
        f"\nCEM vs iCEM, open loop: 2-D double integrator, horizon {OPEN_H}, exact optimum "
        f"{optimum:.2f} (all-zero actions {start(torch.zeros(1, OPEN_H, 2)).item():.2f}); gap of the "
        f"best return to the optimum after B objective evaluations, median of {len(seeds)} seeds"
    )
    print(f"{'B evaluations':<18}" + "".join(f"{b:>9}" for b in budgets))
    for kind, n in [("cem", 100), ("icem", 100), ("cem", 300), ("icem", 300)]:
        k = n // 10
        iters = max(budgets) // (n if kind == "cem" else 2 * k) + 1  # enough for the largest B
        # best_return is the best candidate's return for both kinds (return_mean changes nothing)
        cfg = CEMConfig(kind=kind, population=n, elites=k, iterations=iters, horizon=OPEN_H)
        gaps = []
        for seed in seeds:
            cem = CEM(cfg, -torch.ones(2), torch.ones(2), torch.Generator().manual_seed(seed))
            cem.plan(start)
            used = torch.tensor(cem.last_info.evaluated).cumsum(0)
            best = torch.cummax(cem.last_info.best_return, 0).values
            # NaN: the budget is smaller than the first iteration's population
            gaps.append(
                [
                    optimum - best[used <= b].max().item() if used[0] <= b else math.nan
                    for b in budgets
                ]
            )
        median = torch.tensor(gaps).median(0).values
        name = f"{'iCEM' if kind == 'icem' else 'CEM'} {n}/{k}"
        print(f"{name:<18}" + "".join(f"{x:9.2f}" if x == x else f"{'-':>9}" for x in median))

    steps = 10 if smoke else 40
    sizes = [20] if smoke else [25, 50, 100, 200]
    print(
        f"\nCEM vs iCEM, closed loop: MPC with the exact model, horizon 12, 4 iterations, K = N/10, "
        f"mean of {len(seeds)} seeds; double integrator: return (-sum ||p - goal||) over {steps} steps; "
        "stub: fraction of the optimal return of an episode"
    )
    print(f"{'planner':<26}{'N':>5}{'evals/step':>12}{'double int.':>13}{'stub':>8}")
    planners = [
        ("CEM, mean (PlaNet)", dict(kind="cem")),
        ("CEM, best + mean", dict(kind="cem", return_mean=False, evaluate_mean=True)),
        ("iCEM (beta 2)", dict(kind="icem")),
        ("iCEM, mean every iter.", dict(kind="icem", evaluate_mean=True)),
    ]
    for n in sizes:
        for name, kw in planners:
            cfg = CEMConfig(population=n, elites=max(2, n // 10), iterations=4, horizon=12, **kw)
            di = [mpc_episode(cfg, "double", seed, steps) for seed in seeds]
            stub = [mpc_episode(cfg, "stub", seed, steps)[0] for seed in seeds]
            evals = statistics.mean(e for _, e in di)
            ret = statistics.mean(r for r, _ in di)
            print(f"{name:<26}{n:>5}{evals:>12.0f}{ret:>13.2f}{statistics.mean(stub):>8.3f}")


if __name__ == "__main__":
    main()
