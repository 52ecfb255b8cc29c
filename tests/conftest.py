"""Shared test set-up. Headless rendering must be chosen before dm_control / PyOpenGL load."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture
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
