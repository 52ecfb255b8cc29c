"""Shared test set-up: headless rendering (chosen before dm_control / PyOpenGL load), the real
hydra configs, one-thread runs and the small model configs the tests build."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs one worker per core) each worker gets an equal share
    of the cores as torch threads: more would oversubscribe the machine, and OpenMP's waiting
    threads make the tests' small ops many times slower on a loaded core."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


#: The smallest world model the tests build (shapes, plumbing, checkpoints, planning calls).
TOY_MODEL = dict(rnn_units=16, nf=4, g_dim=8, z_dim=2, reward_hidden=8)


@pytest.fixture(scope="session")
def compose() -> Iterator[Callable[..., object]]:
    """``compose(config_name, overrides)``: the real hydra config of an entry point.

    Import the entry-point module first (it registers its ``<name>_schema``).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def _compose(config_name: str, overrides: list[str] | None = None) -> object:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=overrides or [])

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the test on one intra-op thread: tiny models gain nothing from more, and on a loaded
    2-core machine OpenMP's waiting threads make their many small ops up to ~10x slower.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def model_config() -> Callable[..., object]:
    """``model_config(preset="toy", **overrides)``: a validated
    ``worldmodel.model.svg.ModelConfig``.

    ``"toy"`` is :data:`TOY_MODEL`; any other name is a preset of ``configs/model/`` read from its
    YAML, e.g. ``"tiny"`` (``model=tiny`` of the entry points, ~0.1M parameters at 64 px) for tests
    that train a model and look at what it learned.
    """
    from worldmodel.model.svg import ModelConfig

    def make(preset: str = "toy", **overrides: object) -> ModelConfig:
        if preset == "toy":
            values = dict(TOY_MODEL)
        else:
            values = yaml.safe_load((CONFIG_DIR / "model" / f"{preset}.yaml").read_text()) or {}
        return ModelConfig(**{**values, **overrides}).validate()

    return make


@pytest.fixture(scope="session")
def bench_script() -> Callable[[str], object]:
    """``bench_script("video_quality")``: the module of ``bench/<name>.py`` (a script, not a package
    module), loaded once and registered in ``sys.modules`` under its name."""
    import importlib.util
    import sys

    def load(name: str) -> object:
        if name not in sys.modules:
            path = CONFIG_DIR.parent / "bench" / f"{name}.py"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]

    return load
