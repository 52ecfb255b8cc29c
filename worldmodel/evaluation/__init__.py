"""Evaluation reports for video world models, with the protocol written next to every number.

:func:`evaluate` is what ``python -m worldmodel.evaluate`` runs (see :class:`EvaluateConfig`):

1. The held-out episodes are cut into non-overlapping clips of ``n_past + n_future`` frames; all
   of them are used, up to ``num_videos`` (drawn with a generator seeded by ``seed`` when the data
   holds more). The report states how many clips were used and how they were chosen; every model
   sees exactly these clips.
2. Every model -- the checkpoint, the ``baselines`` checkpoints and the copy-last-frame baseline --
   observes the ``n_past`` context frames (and the actions) and predicts ``n_future`` frames, S
   samples per clip from the learned prior, with a fresh generator seeded by ``seed`` per model.
3. Metrics (:mod:`worldmodel.metrics`):

   * PSNR, SSIM, MS-SSIM per predicted time step, the mean over the S samples AND the best of S
     (SVG's protocol: per video, the sample with the best time-averaged value);
   * SWD between the predicted frames (sample 0 of each clip) and the true future frames;
   * a Frechet distance between real clips and generated clips (the real context followed by sample
     0): "FVD" only with the reference I3D weights (``i3d=PATH``), otherwise "FD-<network>" of a
     fixed random 3-D conv net (:class:`~worldmodel.metrics.RandomConv3dFeatures`);
   * sample diversity: mean pairwise MS-SSIM between the S samples (lower = more diverse);
   * GRAN's GAM between every two checkpoints that carry a discriminator.

   A requested metric that cannot be computed (a Frechet distance from no more clips than feature
   dimensions, diversity of a deterministic model, GAM without two discriminators) is listed in
   ``skipped`` with the reason; the others are reported.
4. Outputs in ``out``: ``report.json`` (every number with its :class:`~worldmodel.metrics.Protocol`),
   ``summary.md``, ``plots/<metric>.png`` (metric against the predicted time step, one line per
   model, solid = mean, dashed = best of S), ``videos/clip<i>.png`` (strips: the true clip, then
   each model's samples under the frames they predict) and ``videos/clip<i>_<model>.gif``
   (truth | sample 1 | ... with the context shown in every panel).

JSON has no infinity: non-finite numbers (e.g. the PSNR of identical frames) are written as the
strings ``"inf"``, ``"-inf"`` and ``"nan"``; :func:`number` reads them back.

One job per module:

================  ==============================================================================
``config``        :class:`EvaluateConfig`, the metric names, :func:`protocol_matches`
``clips``         which windows of the episodes are scored (:func:`clips_up_to`)
``candidates``    the models: checkpoints (each file read once), discriminators, copy-last-frame
``predictions``   one model's pass over the clips (:func:`copy_last_frame` is the baseline)
``scoring``       which metrics the clips allow; one model's numbers, each with its protocol
``battles``       GAM between checkpoints with discriminators
``cache``         copy-last-frame evaluated once per protocol (:class:`BaselineCache`)
``codec``         strict JSON (:func:`write_json`, :func:`read_json`, :func:`number`)
``plots``         :func:`plot_horizon`, :func:`plot_scaling`
``media``         prediction strips and GIFs
``summary``       ``summary.md`` and the console lines
``pipeline``      :func:`evaluate`, the steps above in order
================  ==============================================================================

Plain PyTorch + matplotlib (Agg canvas, no pyplot): no hydra, so library code and the sweep report
(:mod:`worldmodel.sweep_report`) call it directly.
"""

from __future__ import annotations

from worldmodel.evaluation.cache import BaselineCache
from worldmodel.evaluation.candidates import load_discriminator
from worldmodel.evaluation.clips import Clips, clips_up_to, describe_selection, select_clips
from worldmodel.evaluation.codec import number, read_json, to_jsonable, write_json
from worldmodel.evaluation.config import (
    COPY_LAST,
    IMAGE_METRICS,
    METRICS,
    PROTOCOL_FIELDS,
    REPORT_FORMAT,
    EvaluateConfig,
    protocol_matches,
)
from worldmodel.evaluation.pipeline import evaluate
from worldmodel.evaluation.plots import plot_horizon, plot_scaling
from worldmodel.evaluation.predictions import copy_last_frame
from worldmodel.evaluation.summary import console_summary, markdown

__all__ = [
    "REPORT_FORMAT",
    "METRICS",
    "IMAGE_METRICS",
    "COPY_LAST",
    "PROTOCOL_FIELDS",
    "EvaluateConfig",
    "BaselineCache",
    "Clips",
    "select_clips",
    "clips_up_to",
    "describe_selection",
    "copy_last_frame",
    "load_discriminator",
    "evaluate",
    "plot_horizon",
    "plot_scaling",
    "markdown",
    "console_summary",
    "to_jsonable",
    "write_json",
    "read_json",
    "number",
    "protocol_matches",
]
