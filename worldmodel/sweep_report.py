"""Gather the runs of an M/K capacity sweep (Villegas et al. 2019) into a table and a scaling plot.

    python -m worldmodel.pretrain -m model.M=1,2,3 model.K=1,2 data=TRAIN_DIR steps=N
    python -m worldmodel.sweep_report runs/sweep/<date> --data HELDOUT_DIR [--n-future 10 ...]

Every subdirectory of ``DIR`` holding a ``.hydra/config.yaml`` is a run. For each run the table
lists M, K, the variant, the parameter count, the step reached, the last training loss (from the
run's ``summary.json``) and the evaluation metrics of :func:`worldmodel.evaluation.evaluate`:

* with ``--data``, each run's ``checkpoints/last.pt`` is evaluated on the held-out episodes and the
  report is written to ``<run>/eval/``; an existing ``<run>/eval/report.json`` made with the same
  data, protocol, metrics and checkpoint step is reused (``--reevaluate`` forces a new one); the
  copy-last-frame baseline is evaluated once per protocol and shared by the runs' reports;
* without ``--data``, existing ``<run>/eval/report.json`` files are read as they are (their
  protocols are printed; the table warns when they differ).

Runs are never skipped silently: a run without a checkpoint is ``failed`` (with the last ERROR
line of its log, if any), one whose checkpoint stopped before the configured ``steps`` is
``incomplete`` (listed, evaluated, not drawn in the plot), one whose evaluation raised is
``failed`` with the error, and a grid point of ``multirun.yaml`` without a run directory is
``missing``.

Writes ``sweep.md``, ``sweep.csv``, ``sweep.json`` and ``scaling.png`` (each metric against the
parameter count, log x, one line per M through the K values, copy-last-frame as a dotted line) to
``DIR``.

The command line is plain argparse rather than hydra: the tool post-processes existing run
directories named by a positional ``DIR`` (the natural shell form); it needs no config
composition, and a hydra app would create its own output directory and ``.hydra`` folder, which
would then look like one more run of the sweep.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import logging
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from wmcommon.checks import is_number
from worldmodel.evaluation import (
    COPY_LAST,
    METRICS,
    BaselineCache,
    EvaluateConfig,
    evaluate,
    number,
    plot_scaling,
    protocol_matches,
    read_json,
    write_json,
)
from worldmodel.model.svg import ModelConfig, WorldModel
from worldmodel.training.checkpoint import CheckpointError, load_checkpoint

__all__ = ["RunRecord", "find_runs", "inspect_run", "sweep_report", "main"]

log = logging.getLogger(__name__)

SWEEP_FORMAT = "worldmodel-sweep/1"
METRIC_COLUMNS = (
    "psnr/mean",
    "psnr/best",
    "ssim/mean",
    "ssim/best",
    "ms_ssim/mean",
    "ms_ssim/best",
    "swd",
    "frechet",
    "diversity",
)
COLUMNS = (
    "run",
    "status",
    "variant",
    "M",
    "K",
    "parameters",
    "step",
    "steps",
    "final_loss",
    *METRIC_COLUMNS,
    "frechet_name",
    "protocol",
    "reason",
    "report",
)
# evaluation errors that mark one run as failed instead of stopping the report (OOM is a
# RuntimeError, a corrupt checkpoint a CheckpointError, i.e. a RuntimeError too)
RUN_ERRORS = (ValueError, FileNotFoundError, RuntimeError, OSError, KeyError)
EVAL_DIR = "eval"


@dataclass
class RunRecord:
    """One row of the sweep table.

    ``status``: ``ok`` (trained to its configured steps and, if asked, evaluated), ``incomplete``
    (the checkpoint stopped before ``steps``), ``failed`` (no or unreadable checkpoint, or the
    evaluation raised; see ``reason``), ``missing`` (a grid point without a run directory).
    """

    run: str
    status: str = "ok"
    reason: str = ""
    variant: str | None = None
    M: float | None = None
    K: float | None = None
    parameters: int | None = None
    step: int | None = None
    steps: int | None = None
    final_loss: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    frechet_name: str | None = None
    protocol: str | None = None
    report: str | None = None
    copy_last: dict[str, float | None] | None = None

    def row(self) -> dict[str, Any]:
        """The flat table row (metric values as numbers, None when absent)."""
        out = {c: getattr(self, c) for c in COLUMNS if c in self.__dataclass_fields__}
        out.update({c: self.metrics.get(c) for c in METRIC_COLUMNS})
        return out


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def find_runs(root: str | Path) -> list[Path]:
    """Run directories under ``root`` (``root`` itself included): those with ``.hydra/config.yaml``,
    in natural order (``2_...`` before ``10_...``)."""
    root = Path(root)
    runs = {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
    return sorted(runs, key=_natural_key)


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _num(value: Any) -> float | None:
    if not is_number(value):
        return None
    return float(value)


def _last_error_line(run_dir: Path) -> str:
    """The last ERROR line of the run's hydra job log(s), or ''."""
    last = ""
    for log_file in sorted(run_dir.glob("*.log")):
        try:
            for line in log_file.read_text(errors="replace").splitlines():
                if "ERROR" in line or line.startswith("error:"):
                    last = line.strip()
        except OSError:
            continue
    return last


def _count_parameters(spec: dict[str, Any]) -> int:
    """Parameters of the model a checkpoint describes, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = WorldModel(
            ModelConfig(**spec["config"]), spec["image_size"], spec["action_dim"], spec["channels"]
        )
    return model.num_params()


def inspect_run(run_dir: Path, root: Path) -> tuple[RunRecord, Path | None]:
    """Read a run's config, summary and checkpoint; returns its record and checkpoint path
    (None when there is no usable checkpoint; the record then says why)."""
    rec = RunRecord(run=str(run_dir.relative_to(root)) if run_dir != root else ".")
    try:
        cfg = _read_yaml(run_dir / ".hydra" / "config.yaml") or {}
    except (OSError, yaml.YAMLError) as err:
        rec.status, rec.reason = "failed", f"unreadable .hydra/config.yaml: {err}"
        return rec, None
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    rec.variant = model.get("variant")
    rec.M, rec.K = _num(model.get("M")), _num(model.get("K"))
    rec.steps = cfg.get("steps") if isinstance(cfg.get("steps"), int) else None
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        try:
            summary = read_json(summary_path)
            rec.final_loss = _num(summary.get("final_loss"))
            rec.parameters = summary.get("parameters")
        except (OSError, ValueError) as err:
            rec.reason = f"unreadable summary.json ({err}); "
    out = cfg.get("out")
    ckpt = (Path(out) if out else run_dir) / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        err = _last_error_line(run_dir)
        rec.status = "failed"
        rec.reason += "no checkpoint (the run failed or was stopped before its first save)"
        rec.reason += f"; last error in its log: {err}" if err else ""
        return rec, None
    try:
        payload = load_checkpoint(ckpt)
        rec.step = int(payload["state"]["global_step"])
        if rec.parameters is None:
            rec.parameters = _count_parameters(payload["model"])
        spec = payload["model"]["config"]
        rec.variant = rec.variant or spec.get("variant")
        rec.M = rec.M if rec.M is not None else _num(spec.get("M"))
        rec.K = rec.K if rec.K is not None else _num(spec.get("K"))
    except (CheckpointError, KeyError, TypeError, ValueError) as err:
        rec.status, rec.reason = "failed", rec.reason + f"checkpoint {ckpt} unreadable: {err}"
        return rec, None
    if rec.steps is not None and rec.step < rec.steps:
        rec.status = "incomplete"
        rec.reason += (
            f"stopped at step {rec.step} of {rec.steps} (interrupted, diverged or still running; "
            "resume with resume=true)"
        )
    return rec, ckpt


def _protocol_text(report: dict[str, Any]) -> str:
    p = report["protocol"]
    return (
        f"data {p['dataset']}, {p['context_frames']} context -> {p['predicted_frames']} predicted "
        f"frames, {p['samples_per_video']} samples, {p['num_videos']} clips, seed {p['seed']}"
    )


def _metrics_of(result: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for m in ("psnr", "ssim", "ms_ssim"):
        if m in result:
            out[f"{m}/mean"] = number(result[m]["mean"]["value"])
            out[f"{m}/best"] = number(result[m]["best"]["value"])
    for m in ("swd", "frechet", "diversity"):
        if m in result:
            out[m] = number(result[m]["value"])
    return out


def _use_report(rec: RunRecord, report: dict[str, Any], path: Path, root: Path) -> None:
    result = report["results"][report["candidate"]]
    rec.metrics = _metrics_of(result)
    rec.frechet_name = result.get("frechet", {}).get("name")
    rec.protocol = _protocol_text(report)
    rec.report = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    if COPY_LAST in report["results"]:
        rec.copy_last = _metrics_of(report["results"][COPY_LAST])


def _evaluate_run(
    rec: RunRecord,
    run_dir: Path,
    ckpt: Path,
    root: Path,
    template: EvaluateConfig | None,
    data: str | None,
    reevaluate: bool,
    baseline_cache: BaselineCache,
) -> None:
    report_path = run_dir / EVAL_DIR / "report.json"
    existing = None
    if report_path.is_file():
        try:
            existing = read_json(report_path)
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable %s: %s", report_path, err)
    if data is None:
        if existing is None:
            rec.reason += ("; " if rec.reason else "") + "not evaluated (pass --data HELDOUT_DIR)"
        else:
            _use_report(rec, existing, report_path, root)
        return
    assert template is not None
    ecfg = dataclasses.replace(
        template, ckpt=str(ckpt), data=str(data), out=str(run_dir / EVAL_DIR), baselines=[]
    )
    if existing is not None and not reevaluate:
        same, why = protocol_matches(existing, ecfg)
        step = existing.get("models", {}).get(existing.get("candidate"), {}).get("step")
        if same and step == rec.step:
            _use_report(rec, existing, report_path, root)
            return
        log.info("re-evaluating %s: %s", rec.run, why or f"checkpoint step {step} -> {rec.step}")
    print(f"evaluating {rec.run} (step {rec.step}) on {data}", flush=True)
    try:
        report = evaluate(ecfg, baseline_cache=baseline_cache)
    except RUN_ERRORS as err:
        rec.status = "failed"
        rec.reason += ("; " if rec.reason else "") + f"evaluation failed: {err}"
        print(f"  {rec.run}: evaluation failed: {err}", file=sys.stderr, flush=True)
        return
    _use_report(rec, report, report_path, root)


def _expected_grid(root: Path) -> list[dict[str, str]]:
    """The grid of a hydra multirun (``multirun.yaml``: overrides like ``model.M=1,2,3``).

    Only plain comma lists are expanded (not ``range()``, globs or quoted values); anything else
    gives an empty grid (no ``missing`` rows).
    """
    path = root / "multirun.yaml"
    if not path.is_file():
        return []
    try:
        overrides = _read_yaml(path)["hydra"]["overrides"]["task"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []
    axes = []
    for o in overrides or []:
        key, sep, value = str(o).partition("=")
        if not sep or "," not in value:
            continue
        if any(ch in value for ch in "()[]{}'\"*"):
            return []
        axes.append([(key.lstrip("+~"), v.strip()) for v in value.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else []


def _run_overrides(run_dir: Path) -> dict[str, str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        items = _read_yaml(path) or []
    except (OSError, yaml.YAMLError):
        return {}
    out = {}
    for o in items:
        key, sep, value = str(o).partition("=")
        if sep:
            out[key.lstrip("+~")] = value.strip()
    return out


def _fmt(value: Any, col: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if col in ("M", "K"):
            return f"{value:g}"
        return f"{value:.4g}"
    if isinstance(value, int) and col == "parameters":
        return f"{value:,}"
    return str(value)


def _markdown(rows: list[RunRecord], baseline: dict | None, notes: list[str], fd: str) -> str:
    protocols = sorted({r.protocol for r in rows if r.protocol})
    lines = ["# Capacity sweep", ""]
    if len(protocols) == 1:
        lines.append(f"Evaluation: {protocols[0]}.")
    elif protocols:
        lines.append("**Runs were evaluated with different protocols; compare with care:**")
        lines += [f"- {p}" for p in protocols]
    else:
        lines.append("No evaluation (pass `--data HELDOUT_DIR` to evaluate each checkpoint).")
    lines += [
        "",
        "Image metrics are averaged over the predicted frames; `mean` = mean over the samples, "
        "`best` = best of the samples per video. SWD x1e3, the Frechet distance and diversity "
        "(MS-SSIM between samples): lower is better / more diverse.",
        "",
    ]
    names = {"frechet": fd or "FD", "final_loss": "train loss"}
    cols = ["run", "status", "variant", "M", "K", "parameters", "step", "final_loss"]
    cols += [c for c in METRIC_COLUMNS if any(r.metrics.get(c) is not None for r in rows)]
    lines.append("| " + " | ".join(names.get(c, c) for c in cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in rows:
        row = r.row()
        lines.append("| " + " | ".join(_fmt(row.get(c), c) for c in cols) + " |")
    if baseline:
        cells = [COPY_LAST, "baseline", "", "", "", "0", "", ""]
        cells += [_fmt(baseline.get(c), c) for c in cols[8:]]
        lines.append("| " + " | ".join(cells) + " |")
    problems = [r for r in rows if r.reason]
    if problems:
        lines += ["", "## Notes per run", ""]
        lines += [f"- `{r.run}` ({r.status}): {r.reason}" for r in problems]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def sweep_report(
    root: str | Path,
    data: str | None = None,
    evaluation: EvaluateConfig | None = None,
    reevaluate: bool = False,
) -> dict[str, Any]:
    """Build the sweep table and plot for the runs under ``root`` and write them there.

    Args:
        root: a hydra multirun directory (or any directory of run directories).
        data: held-out episodes to evaluate each run's checkpoint on; None = only read existing
            ``<run>/eval/report.json`` files.
        evaluation: the evaluation protocol (``ckpt``, ``data``, ``out`` and ``baselines`` are set
            per run); default :class:`EvaluateConfig` without GAM.
        reevaluate: evaluate even when a matching report exists.

    Returns:
        ``{"format", "root", "runs": [row, ...], "copy_last_frame": row | None, "files": {...},
        "notes": [...]}``, also written to ``root/sweep.json``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no run directory under ``root``, or a bad evaluation setting.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory; pass the multirun directory")
    run_dirs = find_runs(root)
    if not run_dirs:
        raise ValueError(
            f"no runs under {root}: expected run directories with a .hydra/config.yaml, as "
            "written by `python -m worldmodel.pretrain -m model.M=1,2 model.K=1,2 data=DIR`"
        )
    template = evaluation
    if data is not None:
        template = template or EvaluateConfig(metrics=[m for m in METRICS if m != "gam"])
        template.check_settings()  # a bad protocol fails once, before touching any run
        if not Path(data).is_dir():
            raise FileNotFoundError(f"--data {data} is not a directory of held-out episodes")

    records: list[RunRecord] = []
    baseline_cache = BaselineCache()  # copy-last-frame: once per protocol, not once per run
    for run_dir in run_dirs:
        rec, ckpt = inspect_run(run_dir, root)
        if ckpt is not None:
            _evaluate_run(rec, run_dir, ckpt, root, template, data, reevaluate, baseline_cache)
        records.append(rec)

    found = [_run_overrides(d) for d in run_dirs]
    for combo in _expected_grid(root):
        if not any(all(o.get(k) == v for k, v in combo.items()) for o in found):
            name = " ".join(f"{k}={v}" for k, v in combo.items())
            records.append(
                RunRecord(
                    run=f"({name})",
                    status="missing",
                    reason="in multirun.yaml's grid but no run directory (the job never started)",
                    M=_num(_maybe_float(combo.get("model.M"))),
                    K=_num(_maybe_float(combo.get("model.K"))),
                )
            )

    baseline = next((r.copy_last for r in records if r.copy_last and r.status == "ok"), None)
    fd = next((r.frechet_name for r in records if r.frechet_name), "") or ""
    notes = []
    ok = [r for r in records if r.status == "ok"]
    if len(ok) < len(records):
        notes.append(
            f"{len(ok)} of {len(records)} runs are complete; only those are in scaling.png."
        )
    rows = [r.row() for r in records]
    plot_metrics = [
        ("psnr/mean", "PSNR (dB)"),
        ("ssim/mean", "SSIM"),
        ("ms_ssim/mean", "MS-SSIM"),
        ("swd", "SWD x1e3 (lower is better)"),
        ("frechet", f"{fd or 'Frechet distance'} (lower is better)"),
        ("diversity", "diversity: MS-SSIM between samples"),
    ]
    ok_rows = [r.row() for r in ok]
    protocols = sorted({r.protocol for r in ok if r.protocol})
    title = protocols[0] if len(protocols) == 1 else ""
    plot = plot_scaling(ok_rows, plot_metrics, root / "scaling.png", baseline, title)
    if plot is None:
        plot = plot_scaling(
            ok_rows, [("final_loss", "final training loss (last batch)")], root / "scaling.png"
        )
        if plot is not None:
            notes.append("No evaluation metrics: scaling.png shows the last training loss.")
        else:
            notes.append("Nothing to plot: no complete run with a parameter count and a value.")

    with open(root / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        if baseline:
            writer.writerow({"run": COPY_LAST, "status": "baseline", "parameters": 0, **baseline})
    (root / "sweep.md").write_text(_markdown(records, baseline, notes, fd))
    result = {
        "format": SWEEP_FORMAT,
        "root": str(root),
        "runs": rows,
        "copy_last_frame": baseline,
        "files": {
            "markdown": "sweep.md",
            "csv": "sweep.csv",
            "json": "sweep.json",
            "plot": None if plot is None else plot.name,
        },
        "notes": notes,
    }
    write_json(root / "sweep.json", result)
    return result


def _maybe_float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = EvaluateConfig()
    p = argparse.ArgumentParser(
        prog="python -m worldmodel.sweep_report",
        description="Table (Markdown, CSV, JSON) and scaling plot of an M/K sweep's runs.",
    )
    p.add_argument("dir", help="the multirun directory (e.g. runs/sweep/<date>)")
    p.add_argument("--data", help="held-out episodes: evaluate each run's checkpoint on them")
    p.add_argument("--n-past", type=int, default=d.n_past, help="context frames")
    p.add_argument("--n-future", type=int, default=d.n_future, help="predicted frames")
    p.add_argument("--samples", type=int, default=d.samples, help="samples per clip")
    p.add_argument(
        "--num-videos",
        default=str(d.num_videos),
        help="at most this many clips (all of them when the data holds fewer), or 'all' "
        "(default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument(
        "--metrics",
        default=",".join(m for m in METRICS if m != "gam"),
        help="comma-separated (default: %(default)s)",
    )
    p.add_argument("--i3d", help="reference I3D weights: report FVD (needs 16-frame clips)")
    p.add_argument("--fd-dim", type=int, default=d.fd_dim, help="random 3-D conv feature size")
    p.add_argument("--visualize", type=int, default=2, help="clips shown as strips/GIFs per run")
    p.add_argument("--reevaluate", action="store_true", help="ignore existing eval reports")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (0 when the report was written)."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    num_videos = (
        None if args.num_videos.lower() in ("all", "none", "null") else int(args.num_videos)
    )
    evaluation = EvaluateConfig(
        n_past=args.n_past,
        n_future=args.n_future,
        samples=args.samples,
        num_videos=num_videos,
        seed=args.seed,
        device=args.device,
        batch_size=args.batch_size,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        i3d=args.i3d,
        fd_dim=args.fd_dim,
        visualize=args.visualize,
    )
    try:
        result = sweep_report(args.dir, args.data, evaluation, args.reevaluate)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    root = Path(args.dir)
    print((root / "sweep.md").read_text())
    print(f"written: {', '.join(str(root / f) for f in result['files'].values() if f)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
