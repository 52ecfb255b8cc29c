"""worldmodel.pretrain_comparator: the VideoNet-style comparator trained on episodes, reused."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_pretrain import TINY, _cfg, _stub_episodes
from worldmodel import pretrain, pretrain_comparator
from worldmodel.antiblur.comparator import VideoEncoder, build_comparator

ROOT = Path(__file__).resolve().parents[1]


def _comparator_cfg(*overrides: str) -> pretrain_comparator.ComparatorPretrainConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    pretrain_comparator.register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("pretrain_comparator", overrides=list(overrides)))
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="module")
def episodes(tmp_path_factory) -> Path:
    return _stub_episodes(tmp_path_factory.mktemp("cmp_data"), n=6, steps=16)


SMALL = ["encoder.width=8", "encoder.depth=3", "encoder.embed_dim=16", "progress=false"]


def test_training_lowers_the_contrastive_loss_and_saves_a_reusable_encoder(episodes, tmp_path):
    out = tmp_path / "videonet.pt"
    cfg = _comparator_cfg(
        f"data={episodes}",
        f"out={out}",
        "steps=60",
        "batch_size=6",
        "lr=1e-3",
        "device=cpu",
        *SMALL,
    )
    summary = pretrain_comparator.run(cfg)
    # an encoder that ignores its input scores log(B); the trained one tells the clips apart
    assert summary["untrained_loss"] == pytest.approx(math.log(6))
    assert summary["final_loss"] < 0.75 * summary["untrained_loss"] < summary["first_loss"]
    assert json.loads(out.with_name("videonet.pt.json").read_text())["steps"] == 60

    comparator = build_comparator("video_encoder", out)
    assert isinstance(comparator, VideoEncoder)
    assert not any(p.requires_grad for p in comparator.parameters())
    frames = torch.rand(2, 3, 64, 64)
    assert comparator.loss(frames, frames).item() == 0.0
    assert comparator.loss(frames, frames.flip(0)).item() > 0.0

    # the same seed gives the same encoder
    twice = [
        pretrain_comparator.run(
            _comparator_cfg(
                f"data={episodes}",
                f"out={tmp_path / name}",
                "steps=3",
                "batch_size=6",
                "device=cpu",
                *SMALL,
            )
        )["final_loss"]
        for name in ("a.pt", "b.pt")
    ]
    assert twice[0] == twice[1]


def test_pretraining_uses_the_saved_encoder_as_its_feature_loss(episodes, tmp_path):
    out = tmp_path / "videonet.pt"
    pretrain_comparator.run(
        _comparator_cfg(f"data={episodes}", f"out={out}", "steps=2", "batch_size=4", *SMALL)
    )
    cfg = _cfg(
        *TINY,
        f"data={episodes}",
        "steps=2",
        "video_every=0",
        "loss.feature_weight=0.01",
        "loss.comparator.kind=video_encoder",
        f"loss.comparator.path={out}",
    )
    summary = pretrain.run(cfg, tmp_path / "run")
    assert (
        np.isfinite(summary["loss_terms"]["loss/feat"]) and summary["loss_terms"]["loss/feat"] > 0
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["out=x.pt"], "data is required"),
        (["batch_size=1"], "batch_size=1"),
        (["encoder.depth=7"], "not divisible by 2^encoder.depth"),
        (["encoder.width=0"], "video encoder width, depth and embed_dim must be >= 1"),
    ],
)
def test_bad_configs_are_clear_errors(episodes, tmp_path, overrides, message):
    base = [f"data={episodes}", f"out={tmp_path / 'x.pt'}", *SMALL]
    cfg = _comparator_cfg(*base, *overrides) if overrides[0] != "out=x.pt" else None
    if cfg is None:
        cfg = pretrain_comparator.ComparatorPretrainConfig(out=str(tmp_path / "x.pt"))
    with pytest.raises(ValueError, match=message.replace("^", r"\^")):
        pretrain_comparator.run(cfg)
    assert not (tmp_path / "x.pt").exists()


def test_entry_point_trains_and_reports(episodes, tmp_path):
    out = tmp_path / "enc.pt"
    cmd = [
        sys.executable,
        "-m",
        "worldmodel.pretrain_comparator",
        f"data={episodes}",
        f"out={out}",
        "steps=3",
        "batch_size=4",
        *SMALL,
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "loss.comparator.path=" in proc.stdout and out.is_file()

    bad = subprocess.run(
        [sys.executable, "-m", "worldmodel.pretrain_comparator", f"out={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == ["error: data required: data=PATH"]
