"""The human-readable views of a report: ``summary.md`` (:func:`markdown`) and the lines the
command prints (:func:`console_summary`). Both state the clips used and every skipped metric with
its reason."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worldmodel.evaluation.codec import number

__all__ = ["markdown", "console_summary"]

_IMAGE_COLUMNS = (
    ("psnr", "mean"),
    ("psnr", "best"),
    ("ssim", "mean"),
    ("ssim", "best"),
    ("ms_ssim", "mean"),
    ("ms_ssim", "best"),
)


def _clips_line(proto: Mapping[str, Any]) -> str:
    """``12 clips (all 12 non-overlapping windows ...)``; older reports lack the selection."""
    selection = proto.get("clip_selection")
    return f"{proto['num_videos']} clips" + (f" ({selection})" if selection else "")


def markdown(report: Mapping[str, Any]) -> str:
    """``summary.md``: the protocol, one table row per model, GAM, and the skipped metrics."""
    proto = report["protocol"]
    lines = [
        "# Evaluation report",
        "",
        f"- data: `{proto['dataset']}`: {_clips_line(proto)}, seed {proto['seed']}",
        f"- {proto['context_frames']} context frames -> {proto['predicted_frames']} predicted "
        f"frames; {proto['samples_per_video']} samples per clip from the learned prior "
        f"(copy-last-frame: 1)",
        "- image metrics: time-averaged over the predicted frames; `mean` = mean over samples, "
        "`best` = best of the samples per video (SVG's protocol)",
        "",
    ]
    results = report["results"]
    present = [c for c in _IMAGE_COLUMNS if any(c[0] in r for r in results.values())]
    extra = []
    for key, head in (
        ("swd", "SWD x1e3"),
        ("frechet", None),
        ("sharpness", "sharpness"),
        ("diversity", "diversity"),
    ):
        if any(key in r for r in results.values()):
            if head is None:
                head = next(r[key]["name"] for r in results.values() if key in r)
            extra.append((key, head))
    header = ["model", "params", "step"] + [f"{m} {a}" for m, a in present] + [h for _, h in extra]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))

    def fmt(v: Any) -> str:
        x = number(v)
        return "" if x is None else (str(x) if not math.isfinite(x) else f"{x:.4g}")

    for label, res in results.items():
        info = report["models"][label]
        row = [label, f"{info['parameters']:,}", str(info.get("step", ""))]
        row += [fmt(res[m][a]["value"]) if m in res else "" for m, a in present]
        row += [fmt(res[k]["value"]) if k in res else "" for k, _ in extra]
        lines.append("| " + " | ".join(row) + " |")
    for battle in report.get("gam", []):
        lines += [
            "",
            f"GAM {battle['model1']} vs {battle['model2']}: r_test = {fmt(battle['r_test'])}, "
            f"r_samples = {fmt(battle['r_samples'])}, winner: {battle['winner']} "
            f"({battle['explanation']})",
        ]
    if report.get("skipped"):
        lines += ["", "Skipped:"] + [f"- {k}: {v}" for k, v in report["skipped"].items()]
    return "\n".join(lines) + "\n"


def console_summary(report: Mapping[str, Any], out: str | Path) -> str:
    """What ``python -m worldmodel.evaluate`` prints: the protocol, the time-averaged numbers per
    model, GAM, the skipped metrics with their reasons, and where the report is."""
    proto = report["protocol"]

    def fmt(value: Any) -> str:
        x = number(value)
        return "n/a" if x is None else f"{x:.4g}"

    lines = [
        f"{_clips_line(proto)}, {proto['context_frames']} context -> "
        f"{proto['predicted_frames']} predicted frames; time-averaged, mean over samples / best "
        f"of {proto['samples_per_video']} samples (copy-last-frame: 1 sample):"
    ]
    for label, res in report["results"].items():
        parts = [
            f"{m} {fmt(res[m]['mean']['value'])} / {fmt(res[m]['best']['value'])}"
            for m in ("psnr", "ssim", "ms_ssim")
            if m in res
        ]
        parts += [f"SWD {fmt(res['swd']['value'])}"] if "swd" in res else []
        if "frechet" in res:
            parts.append(f"{res['frechet']['name']} {fmt(res['frechet']['value'])}")
        parts += [f"sharpness {fmt(res['sharpness']['value'])}"] if "sharpness" in res else []
        parts += [f"diversity {fmt(res['diversity']['value'])}"] if "diversity" in res else []
        lines.append(f"  {label}: " + ", ".join(parts))
    for battle in report["gam"]:
        lines.append(
            f"  GAM {battle['model1']} vs {battle['model2']}: winner {battle['winner']} "
            f"(r_test {fmt(battle['r_test'])}, McNemar p {fmt(battle.get('test_p'))}, "
            f"r_samples {fmt(battle['r_samples'])})"
        )
    lines += [f"  skipped {key}: {why}" for key, why in report["skipped"].items()]
    lines.append(f"report: {Path(out) / 'report.json'}")
    return "\n".join(lines)
