"""Offline pretraining of the video world model on a directory of episodes.

    python -m worldmodel.pretrain data=DIR model=svg model.M=1 model.K=1 loss=mse steps=N
    python -m worldmodel.pretrain data=DIR resume=true hydra.run.dir=runs/my_run   # continue
    torchrun --nproc_per_node=2 -m worldmodel.pretrain data=DIR hydra.run.dir=runs/ddp   # DDP
    python -m worldmodel.pretrain -m model.M=1,2,3 model.K=1,2 data=DIR steps=N   # M/K sweep

The episode directory comes from ``python -m envs.collect`` (frames, actions, rewards) or from
``python -m envs.import_video`` (frames only: the action and reward parts of the model are then
simply absent). Writes ``<run dir>/checkpoints/last.pt``, TensorBoard logs in ``<run dir>/tb`` and
``<run dir>/summary.json``.

Hydra lives only here: :func:`main` turns the composed config into :class:`PretrainConfig` and
calls :func:`run`, which tests call directly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from worldmodel.antiblur.adversarial import AntiBlurConfig
from worldmodel.data import EpisodeDataset, SequenceSampler
from worldmodel.device import resolve_device
from worldmodel.model.svg import ModelConfig, WorldModel
from worldmodel.training.distributed import DistInfo, broadcast_object, init_from_env, shutdown
from worldmodel.training.run_dir import RunDirectory, add_video
from worldmodel.training.train import (
    ObjectiveConfig,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    predict,
)
from worldmodel.training.training_setup import build_trainer, resolve_model_config
from worldmodel.viz import prediction_strip

log = logging.getLogger("worldmodel.pretrain")

__all__ = ["PretrainConfig", "run", "main"]


@dataclass
class PretrainConfig:
    """Everything ``python -m worldmodel.pretrain`` reads (configs/pretrain.yaml).

    Attributes:
        data: directory of episode ``.npz`` files (required).
        model: architecture (group ``model/``: svg | lstm | cnn | tiny).
        objective: base ELBO weights (reconstruction, beta, free nats, reward, latent).
        loss: anti-blur losses (group ``loss/``: mse = plain SVG, full = GDL + adversarial + DeePSiM).
        train: optimiser, batch, sequence length, context frames, precision.
        steps: optimisation steps in total (a resumed run continues up to this number).
        device: ``auto`` (cuda when present, else cpu), ``cpu``, ``cuda``, ``cuda:1`` ...
        out: output directory; ``None`` uses hydra's run directory.
        resume: continue from ``<out>/checkpoints/last.pt`` at its step.
        log_every / video_every / ckpt_every: intervals in steps (0 disables videos).
        ckpt_every_s: also checkpoint when this many seconds of training have passed since the
            last checkpoint (whichever of ``ckpt_every`` and ``ckpt_every_s`` comes first), so a
            killed CPU run loses at most this much work; 0 disables the time rule.
        use_actions: condition on the episodes' actions (and learn their rewards); false trains
            the same model action-free (the ablation "does the model use its actions?"), as for
            imported video.
        video_samples: prior samples shown per sequence in the prediction strips.
        precise_bn: before every checkpoint, the BatchNorm running statistics are recomputed
            as the average over this many training batches under the current weights
            (:meth:`~worldmodel.training.train.Trainer.recalibrate_batchnorm`; batches from a
            sampler of their own, so training itself is unchanged); 0 keeps the running averages.
        on_bad_file: ``skip`` (load the rest, report the bad files) or ``raise``.
        progress: show a progress bar.
    """

    data: str = "???"
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    loss: AntiBlurConfig = field(default_factory=AntiBlurConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    steps: int = 10_000
    device: str = "auto"
    out: str | None = None
    resume: bool = False
    log_every: int = 25
    video_every: int = 500
    ckpt_every: int = 500
    ckpt_every_s: float = 600.0
    use_actions: bool = True
    video_samples: int = 2
    precise_bn: int = 50
    on_bad_file: str = "skip"
    progress: bool = True

    def validate(self) -> PretrainConfig:
        if self.data in ("???", "", None):
            raise ValueError("data is required: data=DIR (a directory of episode .npz files)")
        for name in ("steps", "log_every", "ckpt_every", "video_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected an integer >= 1")
        if not self.ckpt_every_s >= 0:  # NaN too
            raise ValueError(
                f"ckpt_every_s={self.ckpt_every_s!r}; expected seconds >= 0 (0 disables)"
            )
        if self.precise_bn < 0:
            raise ValueError(f"precise_bn={self.precise_bn!r}; expected >= 0 (0 disables)")
        if self.video_every < 0:
            raise ValueError(f"video_every={self.video_every!r}; expected >= 0 (0 disables)")
        if self.on_bad_file not in ("skip", "raise"):
            raise ValueError(f"on_bad_file={self.on_bad_file!r}; expected 'skip' or 'raise'")
        self.model.validate()
        self.train.validate()
        self.objective.validate()
        self.loss.validate()
        return self


def _log_scalars(writer: Any, logs: dict[str, float], step: int) -> None:
    for key, value in logs.items():
        if key in ("step",):
            continue
        tag = key if "/" in key else f"train/{key}"
        writer.add_scalar(tag, value, step)


@torch.no_grad()
def _log_predictions(writer: Any, trainer: Trainer, batch: Any, cfg: PretrainConfig, step: int):
    """Predicted-vs-true strip and video of the first sequences of ``batch`` (prior samples)."""
    model = trainer.model
    batch = batch.to(trainer.device)
    n_past = cfg.train.n_past
    n_future = batch.obs.shape[1] - n_past
    obs = batch.obs[:2].float() / 255
    action = None if batch.action is None else batch.action[:2]
    gen = torch.Generator(device=trainer.device).manual_seed(step)
    pred = predict(model, obs, action, n_past, n_future, cfg.video_samples, gen)  # (2,S,T,3,H,W)
    for i in range(pred.shape[0]):
        rows = [obs[i]] + [pred[i, s] for s in range(pred.shape[1])]
        writer.add_image(f"predictions/seq{i}", prediction_strip(rows), step, dataformats="HWC")
    video = torch.cat([obs[0, n_past:], *pred[0]], dim=-1)  # truth | samples side by side
    add_video(writer, "predictions/video", video.unsqueeze(0).cpu(), step, fps=4)


@torch.no_grad()
def _rank_checksums(model: torch.nn.Module, info: DistInfo) -> list[float]:
    """A float64 checksum of the weights on every rank (DDP must keep them identical)."""
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    for i, p in enumerate(model.parameters()):
        total += (p.detach().double() * (1.0 + 1e-3 * i)).sum()
    if not info.enabled:
        return [total.item()]
    gathered = [torch.zeros_like(total) for _ in range(info.world_size)]
    torch.distributed.all_gather(gathered, total)
    return [g.item() for g in gathered]


def run(cfg: PretrainConfig, workdir: str | Path | None = None) -> dict[str, Any]:
    """Train on ``cfg.data`` for ``cfg.steps`` steps; returns a summary dict.

    ``workdir`` is where checkpoints and logs go (``cfg.out`` wins when set).
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    info, device = init_from_env(device)
    try:
        return _run(cfg, workdir, device, info)
    finally:
        shutdown(info)


def _run(cfg: PretrainConfig, workdir, device: torch.device, info: DistInfo) -> dict[str, Any]:
    out = Path(cfg.out or workdir or ".").resolve()
    out = Path(broadcast_object(str(out), info))  # every rank uses rank 0's directory
    ckpt_path = out / "checkpoints" / "last.pt"

    dataset = EpisodeDataset(cfg.data, on_error=cfg.on_bad_file)
    for path, reason in dataset.skipped:
        log.warning("skipped %s: %s", path, reason)
    # each rank draws its own batches (seed offset by rank): data parallelism over the sampler
    sampler = SequenceSampler(
        dataset,
        cfg.train.seq_len,
        cfg.train.batch_size,
        seed=cfg.train.seed + 1000 * info.rank,
        pin_memory=device.type == "cuda",
    )
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    model_cfg = resolve_model_config(cfg.model, cfg.loss)  # loss-driven decoder options
    action_dim = (dataset.action_dim or 0) if cfg.use_actions else 0
    model = WorldModel(model_cfg, dataset.image_size, action_dim).to(device)
    trainer = build_trainer(model, cfg.train, cfg.objective, cfg.loss, device)

    start_step = 0
    if cfg.resume and ckpt_path.exists():
        extra = trainer.load(ckpt_path)
        if "sampler_rng" in extra and not info.enabled:
            sampler.generator.set_state(extra["sampler_rng"])
        start_step = trainer.global_step
        log.info("resumed from %s at step %d", ckpt_path, start_step)
    elif cfg.resume:
        log.warning("resume=true but %s does not exist: starting from scratch", ckpt_path)

    writer = run_dir = None
    if info.is_main:
        run_dir = RunDirectory(out, subdirs=(ckpt_path.parent,))
        n_params = model.num_params()
        writer = run_dir.open_writer(cfg, start_step, parameters=n_params)
        print(
            f"model {cfg.model.variant} M={cfg.model.M} K={cfg.model.K}: {n_params:,} parameters; "
            f"data {dataset.num_episodes} episodes / {dataset.num_frames:,} frames "
            f"{dataset.image_size}px, actions={action_dim}, "
            f"rewards={dataset.has_reward}; device {device}"
            f"{f' x {info.world_size} ranks' if info.enabled else ''}; "
            f"precision {trainer.amp_dtype or torch.float32}",
            flush=True,
        )

    # batches for the BatchNorm statistics: a sampler of their own (the training order is unchanged)
    bn_seed = cfg.train.seed + 7919 + 1000 * info.rank
    bn_sampler = SequenceSampler(dataset, cfg.train.seq_len, cfg.train.batch_size, seed=bn_seed)

    def save() -> None:
        if cfg.precise_bn:
            # the same batches at the same step, whether the run was resumed or not
            bn_sampler.generator.manual_seed(bn_seed + trainer.global_step)
            batches = (bn_sampler.sample() for _ in range(cfg.precise_bn))
            if not cfg.use_actions:
                batches = (dataclasses.replace(b, action=None, reward=None) for b in batches)
            trainer.recalibrate_batchnorm(batches, seed=bn_seed + trainer.global_step)
        if info.is_main:
            trainer.save(
                ckpt_path,
                extra={
                    "sampler_rng": sampler.generator.get_state(),
                    "data": str(cfg.data),
                    # the discriminator's architecture (GAM rebuilds it from the checkpoint
                    # alone: a run directory made with out=... has no .hydra/config.yaml)
                    "config": {"loss": dataclasses.asdict(cfg.loss)},
                },
            )

    bar = None
    if run_dir is not None and cfg.progress:
        bar = run_dir.open_bar(
            total=cfg.steps, initial=start_step, desc="pretrain", unit="step", file=sys.stdout
        )
    t0, frames, last_logs = time.perf_counter(), 0, {}
    last_save = t0
    step = start_step
    try:
        while step < cfg.steps:
            batch = sampler.sample()
            if not cfg.use_actions:
                batch = dataclasses.replace(batch, action=None, reward=None)
            logs = trainer.step(batch)
            if logs["nonfinite"]:
                if writer is not None:
                    writer.add_scalar("train/nonfinite_total", trainer.total_nonfinite, step)
                log.warning("non-finite loss at step %d: step skipped", step)
                continue
            step = trainer.global_step
            frames += batch.obs.shape[0] * batch.obs.shape[1] * info.world_size
            last_logs = logs
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{logs['loss']:.4g}", refresh=False)
            if writer is not None and step % cfg.log_every == 0:
                _log_scalars(writer, logs, step)
                writer.add_scalar("perf/frames_per_s", frames / (time.perf_counter() - t0), step)
            if writer is not None and cfg.video_every and step % cfg.video_every == 0:
                _log_predictions(writer, trainer, batch, cfg, step)
            # the time rule: rank 0's clock decides (checked every log_every steps under DDP)
            due = cfg.ckpt_every_s > 0 and time.perf_counter() - last_save >= cfg.ckpt_every_s
            if info.enabled:
                due = step % cfg.log_every == 0 and broadcast_object(due, info)
            if step % cfg.ckpt_every == 0 or due:
                save()
                last_save = time.perf_counter()
    except TrainingDiverged:
        log.error("training diverged; the last good checkpoint is %s", ckpt_path)
        raise
    finally:
        if run_dir is not None:
            run_dir.close()  # the bar and the writer (nothing is logged after this point)
    save()
    elapsed = time.perf_counter() - t0
    checksums = _rank_checksums(model, info)
    summary = {
        "steps": step,
        "start_step": start_step,
        "parameters": model.num_params(),
        "final_loss": last_logs.get("loss", math.nan),
        "loss_terms": {k: v for k, v in last_logs.items() if k.startswith("loss/")},
        "nonfinite_steps": trainer.total_nonfinite,
        "frames_per_s": frames / elapsed if elapsed > 0 else math.nan,
        "wall_s": elapsed,
        "checkpoint": str(ckpt_path),
        "skipped_files": [str(p) for p, _ in dataset.skipped],
        "world_size": info.world_size,
        "rank_checksums": checksums,
        "ranks_in_sync": len(set(checksums)) == 1,
    }
    if run_dir is not None:
        run_dir.write_summary(summary)
    return summary


def register_configs() -> None:
    """Register the structured config (``pretrain_schema``) in hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="pretrain_schema", node=PretrainConfig)


def main() -> None:  # pragma: no cover - thin hydra wrapper, tested through run()
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf.errors import MissingMandatoryValue

    from wmcommon.cli import exit_on, preflight, to_dataclass
    from worldmodel.training.checkpoint import CheckpointError

    register_configs()
    # a bad override or value: one line and exit 1, before hydra creates the run directory
    preflight("pretrain", PretrainConfig, sys.argv, check=PretrainConfig.validate)

    @hydra.main(version_base="1.3", config_path="../configs", config_name="pretrain")
    def _main(dict_cfg) -> None:
        # OSError: a missing data directory, an unwritable output directory, a full disk
        with exit_on(ValueError, OSError, CheckpointError, TrainingDiverged, MissingMandatoryValue):
            run(to_dataclass(dict_cfg), HydraConfig.get().runtime.output_dir)

    _main()


if __name__ == "__main__":
    main()
