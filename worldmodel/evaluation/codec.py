"""Reports as strict JSON: JSON has no infinity, so non-finite numbers (e.g. the PSNR of identical
frames) are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``; :func:`number` reads them
back."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

__all__ = ["to_jsonable", "write_json", "read_json", "number"]


def to_jsonable(obj: Any) -> Any:
    """Plain JSON data: dataclasses, tensors, paths and tuples converted; non-finite floats as
    ``"inf"`` / ``"-inf"`` / ``"nan"`` strings (JSON has no infinity)."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Tensor):
        return to_jsonable(obj.tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return to_jsonable(obj.item())
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as strict JSON (see :func:`to_jsonable`), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def number(value: Any) -> float | None:
    """A number from a report: floats, ints and the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return None
