"""What every benchmark in ``bench/`` shares: the machine line, the measured peaks, timing, flags.

Use from a benchmark script (``bench/`` is not installed; the script puts the repository root on
``sys.path`` first)::

    ROOT = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(ROOT))
    from bench.common import add_common_args, apply_threads, machine_line, peaks, ...

    args = parser.parse_args()
    apply_threads(args)                 # --threads N before anything is timed
    print(machine_line(device))         # CPU model, cores, threads, torch, native bf16, CUDA
    peak = peaks(device)                # {"fp32": Peak(mm=..., conv=...), "bf16": ...}
    print(peak_lines(peak, device))     # says so when bf16 is skipped (not native)

* :func:`machine_line`: one line naming the CPU model, physical cores / logical CPUs, torch's thread
  count, the torch version, whether bf16 is native (:func:`native_bf16`) and the CUDA device (or
  none).
* :func:`peaks`: GFLOP/s of ``torch.mm`` on 2048 x 2048 matrices and of a 3x3 convolution (128 ->
  128 channels, 32 x 32, batch 32, channels-last: the best case for convolutions), in fp32 and, only
  where bf16 is native, in bf16, at the current thread count. Emulated bf16 is not timed: on a CPU
  without AVX512-BF16 / AMX one bf16 mm 2048^2 takes minutes.
* :func:`clock`, :func:`timeit`: (min, median) seconds of repeated calls, synchronising CUDA, on
  the process CPU time when one CPU thread is timed (robust to other jobs on a shared machine)
  and on the wall clock otherwise.
* :func:`add_common_args`: ``--quick`` (the same ratio lines in at most ~3 minutes on the project's
  2-core machine), ``--smoke`` (the smallest setting: seconds; the test suite runs it so no
  benchmark rots) and ``--threads``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from worldmodel.device import cpu_has_native_bf16

__all__ = [
    "Peak",
    "add_common_args",
    "apply_threads",
    "bf16_skip_note",
    "clock",
    "cpu_model",
    "machine_line",
    "native_bf16",
    "peak_lines",
    "peaks",
    "precisions",
    "timeit",
]

MM_SIZE = 2048
CONV_SHAPE = (32, 128, 32, 32)  # batch, channels, height, width of the 3x3 conv peak


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _physical_cores() -> int | None:
    """Physical cores from ``/proc/cpuinfo`` (distinct (physical id, core id)), None if unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    cores = set()
    for block in text.strip().split("\n\n"):
        fields = dict(
            (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in block.splitlines())
        )
        if "core id" in fields:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    return len(cores) or None


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 matmuls run natively on ``device`` (a CUDA GPU with bf16 support, or a CPU
    with AVX512-BF16 / AMX through oneDNN: :func:`worldmodel.device.cpu_has_native_bf16`)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def machine_line(device: torch.device | str | None = None) -> str:
    """``machine: <CPU model>, <cores> cores / <cpus> CPUs, <threads> torch threads, torch <v>,
    native bf16 yes|no, CUDA <device name>|none`` (native bf16 judged on ``device``, default the
    CPU)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    cpus = os.cpu_count() or 0
    cores = _physical_cores()
    cores_text = f"{cores} cores / {cpus} CPUs" if cores else f"{cpus} CPUs"
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        cuda += f" (x{torch.cuda.device_count()})"
    bf16 = "yes" if native_bf16(device) else "no"
    return (
        f"machine: {cpu_model()}, {cores_text}, {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, native bf16 ({device.type}) {bf16}, CUDA {cuda}"
    )


def precisions(device: torch.device | str = "cpu") -> list[str]:
    """``["fp32", "bf16"]`` where bf16 is native on ``device``, else ``["fp32"]``."""
    return ["fp32", "bf16"] if native_bf16(device) else ["fp32"]


def bf16_skip_note(device: torch.device | str = "cpu") -> str | None:
    """The line to print when bf16 is skipped on ``device`` (None when it is timed)."""
    if native_bf16(device):
        return None
    return (
        f"bf16: skipped, not native on this {torch.device(device).type} (emulated bf16 is "
        "~100-200x slower than fp32 and precision=auto never picks it here)"
    )


def clock(device: torch.device | str | None = None) -> tuple[Callable[[], float], str]:
    """The clock benchmarks time with, and its name.

    On a CPU with one torch thread: the process CPU time (``time.process_time``). It equals the
    wall clock on an idle machine and, unlike the wall clock, is not inflated when other jobs share
    the cores (on the project's 2-core machine, long training runs often do). Otherwise (several
    threads, whose OpenMP spin-waits would count, or a GPU): the wall clock.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.process_time, "process CPU time"
    return time.perf_counter, "wall clock"


def timeit(
    fn: Callable[[], object],
    repeats: int,
    warmup: int = 1,
    device: torch.device | str | None = None,
    wall: bool = False,
) -> tuple[float, float]:
    """(min, median) seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls, on
    :func:`clock` (``wall=True``: always the wall clock); CUDA is synchronised around each call
    when ``device`` is a CUDA device."""
    sync = (
        torch.cuda.synchronize
        if device is not None and torch.device(device).type == "cuda"
        else lambda: None
    )
    now = time.perf_counter if wall else clock(device)[0]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        sync()
        start = now()
        fn()
        sync()
        times.append(now() - start)
    return min(times), statistics.median(times)


@dataclass(frozen=True)
class Peak:
    """Measured GFLOP/s of ``torch.mm`` 2048^2 and of the 3x3 conv, for one dtype."""

    mm: float
    conv: float
    smoke: bool = False  # measured on tiny kernels (--smoke): not a peak

    @property
    def best(self) -> float:
        return max(self.mm, self.conv)


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def peaks(
    device: torch.device | str = "cpu",
    names: Iterable[str] | None = None,
    repeats: int = 5,
    smoke: bool = False,
) -> dict[str, Peak]:
    """Measured peaks ``{precision: Peak}`` at the current thread count (best of ``repeats``).

    Args:
        device: where to measure.
        names: precisions to measure; default :func:`precisions` (bf16 only where native). Asking
            for bf16 where it is not native measures it anyway (slow: minutes on such a CPU).
        repeats: timed calls per kernel (after one warm-up).
        smoke: tiny kernels (mm 256^2, conv batch 1), for a benchmark's ``--smoke`` run: the
            numbers are not peaks.
    """
    device = torch.device(device)
    names = list(names) if names is not None else precisions(device)
    out = {}
    b, c, h, w = CONV_SHAPE
    size = MM_SIZE
    if smoke:
        b, size, repeats = 1, 256, 1
    conv_flops = 2 * b * c * c * 9 * h * w
    mm_flops = 2 * size**3
    gen = torch.Generator().manual_seed(0)
    for name in names:
        dtype = _DTYPES[name]
        x = torch.randn(b, c, h, w, generator=gen).to(device, dtype)
        k = torch.randn(c, c, 3, 3, generator=gen).to(device, dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        k = k.contiguous(memory_format=torch.channels_last)
        a = torch.randn(size, size, generator=gen).to(device, dtype)
        bm = torch.randn(size, size, generator=gen).to(device, dtype)
        with torch.inference_mode():
            t_mm, _ = timeit(lambda a=a, bm=bm: torch.mm(a, bm), repeats, device=device)
            t_conv, _ = timeit(lambda x=x, k=k: F.conv2d(x, k, padding=1), repeats, device=device)
        out[name] = Peak(mm=mm_flops / t_mm / 1e9, conv=conv_flops / t_conv / 1e9, smoke=smoke)
    return out


def peak_lines(peak: dict[str, Peak], device: torch.device | str = "cpu") -> str:
    """Printable lines for :func:`peaks`' result, plus the bf16 skip note where bf16 is absent."""
    threads = torch.get_num_threads()
    lines = [
        f"peak {name}: torch.mm {256 if p.smoke else MM_SIZE}^2 {p.mm:,.0f} GFLOP/s, conv3x3 "
        f"{p.conv:,.0f} GFLOP/s ({threads} thread{'s' if threads > 1 else ''}, "
        f"{clock(device)[1]})" + (" [smoke: tiny kernels, not a peak]" if p.smoke else "")
        for name, p in peak.items()
    ]
    note = bf16_skip_note(device)
    if "bf16" not in peak and note:
        lines.append(note)
    return "\n".join(lines)


def add_common_args(parser: argparse.ArgumentParser, threads_default: int = 0) -> None:
    """Add ``--quick``, ``--smoke`` and ``--threads`` to a benchmark's parser."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repeats / smaller sweeps: the same ratio lines in at most ~3 minutes "
        "on a 2-core machine",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the smallest setting (seconds): checks that the benchmark runs, numbers meaningless",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=threads_default,
        help="torch intra-op threads (0: torch's default)",
    )


def apply_threads(args: argparse.Namespace) -> None:
    """``torch.set_num_threads(args.threads)`` when given (> 0)."""
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
