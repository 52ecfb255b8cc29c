"""The evaluation report's public names, kept importable from here.

The code lives in :mod:`worldmodel.evaluation` (one module per job: clips, candidates, scoring,
GAM, JSON, plots, media, summary and the :func:`evaluate` pipeline). ``from worldmodel.report
import evaluate, EvaluateConfig, protocol_matches, ...`` keeps working.
"""

from __future__ import annotations

from worldmodel.evaluation import (
    COPY_LAST,
    IMAGE_METRICS,
    METRICS,
    REPORT_FORMAT,
    Clips,
    EvaluateConfig,
    copy_last_frame,
    evaluate,
    load_discriminator,
    number,
    plot_horizon,
    plot_scaling,
    protocol_matches,
    read_json,
    select_clips,
    to_jsonable,
    write_json,
)

__all__ = [
    "REPORT_FORMAT",
    "METRICS",
    "IMAGE_METRICS",
    "COPY_LAST",
    "EvaluateConfig",
    "Clips",
    "select_clips",
    "copy_last_frame",
    "load_discriminator",
    "evaluate",
    "plot_horizon",
    "plot_scaling",
    "to_jsonable",
    "write_json",
    "read_json",
    "number",
    "protocol_matches",
]
