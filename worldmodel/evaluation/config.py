"""The evaluation settings (:class:`EvaluateConfig`) and when two reports are comparable.

Every value ``python -m worldmodel.evaluate`` reads is a field of :class:`EvaluateConfig`, defined
once here (``configs/evaluate.yaml`` only adds the hydra run directory). :data:`PROTOCOL_FIELDS`
names the fields that define the numbers; :func:`protocol_matches` compares them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldmodel.metrics.gam import TEST_RULES as GAM_TEST_RULES

__all__ = [
    "REPORT_FORMAT",
    "IMAGE_METRICS",
    "METRICS",
    "COPY_LAST",
    "FEEDBACK",
    "PROTOCOL_FIELDS",
    "EvaluateConfig",
    "protocol_matches",
]

REPORT_FORMAT = "worldmodel-evaluation/1"
IMAGE_METRICS = ("psnr", "ssim", "ms_ssim")
METRICS = (*IMAGE_METRICS, "swd", "frechet", "sharpness", "diversity", "gam")
COPY_LAST = "copy-last-frame"
FEEDBACK = ("decode", "latent")
MISSING = "???"
# Fields of EvaluateConfig that define the numbers: two reports are comparable iff these agree.
PROTOCOL_FIELDS = (
    "n_past",
    "n_future",
    "samples",
    "num_videos",
    "seed",
    "feedback",
    "psnr_max_db",
    "i3d",
    "fd_dim",
    "fd_seed",
    "fd_shrinkage",
)


@dataclass
class EvaluateConfig:
    """Everything ``python -m worldmodel.evaluate`` reads (configs/evaluate.yaml).

    Attributes:
        ckpt: the checkpoint to evaluate (``<run dir>/checkpoints/last.pt`` of a pretraining run).
        data: held-out episode directory (same frame size and action size as the model's).
        n_past: context frames given to every model.
        n_future: frames predicted and scored.
        samples: S, samples per clip from the learned prior (deterministic models give S equal
            samples; the copy-last-frame baseline always gives 1).
        num_videos: the cap on the clips evaluated. The data is cut into non-overlapping windows of
            ``n_past + n_future`` frames; when it holds more than ``num_videos`` of them,
            ``num_videos`` are drawn with ``seed``, otherwise all of them are used. The report
            states the number used and how it was chosen. ``null`` = every window, no cap.
        seed: seeds the clip selection, the prior samples (a fresh generator per model: same
            videos, same seeds), SWD's random patches and projections.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        out: output directory; None = the hydra run directory (or ``workdir`` given to evaluate).
        baselines: more checkpoints evaluated side by side with ``ckpt``.
        metrics: any of ``psnr, ssim, ms_ssim, swd, frechet, sharpness, diversity, gam``
            (``sharpness``: mean image-gradient magnitude of the prediction over the truth's, per
            frame, averaged over samples and clips; 1 = as sharp as the truth, < 1 = blurrier). A requested metric
            the data or the models cannot give (e.g. a Frechet distance from too few clips, GAM
            without two discriminators) is reported as skipped, with the reason.
        i3d: reference I3D weights (TorchScript or state dict, supplied by the user): the Frechet
            distance is then FVD, on clips of exactly 16 frames (``n_past + n_future = 16``).
            Without it the Frechet distance uses a fixed random 3-D conv net and is named
            ``FD-random3dconv...``: comparable between models of this report, never with FVDs.
        batch_size: clips per forward pass.
        feedback: ``decode`` (SVG's generation: decoded frames are re-encoded) or ``latent``.
        psnr_max_db: cap on per-frame PSNR (None: identical frames give ``inf``, reported as such).
        fd_dim, fd_seed: feature size and seed of the random 3-D conv net (the Frechet distance
            needs more clips than feature dimensions, or ``fd_shrinkage > 0``; otherwise it is
            skipped).
        fd_shrinkage: covariance shrinkage of the Frechet distance (0 = none; reported).
        gam_test_tolerance, gam_tie_tolerance: GAM's tolerances on ``r_test`` and ``r_samples``.
        gam_test_rule: when two judges count as equally good on the real test frames: ``ratio``
            (GRAN's rule, ``|r_test - 1| <= gam_test_tolerance``) or ``ratio_or_mcnemar`` (also
            when an exact McNemar test on their test errors gives p >= 0.05: near-perfect judges,
            whose ``r_test`` is a ratio of a few errors in thousands; see
            :func:`worldmodel.metrics.gam.gam`). The p-value is reported under both.
        gam_fit_steps: 0 (default) = GAM with the discriminators saved in the checkpoints (GRAN's
            protocol: each judge trained with its generator). ``> 0`` = every checkpoint gets a
            discriminator fitted after training to its own predictions on ``gam_fit_data``, this
            many steps, the same recipe for all (:mod:`worldmodel.evaluation.judges`): GAM between
            models trained without an adversarial loss.
        gam_fit_data: training episodes for those fits (never ``data``: its true frames are GAM's
            held-out test set).
        gam_fit_clips, gam_fit_batch: clips drawn from ``gam_fit_data`` (predicted once per model)
            and (context, frame) pairs per discriminator step.
        visualize: clips shown as strips and GIFs (0 = none).
        samples_shown: samples per model in the strips and GIFs.
        fps: frames per second of the GIFs.
    """

    ckpt: str = MISSING
    data: str = MISSING
    n_past: int = 2
    n_future: int = 10
    samples: int = 10
    num_videos: int | None = 100
    seed: int = 0
    device: str = "auto"
    out: str | None = None
    baselines: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    i3d: str | None = None
    batch_size: int = 16
    feedback: str = "decode"
    psnr_max_db: float | None = None
    fd_dim: int = 64
    fd_seed: int = 0
    fd_shrinkage: float = 0.0
    gam_test_tolerance: float = 0.2
    gam_tie_tolerance: float = 0.05
    gam_test_rule: str = "ratio"
    gam_fit_steps: int = 0
    gam_fit_data: str | None = None
    gam_fit_clips: int = 256
    gam_fit_batch: int = 64
    visualize: int = 4
    samples_shown: int = 3
    fps: int = 4

    def validate(self) -> EvaluateConfig:
        """Raise ValueError / FileNotFoundError naming the first bad value; return self."""
        if self.ckpt in (MISSING, "", None):
            raise ValueError("ckpt is required: ckpt=PATH (e.g. <run dir>/checkpoints/last.pt)")
        if self.data in (MISSING, "", None):
            raise ValueError("data is required: data=DIR (a directory of held-out episodes)")
        self.check_settings()
        for what, path in [("ckpt", self.ckpt)] + [("baselines", p) for p in self.baselines]:
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"{what}: checkpoint {path} does not exist; pass a file written by "
                    "`python -m worldmodel.pretrain` (<run dir>/checkpoints/last.pt)"
                )
        if self.gam_fit_steps > 0 and "gam" in self.metrics:
            if not self.gam_fit_data or not Path(self.gam_fit_data).is_dir():
                raise FileNotFoundError(
                    f"gam_fit_steps={self.gam_fit_steps} fits a discriminator per checkpoint on "
                    f"training episodes: gam_fit_data={self.gam_fit_data!r} is not a directory; "
                    "pass the training data, e.g. gam_fit_data=<the pretraining data=...>"
                )
            if Path(self.gam_fit_data).resolve() == Path(self.data).resolve():
                raise ValueError(
                    "gam_fit_data is the evaluation data: GAM's test set must be held out from "
                    "the discriminators; pass the training episodes"
                )
        if not Path(self.data).is_dir():
            raise FileNotFoundError(
                f"data: {self.data} is not a directory; pass the held-out episodes, e.g. written by "
                "`python -m envs.collect env=... episodes=... out=DIR`"
            )
        return self

    def check_settings(self) -> EvaluateConfig:
        """Check the protocol and metric settings (not the files); return self."""
        ints = ("n_past", "n_future", "samples", "batch_size", "samples_shown", "fps", "fd_dim")
        for name in ints:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected an integer >= 1")
        if self.num_videos is not None and self.num_videos < 1:
            raise ValueError(f"num_videos={self.num_videos!r}; expected >= 1 or null (all clips)")
        if self.visualize < 0 or self.seed < 0:
            raise ValueError("visualize and seed must be >= 0")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics has duplicates: {self.metrics}")
        if self.feedback not in FEEDBACK:
            raise ValueError(f"feedback={self.feedback!r}; expected one of {FEEDBACK}")
        if not 0.0 <= self.fd_shrinkage <= 1.0:
            raise ValueError(f"fd_shrinkage={self.fd_shrinkage!r}; expected a value in [0, 1]")
        if self.gam_test_tolerance < 0 or self.gam_tie_tolerance < 0:
            raise ValueError("gam_test_tolerance and gam_tie_tolerance must be >= 0")
        if self.gam_test_rule not in GAM_TEST_RULES:
            raise ValueError(
                f"gam_test_rule={self.gam_test_rule!r}; expected one of {GAM_TEST_RULES}"
            )
        if self.gam_fit_steps < 0 or self.gam_fit_clips < 1 or self.gam_fit_batch < 1:
            raise ValueError(
                "gam_fit_steps must be >= 0 (0: the saved discriminators), gam_fit_clips and "
                "gam_fit_batch >= 1"
            )
        if self.i3d and "frechet" in self.metrics and self.n_past + self.n_future != 16:
            raise ValueError(
                f"FVD (i3d=...) uses clips of exactly 16 frames but n_past + n_future = "
                f"{self.n_past + self.n_future}; set e.g. n_past=2 n_future=14, or drop i3d"
            )
        if self.i3d and not Path(self.i3d).is_file():
            raise FileNotFoundError(
                f"i3d: {self.i3d} does not exist; FVD needs the reference Kinetics-400 I3D weights "
                "supplied by you (nothing is downloaded); drop i3d to get FD-random3dconv instead"
            )
        return self


def protocol_matches(report: Mapping[str, Any], cfg: EvaluateConfig) -> tuple[bool, str]:
    """Whether an existing report was made with ``cfg``'s data, protocol and metrics.

    Returns ``(matches, reason)`` with the first difference as the reason.
    """
    old = report.get("config", {})
    if report.get("format") != REPORT_FORMAT:
        return False, f"format {report.get('format')!r}"
    if str(Path(old.get("data", "")).resolve()) != str(Path(cfg.data).resolve()):
        return False, f"data {old.get('data')!r} != {cfg.data!r}"
    for name in PROTOCOL_FIELDS:
        if old.get(name) != getattr(cfg, name):
            return False, f"{name} {old.get(name)!r} != {getattr(cfg, name)!r}"
    missing = set(cfg.metrics) - set(old.get("metrics", []))
    if missing:
        return False, f"metrics {sorted(missing)} not in the report"
    return True, ""
