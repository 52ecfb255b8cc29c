"""The README's own-planner example runs as written, on a tiny checkpoint made here."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from worldmodel.model.svg import WorldModel
from worldmodel.training.train import ObjectiveConfig, TrainConfig, Trainer

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- example: own-planner -->"
CKPT = "runs/x/checkpoints/last.pt"


def readme_example() -> str:
    text = README.read_text()
    assert MARKER in text, "the README lost its own-planner example"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.DOTALL)
    assert block is not None
    return block.group(1)


def test_readme_planner_example_runs(tmp_path, capsys, model_config):
    code = readme_example()
    assert CKPT in code
    # a tiny cheetah-shaped model: 64 px frames, 6-D actions
    torch.manual_seed(0)
    model = WorldModel(model_config(), 64, 6)
    ckpt = Trainer(model, TrainConfig(), ObjectiveConfig(), "cpu").save(tmp_path / "last.pt")

    namespace: dict[str, object] = {}
    exec(compile(code.replace(CKPT, str(ckpt)), "README.md", "exec"), namespace)  # noqa: S102

    action = namespace["action"]
    assert isinstance(action, torch.Tensor) and action.shape == (6,)
    assert bool((action.abs() <= 1).all())
    assert "planned action" in capsys.readouterr().out
    # the objective scores a whole population in one call
    scores = namespace["objective"](torch.rand(5, 12, 6) * 2 - 1)
    assert scores.shape == (5,) and bool(torch.isfinite(scores).all())
