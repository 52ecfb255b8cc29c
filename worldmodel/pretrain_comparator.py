"""Train DeePSiM's VideoNet-style comparator on the project's own video and save it for reuse.

    python -m worldmodel.pretrain_comparator data=DIR out=runs/videonet.pt steps=2000
    python -m worldmodel.pretrain loss=full loss.comparator.kind=video_encoder \
        loss.comparator.path=runs/videonet.pt data=DIR ...

No pretrained comparator can be downloaded on this project's machines, so besides random AlexNet
and the discriminator's own features the feature loss can use a
:class:`~worldmodel.antiblur.comparator.VideoEncoder` trained here: two frames of the same clip, at
most ``max_gap`` steps apart, are a positive pair, frames of the other clips in the batch are
negatives (InfoNCE, see :func:`~worldmodel.antiblur.comparator.train_video_encoder`). Any episode
directory works, from ``envs.collect`` or from ``envs.import_video`` (actions and rewards are not
used).

The encoder is written atomically to ``out`` (format ``worldmodel-video-encoder/1``, loaded with
``weights_only=True``) together with ``<out>.json``: the config, the loss curve summary and the
loss of an untrained encoder (``log(batch_size)``) for comparison.

Hydra lives only in :func:`main`; :func:`run` is plain and is what tests call.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from worldmodel.antiblur.comparator import VideoEncoderConfig, pairs_from_clips, train_video_encoder
from worldmodel.data import EpisodeDataset, SequenceSampler
from worldmodel.device import resolve_device

log = logging.getLogger("worldmodel.pretrain_comparator")

__all__ = ["ComparatorPretrainConfig", "register_configs", "run", "main"]


@dataclass
class ComparatorPretrainConfig:
    """Everything ``python -m worldmodel.pretrain_comparator`` reads (configs/pretrain_comparator.yaml).

    Attributes:
        data: directory of episode ``.npz`` files (required).
        out: where the encoder is saved (required), e.g. ``runs/videonet.pt``.
        steps: optimisation steps.
        batch_size: clips per step (each gives one positive pair; the others are its negatives).
        clip_len: frames per sampled clip; the pair is drawn inside it.
        max_gap: the second frame of a pair is 1..max_gap steps after the first. Short gaps keep
            the features sensitive to what changes over longer spans (pose, position).
        lr: Adam learning rate. 1e-3 collapsed on cheetah-run (InfoNCE stuck at log(batch) for 400
            steps at batch 64), 3e-4 learned (log 32 = 3.47 -> 1.64 in 150 steps at batch 32).
        temperature: InfoNCE temperature.
        encoder: the architecture (width, depth, embed_dim, leaky_slope).
        seed: seeds the initial weights and the sampler.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        on_bad_file: ``skip`` (load the rest, report the bad files) or ``raise``.
        progress: show a progress bar.
    """

    data: str = "???"
    out: str = "???"
    steps: int = 2000
    batch_size: int = 64
    clip_len: int = 8
    max_gap: int = 4
    lr: float = 3e-4
    temperature: float = 0.1
    encoder: VideoEncoderConfig = field(default_factory=VideoEncoderConfig)
    seed: int = 0
    device: str = "auto"
    on_bad_file: str = "skip"
    progress: bool = True

    def validate(self) -> ComparatorPretrainConfig:
        """Raise ValueError naming the first bad field; return self."""
        for name in ("data", "out"):
            if getattr(self, name) in ("???", "", None):
                raise ValueError(f"{name} is required: {name}=PATH")
        for name in ("steps", "max_gap"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected an integer >= 1")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size={self.batch_size!r}; expected >= 2 (the other clips are the negatives)"
            )
        if self.clip_len < 2:
            raise ValueError(f"clip_len={self.clip_len!r}; expected >= 2 (a pair of frames)")
        if not self.lr > 0 or not self.temperature > 0:
            raise ValueError(f"lr={self.lr!r}, temperature={self.temperature!r}; expected > 0")
        if self.on_bad_file not in ("skip", "raise"):
            raise ValueError(f"on_bad_file={self.on_bad_file!r}; expected 'skip' or 'raise'")
        self.encoder.validate()
        return self


def run(cfg: ComparatorPretrainConfig) -> dict[str, Any]:
    """Train the encoder on ``cfg.data`` and save it to ``cfg.out``; returns a summary dict."""
    cfg.validate()
    device = resolve_device(cfg.device)
    dataset = EpisodeDataset(cfg.data, on_error=cfg.on_bad_file)
    for path, reason in dataset.skipped:
        log.warning("skipped %s: %s", path, reason)
    depth_factor = 2**cfg.encoder.depth
    if dataset.image_size % depth_factor:
        raise ValueError(
            f"frames of {dataset.image_size} px are not divisible by 2^encoder.depth = "
            f"{depth_factor}; lower encoder.depth"
        )
    sampler = SequenceSampler(dataset, cfg.clip_len, cfg.batch_size, seed=cfg.seed)
    pair_gen = torch.Generator().manual_seed(cfg.seed + 1)

    def sample_pairs() -> torch.Tensor:
        return pairs_from_clips(sampler.sample().obs, cfg.max_gap, pair_gen)  # (B, 2, 3, H, W)

    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="comparator", unit="step", file=sys.stdout)

    def callback(step: int, loss: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    t0 = time.perf_counter()
    try:
        encoder, history = train_video_encoder(
            sample_pairs,
            cfg.steps,
            cfg.encoder,
            lr=cfg.lr,
            temperature=cfg.temperature,
            device=device,
            seed=cfg.seed,
            callback=callback,
        )
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    if not all(math.isfinite(v) for v in history):
        raise ValueError("the contrastive loss became non-finite; lower lr or raise temperature")

    out = Path(cfg.out)
    encoder.save(out)
    window = max(1, min(50, len(history) // 10))
    summary = {
        "out": str(out),
        "steps": cfg.steps,
        "episodes": dataset.num_episodes,
        "frames": dataset.num_frames,
        "image_size": dataset.image_size,
        "untrained_loss": math.log(cfg.batch_size),
        "first_loss": sum(history[:window]) / window,
        "final_loss": sum(history[-window:]) / window,
        "wall_s": wall,
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "skipped_files": [str(p) for p, _ in dataset.skipped],
        "config": asdict(cfg),
    }
    tmp = out.with_name(out.name + ".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out.with_name(out.name + ".json"))
    return summary


def register_configs() -> None:
    """Register the structured config (``pretrain_comparator_schema``) in hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="pretrain_comparator_schema", node=ComparatorPretrainConfig)


def main() -> None:  # pragma: no cover - thin hydra wrapper, tested through run() and a subprocess
    import hydra
    from omegaconf import OmegaConf

    from wmcommon.cli import exit_on, fail

    register_configs()

    @hydra.main(version_base="1.3", config_path="../configs", config_name="pretrain_comparator")
    def _main(dict_cfg) -> None:
        missing = sorted(OmegaConf.missing_keys(dict_cfg))
        if missing:
            fail(f"{', '.join(missing)} required: {' '.join(f'{key}=PATH' for key in missing)}")
        with exit_on(ValueError, OSError):
            summary = run(OmegaConf.to_object(dict_cfg))
        print(
            f"video encoder ({summary['parameters']:,} parameters) trained for {summary['steps']} "
            f"steps on {summary['episodes']} episodes in {summary['wall_s']:.0f} s: InfoNCE "
            f"{summary['first_loss']:.3f} -> {summary['final_loss']:.3f} (untrained "
            f"{summary['untrained_loss']:.3f}); saved to {summary['out']}\n"
            f"use it: loss.comparator.kind=video_encoder loss.comparator.path={summary['out']}",
            flush=True,
        )

    _main()


if __name__ == "__main__":
    main()
