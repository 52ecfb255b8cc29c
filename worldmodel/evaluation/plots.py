"""Plots of reports: metrics against the predicted time step (:func:`plot_horizon`) and against
the parameter count (:func:`plot_scaling`, the capacity sweep).

Matplotlib on the Agg canvas (:func:`figure`; no pyplot, no global backend change).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from worldmodel.evaluation.codec import number
from worldmodel.evaluation.config import COPY_LAST

__all__ = ["METRIC_TITLES", "figure", "plot_horizon", "plot_scaling"]


def figure(width: float, height: float) -> Any:
    """A matplotlib figure on the Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finite(values: Sequence[float]) -> list[float]:
    return [v if v is not None and math.isfinite(v) else math.nan for v in values]


METRIC_TITLES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "ms_ssim": "MS-SSIM"}


def plot_horizon(report: Mapping[str, Any], metric: str, path: str | Path) -> Path:
    """Plot ``metric`` against the predicted time step, one line per model (mean and best of S).

    Args:
        report: a report as returned by :func:`evaluate` (or read from its JSON).
        metric: ``psnr`` | ``ssim`` | ``ms_ssim``.
        path: the PNG to write.
    """
    from matplotlib.ticker import MaxNLocator

    proto = report["protocol"]
    fig = figure(7.0, 4.5)
    ax = fig.add_subplot()
    colors = [f"C{i}" for i in range(10)]
    infinite = False
    for i, (label, res) in enumerate(report["results"].items()):
        entry = res.get(metric)
        if entry is None:
            continue
        color = colors[i % len(colors)]
        mean = [number(v) for v in entry["mean"]["curve"]]
        best = [number(v) for v in entry["best"]["curve"]]
        infinite |= any(v is not None and math.isinf(v) for v in mean + best)
        steps = list(range(1, len(mean) + 1))
        s = entry["mean"]["protocol"]["samples_per_video"]
        name = f"{label}: mean of {s}" if s > 1 else label
        ax.plot(steps, _finite(mean), "-o", ms=3, color=color, label=name)
        if s > 1:
            ax.plot(steps, _finite(best), "--", color=color, label=f"{label}: best of {s}")
    ax.set_xlabel(f"predicted frame (steps after the {proto['context_frames']} context frames)")
    ax.set_ylabel(METRIC_TITLES.get(metric, metric))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = (
        f"{METRIC_TITLES.get(metric, metric)}: {proto['context_frames']} context -> "
        f"{proto['predicted_frames']} predicted frames, {proto['num_videos']} videos"
    )
    if infinite:
        title += "\n(infinite values, i.e. identical frames, are not drawn)"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _short(value: Any) -> str:
    """``1.0 -> "1"``, ``1.5 -> "1.5"``, anything else as str."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def plot_scaling(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[tuple[str, str]],
    path: str | Path,
    baseline: Mapping[str, Any] | None = None,
    title: str = "",
) -> Path | None:
    """Metrics against the parameter count (log x), one panel per metric, one point per run.

    Args:
        rows: runs with ``parameters``, ``M``, ``K`` and the metric columns (numbers or None).
        metrics: ``(column, axis label)`` per panel; a column ``<m>/mean`` is drawn with its
            ``<m>/best`` companion (dashed) when present.
        path: the PNG to write.
        baseline: a row whose metric values are drawn as horizontal dotted lines (copy-last-frame).
        title: the figure title (the evaluation protocol).

    Returns:
        The path, or None when no run has a parameter count and a value (nothing to draw).
    """
    panels = [
        (col, label)
        for col, label in metrics
        if any(number(r.get(col)) is not None and r.get("parameters") for r in rows)
    ]
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = figure(4.2 * ncols, 3.4 * nrows + 0.5)
    for k, (col, label) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        companions = [(col, "-", "o")]
        if col.endswith("/mean"):
            companions.append((col[: -len("mean")] + "best", "--", "s"))
        for c, style, marker in companions:
            by_m: dict[Any, list[tuple[float, float, Any]]] = {}
            for r in rows:
                y, x = number(r.get(c)), r.get("parameters")
                if y is None or not x or not math.isfinite(y):
                    continue
                by_m.setdefault(r.get("M"), []).append((float(x), y, r.get("K")))
            for i, (m, pts) in enumerate(sorted(by_m.items(), key=lambda kv: str(kv[0]))):
                pts.sort()
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                kind = "best" if c.endswith("/best") else ("mean" if c.endswith("/mean") else "")
                lbl = f"M={_short(m)}" + (f" ({kind})" if kind else "")
                ax.plot(xs, ys, style, marker=marker, color=f"C{i % 10}", ms=4, label=lbl)
                if c == col:
                    for x, y, kk in pts:
                        ax.annotate(
                            f"K={_short(kk)}",
                            (x, y),
                            fontsize=6,
                            xytext=(3, 3),
                            textcoords="offset points",
                        )
            if baseline is not None and number(baseline.get(c)) is not None and c == col:
                y = number(baseline.get(c))
                if math.isfinite(y):
                    ax.axhline(y, color="gray", ls=":", lw=1, label=COPY_LAST)
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
