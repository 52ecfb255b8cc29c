"""Throughput of the metrics on CPU (or --device cuda): prints a table, asserts nothing.

.venv/bin/python bench/bench_metrics.py [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from worldmodel.metrics import (
    RandomConv3dFeatures,
    diversity,
    ms_ssim,
    per_step_metrics,
    psnr,
    ssim,
    swd,
    video_frechet_distance,
)


def _time(fn: Callable[[], object], repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    b, s, t = 16, 4, 10
    target = torch.rand(b, t, 3, 64, 64, generator=g).to(dev)
    pred = (target.unsqueeze(1) + 0.1 * torch.randn(b, s, t, 3, 64, 64, generator=g).to(dev)).clamp(
        0, 1
    )
    frames = b * s * t
    flat_p, flat_t = (
        pred.reshape(-1, 3, 64, 64),
        target.unsqueeze(1).expand_as(pred).reshape(-1, 3, 64, 64),
    )
    feats = RandomConv3dFeatures().to(dev)
    rows = [
        ("psnr", frames, lambda: psnr(flat_p, flat_t)),
        ("ssim", frames, lambda: ssim(flat_p, flat_t)),
        ("ms_ssim (3 scales)", frames, lambda: ms_ssim(flat_p, flat_t)),
        ("per_step_metrics psnr+ssim", frames, lambda: per_step_metrics(pred, target)),
        ("diversity (S=4, 6 pairs)", b * 6 * t, lambda: diversity(pred)),
        ("swd 128 patches, 512 dirs", 2 * b * t, lambda: swd(flat_t[: b * t], flat_p[: b * t])),
        (
            "FD-random3dconv (videos)",
            2 * 80,
            lambda: video_frechet_distance(
                torch.rand(80, t, 3, 64, 64, generator=g).to(dev),
                torch.rand(80, t, 3, 64, 64, generator=g).to(dev),
                feats,
            ),
        ),
    ]
    print(f"device={dev} threads={torch.get_num_threads()} frames 64x64")
    print(f"{'metric':<30} {'items':>6} {'seconds':>9} {'items/s':>10}")
    for name, items, fn in rows:
        sec = _time(fn)
        print(f"{name:<30} {items:>6} {sec:>9.4f} {items / sec:>10.0f}")


if __name__ == "__main__":
    main()
