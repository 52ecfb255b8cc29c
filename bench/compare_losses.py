"""Plain SVG (``loss=mse``) against the anti-blur losses (``loss=full``), same everything else.

    .venv/bin/python bench/compare_losses.py --steps 300 --model svg --M 0.5 --K 0.5 --threads 1
    .venv/bin/python bench/compare_losses.py --steps 300 --full-override loss.progressive.enabled=false

One command, four stages:

1. data: ``--episodes`` cheetah episodes for training (reset seeds ``0 ..``) and
   ``--test-episodes`` held-out ones (reset seeds ``10000 ..``), recorded with
   :func:`envs.collect.run` under ``--workdir/data`` (episodes already there are reused: file ``k``
   always has seed ``seed + k``, so only the missing ones are recorded);
2. training: :func:`worldmodel.pretrain.run` twice, with configs composed from configs/pretrain.yaml
   exactly as ``python -m worldmodel.pretrain`` would (hydra's compose API): ``loss=mse`` and
   ``loss=full`` with the same model, data, seed (same initial weights and same batches) and steps;
   ``--full-override`` adds overrides to the ``loss=full`` run only (say which in the report);
3. evaluation on fixed clips of the held-out episodes (``--n-past`` context frames, ``--n-future``
   predicted), the same clips and the same prior-noise seed for both checkpoints, ``--samples``
   prior samples per clip: PSNR and SSIM per predicted step (mean over samples and best of S, the
   sample with the best time-averaged value per clip), sharpness (gradient-magnitude ratio to the
   truth, 1 = as sharp) and Mathieu et al.'s sharpness difference (dB, mean over samples), and the
   copy-last-context-frame baseline;
4. report: a table on stdout, ``--out/compare_losses.md`` and ``.json`` (command, steps, wall
   times, step times, model size, final loss terms, the discriminator's pauses, per-step curves).

``--probe-steps N`` also times N steps of the *unmodified* ``loss=full`` preset and of ``loss=mse``
(after one warm-up step each) so the per-step cost of the full objective is on record even when the
comparison run changes the discriminator.

Nothing here asserts anything; the numbers are what they are.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from worldmodel import pretrain  # noqa: E402
from worldmodel.data import EpisodeDataset, SequenceSampler, load_episode  # noqa: E402
from worldmodel.metrics import per_step_metrics, sharpness, sharpness_difference  # noqa: E402
from worldmodel.model.svg import WorldModel  # noqa: E402
from worldmodel.training.checkpoint import model_from_checkpoint  # noqa: E402
from worldmodel.training.train import predict  # noqa: E402
from worldmodel.training.training_setup import build_trainer, resolve_model_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")
TEST_SEED = 10_000  # held-out episodes are reset with seeds 10000, 10001, ...
LOSSES = ("mse", "full")


# ------------------------------------------------------------------------------------------ data


def ensure_episodes(directory: Path, episodes: int, seed: int, env: str, size: int) -> Path:
    """Make ``directory`` hold exactly ``episodes`` episodes (file ``k`` reset with ``seed + k``)."""
    from envs.collect import run as collect
    from envs.config import CollectConfig, EnvConfig
    from envs.episodes import episode_paths

    have = len(episode_paths(directory)) if directory.exists() else 0
    if have > episodes:
        raise ValueError(
            f"{directory} holds {have} episodes but {episodes} were asked for; "
            "pass the matching --episodes/--test-episodes or another --workdir"
        )
    if have < episodes:
        print(f"recording {episodes - have} {env} episodes into {directory} ...", flush=True)
        collect(
            CollectConfig(
                env=EnvConfig(name=env, size=size),
                episodes=episodes - have,
                out=str(directory),
                seed=seed,
                num_envs=1,
                vectorization="sync",
                progress=False,
            )
        )
    return directory


def make_clips(
    directory: Path, length: int, stride: int
) -> tuple[torch.Tensor, torch.Tensor | None, list[tuple[str, int]]]:
    """Fixed clips of ``length`` frames from every episode, starting at 0, stride, 2 stride, ...

    Returns:
        obs uint8 ``(N, L, 3, H, W)``, actions float32 ``(N, L-1, A)`` (or None), and each clip's
        ``(file name, start)``.
    """
    obs, act, where = [], [], []
    for path in sorted(directory.glob("episode-*.npz")):
        ep = load_episode(path)
        for start in range(0, ep.num_frames - length + 1, stride):
            obs.append(torch.from_numpy(ep.obs[start : start + length]).permute(0, 3, 1, 2))
            if ep.action is not None:
                act.append(torch.from_numpy(ep.action[start : start + length - 1]))
            where.append((path.name, start))
    if not obs:
        raise ValueError(f"no clip of {length} frames fits in the episodes of {directory}")
    return torch.stack(obs), (torch.stack(act) if act else None), where


# -------------------------------------------------------------------------------------- training


def compose_pretrain(overrides: list[str]) -> pretrain.PretrainConfig:
    """The config ``python -m worldmodel.pretrain <overrides>`` would run with."""
    pretrain.register_configs()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return OmegaConf.to_object(compose("pretrain", overrides=overrides))


def model_overrides(args: argparse.Namespace) -> list[str]:
    out = [f"model={args.model}"]
    if args.M is not None:
        out.append(f"model.M={args.M}")
    if args.K is not None:
        out.append(f"model.K={args.K}")
    return out


def run_overrides(args: argparse.Namespace, loss: str, data: Path, out: Path) -> list[str]:
    """Every override of one training run (the same for both losses but ``loss=`` and extras)."""
    overrides = [
        f"data={data}",
        *model_overrides(args),
        f"loss={loss}",
        f"steps={args.steps}",
        f"train.seed={args.seed}",
        f"train.batch_size={args.batch_size}",
        f"train.seq_len={args.seq_len}",
        f"train.n_past={args.n_past}",
        "device=cpu",
        f"out={out}",
        "video_every=0",
        f"ckpt_every={args.steps}",
        f"log_every={args.log_every}",
        f"progress={str(args.progress).lower()}",
        *args.override,
    ]
    if loss == "full":
        overrides += args.full_override
    return overrides


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """All scalars of a run's TensorBoard logs: tag -> [(step, value), ...]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tail_mean(series: list[tuple[int, float]], last_steps: int) -> float | None:
    """Mean of the values logged in the last ``last_steps`` steps of a series."""
    if not series:
        return None
    end = series[-1][0]
    vals = [v for s, v in series if s > end - last_steps]
    return float(np.mean(vals))


def train_one(args: argparse.Namespace, loss: str, data: Path) -> dict[str, Any]:
    """Train (or reuse, with --reuse-runs) one run; returns its record for the report."""
    size = "".join(f"-{k}{v:g}" for k, v in (("M", args.M), ("K", args.K)) if v is not None)
    out = Path(args.workdir) / "runs" / f"{loss}-{args.model}{size}-s{args.steps}"
    overrides = run_overrides(args, loss, data, out)
    cfg = compose_pretrain(overrides)
    stamp = out / "bench_overrides.json"
    reuse = (
        args.reuse_runs
        and (out / "summary.json").exists()
        and stamp.exists()
        and json.loads(stamp.read_text()) == overrides
    )
    if reuse:
        print(f"[{loss}] reusing {out}", flush=True)
        summary = json.loads((out / "summary.json").read_text())
        total_wall = json.loads(stamp.with_name("bench_wall.json").read_text())["total_wall_s"]
    else:
        print(f"[{loss}] python -m worldmodel.pretrain {' '.join(overrides)}", flush=True)
        t0 = time.perf_counter()
        summary = pretrain.run(cfg)
        total_wall = time.perf_counter() - t0
        stamp.write_text(json.dumps(overrides))
        stamp.with_name("bench_wall.json").write_text(json.dumps({"total_wall_s": total_wall}))

    ckpt = torch.load(summary["checkpoint"], map_location="cpu", weights_only=True)
    disc_state = ckpt["state"].get("discriminator")
    disc = None
    if disc_state is not None:
        disc = {
            "updates_attempted": int(ckpt["state"]["global_step"]),  # one per generator step
            "paused_steps": int(disc_state["paused_steps"]),
            "pause_events": int(disc_state["pause_events"]),
            "paused_at_end": bool(disc_state["paused"]),
            "discriminator_parameters": sum(
                v.numel() for v in disc_state["discriminator"].values()
            ),
        }
    scalars = read_scalars(out / "tb")
    window = max(args.log_every, args.steps // 10)
    end_terms = {
        tag: tail_mean(series, window)
        for tag, series in scalars.items()
        if tag.startswith(("loss/", "disc/", "train/kl", "train/loss", "train/grad_norm"))
    }
    weights = {**cfg.objective.weights(), **cfg.loss.weights()}
    weighted = {
        name: weights[name] * value
        for tag, value in end_terms.items()
        if tag.startswith("loss/") and (name := tag.split("/", 1)[1]) in weights
    }
    steps = int(summary["steps"])
    return {
        "loss": loss,
        "command": "python -m worldmodel.pretrain " + " ".join(shlex.quote(o) for o in overrides),
        "overrides": overrides,
        "config": {
            "model": asdict(cfg.model),
            "loss": asdict(cfg.loss),
            "train": asdict(cfg.train),
        },
        "checkpoint": summary["checkpoint"],
        "steps": steps,
        "parameters": int(summary["parameters"]),
        "train_wall_s": float(summary["wall_s"]),
        "total_wall_s": float(total_wall),
        "s_per_step": float(summary["wall_s"]) / max(steps, 1),
        "nonfinite_steps": int(summary["nonfinite_steps"]),
        "end_window_steps": window,
        "end_terms": end_terms,
        "end_weighted_terms": weighted,
        "weights": weights,
        "discriminator": disc,
        "reused": bool(reuse),
    }


def probe_step_time(args: argparse.Namespace, data: Path, loss: str, steps: int) -> dict[str, Any]:
    """Seconds per optimisation step of an unmodified preset (after one warm-up step)."""
    cfg = compose_pretrain([f"data={data}", *model_overrides(args), f"loss={loss}", "device=cpu"])
    cfg.train.batch_size, cfg.train.seq_len = args.batch_size, args.seq_len
    dataset = EpisodeDataset(data)
    sampler = SequenceSampler(dataset, cfg.train.seq_len, cfg.train.batch_size, seed=args.seed)
    torch.manual_seed(args.seed)
    model_cfg = resolve_model_config(cfg.model, cfg.loss)
    model = WorldModel(model_cfg, dataset.image_size, dataset.action_dim or 0)
    trainer = build_trainer(model, cfg.train, cfg.objective, cfg.loss, "cpu")
    trainer.step(sampler.sample())
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step(sampler.sample())
    return {
        "loss": loss,
        "preset": f"configs/loss/{loss}.yaml",
        "s_per_step": (time.perf_counter() - t0) / steps,
        "steps_timed": steps,
        "precision": str(trainer.amp_dtype or torch.float32),
    }


# ------------------------------------------------------------------------------------ evaluation


def curves(
    pred: torch.Tensor, target: torch.Tensor, protocol_note: str
) -> dict[str, dict[str, Any]]:
    """Per-step curves of one method: pred ``(B, S, T, 3, H, W)``, target ``(B, T, 3, H, W)``."""
    res = per_step_metrics(pred, target, ("psnr", "ssim"))
    out: dict[str, dict[str, Any]] = {}
    for key, curve in res.items():
        out[key] = {"curve": curve.curve.tolist(), "mean": curve.mean}
    target_s = target.unsqueeze(1).expand_as(pred)
    sharp = sharpness(pred, target_s)  # (B, S, T)
    sdiff = sharpness_difference(pred, target_s, max_db=100.0)
    for key, values in (("sharpness/mean", sharp), ("sharp_diff_db/mean", sdiff)):
        curve = values.mean(dim=(0, 1))
        out[key] = {"curve": curve.tolist(), "mean": float(curve.mean())}
    out["protocol"] = {"note": protocol_note, **res["psnr/mean"].protocol.to_dict()}
    return out


@torch.no_grad()
def evaluate(
    ckpt: str, obs: torch.Tensor, action: torch.Tensor | None, args: argparse.Namespace
) -> tuple[dict[str, Any], torch.Tensor]:
    """Prior samples of a checkpoint on the clips (same noise seed for every checkpoint)."""
    model = model_from_checkpoint(ckpt, "cpu")
    generator = torch.Generator().manual_seed(args.eval_seed)
    preds = []
    for i in range(0, obs.shape[0], args.eval_batch):
        o = obs[i : i + args.eval_batch].float() / 255
        a = None if action is None else action[i : i + args.eval_batch]
        preds.append(predict(model, o, a, args.n_past, args.n_future, args.samples, generator))
    pred = torch.cat(preds).clamp(0, 1)  # (N, S, T, 3, H, W)
    target = obs[:, args.n_past :].float() / 255
    return curves(pred, target, f"prior samples, generator seed {args.eval_seed}"), pred


# ---------------------------------------------------------------------------------------- report


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def summary_table(results: dict[str, dict[str, Any]], samples: int) -> str:
    head = (
        f"| method | PSNR mean | PSNR best-of-{samples} | SSIM mean | SSIM best-of-{samples} | "
        "sharpness (ratio) | sharp. diff (dB) |\n|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name, r in results.items():
        rows.append(
            f"| {name} | {fmt(r['psnr/mean']['mean'], 2)} | {fmt(r['psnr/best']['mean'], 2)} | "
            f"{fmt(r['ssim/mean']['mean'])} | {fmt(r['ssim/best']['mean'])} | "
            f"{fmt(r['sharpness/mean']['mean'])} | {fmt(r['sharp_diff_db/mean']['mean'], 2)} |"
        )
    return head + "\n".join(rows) + "\n"


def per_step_table(results: dict[str, dict[str, Any]], key: str, digits: int) -> str:
    t = len(next(iter(results.values()))[key]["curve"])
    head = "| method | " + " | ".join(f"t+{i + 1}" for i in range(t)) + " |\n"
    head += "|---" * (t + 1) + "|\n"
    rows = [
        f"| {name} | " + " | ".join(fmt(v, digits) for v in r[key]["curve"]) + " |"
        for name, r in results.items()
    ]
    return head + "\n".join(rows) + "\n"


def training_table(runs: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| run | steps | params | train wall (s) | s/step | end terms (unweighted; weighted) | "
        "discriminator |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        terms = ", ".join(
            f"{k.split('/', 1)[1]} {v:.4g}; {r['end_weighted_terms'].get(k.split('/', 1)[1], 0):.3g}"
            for k, v in r["end_terms"].items()
            if k.startswith("loss/") and v is not None
        )
        d = r["discriminator"]
        dtxt = (
            "none"
            if d is None
            else f"{d['paused_steps']}/{d['updates_attempted']} updates paused "
            f"({d['pause_events']} pauses, paused at end: {d['paused_at_end']}); "
            f"{d['discriminator_parameters']:,} params"
        )
        lines.append(
            f"| {name} | {r['steps']} | {r['parameters']:,} | {r['train_wall_s']:.0f} | "
            f"{r['s_per_step']:.2f} | {terms} | {dtxt} |"
        )
    return "\n".join(lines) + "\n"


def git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
            or None
        )
    except OSError:
        return None


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    a = report["args"]
    runs = report["runs"]
    full = runs.get("full", {})
    disc_tags = {k: v for k, v in full.get("end_terms", {}).items() if k.startswith("disc/")}
    lines = [
        "# Plain SVG (loss=mse) vs anti-blur losses (loss=full)",
        "",
        f"Command (from the repository root): `{report['command']}`",
        "",
        f"Date {report['date']}, commit {report['commit']}, {report['machine']}, "
        f"torch {report['torch']}, {a['threads']} thread(s). Total wall time "
        f"{report['total_wall_s'] / 60:.1f} min.",
        "",
        "## Setup",
        f"- Data: {report['data']['train_episodes']} cheetah-run episodes for training "
        f"({report['data']['train_frames']:,} frames, reset seeds 0..{a['episodes'] - 1}), "
        f"{report['data']['test_episodes']} held-out episodes (reset seeds {TEST_SEED}..), random "
        "policy, 64 px, action repeat 4.",
        f"- Model: `{' '.join(report['model_overrides'])}` ({report['parameters']:,} parameters), "
        f"batch {a['batch_size']} x {a['seq_len']} frames, {a['n_past']} context frames, "
        f"{a['steps']} steps each, train.seed {a['seed']} (same initial weights and batches).",
        f"- Extra overrides for loss=full: `{' '.join(a['full_override']) or '(none)'}`; for both: "
        f"`{' '.join(a['override']) or '(none)'}`.",
        f"- Evaluation: {report['eval']['clips']} clips of {a['n_past']} + {a['n_future']} frames "
        f"(every {a['clip_stride']} frames of each held-out episode), {a['samples']} prior samples "
        f"per clip with generator seed {a['eval_seed']} for every model; copy-last-frame = the last "
        "context frame repeated. PSNR/SSIM: mean over samples, and best of S (per clip the sample "
        "with the best time-averaged value). Sharpness = mean gradient magnitude of the prediction / "
        "of the truth (1 = as sharp; the copy baseline is a real frame, hence ~1 whatever its "
        "error); sharp. diff = Mathieu et al.'s sharpness difference (higher = gradients closer to "
        "the truth's, pixel by pixel); both averaged over samples, clips and steps.",
        "",
        "## Results (held-out episodes, averaged over the predicted steps)",
        "",
        report["tables"]["summary"],
        "PSNR (mean over samples) per predicted step:",
        "",
        report["tables"]["psnr_steps"],
        "SSIM (mean over samples) per predicted step:",
        "",
        report["tables"]["ssim_steps"],
        "Sharpness ratio per predicted step:",
        "",
        report["tables"]["sharp_steps"],
        "## Training",
        "",
        report["tables"]["training"],
        f"End terms: mean of the values logged over the last {full.get('end_window_steps', '?')} "
        "steps; each term as the trainer logs it (recon: per-pixel mean; anti-blur terms divided by "
        "the pixels per frame), then times its weight.",
        "",
    ]
    if disc_tags:
        lines += [
            "Discriminator logs over the same window: "
            + ", ".join(
                f"{k.removeprefix('disc/')} {v:.3g}" for k, v in disc_tags.items() if v is not None
            ),
            "",
        ]
    if report["probe"]:
        lines += ["## Step time of the unmodified presets (same model, batch, machine)", ""]
        lines += ["| preset | s/step | precision |", "|---|---|---|"]
        for p in report["probe"]:
            lines.append(f"| {p['preset']} | {p['s_per_step']:.2f} | {p['precision']} |")
        lines.append("")
    if report.get("notes"):
        lines += ["## Notes", "", report["notes"], ""]
    path.write_text("\n".join(lines))


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="training steps of each run")
    p.add_argument("--model", choices=("tiny", "svg"), default="svg")
    p.add_argument("--M", type=float, default=None, help="model.M (LSTM width multiplier)")
    p.add_argument("--K", type=float, default=None, help="model.K (conv width multiplier)")
    p.add_argument("--episodes", type=int, default=20, help="training episodes")
    p.add_argument("--test-episodes", type=int, default=4, help="held-out episodes")
    p.add_argument("--env", default="cheetah")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results directory")
    p.add_argument("--workdir", default=str(ROOT / "runs" / "compare_losses"), help="data, runs")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy box)"
    )
    p.add_argument("--seed", type=int, default=0, help="train.seed: initial weights and batches")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=12)
    p.add_argument("--n-past", type=int, default=2)
    p.add_argument("--n-future", type=int, default=10)
    p.add_argument("--samples", type=int, default=8, help="prior samples per test clip")
    p.add_argument("--clip-stride", type=int, default=50, help="frames between test clip starts")
    p.add_argument("--eval-seed", type=int, default=1234)
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--probe-steps", type=int, default=3, help="0 skips timing the raw presets")
    p.add_argument("--override", action="append", default=[], help="hydra override, both runs")
    p.add_argument(
        "--full-override", action="append", default=[], help="hydra override, loss=full run only"
    )
    p.add_argument("--reuse-runs", action="store_true", help="reuse finished identical runs")
    p.add_argument("--progress", action="store_true", help="show the training progress bars")
    p.add_argument("--notes", default="", help="text added to the markdown report")
    args = p.parse_args(argv)
    for name in ("steps", "episodes", "test_episodes", "threads", "samples", "clip_stride"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.n_past + args.n_future < 2 or args.n_past < 1:
        p.error("--n-past must be >= 1 and n_past + n_future >= 2")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    work = Path(args.workdir)
    size = 64
    train_dir = ensure_episodes(
        work / "data" / f"{args.env}-train-seed{args.seed}", args.episodes, 0, args.env, size
    )
    test_dir = ensure_episodes(
        work / "data" / f"{args.env}-test-seed{TEST_SEED}",
        args.test_episodes,
        TEST_SEED,
        args.env,
        size,
    )
    train_set = EpisodeDataset(train_dir)

    runs = {loss: train_one(args, loss, train_dir) for loss in LOSSES}
    probe = []
    if args.probe_steps > 0:
        for loss in LOSSES:
            print(
                f"timing {args.probe_steps} steps of the unmodified loss={loss} preset ...",
                flush=True,
            )
            probe.append(probe_step_time(args, train_dir, loss, args.probe_steps))

    obs, action, where = make_clips(test_dir, args.n_past + args.n_future, args.clip_stride)
    results: dict[str, dict[str, Any]] = {}
    for loss in LOSSES:
        print(
            f"evaluating loss={loss} on {obs.shape[0]} clips x {args.samples} samples", flush=True
        )
        results[f"SVG loss={loss}"], _ = evaluate(runs[loss]["checkpoint"], obs, action, args)
    target = obs[:, args.n_past :].float() / 255
    copy = (obs[:, args.n_past - 1 : args.n_past].float() / 255).expand_as(target).unsqueeze(1)
    results["copy last frame"] = curves(copy, target, "deterministic baseline, 1 sample")

    tables = {
        "summary": summary_table(results, args.samples),
        "psnr_steps": per_step_table(results, "psnr/mean", 2),
        "ssim_steps": per_step_table(results, "ssim/mean", 3),
        "sharp_steps": per_step_table(results, "sharpness/mean", 3),
        "training": training_table(runs),
    }
    report = {
        "command": "python bench/compare_losses.py "
        + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "args": vars(args),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores ({platform.processor() or 'cpu'})",
        "torch": torch.__version__,
        "total_wall_s": time.perf_counter() - t_start,
        "data": {
            "train_dir": str(train_dir),
            "test_dir": str(test_dir),
            "train_episodes": train_set.num_episodes,
            "train_frames": train_set.num_frames,
            "test_episodes": args.test_episodes,
        },
        "model_overrides": model_overrides(args),
        "parameters": runs["mse"]["parameters"],
        "runs": runs,
        "probe": probe,
        "eval": {"clips": int(obs.shape[0]), "clip_sources": where},
        "results": results,
        "tables": tables,
        "notes": args.notes,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare_losses.json").write_text(json.dumps(report, indent=2, default=str))
    write_markdown(out / "compare_losses.md", report)
    print()
    print(tables["summary"])
    print(tables["training"])
    for p in probe:
        print(f"unmodified {p['preset']}: {p['s_per_step']:.2f} s/step ({p['precision']})")
    print(f"wrote {out / 'compare_losses.md'} and .json ({report['total_wall_s'] / 60:.1f} min)")
    return report


if __name__ == "__main__":
    main()
