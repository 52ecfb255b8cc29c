"""How much a checkpoint loses to its BatchNorm running statistics, and what recomputing them gives.

    python bench/bn_gap.py --ckpt RUN/checkpoints/last.pt --test DIR --train DIR [--clips 40]
        [--batches 50] [--threads 1]

For held-out clips of 12 frames (2 context + 10 predicted, the video_quality protocol), mean
PSNR over the predicted frames of:

* the teacher-forced reconstruction (posterior samples, the training forward) in evaluation mode
  (BatchNorm with its running statistics) and in training mode (with the batch's statistics);
* prior rollouts (one sample, seeded) with SVG's decode-and-re-encode feedback and with latent
  feedback;

first with the statistics saved in the checkpoint, then after
:meth:`worldmodel.training.train.Trainer.recalibrate_batchnorm` over ``--batches`` batches of
16 x 12 frames from ``--train`` (what ``worldmodel.pretrain`` does before every checkpoint).
A large evaluation/training-mode gap with the saved statistics that closes after recomputing them
means the running averages were stale.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine_line  # noqa: E402

from worldmodel.data import EpisodeDataset, SequenceSampler  # noqa: E402
from worldmodel.evaluation.clips import clips_up_to  # noqa: E402
from worldmodel.training.checkpoint import model_from_checkpoint  # noqa: E402
from worldmodel.training.train import ObjectiveConfig, TrainConfig, Trainer  # noqa: E402

N_PAST, N_FUTURE = 2, 10


def psnr(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over clips and frames of the per-frame PSNR (frames in [0, 1])."""
    mse = (pred.float().clamp(0, 1) - truth).pow(2).flatten(2).mean(-1)
    return (10 * torch.log10(1 / mse)).mean().item()


@torch.no_grad()
def measure(model, obs: torch.Tensor, action: torch.Tensor | None) -> dict[str, float]:
    truth = obs[:, N_PAST:]
    out = {}
    for name, training in (
        ("teacher-forced, eval mode", False),
        ("teacher-forced, train mode", True),
    ):
        model.train(training)
        g = torch.Generator().manual_seed(0)
        frames = model(obs, action, n_past=N_PAST, generator=g).frames[:, N_PAST - 1 :]
        out[name] = psnr(frames, truth)
    model.eval()
    state = model.observe(obs[:, :N_PAST], None if action is None else action[:, : N_PAST - 1])
    future = None if action is None else action[:, N_PAST - 1 : N_PAST - 1 + N_FUTURE]
    for feedback in ("decode", "latent"):
        g = torch.Generator().manual_seed(0)
        im = model.imagine(
            state, future, decode=True, generator=g, horizon=N_FUTURE, feedback=feedback
        )
        out[f"prior rollout, {feedback} feedback"] = psnr(im.frames[:, 0], truth)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--test", required=True, help="held-out episodes")
    p.add_argument("--train", required=True, help="training episodes (for the statistics)")
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(machine_line(torch.device("cpu")))
    model = model_from_checkpoint(a.ckpt, "cpu")
    clips = clips_up_to(EpisodeDataset(a.test), N_PAST + N_FUTURE, a.clips, 0)
    obs = clips.obs.float() / 255
    action = clips.action if model.action_dim > 0 else None
    before = measure(model, obs, action)
    trainer = Trainer(model, TrainConfig(precision="fp32", n_past=N_PAST), ObjectiveConfig(), "cpu")
    sampler = SequenceSampler(EpisodeDataset(a.train), N_PAST + N_FUTURE, 16, seed=7919)
    batches = (sampler.sample() for _ in range(a.batches))
    if model.action_dim == 0:
        batches = (dataclasses.replace(b, action=None, reward=None) for b in batches)
    trainer.recalibrate_batchnorm(batches)
    after = measure(model, obs, action)
    print(f"checkpoint {a.ckpt}; {len(clips)} held-out clips, PSNR (dB) over {N_FUTURE} frames")
    print(f"  {'':32s} {'saved statistics':>17s} {f'recomputed ({a.batches})':>17s}")
    for key in before:
        print(f"  {key:32s} {before[key]:17.2f} {after[key]:17.2f}")
    gap = before["teacher-forced, train mode"] - before["teacher-forced, eval mode"]
    print(f"eval-mode gap with the saved statistics: {gap:.2f} dB")


if __name__ == "__main__":
    main()
