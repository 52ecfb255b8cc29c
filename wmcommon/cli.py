"""Command-line glue of the Hydra entry points: a bad command line becomes one clear line, early.

Used by every Hydra entry point (``worldmodel.pretrain``, ``worldmodel.pretrain_comparator``,
``worldmodel.evaluate``, ``agents.cem_planner``, ``envs.collect``, ``envs.import_video``); library
code never imports it. Two pieces:

* :func:`preflight` composes the entry point's config from the command line before hydra runs the
  job, and turns a composition error (an unknown key, a wrong type, an unknown preset), a missing
  required value or a value that the config's own checks refuse into one line on stderr and exit
  status 1, before hydra creates the run directory::

      error: unknown option 'planner.cem.populaton'; the options of planner.cem are: population, ...
      error: episodes=many: Value 'many' of type 'str' could not be converted to Integer (expected int)
      error: env=nope: no such preset in configs/env/; available: cartpole, cheetah, ...

  The message is built from the types and fields of Hydra's and OmegaConf's exceptions
  (``MissingConfigException.options``, the ``full_key`` of an OmegaConf ``ValidationError`` ...),
  not from the wording of their messages.
* :func:`exit_on` (and :func:`to_dataclass`) do the same for what the job itself raises: an
  expected error (a bad value, a missing file, a full disk) is printed as ``error: <message>`` and
  the process exits with status 1.

Multirun sweeps (``-m``) and hydra's other modes (``--help``, ``--info``, ...) are left to hydra.
``HYDRA_FULL_ERROR=1`` skips both, so that hydra prints its full report or the traceback.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "CONFIG_DIR",
    "describe_composition_error",
    "exit_on",
    "fail",
    "job_overrides",
    "preflight",
    "to_dataclass",
]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# hydra flags that take a value and still run the job / print its config
_FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p")
_FLAGS = ("--resolve",)


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with status 1."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


@contextmanager
def exit_on(*expected: type[BaseException]) -> Iterator[None]:
    """Turn an ``expected`` error of the block into ``error: <message>`` and exit status 1.

    Default: ``ValueError`` and ``OSError`` (a missing file, an unwritable directory, a full disk).
    With ``HYDRA_FULL_ERROR=1`` the error propagates (hydra prints the traceback).
    """
    errors = expected or (ValueError, OSError)
    try:
        yield
    except errors as err:
        if _full_error():
            raise
        fail(str(err))


def _missing_keys_message(missing: Sequence[str]) -> str:
    return f"missing required option(s) {', '.join(missing)}: pass them as key=value"


def to_dataclass(dict_cfg: Any) -> Any:
    """The composed structured config as its dataclass; a missing required value is one line."""
    from omegaconf import OmegaConf

    missing = sorted(OmegaConf.missing_keys(dict_cfg))
    if missing:
        fail(_missing_keys_message(missing))
    return OmegaConf.to_object(dict_cfg)


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


def _reason(err: BaseException) -> str:
    """An OmegaConf error's own message: its first line (the next ones list ``full_key`` ...)."""
    text = str(getattr(err, "msg", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def describe_composition_error(
    err: BaseException, schema: type, overrides: Sequence[str] = ()
) -> str:
    """One line naming the bad key (or preset) and what it accepts.

    Args:
        err: what hydra's ``compose`` raised.
        schema: the entry point's structured config (a dataclass), to list the accepted keys.
        overrides: the command line's overrides, to quote the one a wrong value came from.
    """
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    if isinstance(err, MissingConfigException) and err.options is not None:
        group, _, name = str(err.missing_cfg_file).rpartition("/")
        if group:
            return (
                f"{group.replace('/', '.')}={name}: no such preset in configs/{group}/; "
                f"available: {', '.join(err.options)}"
            )
        return f"no config named {name!r}; available: {', '.join(err.options)}"
    if isinstance(err, OverrideParseException):
        return f"cannot parse the override {err.override!r}: {_one_line(err.message)}"
    cause = err.__cause__
    full_key = str(getattr(cause, "full_key", None) or "")
    parent, _, leaf = full_key.rpartition(".")
    if full_key and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        node = _node(schema, parent)
        where = f"the options of {parent}" if parent else "the top-level options"
        accepted = f"; {where} are: {', '.join(_field_types(node))}" if node else ""
        return f"unknown option {full_key!r}{accepted} (print them all with --cfg job)"
    if full_key and isinstance(cause, ValidationError):
        given = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] == full_key]
        override = given[-1] if given else f"{full_key}={getattr(cause, 'value', '?')}"
        node = _node(schema, parent)
        hint = _field_types(node).get(leaf) if node else None
        expected = f" (expected {_type_name(hint)})" if hint is not None else ""
        return f"{override}: {_reason(cause)}{expected}"
    text = _one_line(str(err))
    if cause is not None:
        text += f" ({_reason(cause)})"
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
            ``ValueError`` / ``FileNotFoundError`` becomes the error line too, as does a missing
            required value. Skipped for ``--cfg``, which only prints the config.
    """
    if _full_error():
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
        fail(describe_composition_error(err, schema, overrides))
    if check is None or any(a.split("=", 1)[0] in ("--cfg", "-c") for a in argv[1:]):
        return
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        fail(_missing_keys_message(missing))
    try:
        check(OmegaConf.to_object(cfg))
    except (ValueError, FileNotFoundError, MissingMandatoryValue) as err:
        fail(str(err))
