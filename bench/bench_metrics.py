"""Throughput of the metrics on CPU (or --device cuda): prints a table, asserts nothing.

.venv/bin/python bench/bench_metrics.py [--quick | --smoke] [--device cpu] [--threads N]

Prints the machine line first. ``--quick``: 8 videos x 2 samples instead of 16 x 4 (the same
table); ``--smoke``: 2 videos of 4 frames and 8 videos for the Frechet distance (with covariance
shrinkage), seconds, for the test suite. Metrics run in float32: no bf16 here.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import add_common_args, apply_threads, machine_line  # noqa: E402
from worldmodel.metrics import (  # noqa: E402
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
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)
    dev = torch.device(args.device)
    print(machine_line(dev))
    g = torch.Generator().manual_seed(0)
    b, s, t = (2, 2, 4) if args.smoke else (8, 2, 10) if args.quick else (16, 4, 10)
    videos, shrinkage = (8, 0.1) if args.smoke else (80, 0.0)
    repeats = 1 if args.smoke else 3
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
        (
            f"diversity (S={s}, {s * (s - 1) // 2} pairs)",
            b * (s * (s - 1) // 2) * t,
            lambda: diversity(pred),
        ),
        ("swd 128 patches, 512 dirs", 2 * b * t, lambda: swd(flat_t[: b * t], flat_p[: b * t])),
        (
            "FD-random3dconv (videos)",
            2 * videos,
            lambda: video_frechet_distance(
                torch.rand(videos, t, 3, 64, 64, generator=g).to(dev),
                torch.rand(videos, t, 3, 64, 64, generator=g).to(dev),
                feats,
                shrinkage=shrinkage,
            ),
        ),
    ]
    print(f"device={dev} threads={torch.get_num_threads()} frames 64x64")
    print(f"{'metric':<30} {'items':>6} {'seconds':>9} {'items/s':>10}")
    for name, items, fn in rows:
        sec = _time(fn, repeats)
        print(f"{name:<30} {items:>6} {sec:>9.4f} {items / sec:>10.0f}")


if __name__ == "__main__":
    main()
