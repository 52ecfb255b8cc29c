"""The small shared part of the ``envs`` entry points: config to dataclass, clean error exits.

Expected errors (a bad value, an unknown environment, a missing file) become one line on stderr,
``error: <message>``, and exit status 1; set ``HYDRA_FULL_ERROR=1`` to get the traceback instead.
:func:`preflight` does the same for a bad command line (an unknown key, a wrong type, an unknown
preset), before hydra creates its run directory. It is a short version of
``worldmodel.cli.preflight``: ``envs`` never imports ``worldmodel`` (the two packages are
independent by design), so the few lines of hydra glue are kept here too.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
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


CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _one_line(err: BaseException, schema: type) -> str:
    """A hydra composition error as one line naming the key or preset and what it accepts."""
    message = str(err)
    missing = re.search(r"Could not find '([^']+)'", message)
    options = getattr(err, "options", None)
    if missing and options is not None:
        group, _, name = missing.group(1).rpartition("/")
        return f"{group.replace('/', '.')}={name}: no such preset; available: {', '.join(options)}"
    key = getattr(err.__cause__, "full_key", None)
    if key and message.startswith("Could not override"):
        node: Any = schema
        for part in str(key).split(".")[:-1]:
            hints = typing.get_type_hints(node) if node else {}
            node = hints.get(part)
            node = node if isinstance(node, type) and dataclasses.is_dataclass(node) else None
        fields = ", ".join(f.name for f in dataclasses.fields(node)) if node else "see --cfg job"
        return f"unknown option {key!r}; accepted here: {fields}"
    if message.startswith("Error merging override") and err.__cause__ is not None:
        reason = str(err.__cause__).strip().splitlines()[0]
        return f"{message.removeprefix('Error merging override').strip()}: {reason}"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return "; ".join(line for line in lines if not line.startswith("full_key"))


def preflight(config_name: str, schema: type, argv: Sequence[str]) -> None:
    """Compose ``configs/<config_name>.yaml`` with the overrides of ``argv`` (``schema`` already
    registered); on a composition error print one ``error:`` line and exit 1. Multiruns,
    hydra's flags and ``HYDRA_FULL_ERROR=1`` are left to hydra."""
    args = list(argv[1:])
    if os.environ.get("HYDRA_FULL_ERROR") == "1" or any(a.startswith("-") for a in args):
        return
    overrides = [a for a in args if not a.lstrip("+~").startswith("hydra")]
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        fail(_one_line(err, schema))
