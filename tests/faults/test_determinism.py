"""Determinism (CPU, same machine): the same seed and config give the same first losses of
pretraining, the same collected episodes, and the same seed and planned episodes of the RL loop;
another seed gives other ones (so the comparisons are not vacuous)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from agents import loop
from worldmodel import pretrain
from worldmodel.training import train as train_mod
from worldmodel.training.checkpoint import load_checkpoint


def _arrays(directory: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(directory.glob("episode-*.npz")):
        with np.load(path, allow_pickle=False) as f:
            out[path.name] = {k: f[k] for k in f.files}
    assert out, f"no episodes in {directory}"
    return out


def _same_episodes(a: Path, b: Path) -> bool:
    x, y = _arrays(a), _arrays(b)
    return x.keys() == y.keys() and all(
        x[n].keys() == y[n].keys() and all(np.array_equal(x[n][k], y[n][k]) for k in x[n])
        for n in x
    )


def _losses(monkeypatch) -> list[float]:
    """Record the loss of every trainer step from now on."""
    losses: list[float] = []
    real = train_mod.Trainer.step

    def step(self, batch):
        logs = real(self, batch)
        losses.append(logs["loss"])
        return logs

    monkeypatch.setattr(train_mod.Trainer, "step", step)
    return losses


def test_pretrain_same_seed_same_first_losses(stub_data, tmp_path, pretrain_cfg, monkeypatch):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("other", 1)):
        losses = _losses(monkeypatch)
        cfg = pretrain_cfg(f"data={stub_data}", "steps=8", f"train.seed={seed}")
        pretrain.run(cfg, tmp_path / name)
        monkeypatch.undo()
        runs[name] = losses
    assert len(runs["a"]) == 8 and all(np.isfinite(runs["a"]))
    assert runs["a"] == runs["b"]  # exactly, not approximately
    assert runs["a"] != runs["other"]
    wa = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["state"]["model"]
    wb = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["state"]["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_collect_same_seed_same_episodes(compose, tmp_path):
    import envs.collect

    def collect(out: Path, seed: int) -> None:
        cfg = compose("collect", ["env=stub", "env.size=32", "env.max_episode_steps=6",
                                  "episodes=3", f"seed={seed}", f"out={out}", "progress=false"])  # fmt: skip
        envs.collect.run(OmegaConf.to_object(cfg))

    for name, seed in (("a", 0), ("b", 0), ("other", 1)):
        collect(tmp_path / name, seed)
    assert _same_episodes(tmp_path / "a", tmp_path / "b")
    assert not _same_episodes(tmp_path / "a", tmp_path / "other")


def test_loop_same_seed_same_seed_and_planned_episodes(loop_cfg, tmp_path, monkeypatch):
    """Two random seed episodes, one planned with the trained model, one evaluation."""
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("other", 1)):
        losses = _losses(monkeypatch)
        loop.run(loop_cfg("episodes=3", f"seed={seed}"), tmp_path / name)
        monkeypatch.undo()
        runs[name] = losses
    for kind in ("episodes", "eval_episodes"):
        assert _same_episodes(tmp_path / "a" / kind, tmp_path / "b" / kind), kind
        assert not _same_episodes(tmp_path / "a" / kind, tmp_path / "other" / kind), kind
    assert runs["a"] == runs["b"] and len(runs["a"]) == 2
    wa = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["state"]["model"]
    wb = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["state"]["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
