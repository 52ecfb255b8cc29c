"""Device, mixed precision and seeding helpers.

* :func:`resolve_device` turns a config string (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``) into
  a ``torch.device``, failing clearly when the device is not there.
* :func:`autocast_dtype` picks the autocast dtype for a precision setting:

  ========  ====================================================================================
  fp32      no autocast (None)
  bf16      ``torch.bfloat16`` (error on a CUDA GPU without bf16 support)
  fp16      ``torch.float16``: the training step must then use a ``torch.amp.GradScaler``
  auto      ``bfloat16`` on CUDA GPUs with bf16 support (``torch.cuda.is_bf16_supported()``) and on
            CPUs with native bf16 instructions (oneDNN available and AVX512-BF16 or AMX, see
            :func:`cpu_has_native_bf16`); otherwise None (fp32). Never fp16 (needs loss scaling).
  ========  ====================================================================================

* :func:`autocast` is ``torch.autocast`` for a dtype, or a no-op context for None.
* :func:`seed_everything` seeds Python, NumPy and torch and returns a fresh generator.
"""

from __future__ import annotations

import contextlib
import random
from contextlib import AbstractContextManager

import numpy as np
import torch

from wmcommon.checks import is_int

__all__ = [
    "PRECISIONS",
    "autocast",
    "autocast_dtype",
    "cpu_has_native_bf16",
    "resolve_device",
    "seed_everything",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` for a device setting.

    Args:
        name: ``"auto"`` (CUDA if available, else CPU; MPS is never picked automatically),
            ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, or a ``torch.device``.

    Raises:
        ValueError: an unknown name, or a device that this machine / torch build does not have.
    """
    if isinstance(name, torch.device):
        device = name
    else:
        text = str(name).strip().lower()
        if text == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(text)
        except RuntimeError:
            raise ValueError(
                f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps"
            ) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ValueError(
                f"device={name!r} but CUDA is not available (torch {torch.__version__}, {build}); "
                "use device=cpu or device=auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device={name!r} but only {count} CUDA device(s) are visible")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device={name!r} but MPS is not available; use device=cpu")
        return device
    raise ValueError(f"unsupported device type {device.type!r}; use auto, cpu, cuda, cuda:N or mps")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls/convolutions natively through oneDNN.

    True when torch was built with oneDNN (``torch.backends.mkldnn``) and the CPU has AMX tiles or
    AVX512-BF16 (``torch.cpu._is_amx_tile_supported`` / ``_is_avx512_bf16_supported``, private
    helpers looked up with ``getattr`` so that older or newer torch versions simply answer False).
    """
    if not torch.backends.mkldnn.is_available():
        return False
    for check in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, check, None)
        if fn is not None and fn():
            return True
    return False


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None means plain fp32).

    Args:
        device: the training/inference device.
        precision: ``"auto"`` | ``"fp32"`` | ``"bf16"`` | ``"fp16"`` (see the module docstring).

    Raises:
        ValueError: an unknown precision, or bf16 requested on a CUDA GPU without bf16 support.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        supported = cpu_has_native_bf16()
    else:
        supported = False
    if precision == "bf16":
        if device.type == "cuda" and not supported:
            raise ValueError(
                f"precision=bf16 but {torch.cuda.get_device_name(device)} has no bf16 support; "
                "use precision=fp16 or fp32"
            )
        return torch.bfloat16
    return torch.bfloat16 if supported else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` on ``device`` with ``dtype``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and CUDA).

    Args:
        seed: a non-negative integer.
        device: device of the returned generator (default CPU); e.g. the planner's device so that
            ``torch.randn(..., device=device, generator=g)`` works.

    Returns:
        A new ``torch.Generator`` seeded with ``seed``: pass it explicitly where randomness matters.
    """
    if not is_int(seed, 0):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    generator = torch.Generator(device=torch.device(device) if device is not None else "cpu")
    generator.manual_seed(seed)
    return generator
