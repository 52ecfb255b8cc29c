"""Pixel environment steps per second: our cheetah env against a bare dm_control loop.

Every variant does the same work per agent step: 4 physics steps (cheetah's action repeat) and
one 64x64 render from camera 0. Variants:

- ``bare dm_control``: ``suite.load`` + ``env.step`` x 4 + ``physics.render(64, 64, camera_id=0)``
  at dm_control's default rendering settings;
- ``bare, fast settings``: the same loop with our fast offscreen settings applied by hand;
- ``envs cheetah``: ``envs.make_env("cheetah")`` (fast rendering, the default);
- ``envs cheetah fast_render=False``.

The variants take turns step by step (the machine may be shared, so a busy moment slows them all
alike); rates are total steps over total time. Run: ``MUJOCO_GL=egl python bench/bench_env.py
[--quick | --smoke] [--steps 200 --rounds 3]`` (``--quick``: 100 steps x 1 round, the same ratio
lines; ``--smoke``: 5 steps, seconds, for the test suite). Prints the machine line first; no bf16
here (the environment is MuJoCo and NumPy).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import add_common_args, apply_threads, machine_line  # noqa: E402
from envs import make_env  # noqa: E402
from envs.base import configure_mujoco_rendering  # noqa: E402

SIZE = 64
REPEAT = 4


class BareLoop:
    """A plain dm_control loop: action repeat with ``env.step``, then ``physics.render``."""

    def __init__(self, fast: bool) -> None:
        from dm_control import suite

        self.env = suite.load("cheetah", "run", task_kwargs={"random": 0})
        if fast:
            configure_mujoco_rendering(self.env.physics.model, SIZE, fast=True)

    def reset(self) -> None:
        self.env.reset()
        self.env.physics.render(SIZE, SIZE, camera_id=0)

    def step(self, action: np.ndarray) -> None:
        for _ in range(REPEAT):
            self.env.step(action)
        self.env.physics.render(SIZE, SIZE, camera_id=0)


class OurEnv:
    """``envs.make_env("cheetah")``."""

    def __init__(self, fast: bool) -> None:
        self.env = make_env("cheetah", size=SIZE, fast_render=fast)
        assert self.env.action_repeat == REPEAT

    def reset(self) -> None:
        self.env.reset(seed=0)

    def step(self, action: np.ndarray) -> None:
        self.env.step(action)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="agent steps per episode (200)")
    parser.add_argument("--rounds", type=int, default=None, help="episodes per variant (3)")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)
    args.steps = args.steps or (5 if args.smoke else 100 if args.quick else 200)
    args.rounds = args.rounds or (1 if args.smoke or args.quick else 3)
    print(machine_line())

    # Fewer than 250 steps: cheetah's time limit (1000 physics steps) is never reached.
    steps = min(args.steps, 1000 // REPEAT - 1)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 6)).astype(np.float32)
    variants = {
        "bare dm_control (default render)": BareLoop(fast=False),
        "bare dm_control, fast settings": BareLoop(fast=True),
        "envs cheetah (fast_render=True)": OurEnv(fast=True),
        "envs cheetah (fast_render=False)": OurEnv(fast=False),
    }
    # The variants take turns step by step, so a busy machine slows them all alike.
    seconds = dict.fromkeys(variants, 0.0)
    for _ in range(args.rounds):
        for variant in variants.values():
            variant.reset()
        for action in actions:
            for name, variant in variants.items():
                start = time.perf_counter()
                variant.step(action)
                seconds[name] += time.perf_counter() - start
    rate = {name: steps * args.rounds / s for name, s in seconds.items()}

    print(
        f"cheetah-run, {SIZE}x{SIZE}, action repeat {REPEAT}, {steps} steps x {args.rounds} rounds"
    )
    for name, value in rate.items():
        print(f"  {name:36s} {value:7.1f} steps/s")
    bare, bare_fast = (
        rate["bare dm_control (default render)"],
        rate["bare dm_control, fast settings"],
    )
    fast, slow = rate["envs cheetah (fast_render=True)"], rate["envs cheetah (fast_render=False)"]
    print(f"  envs fast_render / bare default:    {fast / bare:.2f}x  (what the fast settings buy)")
    print(
        f"  envs fast_render / bare same:       {fast / bare_fast:.2f}x  (env class cost: 1 = none)"
    )
    print(f"  envs fast_render=False / bare same: {slow / bare:.2f}x  (env class cost: 1 = none)")


if __name__ == "__main__":
    main()
