"""bench/video_quality.py end to end on tiny settings: data, training, evaluation, result files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest


def _moving_square_video(path: Path, frames: int = 60) -> None:
    """A real mp4: a bright square moving right over a gradient (what import_video reads)."""
    import imageio.v3 as iio

    video = np.zeros((frames, 64, 64, 3), np.uint8)
    video[..., 2] = np.linspace(0, 120, 64, dtype=np.uint8)[None, None, :]
    for t in range(frames):
        x = (2 * t) % 48
        video[t, 20:36, x : x + 16] = 255
    iio.imwrite(path, video, plugin="pyav", fps=10, codec="libx264")


@pytest.mark.slow
def test_quick_pipeline_writes_the_contracted_results(tmp_path, bench_script):
    vq = bench_script("video_quality")
    videos = tmp_path / "videos"
    videos.mkdir()
    _moving_square_video(videos / "square.mp4")
    results = tmp_path / "results"
    argv = [
        "--quick",
        "--env",
        "stub",
        "--runs",
        "svg-mse,svg-mse-noaction,svg-mse-gdl",
        "--workdir",
        str(tmp_path / "work"),
        "--results",
        str(results),
        "--video-src",
        str(videos),
    ]
    assert vq.main(argv) == 0

    rows = list(csv.reader((results / "video_quality_quick.csv").open()))
    assert ",".join(rows[0]) == vq.CSV_HEADER  # the header is a contract
    got = {(r[0], r[1]) for r in rows[1:]}
    assert {
        ("stub", "copy-last-frame"),
        ("stub", "svg-mse"),
        ("stub", "svg-mse-noaction"),
        ("video", "copy-last-frame"),
        ("video", "svg-mse"),
    } <= got
    by = {(r[0], r[1]): dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    trained = by[("stub", "svg-mse")]
    assert int(trained["steps"]) == 6 and int(trained["params"]) > 0
    assert 0 < float(trained["psnr_mean"]) <= float(trained["psnr_best"])
    assert by[("stub", "copy-last-frame")]["steps"] == ""  # not a trained model
    assert float(trained["sharpness"]) > 0 and float(trained["swd"]) >= 0
    assert by[("stub", "copy-last-frame")]["fd"] == ""  # not requested by --quick: left empty
    md = (results / "video_quality_quick.md").read_text()
    assert "Machine:" in md and "Protocol:" in md and "1a. svg-mse beats copy-last-frame" in md
    assert list(results.glob("video_quality_quick_stub_*.png"))
    # an ablation is evaluated in a report of its own next to svg-mse, and kept out of the csv
    assert "svg-mse-gdl" not in {r[1] for r in rows[1:]}
    assert "## Ablations (stub)" in md and "- svg-mse-gdl: PSNR" in md
    assert (tmp_path / "work" / "eval" / "stub-ablations" / "report.json").is_file()

    # resumable: a second call trains nothing and reuses the evaluation
    before = (tmp_path / "work" / "eval" / "stub" / "report.json").stat().st_mtime
    assert vq.main(argv) == 0
    assert (tmp_path / "work" / "eval" / "stub" / "report.json").stat().st_mtime == before

    # --eval-only trains nothing: a run not trained yet is named and left out of the tables
    assert vq.main([*argv[:4], "svg-mse,cnn-mse", *argv[5:], "--eval-only"]) == 0
    assert not (tmp_path / "work" / "stub" / "cnn-mse").exists()
    md = (results / "video_quality_quick.md").read_text()
    assert "left out of the tables): stub/cnn-mse" in md
    assert "| cnn-mse |" not in md

    # --data video: the real video alone (no control data needed), into another results folder
    only = tmp_path / "video_only"
    argv[argv.index("--results") + 1] = str(only)
    assert vq.main([*argv, "--data", "video", "--eval-only"]) == 0
    md = (only / "video_quality_quick.md").read_text()
    assert "## video" in md and "## stub" not in md


def test_run_overrides_and_unknown_runs(bench_script):
    vq = bench_script("video_quality")
    names = [r.name for r in vq.RUNS]
    assert {"svg-mse", "svg-mse-noaction", "lstm-mse", "cnn-mse", "svg-full", "gran-full"} <= set(
        names
    )
    noaction = next(r for r in vq.RUNS if r.name == "svg-mse-noaction")
    assert "use_actions=false" in noaction.overrides()
    for (m, k), name in vq.CAPACITY.items():
        run = next(r for r in vq.RUNS if r.name == name)
        assert (run.M, run.K) == (m, k)
    assert {r.name for r in vq.parse(["--runs", "ablations"]).runs} == {
        r.name for r in vq.ABLATIONS
    }
    assert len(vq.parse([]).runs) == len(vq.RUNS) + len(vq.ABLATIONS)
    assert [r.name for r in vq.parse(["--runs", "main,svg-mse-gdl"]).runs][-1] == "svg-mse-gdl"
    with pytest.raises(SystemExit):
        vq.parse(["--runs", "nope"])
    with pytest.raises(SystemExit):
        vq.parse(["--train-only", "--eval-only"])
    with pytest.raises(SystemExit):  # the real video needs its files
        vq.parse(["--data", "video"])
    assert not vq.parse(["--data", "video", "--video-src", "v"]).control
    assert vq.parse(["--data", "control", "--video-src", "v"]).video_src is None


def test_a_second_seed_trains_and_evaluates_apart_on_the_same_data(bench_script, tmp_path):
    vq = bench_script("video_quality")
    run = next(r for r in vq.RUNS if r.name == "svg-mse")
    s0 = vq.parse(["--workdir", str(tmp_path)])
    s3 = vq.parse(["--workdir", str(tmp_path), "--seed", "3"])
    assert vq.run_dir(s0, "cheetah", run) == tmp_path / "cheetah" / "svg-mse"
    assert vq.run_dir(s3, "cheetah", run) == tmp_path / "cheetah-seed3" / "svg-mse"
    data = tmp_path / "data" / "cheetah_train"
    seeds = [
        [
            a
            for a in vq.pretrain_command(s, data, vq.run_dir(s, "cheetah", run), run)
            if a.startswith("train.seed")
        ]
        for s in (s0, s3)
    ]
    assert seeds == [[], ["train.seed=3"]]  # seed 0 keeps the preset (train.seed: 0)


def test_ablation_findings_compare_with_svg_mse_and_copy(bench_script):
    vq = bench_script("video_quality")

    def row(run, psnr, ssim=0.8, swd=30.0, sharp=0.9):
        return dict(run=run, psnr_mean=psnr, ssim_mean=ssim, swd=swd, sharpness=sharp)

    lines = vq.ablation_findings(
        [row(vq.COPY, 23.09), row("svg-mse", 22.97), row("svg-mse-composite", 24.5, 0.85)]
    )
    assert lines[0] == "svg-mse: PSNR 22.97 against copy-last-frame's 23.09 (beats it: NO)"
    assert lines[1].startswith("svg-mse-composite: PSNR 24.50 (+1.53), SSIM 0.850 (+0.050)")
    assert lines[1].endswith("beats copy-last-frame's PSNR 23.09: yes")
    assert vq.ablation_findings([row(vq.COPY, 23.0)]) == [
        "(svg-mse is not trained: nothing to compare against)"
    ]
