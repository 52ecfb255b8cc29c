"""Learning curves of ``agents.cem_planner`` runs: ``bench/results/rl_<task>.{csv,md,png}``.

Reads what the loop writes into each run directory (``evaluations.csv``: one row per evaluation,
header ``seed,env_steps,wall_s,eval_return``; ``summary.json`` when the run has ended; the episode
files; Hydra's ``.hydra/overrides.yaml`` for the command) and writes, per task:

* ``rl_<task>.csv``: the evaluations of every run (seed) of the task, header
  ``seed,env_steps,wall_s,eval_return``;
* ``rl_<task>.md``: the command, seed, machine line and date of each run, its evaluation table,
  the random policy's return, the published references at 100k steps, the wall-time breakdown
  and the training-episode returns;
* ``rl_<task>.png``: evaluation return against environment steps and against wall time, with the
  references drawn as horizontal lines.

Usage (a run still going is reported as far as it got, and says so; ``--compare`` adds runs of
other settings to the report and plot but not to the csv; ``--final-eval`` adds a ``mode=eval`` of a
run's checkpoint)::

    python bench/rl_curves.py --run cheetah=runs/rl/cheetah_s0 --run cartpole=runs/rl/cartpole_s0
    python bench/rl_curves.py --run cheetah=runs/rl/cheetah_s0 --run cheetah=runs/rl/cheetah_s1
    python bench/rl_curves.py --run cartpole=runs/rl/cartpole_s0 \
        --compare cartpole=runs/rl/cartpole_rollout_s0 --final-eval runs/rl/cartpole_s0_eval10

``--note`` adds a line of context (e.g. the machine's load) to every report. The machine line is
the reporting process's (report from the machine the runs ran on, at one torch thread as the runs
had: ``--threads``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.loop import EPISODES, EVAL_EPISODES, EVALUATIONS_CSV, EVALUATIONS_HEADER  # noqa: E402
from agents.loop_state import LoopState, eta_seconds  # noqa: E402
from agents.references import REFERENCE_ENV_STEPS, references_for  # noqa: E402
from bench.common import machine_line  # noqa: E402
from episode_format import episode_paths  # noqa: E402
from worldmodel.data import load_episode  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def read_evaluations(run: Path) -> list[dict[str, float]]:
    """The rows of ``<run>/evaluations.csv`` (seed and env_steps as int, wall_s may be NaN)."""
    path = run / EVALUATIONS_CSV
    if not path.exists():
        return []
    with path.open() as f:
        header = f.readline().strip()
        if header != EVALUATIONS_HEADER:
            raise ValueError(f"{path}: header {header!r}, expected {EVALUATIONS_HEADER!r}")
        rows = []
        for rec in csv.reader(f):
            if rec:
                seed, steps, wall, ret = rec
                rows.append(
                    {
                        "seed": int(seed),
                        "env_steps": int(steps),
                        "wall_s": float(wall) if wall else float("nan"),
                        "eval_return": float(ret),
                    }
                )
    return rows


def _run_config(run: Path) -> SimpleNamespace | None:
    """The loop settings the ETA needs, from Hydra's ``.hydra/config.yaml`` of the run."""
    path = run / ".hydra" / "config.yaml"
    if not path.exists():
        return None
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    return SimpleNamespace(
        episodes=int(cfg.episodes),
        seed_episodes=int(cfg.seed_episodes),
        eval_every=int(cfg.eval_every),
        eval_episodes=int(cfg.eval_episodes),
        max_env_steps=int(cfg.get("max_env_steps", 0)),
    )


def eta_check(run: Path, at_episode: int = 10) -> dict | None:
    """The loop's ETA (:func:`agents.loop_state.eta_seconds`) as it stood after ``at_episode``
    episodes (and the evaluation due then), against the real remaining time, both from the
    modification times of the run's episode files (written as each episode ends). Only for an
    ended run of one session; None otherwise."""
    cfg = _run_config(run)
    if cfg is None or not (run / "summary.json").exists():
        return None
    summary = json.loads((run / "summary.json").read_text())
    if summary.get("resumed_at_episode") is not None:
        return None
    train = [(p.stat().st_mtime, p) for p in episode_paths(run / EPISODES)]
    evals = sorted(p.stat().st_mtime for p in episode_paths(run / EVAL_EPISODES))
    if len(train) <= at_episode or len(train) < 2:
        return None
    # events in time order: ("train", end) and ("eval", end of an evaluation's last episode)
    eval_ends = evals[cfg.eval_episodes - 1 :: cfg.eval_episodes]
    events = sorted([(t, "train") for t, _ in train] + [(t, "eval") for t in eval_ends])
    durations: dict[str, list[float]] = {"seed": [], "planned": [], "eval": []}
    state = LoopState()
    previous = None
    cut = None
    for t, kind in events:
        if kind == "train":
            if state.episodes == at_episode:
                break
            kind_name = "seed" if state.episodes < cfg.seed_episodes else "planned"
            if previous is not None:
                durations[kind_name].append(t - previous)
            state.episodes += 1
            state.env_steps = round(summary["env_steps"] / summary["episodes"] * state.episodes)
        else:
            if previous is not None:
                durations["eval"].append(t - previous)
            state.eval_at.append(state.episodes)
        previous = t
        cut = t
    eta = eta_seconds(state, cfg, durations)
    if eta is None or cut is None:
        return None
    actual = events[-1][0] - cut
    return {"at_episode": at_episode, "eta_s": eta, "actual_s": actual, "error": eta / actual - 1}


def run_info(run: Path, seed_episodes: int = 5) -> dict:
    """What the report says about one run: command, summary (if ended), training returns."""
    overrides_file = run / ".hydra" / "overrides.yaml"
    overrides = []
    if overrides_file.exists():
        overrides = [
            line[2:].strip() for line in overrides_file.read_text().splitlines() if line[:2] == "- "
        ]
    summary_file = run / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    returns = [float(load_episode(p).total_reward) for p in episode_paths(run / EPISODES)]
    command = (
        "python -m agents.cem_planner " + " ".join(overrides)
        if overrides_file.exists()
        else "unknown (no .hydra/overrides.yaml: not started from the command line)"
    )
    return {
        "command": command,
        "summary": summary,
        "train_returns": returns,
        "random_return": float(np.mean(returns[:seed_episodes])) if returns else float("nan"),
        "evaluations": read_evaluations(run),
        "eta": eta_check(run),
    }


def _fmt(x: float, digits: int = 1) -> str:
    return "-" if x is None or np.isnan(x) else f"{x:,.{digits}f}"


def write_csv(path: Path, rows: list[dict]) -> None:
    lines = [EVALUATIONS_HEADER]
    for r in rows:
        wall = "" if np.isnan(r["wall_s"]) else f"{r['wall_s']:.1f}"
        lines.append(f"{r['seed']},{r['env_steps']},{wall},{r['eval_return']:.4f}")
    path.write_text("\n".join(lines) + "\n")


def write_png(path: Path, task: str, runs: dict[Path, dict], refs: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for run, info in runs.items():
        ev = info["evaluations"]
        if not ev:
            continue
        label = f"seed {ev[0]['seed']} ({run.name})"
        steps = [r["env_steps"] for r in ev]
        walls = [r["wall_s"] / 3600 for r in ev]
        rets = [r["eval_return"] for r in ev]
        axes[0].plot(steps, rets, marker="o", ms=3, label=label)
        axes[1].plot(walls, rets, marker="o", ms=3, label=label)
    randoms = [i["random_return"] for i in runs.values() if not np.isnan(i["random_return"])]
    for ax in axes:
        if randoms:
            ax.axhline(float(np.mean(randoms)), color="0.5", ls=":", lw=1, label="random policy")
        for i, (name, value) in enumerate(refs.items()):
            ax.axhline(value, color=f"C{i + 3}", ls="--", lw=0.8, label=f"{name} at 100k")
        ax.grid(alpha=0.3)
    axes[0].set_xlabel("environment steps")
    axes[1].set_xlabel("wall time (h, this machine)")
    axes[0].set_ylabel("evaluation return")
    axes[0].axvline(REFERENCE_ENV_STEPS, color="k", lw=0.5)
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"agents.cem_planner on {task} (cpu profile)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_md(
    path: Path, task: str, runs: dict[Path, dict], refs: dict[str, float], machine: str, note: str
) -> None:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"# agents.cem_planner on {task}: learning curves", ""]
    out.append(f"Written by `python bench/rl_curves.py` on {date}.  ")
    out.append(f"{machine}  ")
    if note:
        out.append(f"{note}  ")
    if refs:
        out.append(
            f"References at {REFERENCE_ENV_STEPS:,} env steps from pixels: "
            + ", ".join(f"{k} {v:g}" for k, v in refs.items())
            + " (CURL's Table 1, DrQ, DreamerV3)."
        )
    if len(runs) > 1:
        out += comparison_table(runs)
    for run, info in runs.items():
        ev = info["evaluations"]
        summary = info["summary"]
        seed = ev[0]["seed"] if ev else "?"
        out += ["", f"## {run.name} (seed {seed})", ""]
        out.append(f"Command: `{info['command']}`  ")
        n = len(info["train_returns"])
        state = (
            "finished"
            if summary
            else f"still running or stopped when this was written ({n} episodes)"
        )
        out.append(f"Run directory: `{run}` ({state}).  ")
        out.append(f"Random policy (the seed episodes): {_fmt(info['random_return'])}.  ")
        if summary:
            times = summary.get("time_s", {})
            total = max(times.get("total", 0.0), 1e-9)
            out.append(
                f"Ended at {summary['env_steps']:,} env steps, {summary['gradient_steps']:,} "
                f"gradient steps, {summary['wall_time_s'] / 60:.1f} min; planning "
                f"{summary['plan_ms_per_action']:.0f} ms/action.  "
            )
            if times:
                out.append(
                    "Wall time: "
                    + ", ".join(
                        f"{k} {v / 60:.1f} min ({100 * v / total:.0f}%)"
                        for k, v in times.items()
                        if k != "total"
                    )
                    + "."
                )
        final = info.get("final_eval")
        if final:
            out.append(
                f"Final checkpoint evaluated with `mode=eval`, {final['episodes']} episodes in all "
                f"(`{final['command_dir']}`): **{final['mean_return']:.1f} +- "
                f"{final['std_return']:.1f}** (mean +- std over {final['episodes']} episodes; "
                f"returns {', '.join(f'{r:.0f}' for r in final['returns'])}).  "
            )
        eta = info.get("eta")
        if eta:
            out.append(
                f"ETA after {eta['at_episode']} episodes (the loop's estimate, rebuilt from the "
                f"episode files' times): {eta['eta_s'] / 60:.1f} min to go; it took "
                f"{eta['actual_s'] / 60:.1f} min ({100 * eta['error']:+.0f}%)."
            )
        out += ["", "| env steps | wall (min) | eval return |", "|---|---|---|"]
        for r in ev:
            out.append(
                f"| {r['env_steps']:,} | {_fmt(r['wall_s'] / 60)} | {r['eval_return']:.1f} |"
            )
        if ev:
            best = max(ev, key=lambda r: r["eval_return"])
            reached = [k for k, v in refs.items() if best["eval_return"] >= v]
            out += [
                "",
                f"Best evaluation: {best['eval_return']:.1f} at {best['env_steps']:,} env steps"
                + (f" (at or above {', '.join(reached)})." if reached else ".")
                + (f" Below {', '.join(k for k in refs if k not in reached)}." if refs else ""),
            ]
        tr = info["train_returns"]
        if tr:
            out += [
                "",
                "Training-episode returns (with exploration noise), by groups of 10 episodes: "
                + "; ".join(
                    f"{i}-{min(i + 9, len(tr) - 1)}: "
                    + " ".join(f"{x:.0f}" for x in tr[i : i + 10])
                    for i in range(0, len(tr), 10)
                ),
            ]
    path.write_text("\n".join(out) + "\n")


def comparison_table(runs: dict[Path, dict]) -> list[str]:
    """The runs of one task side by side (the ablation view): each run's evaluation returns at
    the env steps they share, its best, and its wall time per 1,000 env steps."""
    common = None
    for info in runs.values():
        steps = {r["env_steps"] for r in info["evaluations"]}
        common = steps if common is None else common & steps
    cols = sorted(common or ())
    head = "| run | command | " + " | ".join(f"{c // 1000}k" for c in cols)
    out = ["", "## The runs side by side", "", head + " | best (at) | wall min / 1k steps |"]
    out.append("|---|---|" + "---|" * len(cols) + "---|---|")
    for run, info in runs.items():
        by_step = {r["env_steps"]: r for r in info["evaluations"]}
        ev = info["evaluations"]
        best = max(ev, key=lambda r: r["eval_return"]) if ev else None
        last = ev[-1] if ev else None
        pace = (
            f"{last['wall_s'] / 60 / (last['env_steps'] / 1000):.2f}"
            if last and not np.isnan(last["wall_s"])
            else "-"
        )
        cells = " | ".join(f"{by_step[c]['eval_return']:.1f}" for c in cols)
        best_text = f"{best['eval_return']:.1f} ({best['env_steps'] // 1000}k)" if best else "-"
        command = info["command"].replace("python -m agents.cem_planner ", "")
        out.append(f"| {run.name} | `{command}` | {cells} | {best_text} | {pace} |")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="TASK=DIR",
        help="a run directory and the task name used in the file names (repeat)",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="TASK=DIR",
        help="a run of another setting (an ablation): in the side-by-side table, the report and "
        "the plot, not in rl_<task>.csv, which holds the --run runs only (repeat)",
    )
    parser.add_argument(
        "--final-eval",
        action="append",
        default=[],
        metavar="DIR",
        help="the work directory of a `mode=eval` run (its eval_summary.json) of a run's "
        "checkpoint: reported with that run (repeat; several of one checkpoint are pooled)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="")
    parser.add_argument("--threads", type=int, default=1, help="for the machine line")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = machine_line()
    by_task: dict[str, dict[Path, dict]] = defaultdict(dict)
    for item, compare in [(i, False) for i in args.run] + [(i, True) for i in args.compare]:
        task, _, directory = item.partition("=")
        if not directory:
            parser.error(f"--run/--compare {item!r}: expected TASK=DIR")
        run = Path(directory)
        by_task[task][run] = {**run_info(run), "compare": compare}
    for directory in args.final_eval:
        ev = json.loads((Path(directory) / "eval_summary.json").read_text())
        ckpt = Path(ev["checkpoint"]).resolve()
        for runs in by_task.values():
            for run, info in runs.items():
                if run.resolve() in ckpt.parents:  # several of one checkpoint: pooled
                    before = info.get("final_eval")
                    if before:
                        returns = before["returns"] + ev["returns"]
                        dirs = f"{before['command_dir']}`, `{directory}"
                        ev = {
                            **ev,
                            "returns": returns,
                            "episodes": len(returns),
                            "mean_return": float(np.mean(returns)),
                            "std_return": float(np.std(returns)),
                        }
                        directory = dirs
                    info["final_eval"] = {**ev, "command_dir": directory}
    args.out.mkdir(parents=True, exist_ok=True)
    for task, runs in by_task.items():
        refs = references_for(task)
        rows = [r for info in runs.values() if not info["compare"] for r in info["evaluations"]]
        write_csv(args.out / f"rl_{task}.csv", rows)
        write_md(args.out / f"rl_{task}.md", task, runs, refs, machine, args.note)
        write_png(args.out / f"rl_{task}.png", task, runs, refs)
        print(f"{task}: {len(rows)} evaluations -> {args.out}/rl_{task}.{{csv,md,png}}")


if __name__ == "__main__":
    main()
