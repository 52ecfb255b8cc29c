"""Command-line glue of the entry points: a bad command line becomes one clear line, early.

Used by ``worldmodel.pretrain``, ``worldmodel.evaluate`` and ``agents.cem_planner`` (library code
never imports this module). Hydra reports a bad override (an unknown key, a wrong type, an unknown
preset) as a multi-line message with a hint about ``HYDRA_FULL_ERROR``, after it has created the
run directory. :func:`preflight` composes the entry point's config from the command line once,
before hydra runs the job, and turns such an error, or a value that the config's own checks refuse,
into one line on stderr and exit status 1::

    error: unknown option 'planner.cem.populaton'; the options of planner.cem are: population, ...
    error: episodes=many: Value 'many' of type 'str' could not be converted to Integer (expected int)
    error: env=nope: no such preset in configs/env/; available: cartpole, cheetah, ...

Nothing is written (no run directory) when it fails. Multirun sweeps (``-m``) and hydra's other
modes (``--help``, ``--info``, ...) are left to hydra. ``HYDRA_FULL_ERROR=1`` skips the check, so
that hydra prints its full report. Hydra is imported inside the functions only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_DIR", "describe_composition_error", "job_overrides", "preflight"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# hydra flags that take a value and still run the job / print its config
_FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p")
_FLAGS = ("--resolve",)


def job_overrides(argv: Sequence[str]) -> list[str] | None:
    """The config overrides of a command line (``hydra.*`` ones dropped), or None when hydra is
    asked for something else than one job (``-m``, ``--help``, ``--info``, another config ...)."""
    overrides: list[str] = []
    args = list(argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            if name in _FLAGS_WITH_VALUE:
                i += 1 if "=" in arg else 2
                continue
            if name in _FLAGS:
                i += 1
                continue
            return None
        key = arg.lstrip("+~").split("=", 1)[0]
        if not (key == "hydra" or key.startswith(("hydra.", "hydra/"))):
            overrides.append(arg)
        i += 1
    return overrides


def _field_types(cls: type) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):
        hints = {}
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(cls)}


def _node(schema: type, dotted: str) -> type | None:
    """The dataclass at ``dotted`` (``""`` = the schema itself) inside ``schema``, else None."""
    node: Any = schema
    for part in [p for p in dotted.split(".") if p]:
        if not dataclasses.is_dataclass(node):
            return None
        node = _field_types(node).get(part)
    return node if dataclasses.is_dataclass(node) else None


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines)


def describe_composition_error(err: BaseException, schema: type) -> str:
    """One line naming the bad key (or preset) and what it accepts.

    Args:
        err: what hydra's ``compose`` raised.
        schema: the entry point's structured config (a dataclass), to list the accepted keys.
    """
    cause = err.__cause__
    message = str(err)
    options = getattr(err, "options", None)
    missing = re.search(r"Could not find '([^']+)'", message)
    if missing and options is not None:
        group, _, name = missing.group(1).rpartition("/")
        if group:
            return (
                f"{group.replace('/', '.')}={name}: no such preset in configs/{group}/; "
                f"available: {', '.join(options)}"
            )
        return f"no config named {name!r}; available: {', '.join(options)}"
    full_key = getattr(cause, "full_key", None)
    if full_key and message.startswith("Could not override"):
        parent, _, _ = str(full_key).rpartition(".")
        node = _node(schema, parent)
        where = f"the options of {parent}" if parent else "the top-level options"
        accepted = f"; {where} are: {', '.join(_field_types(node))}" if node else ""
        return f"unknown option {full_key!r}{accepted} (print them all with --cfg job)"
    if full_key and message.startswith("Error merging override"):
        override = message.removeprefix("Error merging override").strip()
        reason = _one_line(str(cause).split("\n    full_key:", 1)[0])
        parent, _, leaf = str(full_key).rpartition(".")
        node = _node(schema, parent)
        hint = _field_types(node).get(leaf) if node else None
        expected = f" (expected {_type_name(hint)})" if hint is not None else ""
        return f"{override}: {reason}{expected}"
    override = getattr(err, "override", None)
    if override is not None:
        return f"cannot parse the override {override!r}: {_one_line(message)}"
    text = _one_line(message)
    if cause is not None:
        text += f" ({_one_line(str(cause).split(chr(10) + '    full_key:', 1)[0])})"
    return text


def preflight(
    config_name: str,
    schema: type,
    argv: Sequence[str],
    check: Callable[[Any], Any] | None = None,
) -> None:
    """Compose ``config_name`` with the overrides of ``argv``; on an error print one line and exit 1.

    Args:
        config_name: the entry point's config (``configs/<config_name>.yaml``); its structured
            schema must be registered in hydra's ConfigStore already.
        schema: that schema (a dataclass), to name the accepted keys in the message.
        argv: the command line (``sys.argv``).
        check: called on the config as a dataclass (e.g. ``lambda cfg: cfg.validate()``); its
            ``ValueError`` / ``FileNotFoundError`` becomes the error line too. Skipped for
            ``--cfg``, which only prints the config.
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    overrides = job_overrides(argv)
    if overrides is None:
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        _fail(describe_composition_error(err, schema))
    if check is None or any(a.split("=", 1)[0] in ("--cfg", "-c") for a in argv[1:]):
        return
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        _fail(f"missing required option(s) {', '.join(missing)}: pass them as key=value")
    try:
        check(OmegaConf.to_object(cfg))
    except (ValueError, FileNotFoundError, MissingMandatoryValue) as err:
        _fail(str(err))


def _fail(message: str) -> typing.NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)
