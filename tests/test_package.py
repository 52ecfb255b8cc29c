"""Package-level invariants: the library stays free of config and environment frameworks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(','.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.strip().split(","))


def test_worldmodel_does_not_import_frameworks():
    mods = _imported_after("worldmodel")
    for banned in ("hydra", "omegaconf", "gymnasium", "dm_control", "agents", "envs"):
        assert banned not in mods, f"importing worldmodel pulled in {banned}"
    assert "torch" in mods


def test_model_does_not_import_training_or_antiblur():
    """``worldmodel.model`` stands alone: the trainer and the GAN code build on it, not the reverse
    (``worldmodel.training.losses`` comes with ``import worldmodel``, as ``worldmodel.losses``)."""
    code = (
        "import sys, worldmodel.model.svg, worldmodel.model.rollout; "
        "print(','.join(sorted(m for m in sys.modules if m.startswith('worldmodel.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mods = set(out.stdout.strip().split(","))
    assert {m for m in mods if not m.startswith("worldmodel.model")} == {
        "worldmodel.training",
        "worldmodel.training.losses",
    }


def test_envs_does_not_import_worldmodel_or_agents():
    mods = _imported_after("envs")
    assert "worldmodel" not in mods and "agents" not in mods


def test_episode_format_is_a_leaf():
    """The episode format is shared by envs and worldmodel: it imports neither, nor torch."""
    mods = _imported_after("episode_format")
    for banned in ("torch", "gymnasium", "dm_control", "hydra", "envs", "worldmodel", "agents"):
        assert banned not in mods, f"importing episode_format pulled in {banned}"


def _envs_imports(module: str) -> set[str]:
    """The ``envs`` modules that ``envs/<module>.py`` imports (read from its source)."""
    tree = ast.parse((ROOT / "envs" / f"{module}.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return {name for name in names if name == "envs" or name.startswith("envs.")}


def test_env_classes_take_their_defaults_from_a_leaf_module():
    """No import cycle: the registry imports the environment classes, which read their defaults
    from envs/defaults.py, which imports no envs module."""
    assert _envs_imports("defaults") == set()
    for module in ("dmc", "gym_pixels", "stub"):
        assert "envs.registry" not in _envs_imports(module), module


def test_common_is_a_leaf():
    """The shared command-line glue and checks: importable by every package, importing none."""
    mods = _imported_after("wmcommon.cli, wmcommon.checks")
    for banned in ("torch", "gymnasium", "hydra", "omegaconf", "envs", "worldmodel", "agents"):
        assert banned not in mods, f"importing wmcommon pulled in {banned}"


def test_a_bool_is_not_an_int():
    import numpy as np

    from wmcommon.checks import is_int, is_number

    assert is_int(3) and is_int(np.int64(3), minimum=1) and not is_int(0, minimum=1)
    assert not is_int(True) and not is_int(2.0) and not is_int("2")
    assert is_number(0.5) and is_number(np.float32(2)) and not is_number(False)
    assert not is_number(float("inf"), finite=True) and is_number(float("inf"))
