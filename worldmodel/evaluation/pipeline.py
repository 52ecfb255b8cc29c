""":func:`evaluate`: the evaluation as a sequence of named steps.

1. load the models: the checkpoint, the ``baselines`` (each file read once) and copy-last-frame
   (:mod:`~worldmodel.evaluation.candidates`); with ``gam`` and ``gam_fit_steps > 0``, fit each
   checkpoint a discriminator on ``gam_fit_data`` (:mod:`~worldmodel.evaluation.judges`);
2. take the clips: every non-overlapping window of ``n_past + n_future`` frames, at most
   ``num_videos`` of them (:mod:`~worldmodel.evaluation.clips`);
3. plan the metrics: which requested metrics these clips allow, the others skipped with the reason
   (:func:`~worldmodel.evaluation.scoring.plan_metrics`);
4. score every model on the same clips with the same seeds
   (:func:`~worldmodel.evaluation.scoring.score_candidate`; copy-last-frame from the
   :class:`~worldmodel.evaluation.cache.BaselineCache` when one is given);
5. GAM between the checkpoints with discriminators (:mod:`~worldmodel.evaluation.battles`);
6. write ``report.json``, ``summary.md``, the plots and the videos.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from worldmodel.data import EpisodeDataset
from worldmodel.device import resolve_device
from worldmodel.evaluation.battles import gam_battles
from worldmodel.evaluation.cache import BaselineCache
from worldmodel.evaluation.candidates import Candidate, load_candidates
from worldmodel.evaluation.clips import Clips, clips_up_to, describe_selection
from worldmodel.evaluation.codec import to_jsonable, write_json
from worldmodel.evaluation.config import COPY_LAST, REPORT_FORMAT, EvaluateConfig
from worldmodel.evaluation.judges import fit_judges
from worldmodel.evaluation.media import write_media
from worldmodel.evaluation.predictions import Predictions
from worldmodel.evaluation.scoring import CandidateResult, MetricPlan, plan_metrics, score_candidate
from worldmodel.evaluation.summary import markdown

__all__ = ["evaluate"]

log = logging.getLogger(__name__)


def evaluate(
    cfg: EvaluateConfig,
    workdir: str | Path | None = None,
    *,
    baseline_cache: BaselineCache | None = None,
) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt`` (and the baselines) on ``cfg.data``; write the report files.

    Args:
        cfg: the evaluation settings (validated here, before any expensive work).
        workdir: output directory when ``cfg.out`` is None (the hydra run directory).
        baseline_cache: reuse copy-last-frame results across calls with the same protocol.

    Returns:
        The report (also written to ``<out>/report.json``; see :mod:`worldmodel.evaluation`).

    Raises:
        FileNotFoundError: missing checkpoint, data directory or I3D weights.
        ValueError: bad settings, data that does not fit a model (frame size, action size), or
            clips longer than every episode. A metric the clips do not allow (e.g. a Frechet
            distance from too few clips) is not an error: it is listed in ``skipped``.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    dataset = EpisodeDataset(cfg.data)
    cands = load_candidates(cfg, dataset, device)
    if "gam" in cfg.metrics and cfg.gam_fit_steps > 0:
        fit_judges(cands, cfg, device)
    clips = clips_up_to(dataset, cfg.n_past + cfg.n_future, cfg.num_videos, cfg.seed)
    plan = plan_metrics(cfg, clips, device)
    scored = [_score(c, clips, plan, cfg, device, baseline_cache) for c in cands]
    predictions = {r.label: r.predictions for r in scored}
    battles, gam_skipped = [], {}
    if "gam" in cfg.metrics:
        battles, gam_skipped = gam_battles(cands, clips, predictions, cfg, device)
    skipped = {**plan.skipped, **{k: v for r in scored for k, v in r.skipped.items()}}
    report = _assemble(cfg, device, clips, scored, battles, {**skipped, **gam_skipped})
    _write(report, clips, predictions, cfg, Path(cfg.out or workdir or "."))
    return to_jsonable(report)


def _score(
    cand: Candidate,
    clips: Clips,
    plan: MetricPlan,
    cfg: EvaluateConfig,
    device: torch.device,
    cache: BaselineCache | None,
) -> CandidateResult:
    """Score one model; copy-last-frame through the cache when there is one."""
    if cand.kind != COPY_LAST or cache is None:
        log.info("evaluating %s", cand.label)
        return score_candidate(cand, clips, plan, cfg, device)
    key = cache.key(cfg, clips, device)
    if key in cache:
        log.info("%s: reusing its evaluation on the same clips and settings", cand.label)
    else:
        log.info("evaluating %s", cand.label)
    return cache.get(key, lambda: score_candidate(cand, clips, plan, cfg, device))


def _assemble(
    cfg: EvaluateConfig,
    device: torch.device,
    clips: Clips,
    scored: Sequence[CandidateResult],
    battles: list[dict[str, Any]],
    skipped: Mapping[str, str],
) -> dict[str, Any]:
    """The report dict (without ``files``): config, protocol, models, results, GAM, skipped."""
    h, w = clips.obs.shape[-2:]
    return {
        "format": REPORT_FORMAT,
        "candidate": scored[0].label,
        "config": dataclasses.asdict(cfg),
        "protocol": {
            "context_frames": cfg.n_past,
            "predicted_frames": cfg.n_future,
            "samples_per_video": cfg.samples,
            "num_videos": len(clips),
            "clips_available": clips.available,
            "clip_selection": describe_selection(
                clips, cfg.n_past + cfg.n_future, cfg.num_videos, cfg.seed
            ),
            "dataset": str(cfg.data),
            "dataset_resolved": str(Path(cfg.data).resolve()),
            "frame_size": [int(h), int(w)],
            "seed": cfg.seed,
            "feedback": cfg.feedback,
            "clips": [{"episode": s, "start": t} for s, t in clips.sources],
            "device": str(device),
            "torch": torch.__version__,
        },
        "models": {r.label: r.model for r in scored},
        "results": {r.label: r.results for r in scored},
        "gam": battles,
        "skipped": dict(skipped),
        "notes": [
            "non-finite numbers are written as the strings 'inf', '-inf', 'nan'",
            "every number carries its protocol; 'best' = best of N samples per video, 'mean' = "
            "mean over samples: compare like with like",
            "num_videos is the number of clips used; config.num_videos is the cap",
        ],
    }


def _write(
    report: dict[str, Any],
    clips: Clips,
    predictions: Mapping[str, Predictions],
    cfg: EvaluateConfig,
    out: Path,
) -> None:
    """Plots and videos (their paths go into ``report["files"]``), report.json, summary.md."""
    out.mkdir(parents=True, exist_ok=True)
    report["files"] = write_media(report, clips, predictions, cfg, out)
    write_json(out / "report.json", report)
    (out / "summary.md").write_text(markdown(report))
