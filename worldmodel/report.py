"""Evaluation reports for video world models, with the protocol written next to every number.

:func:`evaluate` is what ``python -m worldmodel.evaluate`` runs (see :class:`EvaluateConfig`):

1. ``num_videos`` non-overlapping clips of ``n_past + n_future`` frames are drawn from the held-out
   episodes with a generator seeded by ``seed``; every model sees exactly these clips.
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

4. Outputs in ``out``: ``report.json`` (every number with its :class:`~worldmodel.metrics.Protocol`),
   ``summary.md``, ``plots/<metric>.png`` (metric against the predicted time step, one line per
   model, solid = mean, dashed = best of S), ``videos/clip<i>.png`` (strips: the true clip, then
   each model's samples under the frames they predict) and ``videos/clip<i>_<model>.gif``
   (truth | sample 1 | ... with the context shown in every panel).

JSON has no infinity: non-finite numbers (e.g. the PSNR of identical frames) are written as the
strings ``"inf"``, ``"-inf"`` and ``"nan"``; :func:`number` reads them back.

This module is plain PyTorch + matplotlib (Agg canvas, no pyplot): no hydra, so library code and
the sweep report (:mod:`worldmodel.sweep_report`) can call it directly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from worldmodel.adversarial import AdversarialTrainer, AntiBlurConfig, context_windows
from worldmodel.checkpoint import load_checkpoint
from worldmodel.data import EpisodeDataset
from worldmodel.device import resolve_device
from worldmodel.metrics import (
    I3DFeatures,
    MetricCurve,
    Protocol,
    RandomConv3dFeatures,
    VideoFeatureExtractor,
    diversity,
    feature_statistics,
    frechet_distance,
    gam,
    ms_ssim_settings,
    per_step_metrics,
    swd,
)
from worldmodel.svg import WorldModel
from worldmodel.train import model_from_checkpoint, predict
from worldmodel.viz import prediction_strip, prediction_video, write_gif

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

log = logging.getLogger(__name__)

REPORT_FORMAT = "worldmodel-evaluation/1"
IMAGE_METRICS = ("psnr", "ssim", "ms_ssim")
METRICS = (*IMAGE_METRICS, "swd", "frechet", "diversity", "gam")
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
        num_videos: clips evaluated (non-overlapping windows of ``n_past + n_future`` frames drawn
            with ``seed``); ``null`` = every such window of the data.
        seed: seeds the clip selection, the prior samples (a fresh generator per model: same
            videos, same seeds), SWD's random patches and projections.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        out: output directory; None = the hydra run directory (or ``workdir`` given to evaluate).
        baselines: more checkpoints evaluated side by side with ``ckpt``.
        metrics: any of ``psnr, ssim, ms_ssim, swd, frechet, diversity, gam``.
        i3d: reference I3D weights (TorchScript or state dict, supplied by the user): the Frechet
            distance is then FVD, on clips of exactly 16 frames (``n_past + n_future = 16``).
            Without it the Frechet distance uses a fixed random 3-D conv net and is named
            ``FD-random3dconv...``: comparable between models of this report, never with FVDs.
        batch_size: clips per forward pass.
        feedback: ``decode`` (SVG's generation: decoded frames are re-encoded) or ``latent``.
        psnr_max_db: cap on per-frame PSNR (None: identical frames give ``inf``, reported as such).
        fd_dim, fd_seed: feature size and seed of the random 3-D conv net (the Frechet distance
            needs ``num_videos > fd_dim`` videos, or ``fd_shrinkage > 0``).
        fd_shrinkage: covariance shrinkage of the Frechet distance (0 = none; reported).
        gam_test_tolerance, gam_tie_tolerance: GAM's tolerances on ``r_test`` and ``r_samples``.
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


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class Clips:
    """The evaluation clips: every model sees exactly these.

    Attributes:
        obs: uint8 ``(N, L, 3, H, W)`` with ``L = n_past + n_future``.
        action: float32 ``(N, L-1, A)`` or None (action-free data).
        sources: ``(episode file, first frame)`` of each clip.
    """

    obs: Tensor
    action: Tensor | None
    sources: list[tuple[str, int]]

    def __len__(self) -> int:
        return int(self.obs.shape[0])


def select_clips(dataset: EpisodeDataset, length: int, num: int | None, seed: int) -> Clips:
    """Draw ``num`` distinct non-overlapping clips of ``length`` frames (all of them if None).

    Each episode of ``F`` frames is cut into the windows starting at ``0, length, 2 length, ...``
    (no overlap, so no two clips share a frame); ``num`` of them are drawn without replacement by a
    CPU generator seeded with ``seed`` and kept in file order.

    Raises:
        ValueError: no episode holds ``length`` frames, or fewer than ``num`` clips exist.
    """
    episodes = list(dataset.episodes)
    windows = [
        (i, start)
        for i, ep in enumerate(episodes)
        for start in range(0, ep.num_frames - length + 1, length)
    ]
    if not windows:
        longest = max(ep.num_frames for ep in episodes)
        raise ValueError(
            f"n_past + n_future = {length} frames is longer than every episode of the data (the "
            f"longest has {longest} frames); lower n_past / n_future to at most {longest} frames "
            "in total, or evaluate on longer episodes"
        )
    if num is None:
        chosen = list(range(len(windows)))
    elif num > len(windows):
        raise ValueError(
            f"num_videos={num} but the data offers only {len(windows)} non-overlapping clips of "
            f"{length} frames ({len(episodes)} episodes); set num_videos <= {len(windows)} "
            "(num_videos=null takes them all), shorten the clips or add episodes"
        )
    else:
        gen = torch.Generator().manual_seed(seed)
        chosen = sorted(torch.randperm(len(windows), generator=gen)[:num].tolist())
    obs, action, sources = [], [], []
    for k in chosen:
        i, start = windows[k]
        ep = episodes[i]
        obs.append(torch.from_numpy(ep.obs[start : start + length]).permute(0, 3, 1, 2))
        if ep.action is not None:
            action.append(torch.from_numpy(ep.action[start : start + length - 1]))
        sources.append((ep.describe(), start))
    return Clips(
        obs=torch.stack(obs).contiguous(),
        action=torch.stack(action) if action else None,
        sources=sources,
    )


def copy_last_frame(obs: Tensor, n_past: int, n_future: int) -> Tensor:
    """The copy-last-frame baseline: ``(B, L, C, H, W)`` uint8 -> ``(B, 1, n_future, C, H, W)``
    float in ``[0, 1]``, the last context frame repeated."""
    last = obs[:, n_past - 1].float() / 255.0  # (B, C, H, W)
    return last[:, None, None].expand(-1, 1, n_future, -1, -1, -1).contiguous()


# ---------------------------------------------------------------------------------------------
# models and discriminators


def _from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Build a (nested) dataclass from a plain dict; unknown keys are ignored."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        kind = hints.get(f.name)
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            value = _from_dict(kind, value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _loss_config(payload: Mapping[str, Any], path: Path) -> tuple[dict | None, str]:
    """The ``loss`` section of the run's config: from the checkpoint, else the run's hydra config."""
    for where, section in (
        ("checkpoint extra.config.loss", payload.get("extra", {}).get("config", {})),
        ("checkpoint config.loss", payload.get("config", {})),
    ):
        if isinstance(section, Mapping) and isinstance(section.get("loss"), Mapping):
            return dict(section["loss"]), where
    hydra_cfg = path.resolve().parent.parent / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        import yaml

        cfg = yaml.safe_load(hydra_cfg.read_text())
        if isinstance(cfg, Mapping) and isinstance(cfg.get("loss"), Mapping):
            return dict(cfg["loss"]), str(hydra_cfg)
    return None, ""


def load_discriminator(
    payload: Mapping[str, Any], path: str | Path, device: torch.device | str
) -> tuple[AdversarialTrainer | None, str]:
    """The discriminator a checkpoint was trained with, rebuilt and loaded (eval mode).

    The architecture comes from the run's ``loss`` config: ``extra.config.loss`` in the checkpoint
    if present, else ``<run dir>/.hydra/config.yaml`` (the checkpoint being
    ``<run dir>/checkpoints/last.pt``).

    Returns:
        ``(adversarial, note)``: the :class:`AdversarialTrainer` (its discriminator in eval mode,
        its progressive schedule at the saved step) or None, and a sentence saying where the
        config came from or why there is no discriminator.
    """
    path = Path(path)
    state = payload.get("state", {}).get("discriminator")
    if state is None:
        return None, "no discriminator in the checkpoint (trained without the adversarial loss)"
    loss, where = _loss_config(payload, path)
    if loss is None:
        return None, (
            "the checkpoint has a discriminator state but no loss config to rebuild it (neither in "
            f"the checkpoint nor in {path.resolve().parent.parent / '.hydra' / 'config.yaml'})"
        )
    spec = payload["model"]
    adv = AdversarialTrainer(
        _from_dict(AntiBlurConfig, loss), spec["image_size"], spec["channels"], device=device
    )
    adv.load_state_dict(state)
    adv.discriminator.eval()
    return adv, f"discriminator rebuilt from the loss config in {where}"


def _judge(adv: AdversarialTrainer, device: torch.device) -> Callable[[Tensor, Tensor], Tensor]:
    """GAM's view of a multi-scale conditional discriminator: ``(context, frame)`` uint8 ->
    one logit per pair, the mean of the per-scale logits minus the real/fake threshold."""
    threshold = 0.5 if adv.form == "lsgan" else 0.0

    def d(context: Tensor, frame: Tensor) -> Tensor:
        ctx = context.to(device).float() / 255.0
        x = frame.to(device).float() / 255.0
        x, ctx, alpha = adv.prepare(x, ctx)
        logits = adv.discriminator(x, ctx, alpha=alpha)
        return torch.stack([lg.float() for lg in logits]).mean(dim=0) - threshold

    return d


@dataclass
class _Candidate:
    """One model of the report."""

    label: str
    kind: str  # "checkpoint" | COPY_LAST
    path: str | None = None
    step: int | None = None
    parameters: int = 0
    model: WorldModel | None = None
    spec: dict[str, Any] | None = None
    adversarial: AdversarialTrainer | None = None
    discriminator_note: str = ""

    def checkpoint_desc(self) -> str:
        if self.kind == COPY_LAST:
            return f"{COPY_LAST} (baseline, no checkpoint)"
        return f"{self.path} (step {self.step})"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "parameters": self.parameters}
        if self.kind == "checkpoint":
            out.update(checkpoint=self.path, step=self.step, model=self.spec)
            out["discriminator"] = self.discriminator_note
        else:
            out["description"] = "repeats the last context frame (deterministic, 1 sample)"
        return out


def _label_for(path: Path, taken: set[str]) -> str:
    """A short unique label: the run directory of ``<run>/checkpoints/x.pt``, else the file stem."""
    p = path.resolve()
    base = p.parent.parent.name if p.parent.name == "checkpoints" else p.stem
    base = base or p.stem
    label, k = base, 2
    while label in taken or label == COPY_LAST:
        label, k = f"{base}#{k}", k + 1
    taken.add(label)
    return label


def _check_compatible(model: WorldModel, dataset: EpisodeDataset, what: str) -> None:
    h, w = dataset.frame_shape
    if (h, w) != (model.image_size, model.image_size):
        raise ValueError(
            f"{what} was trained on {model.image_size}x{model.image_size} frames but the data has "
            f"{h}x{w} frames; evaluate on episodes of the model's frame size "
            f"(e.g. collect them with env.size={model.image_size})"
        )
    if model.channels != 3:
        raise ValueError(f"{what} has {model.channels} channels; episodes are RGB (3 channels)")
    if model.action_dim > 0:
        if not dataset.has_action:
            raise ValueError(
                f"{what} is action-conditioned (action_dim={model.action_dim}) but the data is "
                "action-free video; evaluate it on episodes recorded with actions"
            )
        if dataset.action_dim != model.action_dim:
            raise ValueError(
                f"{what} takes {model.action_dim}-dim actions but the data has "
                f"{dataset.action_dim}-dim actions; evaluate on episodes of the same environment"
            )


def _load_candidate(
    path: str, label: str, dataset: EpisodeDataset, device: torch.device, want_disc: bool
) -> _Candidate:
    payload = load_checkpoint(path, map_location="cpu")
    model = model_from_checkpoint(path, device)
    _check_compatible(model, dataset, f"checkpoint {path}")
    cand = _Candidate(
        label=label,
        kind="checkpoint",
        path=str(path),
        step=int(payload.get("state", {}).get("global_step", -1)),
        parameters=model.num_params(),
        model=model,
        spec=payload.get("model"),
    )
    if want_disc:
        cand.adversarial, cand.discriminator_note = load_discriminator(payload, path, device)
    else:
        has = payload.get("state", {}).get("discriminator") is not None
        cand.discriminator_note = (
            "present (not loaded: gam not requested)" if has else "none in the checkpoint"
        )
    return cand


# ---------------------------------------------------------------------------------------------
# JSON helpers


def to_jsonable(obj: Any) -> Any:
    """Plain JSON data: dataclasses, tensors, paths and tuples converted; non-finite floats as
    ``"inf"`` / ``"-inf"`` / ``"nan"`` strings (JSON has no infinity)."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Tensor):
        return to_jsonable(obj.tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return to_jsonable(obj.item())
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as strict JSON (see :func:`to_jsonable`), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def number(value: Any) -> float | None:
    """A number from a report: floats, ints and the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return None


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


# ---------------------------------------------------------------------------------------------
# plots


def _figure(width: float, height: float) -> Any:
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
    fig = _figure(7.0, 4.5)
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
    fig = _figure(4.2 * ncols, 3.4 * nrows + 0.5)
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


# ---------------------------------------------------------------------------------------------
# evaluation


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)


def _curve_entry(curve: MetricCurve) -> dict[str, Any]:
    per_video_avg = curve.per_video.mean(dim=1)  # (N,) time-averaged per video
    n = per_video_avg.numel()
    sem = float(per_video_avg.std() / math.sqrt(n)) if n > 1 else math.nan
    return {
        "value": curve.mean,
        "sem": sem,
        "curve": curve.curve.tolist(),
        "protocol": curve.protocol.to_dict(),
        "description": curve.protocol.describe(),
    }


def _batches(n: int, size: int) -> Iterable[slice]:
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


@dataclass
class _Predictions:
    """What one model's pass over the clips leaves behind (everything else is reduced on the fly)."""

    curves: dict[str, MetricCurve]
    diversity: Tensor | None  # (N,)
    first_sample: Tensor  # uint8 (N, n_future, C, H, W): sample 0 of every clip
    shown: Tensor  # uint8 (V, k, n_future, C, H, W): samples for strips / GIFs
    samples: int


@torch.no_grad()
def _predict_all(
    cand: _Candidate,
    clips: Clips,
    cfg: EvaluateConfig,
    device: torch.device,
    base: Protocol,
    image_metrics: list[str],
    want_diversity: bool,
) -> _Predictions:
    n_past, n_future = cfg.n_past, cfg.n_future
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    per_video: dict[str, list[Tensor]] = {}
    protocols: dict[str, Protocol] = {}
    div, first, shown = [], [], []
    samples = 1
    for sl in _batches(len(clips), cfg.batch_size):
        obs = clips.obs[sl].to(device)
        if cand.model is None:
            pred = copy_last_frame(obs, n_past, n_future)
        else:
            action = None
            if cand.model.action_dim > 0 and clips.action is not None:
                action = clips.action[sl].to(device)
            pred = predict(
                cand.model, obs, action, n_past, n_future, cfg.samples, gen, cfg.feedback
            )
            pred = pred.float().clamp(0.0, 1.0)
        samples = pred.shape[1]
        target = obs[:, n_past:].float() / 255.0
        if image_metrics:
            curves = per_step_metrics(pred, target, image_metrics, base, cfg.psnr_max_db)
            for key, c in curves.items():
                per_video.setdefault(key, []).append(c.per_video.cpu())
                protocols.setdefault(key, c.protocol)
        if want_diversity and samples >= 2:
            div.append(diversity(pred).cpu())
        pred_u8 = pred.mul(255).round().to(torch.uint8).cpu()
        first.append(pred_u8[:, 0])
        n_shown = max(0, min(cfg.visualize - sl.start, sl.stop - sl.start))
        if n_shown:
            shown.append(pred_u8[:n_shown, : cfg.samples_shown])
    curves = {}
    for key, parts in per_video.items():
        pv = torch.cat(parts)  # (N, T)
        curves[key] = MetricCurve(
            curve=pv.mean(dim=0), per_video=pv, protocol=protocols[key].replace(num_videos=len(pv))
        )
    return _Predictions(
        curves=curves,
        diversity=torch.cat(div) if div else None,
        first_sample=torch.cat(first),
        shown=torch.cat(shown) if shown else torch.zeros(0, dtype=torch.uint8),
        samples=samples,
    )


def _frechet_extractor(cfg: EvaluateConfig, device: torch.device) -> VideoFeatureExtractor:
    if cfg.i3d:
        return I3DFeatures.from_file(cfg.i3d, map_location=device)
    return RandomConv3dFeatures(seed=cfg.fd_seed, dim=cfg.fd_dim).to(device)


@torch.no_grad()
def _features(
    extractor: VideoFeatureExtractor, videos: Tensor, batch_size: int, device: torch.device
) -> Tensor:
    """uint8 ``(N, T, C, H, W)`` -> ``(N, D)`` float32 CPU features, converted batch by batch."""
    out = [
        extractor.features(videos[sl].to(device).float() / 255.0).cpu()
        for sl in _batches(videos.shape[0], batch_size)
    ]
    return torch.cat(out)


def _frechet_dim(extractor: VideoFeatureExtractor, clips: Clips, device: torch.device) -> int:
    """Feature size of the extractor, from one clip."""
    return int(_features(extractor, clips.obs[:1], 1, device).shape[1])


def _markdown(report: Mapping[str, Any]) -> str:
    proto = report["protocol"]
    lines = [
        "# Evaluation report",
        "",
        f"- data: `{proto['dataset']}` ({proto['num_videos']} clips, seed {proto['seed']})",
        f"- {proto['context_frames']} context frames -> {proto['predicted_frames']} predicted "
        f"frames; {proto['samples_per_video']} samples per clip from the learned prior "
        f"(copy-last-frame: 1)",
        "- image metrics: time-averaged over the predicted frames; `mean` = mean over samples, "
        "`best` = best of the samples per video (SVG's protocol)",
        "",
    ]
    cols = [
        ("psnr", "mean"),
        ("psnr", "best"),
        ("ssim", "mean"),
        ("ssim", "best"),
        ("ms_ssim", "mean"),
        ("ms_ssim", "best"),
    ]
    results = report["results"]
    present = [c for c in cols if any(c[0] in r for r in results.values())]
    extra = []
    for key, head in (("swd", "SWD x1e3"), ("frechet", None), ("diversity", "diversity")):
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


def evaluate(cfg: EvaluateConfig, workdir: str | Path | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt`` (and the baselines) on ``cfg.data``; write the report files.

    Args:
        cfg: the evaluation settings (validated here, before any expensive work).
        workdir: output directory when ``cfg.out`` is None (the hydra run directory).

    Returns:
        The report (also written to ``<out>/report.json``; see the module docstring).

    Raises:
        FileNotFoundError: missing checkpoint, data directory or I3D weights.
        ValueError: bad settings, data that does not fit a model (frame size, action size), clips
            longer than every episode, too few clips or too few videos for a covariance.
    """
    cfg.validate()
    out = Path(cfg.out or workdir or ".")
    device = resolve_device(cfg.device)
    metrics = list(cfg.metrics)
    length = cfg.n_past + cfg.n_future

    dataset = EpisodeDataset(cfg.data)
    taken: set[str] = set()
    paths = [cfg.ckpt, *cfg.baselines]
    labels = [_label_for(Path(p), taken) for p in paths]
    cands = [
        _load_candidate(p, lab, dataset, device, "gam" in metrics)
        for p, lab in zip(paths, labels, strict=True)
    ]
    cands.append(_Candidate(label=COPY_LAST, kind=COPY_LAST))
    clips = select_clips(dataset, length, cfg.num_videos, cfg.seed)
    n = len(clips)

    skipped: dict[str, str] = {}
    extractor = None
    if "frechet" in metrics:
        extractor = _frechet_extractor(cfg, device)
        dim = _frechet_dim(extractor, clips, device)
        if cfg.fd_shrinkage == 0 and n <= dim:
            raise ValueError(
                f"{extractor.metric_name} needs more videos than feature dimensions for a "
                f"covariance: num_videos={n} <= {dim}; set num_videos > {dim} (the data has "
                f"{len(select_clips(dataset, length, None, cfg.seed))} clips of {length} frames), "
                + ("" if cfg.i3d else "a smaller fd_dim, ")
                + "fd_shrinkage > 0 (reported), or drop frechet from metrics"
            )

    base_details = {
        "seed": cfg.seed,
        "clips": f"{n} non-overlapping windows of {length} frames drawn with seed {cfg.seed}",
        "feedback": cfg.feedback,
        "prior": "z sampled from the learned prior after the context (posterior on the context)",
    }
    image_metrics = [m for m in IMAGE_METRICS if m in metrics]
    h, w = clips.obs.shape[-2:]
    real_future = clips.obs[:, cfg.n_past :]  # uint8 (N, T, C, H, W)
    real_features = None
    if extractor is not None:
        real_features = _features(extractor, clips.obs, cfg.batch_size, device)

    models: dict[str, Any] = {}
    results: dict[str, Any] = {}
    predictions: dict[str, _Predictions] = {}
    for cand in cands:
        log.info("evaluating %s", cand.label)
        if cand.model is None:
            actions = "not used (copy-last-frame)"
        elif clips.action is None:
            actions = "none in the data (action-free video)"
        elif cand.model.action_dim == 0:
            actions = "not used (action-free model)"
        else:
            actions = "the recorded actions, context and future"
        base = Protocol(
            context_frames=cfg.n_past,
            dataset=str(cfg.data),
            checkpoint=cand.checkpoint_desc(),
            details={**base_details, "actions": actions},
        )
        pred = _predict_all(cand, clips, cfg, device, base, image_metrics, "diversity" in metrics)
        predictions[cand.label] = pred
        models[cand.label] = cand.describe()
        res: dict[str, Any] = {}
        for m in image_metrics:
            res[m] = {
                "mean": _curve_entry(pred.curves[f"{m}/mean"]),
                "best": _curve_entry(pred.curves[f"{m}/best"]),
            }
        stamp = base.replace(
            predicted_frames=cfg.n_future, samples_per_video=pred.samples, num_videos=n
        )
        if "swd" in metrics:
            real = real_future.flatten(0, 1).float() / 255.0
            fake = pred.first_sample.flatten(0, 1).float() / 255.0
            values = swd(real, fake, generator=torch.Generator().manual_seed(cfg.seed))
            proto = stamp.replace(
                metric="swd",
                samples_per_video=1,  # sample 0 of each clip
                details={
                    **base.details,
                    "sets": f"{real.shape[0]} predicted frames (sample 0 of each clip, every "
                    "predicted step) vs the true future frames of the same clips",
                    "patches_per_image": 128,
                    "patch_size": 7,
                    "num_projections": 512,
                    "pyramid": "Laplacian, finest level first, down to 16 px",
                    "scale": "x1e3 (as Karras et al. report it)",
                    "patch_positions": "shared by both sets (common random numbers)",
                    "predicted_frames_quantised": "uint8, like the data",
                },
            )
            res["swd"] = {
                "value": values["avg"],
                "per_level": {str(k): v for k, v in values.items() if k != "avg"},
                "protocol": proto.to_dict(),
                "description": proto.describe(),
            }
        if extractor is not None and real_features is not None:
            fake_clips = torch.cat([clips.obs[:, : cfg.n_past], pred.first_sample], dim=1)
            fake_features = _features(extractor, fake_clips, cfg.batch_size, device)
            mu_r, s_r = feature_statistics(real_features, cfg.fd_shrinkage)
            mu_f, s_f = feature_statistics(fake_features, cfg.fd_shrinkage)
            proto = stamp.replace(
                metric=extractor.metric_name,
                samples_per_video=1,  # sample 0 of each clip
                feature_net=extractor.name,
                details={
                    **base.details,
                    "clips": f"{n} real clips of {length} frames vs the same {cfg.n_past} real "
                    f"context frames followed by {cfg.n_future} predicted frames (sample 0)",
                    "preprocessing": extractor.preprocessing,
                    "feature_dim": int(real_features.shape[1]),
                    "shrinkage": cfg.fd_shrinkage,
                    "comparable_with": (
                        "published FVDs (reference I3D, 16-frame clips)"
                        if extractor.reference_fvd
                        else "other FDs of this network and protocol only, never with FVD"
                    ),
                },
            )
            res["frechet"] = {
                "name": extractor.metric_name,
                "value": frechet_distance(mu_r, s_r, mu_f, s_f),
                "protocol": proto.to_dict(),
                "description": proto.describe(),
            }
        if "diversity" in metrics:
            if pred.diversity is None:
                skipped[f"{cand.label}/diversity"] = "needs >= 2 samples per video" + (
                    " (copy-last-frame is deterministic)" if cand.model is None else ""
                )
            else:
                proto = stamp.replace(
                    metric="diversity",
                    details={
                        **base.details,
                        "definition": "mean pairwise MS-SSIM between the samples of a clip "
                        "(each pair averaged over the predicted frames), averaged over clips; "
                        "lower = more diverse",
                        "ms_ssim": ms_ssim_settings(h, w).describe(),
                        "pairs_per_video": pred.samples * (pred.samples - 1) // 2,
                    },
                )
                res["diversity"] = {
                    "value": float(pred.diversity.mean()),
                    "protocol": proto.to_dict(),
                    "description": proto.describe(),
                }
        results[cand.label] = res

    battles = []
    if "gam" in metrics:
        battles = _gam_battles(cands, clips, predictions, cfg, device, skipped)

    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "candidate": cands[0].label,
        "config": dataclasses.asdict(cfg),
        "protocol": {
            "context_frames": cfg.n_past,
            "predicted_frames": cfg.n_future,
            "samples_per_video": cfg.samples,
            "num_videos": n,
            "dataset": str(cfg.data),
            "dataset_resolved": str(Path(cfg.data).resolve()),
            "frame_size": [int(h), int(w)],
            "seed": cfg.seed,
            "feedback": cfg.feedback,
            "clips": [{"episode": s, "start": t} for s, t in clips.sources],
            "device": str(device),
            "torch": torch.__version__,
        },
        "models": models,
        "results": results,
        "gam": battles,
        "skipped": skipped,
        "notes": [
            "non-finite numbers are written as the strings 'inf', '-inf', 'nan'",
            "every number carries its protocol; 'best' = best of N samples per video, 'mean' = "
            "mean over samples: compare like with like",
        ],
    }
    report["files"] = _write_media(report, clips, predictions, cfg, out)
    write_json(out / "report.json", report)
    (out / "summary.md").write_text(_markdown(report))
    return to_jsonable(report)


def _gam_battles(
    cands: list[_Candidate],
    clips: Clips,
    predictions: Mapping[str, _Predictions],
    cfg: EvaluateConfig,
    device: torch.device,
    skipped: dict[str, str],
) -> list[dict[str, Any]]:
    """GAM between every two checkpoints with a discriminator (pairs of predicted frames with the
    real frames before them, as the conditional discriminator was trained)."""
    judges = [c for c in cands if c.adversarial is not None]
    for c in cands:
        if c.kind == "checkpoint" and c.adversarial is None:
            skipped[f"{c.label}/gam"] = c.discriminator_note
    if len(judges) < 2:
        skipped["gam"] = (
            f"needs two checkpoints with discriminators, got {len(judges)} "
            f"({', '.join(c.label for c in judges) or 'none'})"
        )
        return []
    clip_lengths = {c.adversarial.cfg.discriminator.clip_length for c in judges}
    if clip_lengths != {1}:
        skipped["gam"] = (
            "only discriminators that judge single frames (clip_length=1) are supported"
        )
        return []
    n_ctx = max(1, max(c.adversarial.cfg.discriminator.context_frames for c in judges))
    if cfg.n_past < n_ctx:
        skipped["gam"] = (
            f"the discriminators see {n_ctx} real frames before each judged frame; "
            f"set n_past >= {n_ctx}"
        )
        return []
    context = context_windows(clips.obs, n_ctx, cfg.n_past).flatten(0, 1)  # (N*T, n, C, H, W)
    real = clips.obs[:, cfg.n_past :].flatten(0, 1)  # (N*T, C, H, W)
    battles = []
    for i, c1 in enumerate(judges):
        for c2 in judges[i + 1 :]:
            result = gam(
                _judge(c1.adversarial, device),
                _judge(c2.adversarial, device),
                (context, predictions[c1.label].first_sample.flatten(0, 1)),
                (context, predictions[c2.label].first_sample.flatten(0, 1)),
                (context, real),
                test_tolerance=cfg.gam_test_tolerance,
                tie_tolerance=cfg.gam_tie_tolerance,
                batch_size=max(cfg.batch_size, 64),
            )
            proto = Protocol(
                context_frames=cfg.n_past,
                predicted_frames=cfg.n_future,
                samples_per_video=1,
                num_videos=len(clips),
                dataset=str(cfg.data),
                checkpoint=f"{c1.checkpoint_desc()} vs {c2.checkpoint_desc()}",
                metric="gam",
                details={
                    "pairs": "every predicted frame (sample 0) with the "
                    f"{n_ctx} real frames before it; test data: the true frames with the same "
                    "context (held-out data, never seen by either discriminator)",
                    "logit": "mean of the per-scale logits (minus 0.5 for lsgan); >= 0 = real",
                    "discriminators": "eval mode (no dropout), at their saved progressive stage",
                    "seed": cfg.seed,
                },
            )
            battles.append(
                {
                    "model1": c1.label,
                    "model2": c2.label,
                    **result.to_dict(),
                    "protocol": proto.to_dict(),
                }
            )
    return battles


def _labelled_strip(rows: list[Tensor], labels: list[str], n_past: int, path: Path) -> Path:
    """A prediction strip (:func:`~worldmodel.viz.prediction_strip`) with its rows and columns
    labelled: rows by model and sample, columns by frame (``c1..`` context, ``+1..`` predicted)."""
    image = prediction_strip(rows)  # (R * (H + 2), L * (W + 2), 3) uint8
    length, _, h, w = rows[0].shape
    scale = max(1.0, 48.0 / h)  # small frames are enlarged (nearest neighbour)
    height_px, width_px = image.shape[0] * scale, image.shape[1] * scale
    margin = 7 * max(len(s) for s in labels) + 50  # room for the row labels
    fig = _figure((width_px + margin) / 100, (height_px + 45) / 100)
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


def _write_media(
    report: Mapping[str, Any],
    clips: Clips,
    predictions: Mapping[str, _Predictions],
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
            g = write_gif(out / "videos" / f"clip{v:03d}_{_safe(label)}.gif", video, cfg.fps)
            files["gifs"].append(str(g.relative_to(out)))
        p = _labelled_strip(rows, rows_legend, cfg.n_past, out / "videos" / f"clip{v:03d}.png")
        files["strips"].append(str(p.relative_to(out)))
    return files
