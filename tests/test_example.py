"""examples/own_planner.py runs on a tiny checkpoint made here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from worldmodel.model.svg import WorldModel
from worldmodel.training.train import ObjectiveConfig, TrainConfig, Trainer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_planner.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("own_planner", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_planner_example(tmp_path, capsys, model_config):
    model = WorldModel(model_config(), 32, 2)
    ckpt = Trainer(model, TrainConfig(), ObjectiveConfig(), "cpu").save(tmp_path / "tiny.pt")

    example = _load_example()
    action = example.main([str(ckpt), "--env", "stub", "--frames", "3"])
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)
    assert "planned action" in capsys.readouterr().out

    # the custom objective: a larger effort penalty gives a smaller return for the same actions
    with torch.inference_mode():
        state = model.eval().observe(torch.zeros(1, 1, 3, 32, 32, dtype=torch.uint8))
    actions = torch.ones(4, 5, 2)
    torch.manual_seed(0)  # the same latent samples for both
    low = example.reward_minus_effort(model, state, penalty=0.0)(actions)
    torch.manual_seed(0)
    high = example.reward_minus_effort(model, state, penalty=1.0)(actions)
    assert torch.allclose(low - high, torch.full((4,), 10.0), atol=1e-4)
