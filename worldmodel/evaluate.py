"""Evaluation report of a world-model checkpoint, side by side with baselines.

    python -m worldmodel.evaluate ckpt=runs/pretrain/X/checkpoints/last.pt data=HELDOUT_DIR
    python -m worldmodel.evaluate ckpt=A.pt data=DIR 'baselines=[B.pt,C.pt]' n_past=2 n_future=10 \
        samples=100 num_videos=256 seed=0 device=cuda
    python -m worldmodel.evaluate ckpt=A.pt data=DIR n_past=2 n_future=14 i3d=i3d_torchscript.pt

Writes ``report.json`` (every number with its protocol), ``summary.md``, per-horizon plots
(``plots/psnr.png``, ``ssim.png``, ``ms_ssim.png``), prediction strips and GIFs (``videos/``) to
``out`` (default: the hydra run directory ``runs/evaluate/<date>``). The options are the fields of
:class:`worldmodel.report.EvaluateConfig`; the work is done by :func:`worldmodel.report.evaluate`.

Hydra lives only here: :func:`main` turns the composed config into an :class:`EvaluateConfig` and
calls :func:`run`, which tests call directly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from worldmodel.checkpoint import CheckpointError
from worldmodel.report import EvaluateConfig, evaluate, number

__all__ = ["EvaluateConfig", "register_configs", "run", "main"]


def register_configs() -> None:
    """Register the structured config (``evaluate_schema``) in hydra's ConfigStore."""
    ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


register_configs()


def run(cfg: EvaluateConfig, workdir: str | Path | None = None) -> dict[str, Any]:
    """Evaluate and write the report; ``workdir`` is the output directory when ``cfg.out`` is None."""
    return evaluate(cfg, workdir)


def _fmt(value: Any) -> str:
    x = number(value)
    return "n/a" if x is None else f"{x:.4g}"


def _print_summary(report: dict[str, Any], out: str) -> None:
    proto = report["protocol"]
    s = proto["samples_per_video"]
    print(
        f"{proto['num_videos']} clips, {proto['context_frames']} context -> "
        f"{proto['predicted_frames']} predicted frames; time-averaged, mean over samples / best "
        f"of {s} samples (copy-last-frame: 1 sample):"
    )
    for label, res in report["results"].items():
        parts = [
            f"{m} {_fmt(res[m]['mean']['value'])} / {_fmt(res[m]['best']['value'])}"
            for m in ("psnr", "ssim", "ms_ssim")
            if m in res
        ]
        parts += [f"SWD {_fmt(res['swd']['value'])}"] if "swd" in res else []
        parts += (
            [f"{res['frechet']['name']} {_fmt(res['frechet']['value'])}"]
            if "frechet" in res
            else []
        )
        parts += [f"diversity {_fmt(res['diversity']['value'])}"] if "diversity" in res else []
        print(f"  {label}: " + ", ".join(parts))
    for battle in report["gam"]:
        print(
            f"  GAM {battle['model1']} vs {battle['model2']}: winner {battle['winner']} "
            f"(r_test {_fmt(battle['r_test'])}, r_samples {_fmt(battle['r_samples'])})"
        )
    for key, why in report["skipped"].items():
        print(f"  skipped {key}: {why}")
    print(f"report: {Path(out) / 'report.json'}")


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate")
def main(dict_cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(dict_cfg))
    if missing:
        print(f"error: missing required option(s) {', '.join(missing)}", file=sys.stderr)
        sys.exit(1)
    cfg: EvaluateConfig = OmegaConf.to_object(dict_cfg)
    workdir = HydraConfig.get().runtime.output_dir
    try:
        report = run(cfg, workdir)
    except (ValueError, OSError, CheckpointError) as err:  # OSError: missing file, full disk
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    _print_summary(report, cfg.out or workdir)


def _cli() -> None:
    """A bad override or value: one line and exit 1 before hydra starts; then the hydra app."""
    from worldmodel.cli import preflight

    preflight("evaluate", EvaluateConfig, sys.argv, check=EvaluateConfig.validate)
    main()


if __name__ == "__main__":
    _cli()
