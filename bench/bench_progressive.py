"""Seconds per training step with the decoder growing progressively, against the same objective
without growing and against plain SVG; also pixel norm and the multi-scale decoder.

Prints, for a model preset (default ``configs/model/tiny.yaml``) at 64x64, batch ``--batch`` x
``--seq-len`` frames of random uint8 data, CPU, fp32:

* ``loss=mse`` (plain SVG; progressive off: the default path), with ``model.pixel_norm=true``
  and with ``model.decoder_scales=3`` (Mathieu's coarse-to-fine decoder, 16/32/64 px);
* ``loss=full`` with ``loss.progressive.enabled=false`` (fixed full resolution);
* ``loss=full`` (progressive growing in decoder and discriminators) at four points of
  its schedule: 16 px, 32 px fading in (alpha 0.5), 64 px fading in, and after the schedule
  (64 px, alpha 1: the plain path again);
* ``loss=full`` without growing and with ``model.decoder_scales=3`` (GDL and adversarial terms at
  every decoder scale).

Configs are composed from ``configs/pretrain.yaml`` as ``python -m worldmodel.pretrain`` would, the
model is built with :func:`worldmodel.training.training_setup.resolve_model_config`. Steps of the
variants are interleaved (one step of each per round) so that load from other jobs on a shared
machine hits them alike; the minimum and the median over rounds are printed. Nothing is asserted.

Run: ``.venv/bin/python bench/bench_progressive.py [--quick | --smoke] [--rounds 10] [--threads 1]
[--model tiny]``. Prints the machine line first. ``--quick``: 3 rounds (the same table);
``--smoke``: 1 round of batch 2 x 4 frames (seconds, for the test suite). Timed in fp32 (the
comparison is between loss set-ups; bf16 is never timed here).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import add_common_args, machine_line  # noqa: E402
from worldmodel import pretrain  # noqa: E402
from worldmodel.data import Batch  # noqa: E402
from worldmodel.model.svg import WorldModel  # noqa: E402
from worldmodel.training.train import Trainer  # noqa: E402
from worldmodel.training.training_setup import build_trainer, resolve_model_config  # noqa: E402

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
SIZE, A = 64, 2


def make_trainer(args: argparse.Namespace, overrides: list[str]) -> Trainer:
    pretrain.register_configs()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        dict_cfg = compose(
            "pretrain", overrides=["data=/unused", f"model={args.model}", *overrides]
        )
    cfg: pretrain.PretrainConfig = OmegaConf.to_object(dict_cfg)
    cfg.train.precision = "fp32"
    torch.manual_seed(0)
    model = WorldModel(resolve_model_config(cfg.model, cfg.loss), SIZE, A)
    return build_trainer(model, cfg.train, cfg.objective, cfg.loss, "cpu")


def at_step(trainer: Trainer, step: int) -> Trainer:
    """Put the trainer at ``step`` of the progressive schedule (its one step counter; the
    discriminator judges each step's predictions at the point they were made at)."""
    trainer.global_step = step
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="default 10 (quick 3)")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch", type=int, default=None, help="default 8")
    parser.add_argument("--seq-len", type=int, default=None, help="default 8")
    add_common_args(parser, threads_default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads or 1)
    args.rounds = args.rounds or (1 if args.smoke else 3 if args.quick else 10)
    args.batch = args.batch or (2 if args.smoke else 8)
    args.seq_len = args.seq_len or (4 if args.smoke else 8)
    print(machine_line())

    gen = torch.Generator().manual_seed(0)
    obs = torch.randint(
        0, 256, (args.batch, args.seq_len, 3, SIZE, SIZE), dtype=torch.uint8, generator=gen
    )
    batch = Batch(
        obs,
        torch.rand(args.batch, args.seq_len - 1, A, generator=gen) * 2 - 1,
        torch.rand(args.batch, args.seq_len - 1, generator=gen),
    )
    # stabilize 1000 / fade 1000 steps: 16 px until 1000, 32 fades in over 1000-2000, ...
    grow = [
        "loss=full",
        "loss.progressive.stabilize_steps=1000",
        "loss.progressive.fade_steps=1000",
    ]
    variants = {
        "mse (plain SVG, default path)": (["loss=mse"], None),
        "mse + pixel norm": (["loss=mse", "model.pixel_norm=true"], None),
        "mse + 3-scale decoder": (["loss=mse", "model.decoder_scales=3"], None),
        "full, progressive off": (["loss=full", "loss.progressive.enabled=false"], None),
        "full, progressive at 16 px": (grow, 0),
        "full, progressive 32 px, alpha 0.5": (grow, 1500),
        "full, progressive 64 px, alpha 0.5": (grow, 3500),
        "full, progressive done (64 px, alpha 1)": (grow, 10_000),
        "full, progressive off, 3-scale decoder": (
            ["loss=full", "loss.progressive.enabled=false", "model.decoder_scales=3"],
            None,
        ),
    }
    trainers = {}
    for name, (overrides, step) in variants.items():
        trainer = make_trainer(
            args, [f"train.batch_size={args.batch}", f"train.seq_len={args.seq_len}", *overrides]
        )
        trainers[name] = (trainer, step)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for r in range(args.rounds + 1):  # round 0 is a warm-up
        for name, (trainer, step) in trainers.items():
            if step is not None:
                at_step(trainer, step)
            t0 = time.perf_counter()
            logs = trainer.step(batch)
            if r > 0:
                times[name].append(time.perf_counter() - t0)
            if r == 0 and step is not None:
                point = (logs["progressive/resolution"], logs["progressive/alpha"])
                print(f"{name}: schedule point {point}")
    print(
        f"\nmodel={args.model}, {SIZE}px, batch {args.batch} x {args.seq_len} frames, "
        f"{args.threads} thread(s), {args.rounds} rounds"
    )
    print(f"{'variant':44s} {'min s/step':>11s} {'median':>9s}")
    for name, ts in times.items():
        print(f"{name:44s} {min(ts):11.4f} {statistics.median(ts):9.4f}")


if __name__ == "__main__":
    main()
