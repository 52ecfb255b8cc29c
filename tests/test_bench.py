"""Every benchmark in bench/ runs on its smallest setting (``--smoke``), so that none of them rots.

Nothing here looks at a time: a benchmark passes when it exits cleanly, prints the machine line
first and (bench_planner, bench_train) its ratio lines, the last one last, and (bench_planner,
bench_train) the measured peak with the fraction of it reached, and the bf16 skip note where bf16
is not native. Each run takes seconds of CPU; with the imports in a
fresh interpreter per script the whole module takes about a minute, hence ``slow``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.name for p in (ROOT / "bench").glob("bench_*.py"))
LAST_LINES = {
    "bench_planner.py": re.compile(
        r"^planner / PlaNet RSSM ms per action \(1000x12x10, same run\): \d+\.\d\dx$"
    ),
    "bench_train.py": re.compile(r"^loss=full / loss=mse step time: \d+\.\d\dx$"),
}
# lines each of these prints somewhere (the ratio lines of issue 13's targets, fraction of peak)
CONTAINS = {
    "bench_planner.py": [
        re.compile(r"^peak fp32: torch\.mm .* GFLOP/s, conv3x3 .* GFLOP/s"),
        re.compile(r"% mm peak"),
        re.compile(r"^cpu profile planner ms per action .* faster$"),
    ],
    "bench_train.py": [
        re.compile(r"^peak fp32: torch\.mm .* GFLOP/s, conv3x3 .* GFLOP/s"),
        re.compile(r"of the conv peak$"),
        re.compile(
            r"^SVG-LP size step: original SVG loop / this package \(fp32, same run\): \d+\.\d\dx$"
        ),
    ],
}

pytestmark = pytest.mark.slow


def test_the_benchmarks_are_found():
    assert {"bench_planner.py", "bench_cem.py", "bench_train.py"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_smoke_run(name: str, tmp_path: Path) -> None:
    args = [sys.executable, str(ROOT / "bench" / name), "--smoke"]
    if name == "bench_comparators.py":
        args += ["--workdir", str(tmp_path)]
    env = {
        **os.environ,
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "egl"),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"{name} --smoke failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[0].startswith("machine: "), (
        f"{name}: no machine line first:\n{proc.stdout}"
    )
    assert "native bf16" in lines[0] and "CUDA" in lines[0]
    if name in LAST_LINES:
        assert LAST_LINES[name].match(lines[-1]), f"{name}: last line {lines[-1]!r}"
    for pattern in CONTAINS.get(name, []):
        assert any(pattern.search(line) for line in lines), f"{name}: no {pattern.pattern!r}"
    if name in CONTAINS and "native bf16 (cpu) no" in lines[0]:
        assert any(line.strip().startswith("bf16: skipped, not native") for line in lines)
