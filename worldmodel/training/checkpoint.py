"""Checkpoints: atomic saving, safe loading, config compatibility.

A checkpoint is a plain dict of state dicts, optimiser states, numbers, strings and nested
dicts/lists (configs as ``dataclasses.asdict``): never pickled modules or arbitrary objects. It is
written to a temporary file in the target directory, fsynced and renamed over the target, so a crash
or a full disk never leaves a half-written checkpoint in place of the previous one. It is loaded with
``torch.load(weights_only=True)``, which refuses files that would run code when unpickled.

Example::

    save_checkpoint(run_dir / "last.ckpt", {
        "model": model.state_dict(), "opt_g": opt_g.state_dict(),
        "step": step, "config": dataclasses.asdict(cfg),
    })
    ckpt = load_checkpoint(run_dir / "last.ckpt")
    check_config_compatible(ckpt["config"], dataclasses.asdict(cfg), ["model.K", "model.M"])

The trainer's checkpoints (``worldmodel.training.train.Trainer.save``, format
:data:`CHECKPOINT_FORMAT`) hold the world model's spec and weights: :func:`model_from_checkpoint`
rebuilds the model from one, for planning or evaluation, without importing the trainer.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from worldmodel.model.svg import ModelConfig, WorldModel

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "check_config_compatible",
    "cleanup_stale_tmp",
    "load_checkpoint",
    "load_optimizer_state",
    "model_from_checkpoint",
    "save_checkpoint",
    "with_config_defaults",
    "write_text_atomic",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "worldmodel-trainer/1"  # the checkpoints of training.train.Trainer

# Leaf types that torch.load(weights_only=True) accepts (checked against torch in the tests).
_LEAF_TYPES = (
    str,
    bytes,
    int,
    float,
    bool,
    complex,
    type(None),
    torch.Size,
    torch.dtype,
    torch.device,
)
_KEY_TYPES = (str, int, float, bool, type(None))
_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, read, trusted, or used with the current config."""


def _check_payload(obj: Any, where: str) -> None:
    """Raise CheckpointError if ``obj`` holds anything that weights_only loading would refuse."""
    if isinstance(obj, torch.Tensor) or type(obj) in _LEAF_TYPES:
        return
    if type(obj) in (dict, collections.OrderedDict):
        for key, value in obj.items():
            if type(key) not in _KEY_TYPES:
                raise CheckpointError(
                    f"{where} has a key of type {type(key).__name__}; use str or int keys"
                )
            _check_payload(value, f"{where}[{key!r}]")
        return
    if type(obj) in (list, tuple, set):
        for i, value in enumerate(obj):
            _check_payload(value, f"{where}[{i}]")
        return
    raise CheckpointError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; checkpoints hold only tensors, "
        "numbers, strings and dicts/lists of them (use module.state_dict(), "
        "dataclasses.asdict(config), .item() for numpy scalars, torch.from_numpy for arrays)"
    )


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically, creating the directory.

    The payload is checked first (only what ``weights_only`` loading accepts), written to
    ``.<name>.<random>.tmp`` in the same directory, fsynced, and renamed over ``path``.

    Args:
        path: the checkpoint file (e.g. ``runs/x/last.ckpt``).
        payload: dict of state dicts, optimiser states, numbers, strings, nested dicts/lists.

    Returns:
        ``path`` as a Path.

    Raises:
        CheckpointError: a payload entry that is not allowed (naming it), an unwritable directory,
            or a failed write (e.g. disk full). On failure the temporary file is removed and any
            previous checkpoint at ``path`` is left intact.
    """
    path = Path(path)
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"checkpoint payload must be a dict, got {type(payload).__name__}")
    _check_payload(dict(payload), "payload")
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create checkpoint directory {directory}: {e}") from e

    tmp = directory / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise CheckpointError(
            f"cannot write checkpoint {path}: directory {directory} is not writable ({e})"
        ) from e
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(payload), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(
            e, (OSError, RuntimeError)
        ):  # torch's zip writer reports I/O errors as RuntimeError
            raise CheckpointError(
                f"failed to write checkpoint {path} ({type(e).__name__}: {e}); the disk may be "
                "full. The previous checkpoint, if any, is intact."
            ) from e
        raise
    _fsync_directory(directory)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a small text file (e.g. ``summary.json``) atomically: tmp file, fsync, rename.

    A reader (or a run killed half-way) sees the old file or the new one, never half of one. The
    temporary file is ``.<name>.<random>.tmp`` next to ``path`` (removed on failure).

    Raises:
        OSError: the directory is not writable or the disk is full (``path`` is left as it was).
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        log.debug("could not fsync directory %s: %s", directory, e)
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing pickled code.

    Args:
        path: the checkpoint file.
        map_location: where to put the tensors (default CPU; move them with ``load_state_dict``).

    Returns:
        The payload dict.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is truncated/corrupt, not a checkpoint, or carries pickled objects
            or code that ``weights_only`` loading refuses (it is never executed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(len(_ZIP_MAGIC))
    if magic != _ZIP_MAGIC:
        raise CheckpointError(
            f"checkpoint {path} is empty, truncated or not a PyTorch checkpoint (no zip header)"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        culprit = re.search(r"GLOBAL ([\w.]+)", str(e))
        if culprit:
            raise CheckpointError(
                f"refusing to load checkpoint {path}: it carries pickled code or objects "
                f"({culprit.group(1)}) that weights_only loading does not allow. Only if you trust "
                "its source, load it with torch.load(..., weights_only=False)."
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not loadable with weights_only=True "
            f"({_first_specific_line(str(e))})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as e:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); use an earlier checkpoint or retrain"
        ) from e
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(payload).__name__}, expected a dict"
        )
    return payload


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, but keep the optimizer's current settings.

    The moments and step counts come from the checkpoint; the settings of each parameter group
    (``lr``, ``betas``, ``eps``, ...) stay those the optimizer was built with, i.e. this run's
    config. Plain ``load_state_dict`` would silently bring back the checkpoint's learning rate, so
    that a diverged run resumed with a lower ``train.lr`` would go on with the old one.
    """
    settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kept in zip(optimizer.param_groups, settings, strict=True):
        group.update(kept)


def _first_specific_line(message: str) -> str:
    """The informative line of torch's long weights_only error (e.g. 'Unsupported operand 109')."""
    for line in message.splitlines():
        line = line.strip()
        if line.startswith(("Unsupported", "WeightsUnpickler error")):
            return line
    return message.splitlines()[0] if message else ""


_MISSING = object()


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _normalise(value: Any) -> Any:
    """Tuples and lists compare equal (asdict keeps tuples, YAML gives lists)."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def check_config_compatible(
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    keys: list[str],
    *,
    source: str | os.PathLike | None = None,
) -> None:
    """Raise if the configs differ at any of ``keys`` (dotted paths into nested dicts).

    Args:
        saved: the config stored in the checkpoint (a plain dict).
        current: the config of this run (``dataclasses.asdict(cfg)``).
        keys: dotted keys that must match, e.g. ``["model.K", "model.M", "image_size"]``.
        source: the checkpoint file, named in the message.

    Raises:
        CheckpointError: listing every differing key, e.g. ``model.M: saved 2, current 1``.
    """

    def show(v: Any) -> str:
        return "<missing>" if v is _MISSING else repr(v)

    diffs = []
    for key in keys:
        old, new = _lookup(saved, key), _lookup(current, key)
        if old is _MISSING and new is _MISSING:
            continue
        if old is _MISSING or new is _MISSING or _normalise(old) != _normalise(new):
            diffs.append(f"{key}: saved {show(old)}, current {show(new)}")
    if diffs:
        where = f" {source}" if source is not None else ""
        raise CheckpointError(
            f"checkpoint{where} was made with a different configuration: {'; '.join(diffs)}. "
            "Use the checkpoint's values (as overrides) or start a new run."
        )


def cleanup_stale_tmp(directory: str | os.PathLike) -> list[Path]:
    """Remove leftover ``.*.tmp`` files (from an interrupted save) in ``directory``.

    Call it at start-up only, when no other process writes to the directory.

    Returns:
        The removed files (empty if the directory does not exist).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for tmp in sorted(directory.glob(".*.tmp")):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.info("removed %d stale temporary file(s) in %s", len(removed), directory)
    return removed


def with_config_defaults(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A stored model spec with ``ModelConfig`` fields it predates filled in with their defaults
    (a checkpoint written before a field existed was made with the field's default behaviour)."""
    defaults = asdict(ModelConfig())
    return {**spec, "config": {**defaults, **spec["config"]}}


def model_from_checkpoint(
    path: str | Path, device: torch.device | str = "cpu", payload: Mapping[str, Any] | None = None
) -> WorldModel:
    """Build the :class:`~worldmodel.model.svg.WorldModel` stored in a trainer checkpoint and load
    its weights (eval mode). Imports no trainer code.

    ``payload``: the checkpoint already read from ``path`` (not read again).
    """
    if payload is None:
        payload = load_checkpoint(path, map_location=device)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a trainer checkpoint (format {payload.get('format')!r})")
    spec = payload["model"]
    model = WorldModel(
        ModelConfig(**spec["config"]), spec["image_size"], spec["action_dim"], spec["channels"]
    ).to(device)
    model.load_state_dict(payload["state"]["model"])
    return model.eval()
