"""The small shared part of the ``envs`` entry points: config to dataclass, clean error exits.

Expected errors (a bad value, an unknown environment, a missing file) become one line on stderr,
``error: <message>``, and exit status 1; set ``HYDRA_FULL_ERROR=1`` to get the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from omegaconf import DictConfig, OmegaConf

Config = TypeVar("Config")

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with status 1."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


def run_entry_point(run: Callable[[Config], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Convert a composed structured config to its dataclass and call ``run`` on it."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        fail(f"missing required option(s) {', '.join(missing)}: pass them as key=value")
    try:
        return run(OmegaConf.to_object(cfg))
    except EXPECTED_ERRORS as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fail(str(err))
