"""Evaluation report of a world-model checkpoint, side by side with baselines.

    python -m worldmodel.evaluate ckpt=runs/pretrain/X/checkpoints/last.pt data=HELDOUT_DIR
    python -m worldmodel.evaluate ckpt=A.pt data=DIR 'baselines=[B.pt,C.pt]' n_past=2 n_future=10 \
        samples=100 num_videos=256 seed=0 device=cuda
    python -m worldmodel.evaluate ckpt=A.pt data=DIR n_past=2 n_future=14 i3d=i3d_torchscript.pt

Writes ``report.json`` (every number with its protocol), ``summary.md``, per-horizon plots
(``plots/psnr.png``, ``ssim.png``, ``ms_ssim.png``), prediction strips and GIFs (``videos/``) to
``out`` (default: the hydra run directory ``runs/evaluate/<date>``). The options are the fields of
:class:`worldmodel.evaluation.EvaluateConfig`; the work is done by
:func:`worldmodel.evaluation.evaluate`. Clips: every non-overlapping window of the data, at most
``num_videos``; a metric the data does not allow is reported as skipped, with the reason.

Hydra lives only here: :func:`main` turns the composed config into an :class:`EvaluateConfig` and
calls :func:`run`, which tests call directly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from wmcommon.cli import exit_on, preflight, to_dataclass
from worldmodel.evaluation import EvaluateConfig, console_summary, evaluate
from worldmodel.training.checkpoint import CheckpointError

__all__ = ["EvaluateConfig", "register_configs", "run", "main"]


def register_configs() -> None:
    """Register the structured config (``evaluate_schema``) in hydra's ConfigStore."""
    ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


register_configs()


def run(cfg: EvaluateConfig, workdir: str | Path | None = None) -> dict[str, Any]:
    """Evaluate and write the report; ``workdir`` is the output directory when ``cfg.out`` is None."""
    return evaluate(cfg, workdir)


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate")
def main(dict_cfg: DictConfig) -> None:
    cfg: EvaluateConfig = to_dataclass(dict_cfg)
    workdir = HydraConfig.get().runtime.output_dir
    with exit_on(ValueError, OSError, CheckpointError):  # OSError: missing file, full disk
        report = run(cfg, workdir)
    print(console_summary(report, cfg.out or workdir))


def _cli() -> None:
    """A bad override or value: one line and exit 1 before hydra starts; then the hydra app."""
    preflight("evaluate", EvaluateConfig, sys.argv, check=EvaluateConfig.validate)
    main()


if __name__ == "__main__":
    _cli()
