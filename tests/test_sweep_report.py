"""worldmodel.sweep_report on a fake hydra multirun directory made of tiny runs."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from worldmodel import sweep_report as sr
from worldmodel.data import EpisodeDataset, SequenceSampler
from worldmodel.evaluation import COPY_LAST, EvaluateConfig, predictions
from worldmodel.model.svg import ModelConfig, WorldModel
from worldmodel.training.train import ObjectiveConfig, TrainConfig, Trainer

STEPS = 14  # 15-frame episodes


def write_episodes(directory: Path, n: int = 2, seed: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    meta = {"format": "worldmodel-episode/1", "env": "synthetic", "action_repeat": 1, "size": 32}
    for i in range(n):
        arrays = {
            "obs": rng.integers(0, 256, (STEPS + 1, 32, 32, 3), dtype=np.uint8),
            "action": rng.uniform(-1, 1, (STEPS, 2)).astype(np.float32),
            "reward": rng.uniform(0, 1, STEPS).astype(np.float32),
            "terminated": np.zeros(STEPS, bool),
            "truncated": np.arange(STEPS) == STEPS - 1,
            "meta": np.array(json.dumps({**meta, "seed": i, "source": "env"})),
        }
        with open(directory / f"episode-{i:06d}-{STEPS}.npz", "wb") as f:
            np.savez_compressed(f, **arrays)
    return directory


def make_run(
    run_dir: Path, data: Path, model_cfg: ModelConfig, *, steps: int, trained: int | None
) -> int:
    """A run directory as `pretrain -m` leaves it: .hydra/{config,overrides}.yaml, and (if
    ``trained`` is not None) checkpoints/last.pt after ``trained`` steps, plus summary.json when
    the run reached ``steps``. Returns the model's parameter count."""
    (run_dir / ".hydra").mkdir(parents=True)
    M = model_cfg.M
    cfg = {"data": str(data), "model": dataclasses.asdict(model_cfg), "steps": steps}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.M={M:g}"]))
    torch.manual_seed(int(M))
    dataset = EpisodeDataset(data)
    model = WorldModel(model_cfg, dataset.image_size, dataset.action_dim)
    if trained is None:
        return model.num_params()
    trainer = Trainer(
        model, TrainConfig(batch_size=2, seq_len=6, precision="fp32"), ObjectiveConfig(), "cpu"
    )
    sampler = SequenceSampler(dataset, 6, 2, seed=0)
    logs = {}
    for _ in range(trained):
        logs = trainer.step(sampler.sample())
    trainer.save(run_dir / "checkpoints" / "last.pt")
    if trained >= steps:
        summary = {"steps": trained, "parameters": model.num_params(), "final_loss": logs["loss"]}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return model.num_params()


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    return write_episodes(tmp_path_factory.mktemp("heldout"), seed=1)


@pytest.fixture(scope="module")
def sweep_template(tmp_path_factory, model_config) -> tuple[Path, dict[str, int]]:
    """model.M=1,2,3,4,5: two complete runs, one crashed without a checkpoint, one interrupted,
    and M=4 never started."""
    root = tmp_path_factory.mktemp("multirun")
    data = write_episodes(root.parent / f"{root.name}_train")
    grid = {"hydra": {"overrides": {"task": ["model.M=1,2,3,4,5", f"data={data}"]}}}
    (root / "multirun.yaml").write_text(yaml.safe_dump(grid))
    params = {
        "0_M1_K1": make_run(root / "0_M1_K1", data, model_config(M=1), steps=2, trained=2),
        "1_M2_K1": make_run(root / "1_M2_K1", data, model_config(M=2), steps=2, trained=2),
        "2_M3_K1": make_run(root / "2_M3_K1", data, model_config(M=3), steps=2, trained=None),
        "10_M5_K1": make_run(root / "10_M5_K1", data, model_config(M=5), steps=4, trained=2),
    }
    (root / "2_M3_K1" / "pretrain.log").write_text(
        "[2026-01-01][worldmodel.pretrain][ERROR] - training diverged; the last good checkpoint\n"
    )
    return root, params


@pytest.fixture
def sweep(sweep_template, tmp_path) -> tuple[Path, dict[str, int]]:
    """A fresh copy of the template sweep (tests write reports into it)."""
    template, params = sweep_template
    root = tmp_path / "sweep"
    shutil.copytree(template, root)
    return root, params


def _by_run(result: dict) -> dict[str, dict]:
    return {row["run"]: row for row in result["runs"]}


def test_table_without_evaluation_lists_every_run(sweep):
    root, params = sweep
    result = sr.sweep_report(root)
    rows = _by_run(result)
    # natural order of the run directories (2_ before 10_), then the missing grid point
    assert list(rows) == ["0_M1_K1", "1_M2_K1", "2_M3_K1", "10_M5_K1", "(model.M=4)"]
    status = {k: r["status"] for k, r in rows.items()}
    assert status == {
        "0_M1_K1": "ok",
        "1_M2_K1": "ok",
        "2_M3_K1": "failed",
        "10_M5_K1": "incomplete",
        "(model.M=4)": "missing",
    }
    assert (rows["0_M1_K1"]["M"], rows["0_M1_K1"]["K"], rows["0_M1_K1"]["variant"]) == (1, 1, "svg")
    # parameters: from summary.json, or counted from the checkpoint's model spec (meta device)
    for run in ("0_M1_K1", "1_M2_K1", "10_M5_K1"):
        assert rows[run]["parameters"] == params[run]
    assert params["0_M1_K1"] < params["1_M2_K1"] < params["10_M5_K1"]
    assert rows["0_M1_K1"]["step"] == 2 and np.isfinite(rows["0_M1_K1"]["final_loss"])
    assert "no checkpoint" in rows["2_M3_K1"]["reason"]
    assert "training diverged" in rows["2_M3_K1"]["reason"]
    assert "step 2 of 4" in rows["10_M5_K1"]["reason"]
    assert "never started" in rows["(model.M=4)"]["reason"] and rows["(model.M=4)"]["M"] == 4
    assert "not evaluated" in rows["0_M1_K1"]["reason"]

    with open(root / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["run"] for r in table] == list(rows)
    assert table[0]["parameters"] == str(params["0_M1_K1"])
    md = (root / "sweep.md").read_text()
    assert "| 2_M3_K1 | failed |" in md and "No evaluation" in md
    assert json.loads((root / "sweep.json").read_text())["runs"][0]["run"] == "0_M1_K1"
    # without evaluation metrics the plot shows the training loss against the parameters
    assert result["files"]["plot"] == "scaling.png" and (root / "scaling.png").stat().st_size > 0


def test_evaluates_each_run_then_reuses_matching_reports(sweep, heldout, monkeypatch):
    root, _ = sweep
    copy_last_calls = []
    copy_last_frame = predictions.copy_last_frame

    def counted(*args, **kwargs):
        copy_last_calls.append(args[0].shape[0])  # clips in the batch
        return copy_last_frame(*args, **kwargs)

    monkeypatch.setattr(predictions, "copy_last_frame", counted)
    protocol = EvaluateConfig(
        n_past=2,
        n_future=3,
        samples=2,
        num_videos=2,
        metrics=["psnr"],
        visualize=0,
        device="cpu",
    )
    result = sr.sweep_report(root, data=str(heldout), evaluation=protocol)
    rows = _by_run(result)
    for run in ("0_M1_K1", "1_M2_K1", "10_M5_K1"):  # the incomplete run is evaluated too
        assert np.isfinite(rows[run]["psnr/mean"]) and np.isfinite(rows[run]["psnr/best"])
        assert rows[run]["report"] == f"{run}/eval/report.json"
        assert "2 context -> 3 predicted frames, 2 samples, 2 clips" in rows[run]["protocol"]
    assert rows["2_M3_K1"]["psnr/mean"] is None
    # copy-last-frame was evaluated once (one batch of the 2 clips) for the three reports
    assert copy_last_calls == [2]
    copies = [
        json.loads((root / run / "eval" / "report.json").read_text())["results"][COPY_LAST]
        for run in ("0_M1_K1", "1_M2_K1", "10_M5_K1")
    ]
    assert copies[0] == copies[1] == copies[2]
    baseline = result["copy_last_frame"]
    assert np.isfinite(baseline["psnr/mean"]) and baseline["psnr/mean"] == baseline["psnr/best"]
    md = (root / "sweep.md").read_text()
    assert "Evaluation: data" in md and f"| {COPY_LAST} | baseline |" in md
    assert "2 of 5 runs are complete" in md
    assert (root / "scaling.png").stat().st_size > 0

    report = root / "0_M1_K1" / "eval" / "report.json"
    stamp = report.stat().st_mtime_ns
    again = sr.sweep_report(root, data=str(heldout), evaluation=protocol)
    assert report.stat().st_mtime_ns == stamp  # same protocol and step: reused
    assert _by_run(again)["0_M1_K1"]["psnr/mean"] == rows["0_M1_K1"]["psnr/mean"]
    assert copy_last_calls == [2]  # nothing evaluated again
    longer = dataclasses.replace(protocol, n_future=4)
    sr.sweep_report(root, data=str(heldout), evaluation=longer)
    assert json.loads(report.read_text())["protocol"]["predicted_frames"] == 4
    assert copy_last_calls == [2, 2]  # a new protocol: the baseline once more, for all runs


def test_failed_evaluations_are_listed_not_raised(sweep, heldout):
    root, _ = sweep
    too_long = EvaluateConfig(n_future=40, metrics=["psnr"], visualize=0, device="cpu")
    rows = _by_run(sr.sweep_report(root, data=str(heldout), evaluation=too_long))
    assert rows["0_M1_K1"]["status"] == "failed"
    assert "evaluation failed" in rows["0_M1_K1"]["reason"]
    assert "longer than every episode" in rows["0_M1_K1"]["reason"]
    assert (root / "sweep.md").exists()


def test_bad_arguments(tmp_path, sweep, heldout):
    root, _ = sweep
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no runs under"):
        sr.sweep_report(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        sr.sweep_report(tmp_path / "nothing")
    with pytest.raises(ValueError, match="unknown metrics"):
        sr.sweep_report(root, data=str(heldout), evaluation=EvaluateConfig(metrics=["fvd"]))
    with pytest.raises(FileNotFoundError, match="--data"):
        sr.sweep_report(root, data=str(tmp_path / "nope"))


def test_command_line(sweep, tmp_path, capsys):
    root, _ = sweep
    assert sr.main([str(root)]) == 0
    assert "| 0_M1_K1 | ok |" in capsys.readouterr().out
    assert sr.main([str(tmp_path / "nothing")]) == 1
    assert "error:" in capsys.readouterr().err


def test_report_modules_stay_free_of_hydra():
    code = (
        "import sys, worldmodel.evaluation, worldmodel.sweep_report; "
        "print(','.join(m for m in ('hydra', 'omegaconf', 'gymnasium') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
