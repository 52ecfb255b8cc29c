"""Package-level invariants: the library stays free of config and environment frameworks."""

from __future__ import annotations

import subprocess
import sys


def _imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(','.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.strip().split(","))


def test_worldmodel_does_not_import_frameworks():
    mods = _imported_after("worldmodel")
    for banned in ("hydra", "omegaconf", "gymnasium", "dm_control", "agents", "envs"):
        assert banned not in mods, f"importing worldmodel pulled in {banned}"
    assert "torch" in mods


def test_envs_does_not_import_worldmodel_or_agents():
    mods = _imported_after("envs")
    assert "worldmodel" not in mods and "agents" not in mods
