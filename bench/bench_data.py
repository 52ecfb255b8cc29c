"""Data pipeline figures: episode loading, sequence sampling throughput, memory per frame.

Run: ``.venv/bin/python bench/bench_data.py [--quick | --smoke] [--episodes 20] [--steps 500]
[--size 64]``. Prints the machine line, then numbers only (no assertions on time). ``--quick``: 5
episodes of 200 steps; ``--smoke``: 2 episodes of 20 steps (seconds; the test suite runs it).
No bf16 here: the data path is uint8 until the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import add_common_args, machine_line  # noqa: E402
from worldmodel.data import EpisodeDataset, ReplayBuffer, SequenceSampler  # noqa: E402


def synthetic_episode(steps: int, size: int, action_dim: int, rng: np.random.Generator) -> dict:
    """A moving square on a gradient: compresses like rendered frames, unlike pure noise."""
    obs = np.empty((steps + 1, size, size, 3), dtype=np.uint8)
    base = np.linspace(0, 200, size, dtype=np.float32)
    obs[:] = base[None, :, None, None].astype(np.uint8)
    pos = rng.integers(0, size - 8, size=2)
    for t in range(steps + 1):
        pos = np.clip(pos + rng.integers(-1, 2, size=2), 0, size - 8)
        obs[t, pos[0] : pos[0] + 8, pos[1] : pos[1] + 8] = (255, 64, 0)
    return {
        "obs": obs,
        "action": rng.uniform(-1, 1, (steps, action_dim)).astype(np.float32),
        "reward": rng.random(steps, dtype=np.float32),
        "terminated": np.zeros(steps, dtype=bool),
        "truncated": np.r_[np.zeros(steps - 1, dtype=bool), True],
    }


def write(directory: Path, index: int, arrays: dict) -> None:
    name = f"episode-{index:06d}-{len(arrays['action'])}.npz"
    meta = {"format": "worldmodel-episode/1", "env": "bench", "action_repeat": 1, "seed": index}
    tmp = directory / f".{name}.tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays, meta=np.array(json.dumps(meta)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / name)


def time_sampler(source, seq_len: int, batch_size: int, n: int = 50) -> tuple[float, float]:
    sampler = SequenceSampler(source, seq_len, batch_size, seed=0)
    sampler.sample()  # warm-up (index build)
    start = time.perf_counter()
    for _ in range(n):
        batch = sampler.sample()
    elapsed = (time.perf_counter() - start) / n
    return elapsed * 1e3, batch.obs.numel() / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=None, help="default 20 (quick 5)")
    parser.add_argument("--steps", type=int, default=None, help="default 500 (quick 200)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--action-dim", type=int, default=6)
    add_common_args(parser, threads_default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads or 1)
    small = 2 if args.smoke else 5 if args.quick else 20
    args.episodes = args.episodes or small
    args.steps = args.steps or (20 if args.smoke else 200 if args.quick else 500)
    samples = 3 if args.smoke else 50
    print(machine_line())
    rng = np.random.default_rng(0)
    episodes = [
        synthetic_episode(args.steps, args.size, args.action_dim, rng) for _ in range(args.episodes)
    ]
    frames = args.episodes * (args.steps + 1)
    print(f"{args.episodes} episodes x {args.steps + 1} frames of {args.size}x{args.size}x3")

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        for i, arrays in enumerate(episodes):
            write(directory, i, arrays)
        t_write = time.perf_counter() - start
        disk = sum(p.stat().st_size for p in directory.glob("*.npz"))
        start = time.perf_counter()
        dataset = EpisodeDataset(directory)
        t_load = time.perf_counter() - start
    raw = frames * args.size * args.size * 3
    print(f"write: {frames / t_write:,.0f} frames/s, {disk / frames:,.0f} B/frame on disk")
    print(f"load+validate: {frames / t_load:,.0f} frames/s")
    print(f"dataset memory: {dataset.nbytes / raw:.4f} x raw frame bytes ({raw / 2**20:.1f} MiB)")

    buffer = ReplayBuffer(capacity_frames=frames)
    for arrays in episodes:
        buffer.add_episode(**arrays)
    print(f"replay memory: {buffer.nbytes / raw:.4f} x raw frame bytes")

    for seq_len, batch_size in ((12, 16), (50, 50)):
        seq_len = min(seq_len, args.steps)
        ms, mbs = time_sampler(dataset, seq_len, batch_size, samples)
        print(f"sample B={batch_size} L={seq_len}: {ms:.2f} ms/batch, {mbs:,.0f} MB/s of frames")


if __name__ == "__main__":
    main()
