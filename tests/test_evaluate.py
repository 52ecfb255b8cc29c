"""worldmodel.evaluate / worldmodel.evaluation: the evaluation report on tiny checkpoints made here."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from worldmodel import evaluate as evaluate_entry  # registers evaluate_schema
from worldmodel.antiblur.adversarial import AntiBlurConfig
from worldmodel.antiblur.discriminator import DiscriminatorConfig
from worldmodel.data import EpisodeDataset, SequenceSampler
from worldmodel.evaluation import (
    COPY_LAST,
    EvaluateConfig,
    clips_up_to,
    describe_selection,
    number,
    protocol_matches,
    select_clips,
)
from worldmodel.evaluation.scoring import plan_metrics
from worldmodel.model.svg import ModelConfig, WorldModel
from worldmodel.training.train import ObjectiveConfig, TrainConfig
from worldmodel.training.training_setup import build_trainer

ROOT = Path(__file__).resolve().parents[1]
SIZE, ACTION_DIM, STEPS = 32, 2, 14  # 15-frame episodes: three 5-frame clips each


def write_episodes(
    directory: Path, n: int = 4, size: int = SIZE, action_dim: int = ACTION_DIM, static=False
) -> Path:
    """Episodes in the COMMON.md format: random frames, or one repeated frame (``static``)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        shape = (1 if static else STEPS + 1, size, size, 3)
        obs = np.broadcast_to(
            rng.integers(0, 256, shape, dtype=np.uint8), (STEPS + 1, size, size, 3)
        )
        meta = {"format": "worldmodel-episode/1", "env": "synthetic", "action_repeat": 1}
        meta.update(size=size, seed=i, source="env")
        arrays = {
            "obs": np.ascontiguousarray(obs),
            "action": rng.uniform(-1, 1, (STEPS, action_dim)).astype(np.float32),
            "reward": rng.uniform(0, 1, STEPS).astype(np.float32),
            "terminated": np.zeros(STEPS, bool),
            "truncated": np.arange(STEPS) == STEPS - 1,
            "meta": np.array(json.dumps(meta)),
        }
        with open(directory / f"episode-{i:06d}-{STEPS}.npz", "wb") as f:
            np.savez_compressed(f, **arrays)
    return directory


def tiny_run(
    run_dir: Path, data: Path, model_cfg: ModelConfig, *, adversarial: bool, seed: int
) -> Path:
    """Train a tiny model 2 steps and save it as a pretraining run would:
    ``<run>/checkpoints/last.pt`` and ``<run>/.hydra/config.yaml``."""
    torch.manual_seed(seed)
    dataset = EpisodeDataset(data)
    model = WorldModel(model_cfg, dataset.image_size, dataset.action_dim)
    train_cfg = TrainConfig(batch_size=2, seq_len=6, n_past=2, precision="fp32")
    disc = DiscriminatorConfig(scales=[1, 2], width=8, max_width=16, hidden=16)
    loss = AntiBlurConfig(adv_weight=0.05 if adversarial else 0.0, discriminator=disc)
    trainer = build_trainer(model, train_cfg, ObjectiveConfig(), loss, "cpu")
    sampler = SequenceSampler(dataset, train_cfg.seq_len, train_cfg.batch_size, seed=seed)
    for _ in range(2):
        trainer.step(sampler.sample())
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    config = {
        "data": str(data),
        "model": dataclasses.asdict(model_cfg),
        "loss": dataclasses.asdict(loss),
        "steps": 2,
    }
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    return trainer.save(run_dir / "checkpoints" / "last.pt")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_episodes(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def static_data(tmp_path_factory) -> Path:
    return write_episodes(tmp_path_factory.mktemp("static"), static=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data, model_config) -> dict[str, Path]:
    """Two checkpoints with discriminators (a, b) and one without (c)."""
    root = tmp_path_factory.mktemp("runs")
    return {
        "a": tiny_run(root / "run_a", data, model_config(), adversarial=True, seed=0),
        "b": tiny_run(root / "run_b", data, model_config(), adversarial=True, seed=1),
        "c": tiny_run(root / "run_c", data, model_config(), adversarial=False, seed=2),
    }


def _cfg(compose, *overrides: str) -> EvaluateConfig:
    base = ["n_past=2", "n_future=3", "samples=3", "device=cpu", "visualize=1", "samples_shown=2"]
    cfg = OmegaConf.to_object(compose("evaluate", [*base, *overrides]))
    assert isinstance(cfg, EvaluateConfig)
    return cfg


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_full_report_on_static_video(compose, runs, static_data, tmp_path):
    """Every metric, two checkpoints side by side, GAM, files; copy-last-frame is perfect on
    video that does not move."""
    out = tmp_path / "out"
    cfg = _cfg(
        compose,
        f"ckpt={runs['a']}",
        f"data={static_data}",
        f"baselines=[{runs['b']}]",
        "num_videos=null",
        "fd_dim=4",
        f"out={out}",
    )
    evaluate_entry.run(cfg)
    report = _report(out)
    assert report["format"] == "worldmodel-evaluation/1"
    assert list(report["results"]) == ["run_a", "run_b", COPY_LAST]  # side by side, ckpt first
    assert report["candidate"] == "run_a"
    proto = report["protocol"]
    assert (proto["context_frames"], proto["predicted_frames"]) == (2, 3)
    assert (proto["samples_per_video"], proto["num_videos"]) == (3, 12)
    assert proto["dataset"] == str(static_data) and len(proto["clips"]) == 12
    assert report["models"]["run_a"]["step"] == 2 and report["models"]["run_a"]["parameters"] > 0

    for label, res in report["results"].items():
        samples = 1 if label == COPY_LAST else 3
        assert {"psnr", "ssim", "ms_ssim", "swd", "frechet", "sharpness"} <= set(res)
        assert len(res["sharpness"]["curve"]) == 3 and res["sharpness"]["value"] > 0
        for metric in ("psnr", "ssim", "ms_ssim"):
            for agg, name in (("mean", "mean"), ("best", "best-of-N")):
                entry = res[metric][agg]
                p = entry["protocol"]
                assert len(entry["curve"]) == 3
                assert (p["context_frames"], p["predicted_frames"]) == (2, 3)
                assert (p["samples_per_video"], p["num_videos"]) == (samples, 12)
                assert p["aggregate"] == name and p["metric"] == metric
                assert p["dataset"] == str(static_data)
                if label != COPY_LAST:
                    assert p["checkpoint"] == f"{runs[label[-1]]} (step 2)"
        for metric in ("swd", "frechet"):
            assert res[metric]["protocol"]["num_videos"] == 12
        # an offline feature network is never called FVD
        assert res["frechet"]["name"].startswith("FD-random3dconv") and "FVD" not in json.dumps(
            res["frechet"]["name"]
        )
    # diversity needs several samples: models yes, the deterministic baseline no
    assert 0 <= report["results"]["run_a"]["diversity"]["value"] <= 1 + 1e-5
    assert "diversity" not in report["results"][COPY_LAST]

    # identical frames give perfect scores: inf PSNR (written as "inf"), SSIM = MS-SSIM = 1, SWD 0
    copy = report["results"][COPY_LAST]
    assert copy["psnr"]["mean"]["value"] == "inf" and copy["psnr"]["best"]["curve"] == ["inf"] * 3
    assert copy["ssim"]["mean"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert copy["ms_ssim"]["best"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert copy["swd"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert copy["sharpness"]["value"] == pytest.approx(1.0, abs=1e-6)  # the truth itself
    assert copy["frechet"]["value"] == pytest.approx(0.0, abs=1e-6)
    model_psnr = number(report["results"]["run_a"]["psnr"]["best"]["value"])
    assert (
        math.isfinite(model_psnr)
        and number(report["results"]["run_a"]["ssim"]["mean"]["value"]) < 1
    )

    (battle,) = report["gam"]
    assert (battle["model1"], battle["model2"]) == ("run_a", "run_b")
    assert {"r_test", "r_samples", "winner", "protocol"} <= set(battle)
    assert battle["num_test"] == 12 * 3 and battle["protocol"]["metric"] == "gam"

    files = report["files"]
    assert sorted(files["plots"]) == ["plots/ms_ssim.png", "plots/psnr.png", "plots/ssim.png"]
    assert files["strips"] == ["videos/clip000.png"] and len(files["gifs"]) == 3
    for rel in files["plots"] + files["strips"] + files["gifs"]:
        assert (out / rel).stat().st_size > 0
    assert files["strip_rows"] == [
        "truth",
        "run_a sample 1",
        "run_a sample 2",
        "run_b sample 1",
        "run_b sample 2",
        COPY_LAST,
    ]
    assert "| run_a |" in (out / "summary.md").read_text()
    assert "sharpness" in (out / "summary.md").read_text()


def test_deterministic_under_the_seed(compose, runs, data, tmp_path):
    common = [f"ckpt={runs['c']}", f"data={data}", "num_videos=4", "metrics=[psnr,diversity]"]
    first = evaluate_entry.run(_cfg(compose, *common, f"out={tmp_path / 'a'}", "visualize=0"))
    again = evaluate_entry.run(_cfg(compose, *common, f"out={tmp_path / 'b'}", "visualize=0"))
    other = evaluate_entry.run(_cfg(compose, *common, f"out={tmp_path / 'c'}", "seed=1"))
    assert first["results"] == again["results"]
    assert first["protocol"]["clips"] == again["protocol"]["clips"]
    assert other["protocol"]["clips"] != first["protocol"]["clips"]
    assert other["results"]["run_c"]["psnr"] != first["results"]["run_c"]["psnr"]
    # the written file holds the same numbers as the returned report
    assert _report(tmp_path / "a")["results"] == first["results"]
    # plots of the requested image metrics only; strips and GIFs as asked
    assert _report(tmp_path / "a")["files"]["plots"] == ["plots/psnr.png"]
    assert _report(tmp_path / "a")["files"]["gifs"] == []
    assert (tmp_path / "c" / "videos" / "clip000_run_c.gif").exists()


def test_side_by_side_sees_the_same_videos_and_seeds(compose, runs, data, tmp_path):
    """The same checkpoint twice gives identical numbers (same clips, same noise), with unique
    labels; GAM of a model against itself is a tie with r_test = r_samples = 1."""
    cfg = _cfg(
        compose,
        f"ckpt={runs['a']}",
        f"data={data}",
        f"baselines=[{runs['a']},{runs['c']}]",
        "num_videos=6",
        "metrics=[psnr,ssim,gam]",
        "visualize=0",
        f"out={tmp_path}",
    )
    report = evaluate_entry.run(cfg)
    assert list(report["results"]) == ["run_a", "run_a#2", "run_c", COPY_LAST]
    twin_a, twin_b = report["results"]["run_a"], report["results"]["run_a#2"]
    assert twin_a["psnr"]["mean"]["curve"] == twin_b["psnr"]["mean"]["curve"]
    assert twin_a["ssim"]["best"]["curve"] == twin_b["ssim"]["best"]["curve"]
    assert twin_a["psnr"]["mean"]["curve"] != report["results"]["run_c"]["psnr"]["mean"]["curve"]
    (battle,) = report["gam"]  # run_c has no discriminator: one battle, run_c listed as skipped
    assert (battle["model1"], battle["model2"]) == ("run_a", "run_a#2")
    assert battle["r_test"] == 1.0 and battle["r_samples"] == 1.0 and battle["winner"] == "tie"
    assert "no discriminator" in report["skipped"]["run_c/gam"]


def _gam_a_against_c(runs, data, out: Path) -> list[str]:
    """GAM alone between checkpoint a (with a discriminator) and c (without), on 2 clips."""
    return [
        f"ckpt={runs['a']}",
        f"data={data}",
        f"baselines=[{runs['c']}]",
        "num_videos=2",
        "metrics=[gam]",
        "visualize=0",
        f"out={out}",
    ]


def test_gam_needs_two_discriminators(compose, runs, data, tmp_path):
    report = evaluate_entry.run(_cfg(compose, *_gam_a_against_c(runs, data, tmp_path)))
    assert report["gam"] == [] and "needs two checkpoints" in report["skipped"]["gam"]


def test_gam_with_judges_fitted_after_training(compose, runs, data, tmp_path):
    """gam_fit_steps > 0: a checkpoint trained without a discriminator (c) battles one trained
    with it (a); both are judged by discriminators fitted to their own predictions on other
    episodes than the test data, and the report says so."""
    fit_data = write_episodes(tmp_path / "fit", n=2)
    fit = ["gam_fit_steps=3", "gam_fit_batch=4"]
    base = [*_gam_a_against_c(runs, data, tmp_path / "out"), *fit]
    report = evaluate_entry.run(_cfg(compose, *base, f"gam_fit_data={fit_data}"))
    assert "gam" not in report["skipped"]
    (battle,) = report["gam"]
    assert {battle["model1"], battle["model2"]} == {"run_a", "run_c"}
    assert "fitted after training, 3 steps" in battle["protocol"]["details"]["discriminators"]
    for label in ("run_a", "run_c"):
        note = report["models"][label]["discriminator"]
        assert note.startswith("fitted after training") and "3 steps of 4 pairs" in note
    with pytest.raises(ValueError, match="held out"):
        evaluate_entry.run(_cfg(compose, *base, f"gam_fit_data={data}"))
    with pytest.raises(FileNotFoundError, match="gam_fit_data"):
        evaluate_entry.run(_cfg(compose, *base, f"gam_fit_data={tmp_path / 'no'}"))


def test_a_fitted_judge_tells_sharp_frames_from_blurred_ones():
    """fit_discriminator learns: textured true frames against their box-blurred predictions."""
    from worldmodel.evaluation.judges import fit_discriminator
    from worldmodel.metrics import error_rate

    g = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (16, 5, 3, 16, 16), dtype=torch.uint8, generator=g)
    blur = torch.nn.functional.avg_pool2d(obs[:, 2:].flatten(0, 1).float(), 3, 1, 1)
    fake = blur.round().to(torch.uint8).view(16, 3, 3, 16, 16)
    disc = DiscriminatorConfig(scales=[1, 2], width=8, max_width=16, hidden=16)
    adv, logs = fit_discriminator(
        obs, fake, 2, steps=200, batch_size=16, cfg=AntiBlurConfig(discriminator=disc)
    )
    assert logs["acc_real"] > 0.9 and logs["acc_fake"] > 0.9
    ctx = torch.stack([obs[:, 0:2], obs[:, 1:3], obs[:, 2:4]], 1).flatten(0, 1).float() / 255

    def judge(c, x):
        return torch.stack(adv.discriminator(x, c)).mean(0)

    assert error_rate(judge, (ctx, obs[:, 2:].flatten(0, 1).float() / 255), 1) < 0.1
    assert error_rate(judge, (ctx, fake.flatten(0, 1).float() / 255), 0) < 0.1
    with pytest.raises(ValueError, match="n_past is 1"):
        fit_discriminator(obs[:, 1:], fake, 1, steps=1, cfg=AntiBlurConfig(discriminator=disc))


@pytest.mark.slow
def test_first_use_with_the_defaults_on_a_small_data_set(runs, data, tmp_path):
    """The documented first command, every other option at its default, on 4 short episodes: 4
    clips of 2 + 10 frames, fewer than num_videos=100 and than the Frechet distance's 64 feature
    dimensions. Every metric that can be computed is reported; the Frechet distance and GAM are
    skipped with the reason in report.json, summary.md and on the console."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "worldmodel.evaluate",
            f"ckpt={runs['c']}",
            f"data={data}",
            f"hydra.run.dir={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, HYDRA_FULL_ERROR="0"),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    report = _report(out)
    proto = report["protocol"]
    assert (proto["num_videos"], proto["clips_available"], len(proto["clips"])) == (4, 4, 4)
    assert report["config"]["num_videos"] == 100  # the default is a cap
    selection = "all 4 non-overlapping windows of 12 frames in the data"
    assert proto["clip_selection"].startswith(selection)
    model = report["results"]["run_c"]
    assert {"psnr", "ssim", "ms_ssim", "swd", "diversity"} <= set(model)
    assert "frechet" not in model and "frechet" not in report["results"][COPY_LAST]
    entries = [model["psnr"]["mean"], model["ms_ssim"]["best"], model["swd"], model["diversity"]]
    for entry in entries:
        assert entry["protocol"]["num_videos"] == 4  # the stamp states the clips used
        assert entry["protocol"]["details"]["clips"].startswith(selection)
    why = report["skipped"]["frechet"]
    assert "4 clips <= 64 dimensions" in why and "fd_dim" in why and "fd_shrinkage" in why
    assert "needs two checkpoints" in report["skipped"]["gam"]
    summary = (out / "summary.md").read_text()
    assert f"4 clips ({selection}" in summary and f"- frechet: {why}" in summary
    assert f"4 clips ({selection}" in proc.stdout and f"skipped frechet: {why}" in proc.stdout


def test_a_metric_the_clips_do_not_allow_is_skipped_with_the_reason(data):
    dataset = EpisodeDataset(data)
    clips = clips_up_to(dataset, 5, None, seed=0)  # 12 clips
    cpu = torch.device("cpu")

    def plan(clips=clips, **settings):
        cfg = EvaluateConfig(ckpt="x.pt", data=str(data), n_past=2, n_future=3, **settings)
        return plan_metrics(cfg, clips, cpu)

    few = plan(fd_dim=64)
    assert few.frechet is None and set(few.skipped) == {"frechet"}
    assert "12 clips <= 64 dimensions" in few.skipped["frechet"]
    assert few.image_metrics == ["psnr", "ssim", "ms_ssim"] and few.swd and few.diversity
    enough = plan(fd_dim=8)
    assert enough.skipped == {} and enough.frechet.real_features.shape == (12, 8)
    # shrinkage makes the covariance of 12 clips in 64 dimensions usable (and is reported)
    assert plan(fd_dim=64, fd_shrinkage=0.1).skipped == {}
    one = plan(clips_up_to(dataset, 5, 1, seed=0), fd_shrinkage=0.1)
    assert "at least 2 clips" in one.skipped["frechet"]
    assert plan(metrics=["psnr"]).skipped == {}


def test_each_checkpoint_file_is_read_once(compose, runs, data, tmp_path, monkeypatch):
    reads = []
    torch_load = torch.load

    def counting_load(f, *args, **kwargs):
        reads.append(str(f))
        return torch_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    cfg = _cfg(
        compose,
        f"ckpt={runs['a']}",
        f"data={data}",
        f"baselines=[{runs['c']}]",
        "num_videos=2",
        "metrics=[psnr,gam]",
        "visualize=0",
        f"out={tmp_path}",
    )
    report = evaluate_entry.run(cfg)
    # the model and the discriminator of run_a come from the same read
    assert report["models"]["run_a"]["discriminator"].startswith("discriminator rebuilt")
    assert report["models"]["run_c"]["step"] == 2
    assert sorted(reads) == sorted([str(runs["a"]), str(runs["c"])])


def test_clip_selection(data):
    dataset = EpisodeDataset(data)
    clips = select_clips(dataset, 5, None, seed=0)
    assert clips.obs.shape == (12, 5, 3, SIZE, SIZE) and clips.action.shape == (12, 4, 2)
    starts = [s for _, s in clips.sources]
    assert starts == [0, 5, 10] * 4  # non-overlapping windows, in file order
    some = select_clips(dataset, 5, 4, seed=0)
    assert len(some) == 4 and len(set(some.sources)) == 4
    assert select_clips(dataset, 5, 4, seed=0).sources == some.sources
    assert clips.available == some.available == 12
    with pytest.raises(ValueError, match="only 12 non-overlapping clips"):
        select_clips(dataset, 5, 50, seed=0)  # an exact count is exact

    # the evaluation's selection: all clips up to the cap, the same draw as select_clips above it
    capped = clips_up_to(dataset, 5, 4, seed=0)
    assert capped.sources == some.sources
    assert describe_selection(capped, 5, 4, 0).startswith("4 of the 12 non-overlapping windows")
    everything = clips_up_to(dataset, 5, 50, seed=0)
    assert everything.sources == clips.sources
    text = describe_selection(everything, 5, 50, 0)
    assert text.startswith("all 12 non-overlapping windows") and "cap num_videos=50" in text
    assert "no cap" in describe_selection(clips_up_to(dataset, 5, None, seed=0), 5, None, 0)


def test_bad_inputs_give_clear_errors(compose, runs, data, tmp_path):
    ok = [f"ckpt={runs['c']}", f"data={data}", f"out={tmp_path}", "metrics=[psnr]"]

    def run(*overrides: str) -> None:
        evaluate_entry.run(_cfg(compose, *ok, *overrides))

    with pytest.raises(FileNotFoundError, match="checkpoint .*nope.pt does not exist"):
        run(f"ckpt={tmp_path / 'nope.pt'}")
    with pytest.raises(FileNotFoundError, match="baselines"):
        run(f"baselines=[{tmp_path / 'missing.pt'}]")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        run(f"data={tmp_path / 'no_data'}")
    with pytest.raises(ValueError, match="ckpt is required"):
        evaluate_entry.run(EvaluateConfig(data=str(data)))

    big = write_episodes(tmp_path / "big", n=1, size=64)
    with pytest.raises(ValueError, match="32x32 frames but the data has 64x64"):
        run(f"data={big}")
    other_actions = write_episodes(tmp_path / "a3", n=1, action_dim=3)
    with pytest.raises(ValueError, match="takes 2-dim actions but the data has 3-dim"):
        run(f"data={other_actions}")
    with pytest.raises(ValueError, match="longer than every episode.*15 frames"):
        run("n_future=20")
    with pytest.raises(ValueError, match="16 frames"):
        run("metrics=[frechet]", f"i3d={runs['c']}")
    with pytest.raises(ValueError, match="unknown metrics"):
        run("metrics=[psnr,fvd]")
    with pytest.raises(ValueError, match="n_past"):
        run("n_past=0")
    # typos and wrong types fail at composition
    with pytest.raises(Exception, match="n_futur"):
        _cfg(compose, *ok, "n_futur=3")
    with pytest.raises(Exception, match="samples"):
        _cfg(compose, *ok, "samples=many")


def test_protocol_matches(compose, runs, data, tmp_path):
    cfg = _cfg(
        compose,
        f"ckpt={runs['c']}",
        f"data={data}",
        "num_videos=2",
        "metrics=[psnr]",
        f"out={tmp_path}",
    )
    report = evaluate_entry.run(cfg)
    assert protocol_matches(report, cfg) == (True, "")
    assert protocol_matches(report, dataclasses.replace(cfg, n_future=4))[0] is False
    same, why = protocol_matches(report, dataclasses.replace(cfg, metrics=["psnr", "ssim"]))
    assert not same and "ssim" in why


def test_evaluation_exports_the_report_names():
    """``worldmodel.evaluation`` exports every public name of the evaluation report."""
    import worldmodel.evaluation as evaluation

    names = {
        "REPORT_FORMAT", "METRICS", "IMAGE_METRICS", "COPY_LAST", "EvaluateConfig", "Clips",
        "select_clips", "copy_last_frame", "load_discriminator", "evaluate", "plot_horizon",
        "plot_scaling", "to_jsonable", "write_json", "read_json", "number", "protocol_matches",
    }  # fmt: skip
    assert names <= set(evaluation.__all__)
    assert all(hasattr(evaluation, name) for name in names)


def test_cli_reports_errors_in_one_line(tmp_path):
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "worldmodel.evaluate",
            f"ckpt={tmp_path / 'x.pt'}",
            f"data={tmp_path}",
            f"hydra.run.dir={tmp_path / 'h'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ckpt: checkpoint") and "Traceback" not in proc.stderr


def test_slurm_launcher_config_composes():
    """configs/hydra/launcher/slurm.yaml composes with hydra-submitit-launcher (optional extra)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(
                "evaluate",
                ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                return_hydra_config=True,
            )
    finally:
        GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node >= 1
    assert launcher.timeout_min > 0
