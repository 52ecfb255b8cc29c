"""Which DeePSiM comparator should the feature loss use? Blur preference and cost of each kind.

    MUJOCO_GL=egl .venv/bin/python bench/bench_comparators.py [--episodes 12] [--encoder-steps 400]

The argument of Mathieu et al. and DeePSiM: under L2, the average of two plausible futures is
closer to either of them than the other one is, so a model trained with L2 predicts the blurred
average. A comparator helps against blur when, in its feature space, that average is NOT much
closer to the truth than a sharp but different plausible frame. For real cheetah-run frames ``x``
(frame t) and ``y`` (frame t+gap of the same episode, another pose on the same background) this
prints, per distance ``d``:

* ``mean/other = d(x, (x+y)/2) / d(x, y)``: exactly 0.25 for squared L2. Higher = the average is
  penalised more, relative to a sharp wrong answer (less pull towards blur).
* ``blur/shift = d(x, box5(x)) / d(x, shift2(x))``: a 5x5 box blur of the truth against the truth
  moved by 2 px (sharp, slightly misplaced). Higher = blur is penalised more relative to a small
  misplacement.
* the cost of ``comparator.loss`` forward + backward per 64 px frame (ms), i.e. what the feature
  term adds to a training step.

Comparators: random AlexNet (the default, ``loss.comparator.kind=alexnet_random``), the VideoNet-
style encoder trained here on the same kind of episodes (``python -m worldmodel.pretrain_comparator``;
``--encoder-steps`` steps), and an untrained multi-scale discriminator's features (what
``kind=discriminator`` starts from; in a run it is trained with the discriminator, which this
script does not reproduce). A torchvision AlexNet file cannot be measured here (no downloads).
Ratios are medians over ``--pairs`` frame pairs from held-out episodes. Nothing is asserted.
Prints the machine line first. ``--quick`` (about a minute): 4 + 2 episodes, 100 encoder steps,
64 pairs, the same table; ``--smoke`` (seconds, for the test suite): the stub environment's
episodes, 2 encoder steps, 8 pairs. Timed in float32: no bf16 here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.common import add_common_args, apply_threads, machine_line  # noqa: E402
from bench.compare_losses import ensure_episodes  # noqa: E402
from worldmodel.antiblur.comparator import build_comparator  # noqa: E402
from worldmodel.data import load_episode  # noqa: E402


def frame_pairs(directory: Path, n: int, gap: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` pairs (frame t, frame t+gap) from the episodes: two ``(n, 3, H, W)`` floats in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    episodes = [load_episode(p) for p in sorted(directory.glob("episode-*.npz"))]
    xs, ys = [], []
    for i in range(n):
        ep = episodes[i % len(episodes)]
        t = int(torch.randint(0, ep.num_frames - gap, (1,), generator=gen))
        xs.append(torch.from_numpy(ep.obs[t]))
        ys.append(torch.from_numpy(ep.obs[t + gap]))
    to = lambda frames: torch.stack(frames).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    return to(xs), to(ys)


def box_blur(x: torch.Tensor, k: int = 5) -> torch.Tensor:
    weight = torch.full((3, 1, k, k), 1.0 / (k * k))
    return F.conv2d(F.pad(x, [k // 2] * 4, mode="replicate"), weight, groups=3)


def shift(x: torch.Tensor, px: int = 2) -> torch.Tensor:
    return torch.cat([x[..., :, :px], x[..., :, :-px]], dim=-1)  # right by px, edge repeated


def ratios(distance, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Medians of ``d(x, mean)/d(x, y)`` and ``d(x, blur)/d(x, shift)``; ``distance -> (B,)``."""
    with torch.no_grad():
        mean_other = distance(x, 0.5 * (x + y)) / distance(x, y)
        blur_shift = distance(x, box_blur(x)) / distance(x, shift(x))
    return mean_other.median().item(), blur_shift.median().item()


def cost_ms(distance, frames: torch.Tensor, repeats: int) -> float:
    """Forward + backward of a feature loss ``distance -> (B,)`` per frame, min over ``repeats``."""
    best = float("inf")
    for _ in range(repeats + 1):
        pred = frames.clone().requires_grad_(True)
        start = time.perf_counter()
        distance(pred, frames).sum().backward()
        best = min(best, time.perf_counter() - start)
    return 1000 * best / frames.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=None, help="training episodes (12)")
    parser.add_argument("--test-episodes", type=int, default=None, help="held-out episodes (4)")
    parser.add_argument("--encoder-steps", type=int, default=None, help="default 400")
    parser.add_argument("--pairs", type=int, default=None, help="default 256")
    parser.add_argument("--gap", type=int, default=4, help="steps between x and y")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="keep the data and encoder here")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)
    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    defaults = {"full": (12, 4, 400, 256), "quick": (4, 2, 100, 64), "smoke": (1, 1, 2, 8)}[size]
    names = ("episodes", "test_episodes", "encoder_steps", "pairs")
    for name, value in zip(names, defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    env = "stub" if args.smoke else "cheetah"
    if args.smoke:
        args.repeats = 1
    print(machine_line())

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_comparators_"))
    train_dir, test_dir = work / "train", work / "test"
    ensure_episodes(train_dir, args.episodes, seed=0, env=env, size=64)
    ensure_episodes(test_dir, args.test_episodes, seed=10_000, env=env, size=64)
    encoder_path = work / "videonet.pt"
    t0 = time.perf_counter()
    if not encoder_path.exists():
        from worldmodel.pretrain_comparator import ComparatorPretrainConfig, run

        summary = run(
            ComparatorPretrainConfig(
                data=str(train_dir),
                out=str(encoder_path),
                steps=args.encoder_steps,
                device="cpu",
                progress=False,
            )
        )
        print(
            f"video encoder: {args.encoder_steps} steps on {args.episodes} episodes in "
            f"{time.perf_counter() - t0:.0f} s, InfoNCE {summary['first_loss']:.3f} -> "
            f"{summary['final_loss']:.3f} (untrained {summary['untrained_loss']:.3f})"
        )

    from worldmodel.antiblur.adversarial import AdversarialTrainer, AntiBlurConfig

    torch.manual_seed(0)
    adversarial = AdversarialTrainer(AntiBlurConfig(adv_weight=0.05), image_size=64)
    comparators = {
        "random AlexNet (default)": build_comparator("alexnet_random"),
        "video encoder (trained here)": build_comparator("video_encoder", encoder_path),
        "discriminator, untrained": build_comparator("discriminator", discriminator=adversarial),
    }
    x, y = frame_pairs(test_dir, args.pairs, args.gap, seed=1)

    def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).pow(2).flatten(1).sum(1)

    print(
        f"\n{env} 64 px, {args.pairs} held-out pairs (frame t, t+{args.gap}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'distance':32s} {'mean/other':>10s} {'blur/shift':>10s} {'ms/frame':>9s}")
    mo, bs = ratios(l2, x, y)
    print(f"{'pixel L2 (squared)':32s} {mo:10.3f} {bs:10.3f} {'-':>9s}")
    batch = x[: min(32, len(x))]
    for name, comp in comparators.items():
        # the conditional discriminator also sees context frames: the true frame, twice
        conditional = name.startswith("discriminator")

        def dist(a: torch.Tensor, b: torch.Tensor, comp=comp, cond=conditional) -> torch.Tensor:
            ctx = torch.stack([b, b], dim=1) if cond else None
            return comp.loss(a, b, context=ctx, reduction="none")

        mo, bs = ratios(dist, x, y)
        ms = cost_ms(dist, batch, args.repeats)
        print(f"{name:32s} {mo:10.3f} {bs:10.3f} {ms:9.2f}")
    print(f"\ndata and encoder in {work}")


if __name__ == "__main__":
    main()
