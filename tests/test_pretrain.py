"""worldmodel.pretrain: composed configs, training runs, resume, video data, DDP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from envs import make_env
from envs.episodes import save_episode
from worldmodel import pretrain
from worldmodel.evaluation.candidates import load_discriminator
from worldmodel.training.checkpoint import CheckpointError, load_checkpoint

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
ROOT = Path(__file__).resolve().parents[1]
TINY = ["model=tiny", "train.batch_size=4", "train.seq_len=6", "progress=false", "device=cpu"]


def _cfg(*overrides: str) -> pretrain.PretrainConfig:
    pretrain.register_configs()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return OmegaConf.to_object(compose("pretrain", overrides=list(overrides)))


def _stub_episodes(directory: Path, n: int = 3, steps: int = 12, video: bool = False) -> Path:
    env = make_env("stub", max_steps=steps)
    rng = np.random.default_rng(0)
    for i in range(n):
        obs, _ = env.reset(seed=i)
        frames, actions, rewards = [obs], [], []
        for _ in range(steps):
            a = rng.uniform(-1, 1, 2).astype(np.float32)
            obs, r, _, _, _ = env.step(a)
            frames.append(obs)
            actions.append(a)
            rewards.append(r)
        flags = np.zeros(steps, bool)
        flags_tr = flags.copy()
        flags_tr[-1] = True
        meta = {"env": "stub", "action_repeat": 1, "size": 64, "seed": i, "source": "env"}
        if video:
            meta["source"] = "video"
        save_episode(
            directory,
            i,
            np.stack(frames),
            None if video else np.stack(actions),
            None if video else np.asarray(rewards, np.float32),
            flags,
            flags_tr,
            meta,
        )
    env.close()
    return directory


@pytest.fixture(scope="module")
def stub_data(tmp_path_factory) -> Path:
    return _stub_episodes(tmp_path_factory.mktemp("stub_data"))


def test_config_composes_with_every_model_and_loss():
    for model in ("svg", "lstm", "cnn", "tiny"):
        for loss in ("mse", "full"):
            cfg = _cfg("data=/x", f"model={model}", f"loss={loss}")
            assert isinstance(cfg, pretrain.PretrainConfig)
    cfg = _cfg("data=/x", "model=svg", "model.M=2", "model.K=3")
    assert cfg.model.M == 2 and cfg.model.K == 3
    assert _cfg("data=/x", "model=lstm").model.variant == "lstm"


def test_config_typos_fail_at_composition():
    with pytest.raises(Exception, match="nonexistent"):
        _cfg("data=/x", "model.nonexistent=3")
    with pytest.raises(Exception, match="steps"):
        _cfg("data=/x", "steps=many")


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="missing mandatory value: data"):
        _cfg(*TINY)
    with pytest.raises((FileNotFoundError, ValueError), match="envs.collect"):
        pretrain.run(_cfg(*TINY, f"data={tmp_path / 'nothing'}"), tmp_path)


def test_train_writes_checkpoint_logs_and_resumes(stub_data, tmp_path):
    cfg = _cfg(*TINY, f"data={stub_data}", "steps=4", "ckpt_every=2", "video_every=2")
    summary = pretrain.run(cfg, tmp_path)
    assert summary["steps"] == 4 and summary["start_step"] == 0
    assert np.isfinite(summary["final_loss"])
    assert {"loss/recon", "loss/kl", "loss/reward", "loss/latent"} <= set(summary["loss_terms"])
    ckpt = tmp_path / "checkpoints" / "last.pt"
    assert ckpt.exists() and list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 4
    assert load_checkpoint(ckpt)["state"]["global_step"] == 4

    # resume continues at the checkpoint's step up to the new total
    resumed = pretrain.run(_cfg(*TINY, f"data={stub_data}", "steps=6", "resume=true"), tmp_path)
    assert resumed["start_step"] == 4 and resumed["steps"] == 6

    # a checkpoint of another model config is refused, naming the difference
    with pytest.raises(CheckpointError, match="M"):
        pretrain.run(
            _cfg(*TINY, f"data={stub_data}", "steps=8", "resume=true", "model.M=2"), tmp_path
        )


def test_resume_matches_uninterrupted_run(stub_data, tmp_path):
    base = [*TINY, f"data={stub_data}", "train.precision=fp32", "video_every=0"]
    full = pretrain.run(_cfg(*base, "steps=4"), tmp_path / "a")
    pretrain.run(_cfg(*base, "steps=2"), tmp_path / "b")
    resumed = pretrain.run(_cfg(*base, "steps=4", "resume=true"), tmp_path / "b")
    wa = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["state"]["model"]
    wb = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["state"]["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)
    assert resumed["final_loss"] == pytest.approx(full["final_loss"], rel=1e-5)


def test_precise_bn_recomputes_only_the_batchnorm_statistics(stub_data, tmp_path):
    """precise_bn (default 50 batches, here 3) changes the saved BatchNorm statistics and nothing
    else: the weights match a run without it exactly."""
    base = [*TINY, f"data={stub_data}", "train.precision=fp32", "video_every=0", "steps=3"]
    pretrain.run(_cfg(*base, "precise_bn=0"), tmp_path / "plain")
    pretrain.run(_cfg(*base, "precise_bn=3"), tmp_path / "precise")
    plain, precise = (
        load_checkpoint(tmp_path / d / "checkpoints" / "last.pt")["state"]["model"]
        for d in ("plain", "precise")
    )
    stats = [k for k in plain if k.endswith(("running_mean", "running_var"))]
    assert stats
    for k in plain:
        if k in stats:
            assert not torch.equal(plain[k], precise[k]), k
        elif not k.endswith("num_batches_tracked"):
            assert torch.equal(plain[k], precise[k]), k
    with pytest.raises(ValueError, match="precise_bn"):
        _cfg(*base, "precise_bn=-1").validate()


def test_action_free_video_data(tmp_path):
    data = _stub_episodes(tmp_path / "video", n=2, video=True)
    summary = pretrain.run(_cfg(*TINY, f"data={data}", "steps=2"), tmp_path / "run")
    assert summary["steps"] == 2
    assert "loss/reward" not in summary["loss_terms"]


def test_full_loss_trains(stub_data, tmp_path):
    cfg = _cfg(
        *TINY, "loss=full", "loss.adv_weight=0.05", f"data={stub_data}", "steps=2",
        "video_every=0",
    )  # fmt: skip
    summary = pretrain.run(cfg, tmp_path)
    assert {"loss/gdl", "loss/adv", "loss/feat"} <= set(summary["loss_terms"])
    assert np.isfinite(summary["final_loss"])
    ckpt = tmp_path / "checkpoints" / "last.pt"
    payload = load_checkpoint(ckpt)
    assert "discriminator" in payload["state"]
    # the checkpoint alone rebuilds its discriminator (for GAM): no .hydra/config.yaml needed
    assert not (tmp_path / ".hydra").exists()
    adversarial, note = load_discriminator(payload, ckpt, "cpu")
    assert adversarial is not None and "checkpoint" in note, note


def test_anti_blur_without_the_adversarial_term_has_no_discriminator(stub_data, tmp_path):
    """GDL and the feature loss with a fixed comparator: the objective saves its own state, with
    no discriminator in it, and GAM skips the checkpoint instead of failing on it."""
    cfg = _cfg(
        *TINY, "loss=full", "loss.adv_weight=0", "loss.feature_weight=0.01",
        "loss.progressive.enabled=false", f"data={stub_data}", "steps=1", "video_every=0",
    )  # fmt: skip
    pretrain.run(cfg, tmp_path)
    ckpt = tmp_path / "checkpoints" / "last.pt"
    adversarial, note = load_discriminator(load_checkpoint(ckpt), ckpt, "cpu")
    assert adversarial is None and "no discriminator" in note


@pytest.mark.slow
def test_ddp_two_processes_keep_identical_weights(stub_data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29517",
        "-m",
        "worldmodel.pretrain",
        *TINY,
        f"data={stub_data}",
        "steps=3",
        "video_every=0",
        f"hydra.run.dir={out}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert len(summary["rank_checksums"]) == 2 and summary["ranks_in_sync"]


def test_discriminator_comparator_trains(stub_data, tmp_path):
    cfg = _cfg(
        *TINY,
        "loss=full",
        "loss.feature_weight=0.01",
        "loss.comparator.kind=discriminator",
        f"data={stub_data}",
        "steps=2",
        "video_every=0",
    )
    summary = pretrain.run(cfg, tmp_path)
    assert np.isfinite(summary["loss_terms"]["loss/feat"])


def test_use_actions_false_trains_the_action_free_ablation(stub_data, tmp_path):
    cfg = _cfg(*TINY, f"data={stub_data}", "steps=2", "video_every=0", "use_actions=false")
    summary = pretrain.run(cfg, tmp_path)
    assert "loss/reward" not in summary["loss_terms"]  # no actions: no reward head either
    payload = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert not any(k.startswith("reward_head") for k in payload["state"]["model"])


def test_checkpoint_interval_in_time(stub_data, tmp_path, monkeypatch):
    """With ckpt_every far away, a time interval of 0+ seconds saves after every step."""
    saved: list[int] = []
    original = pretrain.Trainer.save

    def spy(self, path, extra=None):
        saved.append(self.global_step)
        return original(self, path, extra=extra)

    monkeypatch.setattr(pretrain.Trainer, "save", spy)
    base = [*TINY, f"data={stub_data}", "steps=3", "video_every=0", "ckpt_every=1000"]
    pretrain.run(_cfg(*base, "ckpt_every_s=1e-9"), tmp_path / "timed")
    assert saved == [1, 2, 3, 3]  # every step (time rule), then the final save
    saved.clear()
    pretrain.run(_cfg(*base, "ckpt_every_s=0"), tmp_path / "steps_only")
    assert saved == [3]  # the time rule off: only the final save
    with pytest.raises(ValueError, match="ckpt_every_s"):
        _cfg(*base, "ckpt_every_s=-1").validate()


def test_bn_gap_diagnostic_runs_on_a_checkpoint(stub_data, tmp_path, capsys):
    """bench/bn_gap.py: the saved against the recomputed BatchNorm statistics of a checkpoint; in
    training mode the statistics are not used, so that row is the same in both columns."""
    import importlib.util

    base = [*TINY, f"data={stub_data}", "train.precision=fp32", "video_every=0", "steps=2"]
    pretrain.run(_cfg(*base, "precise_bn=0"), tmp_path)
    spec = importlib.util.spec_from_file_location("bn_gap", ROOT / "bench" / "bn_gap.py")
    bn_gap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bn_gap)
    ckpt = tmp_path / "checkpoints" / "last.pt"
    capsys.readouterr()
    args = ["--ckpt", str(ckpt), "--test", str(stub_data), "--train", str(stub_data)]
    bn_gap.main([*args, "--threads", "0"])  # 0: leave the worker's threads alone
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "3 held-out clips" in out
    row = next(line for line in out.splitlines() if "train mode" in line).split()
    assert row[-1] == row[-2]
    assert re.search(r"eval-mode gap with the saved statistics: -?\d+\.\d\d dB", out)
