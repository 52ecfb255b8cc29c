"""The planner's own cost: CEM overhead per plan with a trivial objective.

Runs CEM at PlaNet's setting (1000 candidates x horizon 12 x 10 iterations, 100 elites) with
A = 6 on ``-sum(a^2)``, whose cost is negligible, so the time printed is CEM's own: sampling,
clamping, top-k and refit. Compare it with the world model's ``imagine`` time per plan.

    python bench/bench_cem.py [--device cuda] [--repeats 50] [--threads 1]

Prints the median and the minimum over ``repeats`` plans (the minimum is the better estimate on a
shared machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.cem import CEM, CEMConfig  # noqa: E402


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
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--action-dim", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    low = -torch.ones(args.action_dim, device=device)
    high = torch.ones(args.action_dim, device=device)

    base = CEMConfig()  # PlaNet: 1000 x 12 x 10, 100 elites
    n, h, a = base.population, base.horizon, args.action_dim
    print(f"torch {torch.__version__}, device {device}, CPU threads {torch.get_num_threads()}")
    print(
        f"population (N, H, A) = ({n}, {h}, {a}), {base.iterations} iterations, "
        f"{base.elites} elites: {n * h * a * 4 / 2**20:.2f} MiB of float32 samples per iteration"
    )

    x = torch.rand(n, h, a, device=device)
    obj = timeit(lambda: sum_of_squares(x), args.repeats, device)
    print(
        f"{'objective alone, one call':<32} median {statistics.median(obj):7.3f}  min {min(obj):7.3f} ms"
    )

    for name, cfg in [
        ("PlaNet (return mean)", base),
        ("best sample + evaluate mean", CEMConfig(return_mean=False, evaluate_mean=True)),
        ("smoothing alpha=0.1", CEMConfig(alpha=0.1)),
    ]:
        cem = CEM(cfg, low, high, torch.Generator(device=device).manual_seed(0))
        times = timeit(lambda cem=cem: cem.plan(sum_of_squares), args.repeats, device)
        overhead = min(times) - cfg.iterations * min(obj)
        print(
            f"{name:<32} median {statistics.median(times):7.3f}  min {min(times):7.3f} ms/plan; "
            f"CEM overhead (min) {overhead:.3f} ms/plan = {overhead / cfg.iterations:.3f} ms/iteration"
        )


if __name__ == "__main__":
    main()
