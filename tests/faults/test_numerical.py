"""Numerical faults at the run level: a non-finite loss or gradient (forced here) is skipped and
counted; a run that diverges stops with a message and keeps its last good checkpoint, from which
it can be resumed with a lower learning rate (which the resumed run really uses).

The trainer's own skip (weights, Adam moments and BatchNorm statistics untouched) is tested in
tests/test_train.py.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import pytest
import torch

from agents import loop
from worldmodel import pretrain
from worldmodel.training import train as train_mod
from worldmodel.training.checkpoint import load_checkpoint
from worldmodel.training.train import TrainingDiverged

from .conftest import PRETRAIN, cli, error_lines, tmp_files


def _poison_loss(monkeypatch, bad: Callable[[int], bool]) -> None:
    """Make the reconstruction term NaN on the forward passes ``n`` (from 1) with ``bad(n)``."""
    real = train_mod.objective_terms
    calls = itertools.count(1)

    def poisoned(out, cfg):
        terms = real(out, cfg)
        if bad(next(calls)):
            terms["recon"] = terms["recon"] * float("nan")
        return terms

    monkeypatch.setattr(train_mod, "objective_terms", poisoned)


def _finite(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_pretrain_skips_and_counts_non_finite_losses(
    stub_data, tmp_path, pretrain_cfg, monkeypatch, caplog
):
    _poison_loss(monkeypatch, lambda n: n in (3, 4, 7))
    with caplog.at_level(logging.WARNING, logger="worldmodel.pretrain"):
        summary = pretrain.run(pretrain_cfg(f"data={stub_data}", "steps=6"), tmp_path)
    assert summary["steps"] == 6  # six good steps: the skipped ones do not count
    assert summary["nonfinite_steps"] == 3
    assert caplog.text.count("non-finite loss at step") == 3
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["state"]
    assert state["global_step"] == 6 and state["total_nonfinite"] == 3
    assert _finite(state["model"])


def test_pretrain_skips_a_non_finite_gradient_of_a_finite_loss(
    stub_data, tmp_path, pretrain_cfg, monkeypatch
):
    real_build = pretrain.build_trainer
    losses = []

    def build(model, *args, **kwargs):
        trainer = real_build(model, *args, **kwargs)
        calls = itertools.count(1)
        weight = next(model.parameters())  # its gradient is inf on the 2nd backward pass
        weight.register_hook(lambda g: g * float("inf") if next(calls) == 2 else g)
        real_step = trainer.step

        def step(batch):
            logs = real_step(batch)
            losses.append((logs["loss"], logs["nonfinite"]))
            return logs

        trainer.step = step
        return trainer

    monkeypatch.setattr(pretrain, "build_trainer", build)
    summary = pretrain.run(pretrain_cfg(f"data={stub_data}", "steps=3"), tmp_path)
    assert summary["steps"] == 3 and summary["nonfinite_steps"] == 1
    assert [bad for _, bad in losses] == [0, 1, 0, 0]
    assert all(torch.isfinite(torch.tensor(loss)) for loss, _ in losses)  # the loss was finite
    assert _finite(load_checkpoint(tmp_path / "checkpoints" / "last.pt")["state"]["model"])


def test_pretrain_divergence_stops_and_keeps_the_last_good_checkpoint(
    stub_data, tmp_path, pretrain_cfg, monkeypatch, caplog
):
    ckpt = tmp_path / "checkpoints" / "last.pt"
    cfg = [f"data={stub_data}", "steps=20", "ckpt_every=2", "train.max_nonfinite=3"]
    _poison_loss(monkeypatch, lambda n: n > 5)  # five good steps, then only NaN
    with caplog.at_level(logging.ERROR, logger="worldmodel.pretrain"):
        with pytest.raises(
            TrainingDiverged, match=r"3 consecutive steps .* at step 5; lower train\.lr"
        ):
            pretrain.run(pretrain_cfg(*cfg), tmp_path)
    assert f"the last good checkpoint is {ckpt}" in caplog.text
    saved = load_checkpoint(ckpt)  # whole, and from the last save before the divergence
    assert saved["state"]["global_step"] == 4 and _finite(saved["state"]["model"])
    assert tmp_files(tmp_path) == [] and not (tmp_path / "summary.json").exists()

    # resumed from it with a lower learning rate, which the run then uses
    monkeypatch.undo()
    lrs = []
    real_step = train_mod.Trainer.step

    def step(self, batch):
        lrs.append(self.optimizer.param_groups[0]["lr"])
        return real_step(self, batch)

    monkeypatch.setattr(train_mod.Trainer, "step", step)
    summary = pretrain.run(pretrain_cfg(*cfg, "resume=true", "train.lr=1e-4", "steps=6"), tmp_path)
    assert summary["start_step"] == 4 and summary["steps"] == 6
    assert lrs == [1e-4, 1e-4]


def test_pretrain_cli_divergence_is_one_error_line_and_the_checkpoint_stays(
    stub_data, tmp_path, pretrain_cfg
):
    """No monkeypatching in the process: a loss weight that overflows float32 on resume."""
    pretrain.run(pretrain_cfg(f"data={stub_data}", "steps=2"), tmp_path)
    ckpt = tmp_path / "checkpoints" / "last.pt"
    before = ckpt.read_bytes()
    proc = cli("worldmodel.pretrain", *PRETRAIN, f"data={stub_data}", "steps=10", "resume=true",
               "objective.recon_weight=1e300", "train.max_nonfinite=3", f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert lines[-1].startswith("error: training diverged: 3 consecutive steps"), proc.stderr
    assert "at step 2" in lines[-1] and "Traceback" not in proc.stderr
    assert proc.stdout.count("non-finite loss at step 2: step skipped") == 2  # the 3rd raises
    assert ckpt.read_bytes() == before and tmp_files(tmp_path) == []


def test_loop_skips_counts_and_stops_on_divergence(loop_cfg, tmp_path, monkeypatch, caplog):
    # one bad gradient step: skipped, counted, reported
    _poison_loss(monkeypatch, lambda n: n == 2)
    with caplog.at_level(logging.WARNING, logger="agents.loop"):
        summary = loop.run(loop_cfg("episodes=4"), tmp_path / "skip")
    assert summary["nonfinite_steps"] == 1
    assert summary["gradient_steps"] == 2 * 2 - 1  # train_steps x planned episodes - skipped
    assert "1 of 2 gradient steps skipped" in caplog.text

    # a diverging world model stops the loop; the checkpoint after the seed episodes stays
    run_dir = tmp_path / "diverge"
    _poison_loss(monkeypatch, lambda n: True)
    with pytest.raises(TrainingDiverged):
        loop.run(loop_cfg("episodes=4", "train.max_nonfinite=2"), run_dir)
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert saved["extra"]["loop"]["episodes"] == 2 and saved["state"]["global_step"] == 0
    assert len(list((run_dir / "episodes").iterdir())) == 2 and tmp_files(run_dir) == []
    monkeypatch.undo()  # the fault is gone: the run goes on from its checkpoint
    summary = loop.run(loop_cfg("episodes=4", "resume=true"), run_dir)
    assert summary["episodes"] == 4 and summary["resumed_at_episode"] == 2
