"""Does the video model predict? The evidence, with the package's own commands.

    python bench/video_quality.py                      # everything (hours on a 2-core CPU; resumable)
    python bench/video_quality.py --runs svg-mse,svg-mse-noaction --jobs 2
    python bench/video_quality.py --video-src DIR      # also the real-video rows (your own files)
    python bench/video_quality.py --quick              # the whole pipeline on tiny settings
    python bench/video_quality.py --runs svg-full --train-only   # train now, evaluate later
    python bench/video_quality.py --eval-only          # evaluate the finished runs only
    python bench/video_quality.py --data video --video-src DIR --results OUT   # real video only

Stages, each skipped when its output is already there (so a killed run is resumed by running the
same command again):

1. data: dm_control cheetah-run with random actions, 100 training and 20 held-out episodes
   (``python -m envs.collect``); with ``--video-src DIR``, the videos in ``DIR`` imported with
   ``python -m envs.import_video`` as 24-frame clips, every 5th clip held out.
2. training: one ``python -m worldmodel.pretrain`` run per entry of :data:`RUNS` (equal budget:
   the same steps, batch, sequence length and seed), ``--jobs`` of them side by side at one thread
   each, each resumed from its last checkpoint (``resume=true``).
3. evaluation: one ``python -m worldmodel.evaluate`` per data set over every trained checkpoint
   (same clips, same seeds, copy-last-frame included; GAM between the checkpoints that carry a
   discriminator).
4. results: ``<results>/video_quality.md`` and ``.csv`` (header :data:`CSV_HEADER`), per-step
   plots ``video_quality_<data>_<metric>.png`` and a sample strip ``video_quality_<data>_strip.png``.

Protocol: 64 px frames, 2 context frames, 10 predicted frames, at most 100 held-out clips (fewer
when the held-out data has fewer non-overlapping windows: the table says how many), 8 prior
samples per clip, mean over samples and best of 8 reported.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

CSV_HEADER = (
    "data,run,steps,params,psnr_mean,psnr_best,ssim_mean,ssim_best,psnr_step10,swd,fd,sharpness"
)
COPY = "copy-last-frame"
N_PAST, N_FUTURE, SAMPLES, NUM_VIDEOS = 2, 10, 8, 100


@dataclass(frozen=True)
class Run:
    """One training run: its name in the tables and its ``worldmodel.pretrain`` overrides."""

    name: str
    variant: str = "svg"
    loss: str = "mse"
    M: float = 0.5
    K: float = 0.5
    extra: tuple[str, ...] = ()
    data: tuple[str, ...] = ("cheetah",)

    def overrides(self) -> list[str]:
        return [
            f"model={self.variant}",
            f"loss={self.loss}",
            f"model.M={self.M}",
            f"model.K={self.K}",
            *self.extra,
        ]


# loss=full here: progressive growing off (its 10,000-step phases would keep a run of this budget
# below full resolution); everything else is the preset.
_FULL = ("loss.progressive.enabled=false",)
# loss=full's GDL with alpha = 2 and no pixel norm: the base of the one-term-more ablations
_GDL2 = ("loss.gdl_alpha=2", "loss.pixel_norm=false")
# in the order they are trained (most important first; the costliest last)
RUNS: tuple[Run, ...] = (
    Run("svg-mse", data=("cheetah", "video")),
    Run("svg-mse-noaction", extra=("use_actions=false",)),
    Run("svg-full", loss="full", extra=_FULL),
    Run("lstm-mse", variant="lstm"),
    Run("cnn-mse", variant="cnn"),
    Run("svg-mse-M0.125-K0.125", M=0.125, K=0.125),
    Run("svg-mse-M0.25-K0.25", M=0.25, K=0.25),
    Run("svg-mse-M1-K1", M=1.0, K=1.0),
    Run("gran-full", loss="full", extra=(*_FULL, "model.decoder=gran", "model.gran_steps=2")),
)
# Ablations, one change each against svg-mse or svg-full: the anti-blur terms (result 3: which
# part of loss=full helps and which hurts) and the composite decoder (result 5: copying made
# easy). ``--runs ablations`` trains them; they are evaluated in a report of their own next to
# svg-mse and svg-full (same clips and seeds) and kept out of the csv, whose run names are a
# contract.
# loss=full before 2026-12-07 (GDL alpha 1, adversarial 0.05, feature 0.01, pixel norm), the base
# of the svg-full-* ablations; pinned here so that they keep their meaning when the preset changes
_ADV = "loss.adv_weight=0.05"
_OLD_FULL_BUT_GDL = (*_FULL, _ADV, "loss.pixel_norm=true")
ABLATIONS: tuple[Run, ...] = (
    Run("svg-mse-gdl", extra=("loss.gdl_weight=1.0",)),
    Run("svg-mse-pixelnorm", extra=("loss.pixel_norm=true",)),
    Run("svg-full-nogdl", loss="full", extra=(*_OLD_FULL_BUT_GDL, "loss.gdl_weight=0")),
    # GDL with alpha = 2: the squared gradient difference (alpha = 1 is an L1 loss on gradient
    # magnitudes, whose optimum under an uncertain edge position is the median, i.e. flat)
    Run("svg-mse-gdl2", extra=("loss.gdl_weight=1.0", "loss.gdl_alpha=2")),
    Run("svg-full-gdl2", loss="full", extra=(*_OLD_FULL_BUT_GDL, "loss.gdl_alpha=2")),
    Run("svg-full-gdl2-nopn", loss="full", extra=(*_FULL, *_GDL2, _ADV)),  # and no pixel norm
    # svg-mse-gdl2 plus one more term of loss=full each (its settings; no pixel norm). Since
    # 2026-12-07 the loss=full preset is svg-mse-gdl2-feat's recipe (adversarial term off)
    Run("svg-mse-gdl2-adv", loss="full", extra=(*_FULL, *_GDL2, _ADV, "loss.feature_weight=0")),
    Run("svg-mse-gdl2-feat", loss="full", extra=(*_FULL, *_GDL2, "loss.adv_weight=0")),
    # not anti-blur: the decoder composites the last context frame with its output (copy mask)
    Run("svg-mse-composite", extra=("model.composite=true",), data=("cheetah", "video")),
)
ABLATION_REFERENCES = ("svg-mse", "svg-full")
# the capacity series: (M, K) -> run name; M = K = 0.5 is svg-mse itself
CAPACITY = {
    (0.125, 0.125): "svg-mse-M0.125-K0.125",
    (0.25, 0.25): "svg-mse-M0.25-K0.25",
    (0.5, 0.5): "svg-mse",
    (1.0, 1.0): "svg-mse-M1-K1",
}


@dataclass
class Settings:
    workdir: Path
    results: Path
    steps: int
    jobs: int
    quick: bool
    env: str
    video_src: Path | None
    runs: list[Run] = field(default_factory=list)
    control: bool = True  # the control data (``--env``); False with ``--data video``
    train_only: bool = False
    eval_only: bool = False
    train_episodes: int = 100
    test_episodes: int = 20
    batch: tuple[str, ...] = ("train.batch_size=16", "train.seq_len=12", f"train.n_past={N_PAST}")
    eval_extra: tuple[str, ...] = ()
    seed: int = 0  # train.seed of every run; seeds other than 0 train and evaluate apart

    def tagged(self, data: str) -> str:
        """The folder name of a data set's runs (and evaluation) at this seed."""
        return data if self.seed == 0 else f"{data}-seed{self.seed}"


# ---------------------------------------------------------------------------------------------
# small helpers


def machine_line() -> str:
    """CPU model, cores, threads, torch, native bf16, CUDA device (bench/common.py when present)."""
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        from common import machine_line as shared  # type: ignore[import-not-found]

        return shared()
    except ImportError:
        pass
    import torch

    from worldmodel.device import cpu_has_native_bf16

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, native bf16 {'yes' if cpu_has_native_bf16() else 'no'}, CUDA {cuda}"
    )


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _env(threads: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("PYOPENGL_PLATFORM", "egl")
    return env


def _run(cmd: list[str], log: Path | None = None) -> None:
    """Run a command to completion; raise with the tail of its output on failure."""
    print("  $", " ".join(cmd[1:] if cmd[0] == PY else cmd), flush=True)
    if log is None:
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        return
    with open(log, "a") as f:
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(), stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log}:\n{log.read_text()[-3000:]}")


def _episodes(directory: Path) -> int:
    return len(list(directory.glob("episode-*.npz"))) if directory.is_dir() else 0


# ---------------------------------------------------------------------------------------------
# stage 1: data


def ensure_cheetah(s: Settings) -> tuple[Path, Path]:
    data = s.workdir / "data"
    train, test = data / f"{s.env}_train", data / f"{s.env}_test"
    for directory, episodes, seed in (
        (train, s.train_episodes, 0),
        (test, s.test_episodes, 100_000),
    ):
        have = _episodes(directory)
        if have < episodes:
            print(f"[data] {directory}: {have} -> {episodes} episodes", flush=True)
            _run(
                [
                    PY,
                    "-m",
                    "envs.collect",
                    f"env={s.env}",
                    f"episodes={episodes - have}",
                    f"out={directory}",
                    f"seed={seed}",
                    "progress=false",
                ]
            )
    return train, test


def ensure_video(s: Settings) -> tuple[Path, Path] | None:
    """Import ``--video-src`` as 24-frame clips; every 5th clip goes to the held-out set (the last
    one when there are fewer than 5)."""
    if s.video_src is None:
        return None
    data = s.workdir / "data"
    train, test = data / "video_train", data / "video_test"
    if _episodes(train) and _episodes(test):
        return train, test
    staging = data / "video_all"
    if not _episodes(staging):
        print(f"[data] importing {s.video_src}", flush=True)
        _run(
            [
                PY,
                "-m",
                "envs.import_video",
                f"src={s.video_src}",
                f"out={staging}",
                "size=64",
                "clip_length=24",
                "progress=false",
            ]
        )
    files = sorted(staging.glob("episode-*.npz"))
    for directory in (train, test):
        directory.mkdir(parents=True, exist_ok=True)
    # keep the numbering contiguous in each split: the loader expects episode-<index>-<len>.npz
    counts = {"train": 0, "test": 0}
    for i, f in enumerate(files):
        # every 5th clip; with fewer than 5 clips the last one, so that something is held out
        held_out = i % 5 == 4 or (len(files) < 5 and i == len(files) - 1 > 0)
        split = "test" if held_out else "train"
        length = f.stem.rsplit("-", 1)[-1]
        name = f"episode-{counts[split]:06d}-{length}.npz"
        shutil.copyfile(f, (test if split == "test" else train) / name)
        counts[split] += 1
    print(f"[data] video clips: {counts['train']} training, {counts['test']} held out", flush=True)
    return train, test


# ---------------------------------------------------------------------------------------------
# stage 2: training


def run_dir(s: Settings, data: str, run: Run) -> Path:
    return s.workdir / s.tagged(data) / run.name


def trained_steps(directory: Path) -> int:
    summary = directory / "summary.json"
    if not summary.is_file():
        return 0
    try:
        return int(json.loads(summary.read_text()).get("steps", 0))
    except (ValueError, OSError):
        return 0


def pretrain_command(s: Settings, data_dir: Path, out: Path, run: Run) -> list[str]:
    cmd = [PY, "-m", "worldmodel.pretrain", f"data={data_dir}", f"out={out}"]
    cmd += run.overrides() + list(s.batch)
    cmd += [f"steps={s.steps}", "video_every=0", "progress=false", "resume=true"]
    if s.seed:
        cmd.append(f"train.seed={s.seed}")
    if s.quick:
        cmd += ["log_every=5", "ckpt_every=10"]
    return cmd


def train_all(s: Settings, jobs: list[tuple[str, Path, Run]]) -> list[str]:
    """Train every (data, data_dir, run) not yet at ``s.steps``, ``s.jobs`` at a time."""
    todo = [(d, p, r) for d, p, r in jobs if trained_steps(run_dir(s, d, r)) < s.steps]
    failed: list[str] = []
    running: list[tuple[str, subprocess.Popen, Path]] = []
    while todo or running:
        while todo and len(running) < s.jobs:
            data, data_dir, run = todo.pop(0)
            out = run_dir(s, data, run)
            out.mkdir(parents=True, exist_ok=True)
            cmd = pretrain_command(s, data_dir, out, run)
            log = out / "train.log"
            print(f"[train] {data}/{run.name}: {' '.join(cmd[1:])}", flush=True)
            with open(log, "a") as f:
                proc = subprocess.Popen(
                    cmd, cwd=ROOT, env=_env(), stdout=f, stderr=subprocess.STDOUT
                )
            running.append((f"{data}/{run.name}", proc, log))
        time.sleep(0.5 if s.quick else 10)
        for item in list(running):
            name, proc, log = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                failed.append(name)
                print(f"[train] {name} FAILED (exit {proc.returncode}); see {log}", flush=True)
            else:
                print(f"[train] {name} done", flush=True)
    return failed


# ---------------------------------------------------------------------------------------------
# stage 3: evaluation


def evaluate(s: Settings, data: str, test_dir: Path, runs: list[Run], tag: str = "") -> dict | None:
    """One ``worldmodel.evaluate`` of every trained run of ``runs`` on ``test_dir``, in
    ``<workdir>/eval/<data><tag>`` (reused while the checkpoint files are unchanged)."""
    ckpts = [run_dir(s, data, r) / "checkpoints" / "last.pt" for r in runs]
    ckpts = [
        c for c, r in zip(ckpts, runs, strict=True) if c.is_file() and trained_steps(c.parents[1])
    ]
    if not ckpts:
        return None
    out = s.workdir / "eval" / f"{s.tagged(data)}{tag}"
    report = out / "report.json"
    stamp = out / "inputs.json"  # which checkpoints (their steps and files) the report covers
    inputs = {str(c): [trained_steps(c.parents[1]), c.stat().st_mtime_ns] for c in ckpts}
    if report.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == inputs:
        return json.loads(report.read_text())
    cmd = [
        PY,
        "-m",
        "worldmodel.evaluate",
        f"ckpt={ckpts[0]}",
        f"data={test_dir}",
        f"out={out}",
        f"n_past={N_PAST}",
        f"n_future={N_FUTURE}",
        f"samples={SAMPLES}",
        f"num_videos={NUM_VIDEOS}",
        "device=auto",
        *s.eval_extra,
    ]
    if len(ckpts) > 1:
        cmd.append("baselines=[" + ",".join(str(c) for c in ckpts[1:]) + "]")
    print(f"[eval] {data}: {len(ckpts)} checkpoints", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    _run(cmd, log=out.parent / f"{data}{tag}.log")
    stamp.write_text(json.dumps(inputs, indent=1))
    return json.loads(report.read_text())


# ---------------------------------------------------------------------------------------------
# stage 4: results


def _value(entry: dict | None, *keys: str) -> float | None:
    for k in keys:
        if not isinstance(entry, dict) or k not in entry:
            return None
        entry = entry[k]
    try:
        return float(entry)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def rows_of(data: str, report: dict) -> list[dict]:
    """One row per model of a report (copy-last-frame first), with the CSV's columns."""
    rows = []
    labels = [COPY] + [k for k in report["results"] if k != COPY]
    for label in labels:
        res = report["results"].get(label, {})
        model = report["models"].get(label, {})
        curve = (res.get("psnr", {}).get("mean") or {}).get("curve") or []
        rows.append(
            {
                "data": data,
                "run": label,
                "steps": model.get("step") if model.get("kind") == "checkpoint" else "",
                "params": model.get("parameters", 0) or "",
                "psnr_mean": _value(res, "psnr", "mean", "value"),
                "psnr_best": _value(res, "psnr", "best", "value"),
                "ssim_mean": _value(res, "ssim", "mean", "value"),
                "ssim_best": _value(res, "ssim", "best", "value"),
                "psnr_step10": float(curve[-1]) if curve else None,
                "swd": _value(res, "swd", "value"),
                "fd": _value(res, "frechet", "value"),
                "sharpness": _value(res, "sharpness", "value"),
                "_curves": {
                    f"{m}_{k}": (res.get(m, {}).get(k) or {}).get("curve")
                    for m in ("psnr", "ssim")
                    for k in ("mean", "best")
                },
            }
        )
    return rows


def _fmt(v: object, digits: int = 2) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def write_csv(path: Path, rows: list[dict]) -> None:
    cols = CSV_HEADER.split(",")
    with open(path, "w", newline="") as f:
        f.write(CSV_HEADER + "\n")
        w = csv.writer(f)
        for r in rows:
            w.writerow(
                [
                    "" if r[c] is None else (f"{r[c]:.4f}" if isinstance(r[c], float) else r[c])
                    for c in cols
                ]
            )


def _find(rows: list[dict], data: str, run: str) -> dict | None:
    return next((r for r in rows if r["data"] == data and r["run"] == run), None)


def findings(rows: list[dict], reports: dict[str, dict], control: str = "cheetah") -> list[str]:
    """The issue's results 1-5, each stated as reached / not reached with its numbers.

    ``control`` is the data key of the control-task rows ("cheetah", or ``--env``'s preset)."""
    out: list[str] = []

    def cmp(a: dict | None, b: dict | None, key: str, higher: bool = True) -> str:
        if a is None or b is None or a[key] is None or b[key] is None:
            return f"{key}: not measured"
        ok = a[key] > b[key] if higher else a[key] < b[key]
        return f"{key} {_fmt(a[key], 3)} vs {_fmt(b[key], 3)} ({'yes' if ok else 'NO'})"

    svg, copy = _find(rows, control, "svg-mse"), _find(rows, control, COPY)
    noact = _find(rows, control, "svg-mse-noaction")
    if svg and copy:
        parts = [cmp(svg, copy, k) for k in ("psnr_mean", "ssim_mean", "psnr_step10")]
        out.append(f"1a. svg-mse beats copy-last-frame on held-out {control}: " + "; ".join(parts))
    if svg and noact:
        parts = [cmp(svg, noact, k) for k in ("psnr_mean", "ssim_mean", "psnr_step10")]
        out.append(
            "1b. action-conditioned beats action-free (svg-mse vs svg-mse-noaction): "
            + "; ".join(parts)
        )
    abl = [r for r in (_find(rows, control, n) for n in ("svg-mse", "lstm-mse", "cnn-mse")) if r]
    if len(abl) > 1:
        ranked = sorted(abl, key=lambda r: -(r["psnr_best"] or -1e9))
        out.append(
            "2. ablation, best-of-8 PSNR / SSIM: "
            + ", ".join(
                f"{r['run']} {_fmt(r['psnr_best'])} / {_fmt(r['ssim_best'], 3)}" for r in ranked
            )
        )
    full = _find(rows, control, "svg-full")
    if svg and full:
        parts = [cmp(full, svg, "swd", higher=False), cmp(full, svg, "fd", higher=False)]
        if full["sharpness"] is not None and svg["sharpness"] is not None:
            parts.append(
                f"sharpness {full['sharpness']:.3f} vs {svg['sharpness']:.3f} "
                f"(closer to 1: {'yes' if abs(full['sharpness'] - 1) < abs(svg['sharpness'] - 1) else 'NO'})"
            )
        if full["psnr_mean"] is not None and svg["psnr_mean"] is not None:
            gap = svg["psnr_mean"] - full["psnr_mean"]
            parts.append(
                f"PSNR {gap:+.2f} dB below mse ({'within' if gap <= 0.5 else 'NOT within'} 0.5 dB)"
            )
        out.append("3. loss=full vs loss=mse: " + "; ".join(parts))
    cap = [(mk, _find(rows, control, name)) for mk, name in CAPACITY.items()]
    cap = [(mk, r) for mk, r in cap if r is not None]
    if len(cap) > 1:
        series = ", ".join(
            f"M={m} K={k} ({_fmt(r['params'])} params): {_fmt(r['psnr_mean'])} dB / {_fmt(r['ssim_mean'], 3)}"
            for (m, k), r in cap
        )
        vals = [r["psnr_mean"] or -1e9 for _, r in cap]
        grows = all(b > a for a, b in zip(vals, vals[1:], strict=False))
        out.append(
            f"4. capacity (PSNR mean / SSIM mean): {series} (grows with size: {'yes' if grows else 'NO'})"
        )
    vsvg, vcopy = _find(rows, "video", "svg-mse"), _find(rows, "video", COPY)
    if vsvg and vcopy:
        out.append("5. real video, svg-mse vs copy-last-frame: " + cmp(vsvg, vcopy, "psnr_mean"))
    for data, report in reports.items():
        for battle in report.get("gam", []):
            out.append(f"GAM ({data}): {json.dumps(battle, default=str)[:400]}")
    return out


def ablation_findings(rows: list[dict]) -> list[str]:
    """One line per run of an ablation report: its PSNR, SSIM, SWD and sharpness, each with its
    difference from svg-mse's in the same report (same clips, same samples), and whether its
    PSNR beats copy-last-frame's (svg-mse's too)."""
    ref = next((r for r in rows if r["run"] == "svg-mse"), None)
    if ref is None:
        return ["(svg-mse is not trained: nothing to compare against)"]
    copy = next((r for r in rows if r["run"] == COPY), None)

    def beats_copy(r: dict) -> str | None:
        """ "yes" / "NO": does ``r``'s mean PSNR beat copy-last-frame's (None: not measured)."""
        if copy is None or r["psnr_mean"] is None or copy["psnr_mean"] is None:
            return None
        return "yes" if r["psnr_mean"] > copy["psnr_mean"] else "NO"

    out = []
    for r in rows:
        if r["run"] == COPY:
            continue
        verdict = beats_copy(r)
        if r["run"] == "svg-mse":
            if verdict:
                out.append(
                    f"svg-mse: PSNR {r['psnr_mean']:.2f} against copy-last-frame's "
                    f"{copy['psnr_mean']:.2f} (beats it: {verdict})"
                )
            continue
        parts = []
        for key, digits, label in (
            ("psnr_mean", 2, "PSNR"),
            ("ssim_mean", 3, "SSIM"),
            ("swd", 2, "SWD"),
            ("sharpness", 3, "sharpness"),
        ):
            a, b = r[key], ref[key]
            if a is None or b is None:
                parts.append(f"{label} not measured")
            else:
                parts.append(f"{label} {a:.{digits}f} ({a - b:+.{digits}f})")
        if verdict:
            parts.append(f"beats copy-last-frame's PSNR {copy['psnr_mean']:.2f}: {verdict}")
        out.append(f"{r['run']}: " + ", ".join(parts))
    return out


def _table(rows: list[dict]) -> list[str]:
    head = "| run | steps | params | PSNR mean | PSNR best-of-8 | SSIM mean | SSIM best-of-8 | PSNR t+10 | SWD | FD | sharpness |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['run']} | {_fmt(r['steps'])} | {_fmt(r['params'])} | {_fmt(r['psnr_mean'])} | "
            f"{_fmt(r['psnr_best'])} | {_fmt(r['ssim_mean'], 3)} | {_fmt(r['ssim_best'], 3)} | "
            f"{_fmt(r['psnr_step10'])} | {_fmt(r['swd'])} | {_fmt(r['fd'])} | {_fmt(r['sharpness'], 3)} |"
        )
    return lines


def _per_step(rows: list[dict], key: str, digits: int) -> list[str]:
    lines = ["| run | " + " | ".join(f"t+{i}" for i in range(1, N_FUTURE + 1)) + " |"]
    lines.append("|" + "---|" * (N_FUTURE + 1))
    for r in rows:
        curve = r["_curves"].get(key)
        if curve:
            lines.append(f"| {r['run']} | " + " | ".join(f"{v:.{digits}f}" for v in curve) + " |")
    return lines


def write_results(
    s: Settings,
    rows: list[dict],
    reports: dict[str, dict],
    meta: dict,
    ablations: dict[str, list[dict]] | None = None,
) -> Path:
    s.results.mkdir(parents=True, exist_ok=True)
    name = "video_quality_quick" if s.quick else "video_quality"
    write_csv(s.results / f"{name}.csv", rows)
    md = [
        f"# Video quality: does the model predict?{' (--quick: tiny settings, not evidence)' if s.quick else ''}",
        "",
    ]
    md += [
        f"Command: `{meta['command']}`",
        "",
        f"Machine: {meta['machine']}. Date {meta['date']}, commit {meta['commit']}, "
        f"total wall time of this invocation {meta['wall_min']:.1f} min (training runs may come "
        "from earlier invocations: resumable).",
        "",
        f"Protocol: {N_PAST} context frames, {N_FUTURE} predicted frames, up to {NUM_VIDEOS} "
        f"held-out clips (non-overlapping windows, seed 0), {SAMPLES} prior samples per clip; "
        "'mean' = mean over samples, 'best' = best of 8 per clip (SVG's protocol); PSNR/SSIM "
        "averaged over the predicted steps; PSNR t+10 = mean over samples at the last step; SWD "
        "x1e3 (Karras et al.) on sample 0; FD = Frechet distance of a fixed random 3-D conv net "
        "(not FVD); sharpness = mean gradient magnitude of the prediction / of the truth (1 = as "
        "sharp as the truth).",
        "",
        f"Training: `worldmodel.pretrain` with {' '.join(s.batch)}, steps={s.steps}, train.seed {s.seed}, "
        "the same for every run (equal budget); per-run overrides below.",
        "",
    ]
    if meta.get("unfinished"):
        md += [
            "Not trained to the budget when this was written (left out of the tables): "
            + ", ".join(meta["unfinished"])
            + ".",
            "",
        ]
    md += ["## Findings (results 1-5 of the issue)", ""]
    md += [f"- {line}" for line in findings(rows, reports, s.env)] or ["- (no runs evaluated yet)"]
    md.append("")
    for data, report in reports.items():
        drows = [r for r in rows if r["data"] == data]
        n = report.get("protocol", {}).get("num_videos")
        md += [
            f"## {data}",
            "",
            f"Held-out clips: {n}; data: {report.get('protocol', {}).get('dataset')}.",
            "",
        ]
        md += _table(drows) + [""]
        for key, digits, title in (
            ("psnr_mean", 2, "PSNR, mean over samples, per predicted step"),
            ("psnr_best", 2, "PSNR, best of 8, per predicted step"),
            ("ssim_mean", 3, "SSIM, mean over samples, per predicted step"),
            ("ssim_best", 3, "SSIM, best of 8, per predicted step"),
        ):
            md += [f"{title}:", ""] + _per_step(drows, key, digits) + [""]
        skipped = report.get("skipped") or {}
        if skipped:
            md += ["Skipped metrics: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()), ""]
        for img in meta.get("images", {}).get(data, []):
            md += [f"![{img}]({img})", ""]
    for data, arows in (ablations or {}).items():
        md += [
            f"## Ablations ({data})",
            "",
            "One change each against svg-mse or svg-full (overrides under Runs): which part of "
            "`loss=full` helps and which hurts, and the composite decoder (`model.composite`), "
            "evaluated together with both in a report of their own (same clips and samples as "
            "above; not in the csv). In brackets: the difference from svg-mse.",
            "",
        ]
        md += [f"- {line}" for line in ablation_findings(arows)] + [""]
        md += _table(arows) + [""]
        md += ["PSNR, mean over samples, per predicted step:", ""]
        md += _per_step(arows, "psnr_mean", 2) + [""]
    md += ["## Runs", "", "| data | run | pretrain overrides |", "|---|---|---|"]
    for data, run in meta["runs"]:
        md.append(f"| {data} | {run.name} | `{' '.join(run.overrides())}` |")
    path = s.results / f"{name}.md"
    path.write_text("\n".join(md) + "\n")
    return path


def copy_images(s: Settings, data: str, name: str) -> list[str]:
    """Per-step plots and one sample strip of the evaluation, copied next to the results."""
    src = s.workdir / "eval" / s.tagged(data)
    taken = []
    for plot in sorted((src / "plots").glob("*.png")):
        dst = f"{name}_{data}_{plot.stem}.png"
        shutil.copyfile(plot, s.results / dst)
        taken.append(dst)
    strips = sorted((src / "videos").glob("*.png"))
    if strips:
        dst = f"{name}_{data}_strip.png"
        shutil.copyfile(strips[0], s.results / dst)
        taken.append(dst)
    return taken


# ---------------------------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny settings: the pipeline in minutes")
    p.add_argument(
        "--runs",
        default="all",
        help="comma-separated run names; 'main' = the issue's runs, 'ablations' = the anti-blur "
        "ablations, 'all' (default) = both",
    )
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default 4000)")
    p.add_argument("--jobs", type=int, default=2, help="training runs side by side (1 thread each)")
    p.add_argument("--workdir", type=Path, default=None, help="default runs/video_quality[_quick]")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="train.seed of every run (default 0); another seed trains under "
        "<workdir>/<data>-seed<N> and evaluates on the same clips",
    )
    p.add_argument("--video-src", type=Path, default=None, help="a folder of your own videos")
    p.add_argument("--env", default="cheetah", help="environment preset of the control data")
    p.add_argument(
        "--data",
        default="all",
        choices=["all", "control", "video"],
        help="which data sets: the control data (--env), the real video (--video-src) or all "
        "(default; the video only with --video-src)",
    )
    p.add_argument(
        "--train-only",
        action="store_true",
        help="stop after training (run the command again without it to evaluate every run)",
    )
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="train nothing: evaluate the runs that have finished (unfinished ones are listed)",
    )
    a = p.parse_args(argv)
    groups = {
        "main": [r.name for r in RUNS],
        "ablations": [r.name for r in ABLATIONS],
        "all": [r.name for r in (*RUNS, *ABLATIONS)],
    }
    names = groups["all"]
    wanted = [n for x in a.runs.split(",") if x.strip() for n in groups.get(x.strip(), [x.strip()])]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        p.error(f"unknown runs {unknown}; choose from {names}")
    s = Settings(
        workdir=a.workdir
        or ROOT / "runs" / ("video_quality_quick" if a.quick else "video_quality"),
        results=a.results,
        steps=a.steps or (6 if a.quick else 4000),
        jobs=max(1, a.jobs),
        quick=a.quick,
        env=a.env,
        video_src=a.video_src,
        runs=[r for r in (*RUNS, *ABLATIONS) if r.name in wanted],
        train_only=a.train_only,
        eval_only=a.eval_only,
        seed=a.seed,
    )
    if a.train_only and a.eval_only:
        p.error("--train-only and --eval-only exclude each other")
    if a.data == "video" and a.video_src is None:
        p.error("--data video needs --video-src DIR")
    if a.data == "control":
        s.video_src = None
    s.control = a.data != "video"
    if a.quick:
        s.train_episodes, s.test_episodes = 3, 2
        s.batch = (
            "train.batch_size=4",
            "train.seq_len=12",
            f"train.n_past={N_PAST}",
            "model.rnn_units=32",
            "model.nf=8",
            "model.g_dim=16",
            "model.z_dim=4",
        )
        s.eval_extra = (
            "samples=2",
            "num_videos=8",
            "metrics=[psnr,ssim,swd,sharpness,gam]",
            "visualize=1",
        )
    return s


def _data_of(s: Settings, run: Run) -> list[str]:
    """The data sets of a run: "cheetah" stands for the control data (``--env``)."""
    return [s.env if d == "cheetah" else d for d in run.data]


def main(argv: list[str] | None = None) -> int:
    t0 = time.time()
    s = parse(argv)
    data_dirs = {s.env: ensure_cheetah(s)} if s.control else {}
    video = ensure_video(s)
    if video is not None:
        data_dirs["video"] = video
    jobs = [(d, data_dirs[d][0], r) for r in s.runs for d in _data_of(s, r) if d in data_dirs]
    unfinished: list[str] = []
    if s.eval_only:
        failed = []
        unfinished = [
            f"{d}/{r.name}" for d, _, r in jobs if trained_steps(run_dir(s, d, r)) < s.steps
        ]
        if unfinished:
            print(f"[eval] not finished, left out: {', '.join(unfinished)}", flush=True)
    else:
        failed = train_all(s, jobs)
    if s.train_only:
        print(f"training done{f'; failed: {failed}' if failed else ''}", flush=True)
        return 1 if failed else 0
    reports: dict[str, dict] = {}
    rows: list[dict] = []
    images: dict[str, list[str]] = {}
    name = "video_quality_quick" if s.quick else "video_quality"
    s.results.mkdir(parents=True, exist_ok=True)
    ablation_rows: dict[str, list[dict]] = {}
    for data, (_, test_dir) in data_dirs.items():
        runs = [r for r in s.runs if data in _data_of(s, r)]
        report = evaluate(s, data, test_dir, [r for r in runs if r not in ABLATIONS])
        if report is not None:
            reports[data] = report
            rows += rows_of(data, report)
            images[data] = copy_images(s, data, name)
        ablations = [r for r in runs if r in ABLATIONS]
        if ablations:
            refs = [r for r in RUNS if r.name in ABLATION_REFERENCES]
            report = evaluate(s, data, test_dir, refs + ablations, tag="-ablations")
            if report is not None:
                ablation_rows[data] = rows_of(data, report)
    meta = {
        "command": "python bench/video_quality.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_line().removeprefix("machine: "),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "commit": _commit(),
        "wall_min": (time.time() - t0) / 60,
        "runs": [(d, r) for d, _, r in jobs if f"{d}/{r.name}" not in unfinished],
        "images": images,
        "unfinished": unfinished,
    }
    path = write_results(s, rows, reports, meta, ablation_rows)
    print(f"wrote {path}", flush=True)
    for line in findings(rows, reports, s.env):
        print(line)
    if failed:
        print(f"failed runs: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
