"""Milliseconds per planned action, and how close the latent rollout gets to the matmul peak.

    python bench/bench_planner.py [--device cpu] [--threads 2] [--repeats 3] [--skip-pixel-planet]

For each CEM setting (PlaNet's 1000 candidates x horizon 12 x 10 iterations, and the sizes of the
``cpu`` profile from configs/planner/cem/), each objective (``reward``: latent rollout, nothing
decoded; ``goal``: frames decoded and compared with a goal image in pixels) and each precision
(fp32, bf16 autocast), it times one objective call (= one CEM iteration, the whole population in
one batched ``model.imagine``) and reports ``ms/action = iterations x that time`` (CEM's own work is
negligible next to it, see bench/bench_cem.py). The model is the default SVG-LP (M = K = 1, 64 px,
A = 6 as cheetah) and, for the cpu rows, also the cpu profile's (M = K = 0.5).

Peak: ``torch.mm`` of 2048 x 2048 matrices in fp32 and bf16, measured in the same run. The FLOPs of
the latent rollout are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and
convolutions only), so ``achieved / peak`` says how much of the time is spent doing useful math.
Finally a profile of one latent rollout shows where the time goes.

Times are the minimum over ``--repeats`` calls (the better estimate on a shared machine).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.objectives import goal_image_objective, latent_reward_objective  # noqa: E402
from worldmodel.svg import ModelConfig, WorldModel  # noqa: E402

PLANET = {"population": 1000, "elites": 100, "iterations": 10, "horizon": 12}


def best_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Minimum wall-clock milliseconds of ``repeats`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, 1000 * (time.perf_counter() - start))
    return best


def matmul_peak(dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """GFLOP/s of ``torch.mm`` on 2048 x 2048 matrices."""
    n = 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms = best_ms(lambda: torch.mm(a, b), max(repeats, 5), device)
    return 2 * n**3 / (ms / 1000) / 1e9


def _lstm_layer_flops(inp, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of one oneDNN LSTM layer call (FlopCounterMode has no formula for it): the gate
    matmuls ``(T, B, in) x (in, 4H)`` and ``(T, B, H) x (H, 4H)``; element-wise work ignored."""
    steps, batch = inp[0], inp[1]
    return 2 * steps * batch * w_ih[0] * (w_ih[1] + w_hh[1])


def count_flops(fn: Callable[[], object]) -> int:
    """Matmul / conv / LSTM FLOPs of one call of ``fn`` (run it in fp32: the count is the same
    in bf16, and the counter's LSTM decomposition fails under bf16 autocast)."""
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {torch.ops.aten.mkldnn_rnn_layer: _lstm_layer_flops}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter:
        fn()
    return counter.get_total_flops()


def make_model(
    scale: float, device: torch.device, action_dim: int = 6
) -> tuple[WorldModel, object]:
    """The default model at ``M = K = scale`` and a state after observing two frames."""
    torch.manual_seed(0)
    model = WorldModel(ModelConfig(M=scale, K=scale), 64, action_dim).to(device).eval()
    frames = torch.randint(0, 256, (1, 2, 3, 64, 64), dtype=torch.uint8, device=device)
    with torch.inference_mode():
        state = model.observe(frames, torch.zeros(1, 1, action_dim, device=device))
    return model, state


def objective_for(kind: str, model: WorldModel, state: object, precision: str):
    generator = torch.Generator(device=state.embedding.device).manual_seed(0)
    if kind == "reward":
        return latent_reward_objective(model, state, generator=generator, precision=precision)
    goal = torch.rand(3, 64, 64, device=state.embedding.device)
    return goal_image_objective(model, state, goal, generator=generator, precision=precision)


def main() -> None:
    parser = argparse.ArgumentParser(description="planning time per action")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip-pixel-planet",
        action="store_true",
        help="skip the goal objective at PlaNet's size (decodes 12,000 frames per iteration)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cpu_sizes = {
        kind: dict(OmegaConf.load(ROOT / "configs" / "planner" / "cem" / f"{kind}_cpu.yaml"))
        for kind in ("reward", "goal")
    }
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")

    peak = {
        p: matmul_peak(d, device, args.repeats)
        for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    print(
        f"torch.mm 2048x2048 peak: fp32 {peak['fp32']:,.0f} GFLOP/s, bf16 {peak['bf16']:,.0f} GFLOP/s"
    )

    rows = [  # (setting name, sizes, model scale)
        ("PlaNet", PLANET, 1.0),
        ("cpu profile", None, 1.0),
        ("cpu profile", None, 0.5),
    ]
    header = (
        f"{'setting':<12} {'model':<8} {'objective':<9} {'prec':<5} {'N x H x iters':<15} "
        f"{'ms/call':>9} {'ms/action':>10} {'GFLOP/call':>11} {'GFLOP/s':>8} {'% peak':>7}"
    )
    print(header)
    print("-" * len(header))
    models: dict[float, tuple[WorldModel, object]] = {}
    for name, sizes, scale in rows:
        if scale not in models:
            models[scale] = make_model(scale, device)
        model, state = models[scale]
        for kind in ("reward", "goal"):
            if name == "PlaNet" and kind == "goal" and args.skip_pixel_planet:
                continue
            cem = sizes or cpu_sizes[kind]
            n, h, iters = cem["population"], cem["horizon"], cem["iterations"]
            actions = torch.rand(n, h, model.action_dim, device=device) * 2 - 1
            flops = None
            if kind == "reward":
                flops = count_flops(
                    functools.partial(objective_for(kind, model, state, "fp32"), actions)
                )
            for precision in ("fp32", "bf16"):
                call = functools.partial(objective_for(kind, model, state, precision), actions)
                ms = best_ms(call, args.repeats, device)
                rate = flops / (ms / 1000) / 1e9 if flops else None
                print(
                    f"{name:<12} {'M=K=' + str(scale):<8} {kind:<9} {precision:<5} "
                    f"{f'{n}x{h}x{iters}':<15} {ms:>9,.1f} {iters * ms:>10,.0f} "
                    + (
                        f"{flops / 1e9:>11.2f} {rate:>8,.0f} {100 * rate / peak[precision]:>6.1f}%"
                        if flops
                        else f"{'-':>11} {'-':>8} {'-':>7}"
                    ),
                    flush=True,
                )

    # where the time of one latent rollout goes (PlaNet's population, default model, fp32)
    from torch.profiler import ProfilerActivity, profile

    model, state = models[1.0]
    actions = torch.rand(PLANET["population"], PLANET["horizon"], model.action_dim, device=device)
    objective = objective_for("reward", model, state, "fp32")
    objective(actions)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        objective(actions)
    print("\nprofile of one latent rollout (1000 x 12, M=K=1, fp32), by self time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
