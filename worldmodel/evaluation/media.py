"""The pictures of a report: horizon plots, labelled prediction strips and GIFs (``plots/``,
``videos/``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from worldmodel.evaluation.clips import Clips
from worldmodel.evaluation.config import IMAGE_METRICS, EvaluateConfig
from worldmodel.evaluation.plots import figure, plot_horizon
from worldmodel.evaluation.predictions import Predictions
from worldmodel.viz import prediction_strip, prediction_video, write_gif

__all__ = ["safe_name", "write_media"]


def safe_name(label: str) -> str:
    """A label as a file-name part (anything but ``A-Za-z0-9_.-`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)


def _labelled_strip(rows: list[Tensor], labels: list[str], n_past: int, path: Path) -> Path:
    """A prediction strip (:func:`~worldmodel.viz.prediction_strip`) with its rows and columns
    labelled: rows by model and sample, columns by frame (``c1..`` context, ``+1..`` predicted)."""
    image = prediction_strip(rows)  # (R * (H + 2), L * (W + 2), 3) uint8
    length, _, h, w = rows[0].shape
    scale = max(1.0, 48.0 / h)  # small frames are enlarged (nearest neighbour)
    height_px, width_px = image.shape[0] * scale, image.shape[1] * scale
    margin = 7 * max(len(s) for s in labels) + 50  # room for the row labels
    fig = figure((width_px + margin) / 100, (height_px + 45) / 100)
    ax = fig.add_subplot()
    ax.imshow(image, interpolation="nearest")
    ax.set_yticks([(i + 0.5) * (h + 2) for i in range(len(rows))], labels, fontsize=7)
    cols = [f"c{t + 1}" for t in range(n_past)] + [f"+{t + 1}" for t in range(length - n_past)]
    ax.set_xticks([(t + 0.5) * (w + 2) for t in range(length)], cols, fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.05)  # keep the labels
    return path


def write_media(
    report: Mapping[str, Any],
    clips: Clips,
    predictions: Mapping[str, Predictions],
    cfg: EvaluateConfig,
    out: Path,
) -> dict[str, Any]:
    """Horizon plots, prediction strips and GIFs; returns the written paths (relative to out)."""
    files: dict[str, Any] = {"plots": [], "strips": [], "gifs": []}
    for m in IMAGE_METRICS:
        if any(m in r for r in report["results"].values()):
            p = plot_horizon(report, m, out / "plots" / f"{m}.png")
            files["plots"].append(str(p.relative_to(out)))
    n_show = min(cfg.visualize, len(clips))
    rows_legend = ["truth"]
    for label, pred in predictions.items():
        k = min(cfg.samples_shown, pred.samples)
        rows_legend += [f"{label} sample {s + 1}" for s in range(k)] if k > 1 else [label]
    files["strip_rows"] = rows_legend
    for v in range(n_show):
        full = clips.obs[v].float() / 255.0  # (L, C, H, W)
        context, truth = full[: cfg.n_past], full[cfg.n_past :]
        rows = [full]
        for label, pred in predictions.items():
            shown = pred.shown[v].float() / 255.0  # (k, T, C, H, W)
            rows += list(shown)
            video = prediction_video(context, truth, shown)
            g = write_gif(out / "videos" / f"clip{v:03d}_{safe_name(label)}.gif", video, cfg.fps)
            files["gifs"].append(str(g.relative_to(out)))
        p = _labelled_strip(rows, rows_legend, cfg.n_past, out / "videos" / f"clip{v:03d}.png")
        files["strips"].append(str(p.relative_to(out)))
    return files
