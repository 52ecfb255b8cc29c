"""The skeleton of a training run's directory, shared by ``worldmodel.pretrain`` and the RL loop.

A run directory holds ``tb/`` (TensorBoard: the config as text, the parameter count, the run's
scalars), ``checkpoints/``, and ``summary.json`` when the run ends; a progress bar shows the run on
the console. :class:`RunDirectory` does the parts the two trainers share: it creates the directory
and removes the leftovers of a killed run's atomic writes (:func:`cleanup_stale_tmp`), opens the
TensorBoard writer (logging the config), opens the progress bar, closes both, and writes the
summary atomically. TensorBoard and tqdm are imported when used. :func:`add_video` is the one way
both log a video (TensorBoard's ``add_video``, made safe for headless runs).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from worldmodel.training.checkpoint import cleanup_stale_tmp, write_text_atomic

__all__ = ["RunDirectory", "add_video", "config_text"]


def add_video(writer: Any, tag: str, video: Any, step: int, fps: float) -> None:
    """``writer.add_video(tag, video, step, fps)``, safe on a headless machine.

    TensorBoard's add_video imports moviepy, whose audio preview module initialises pygame's SDL
    at import. Dummy SDL drivers (unless the user chose others) keep the console free of ALSA
    errors; nothing is played anyway. SDL would also install handlers for SIGINT and SIGTERM that
    turn them into SDL quit events nobody reads: after the first video, ``kill PID`` (SIGTERM,
    what schedulers and ``timeout`` send) no longer stopped a run. ``SDL_NO_SIGNAL_HANDLERS``
    keeps the defaults.
    """
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
    writer.add_video(tag, video, step, fps=max(1, round(fps)))


def config_text(cfg: Any) -> str:
    """A config dataclass as the Markdown code block logged to TensorBoard's text tab."""
    return "```\n" + json.dumps(dataclasses.asdict(cfg), indent=2) + "\n```"


class RunDirectory:
    """A run's directory, its TensorBoard writer and progress bar (see the module docstring).

    Args:
        root: the run directory (created if missing).
        subdirs: directories inside it that atomic writes also go to (cleaned of stale
            ``.tmp`` files, like ``root`` itself).
    """

    def __init__(self, root: str | Path, subdirs: tuple[Path, ...] = ()) -> None:
        self.root = Path(root)
        self.writer: Any = None
        self.bar: Any = None
        self.root.mkdir(parents=True, exist_ok=True)
        for directory in (self.root, *subdirs):  # leftovers of a killed run's atomic writes
            cleanup_stale_tmp(directory)

    def open_writer(self, cfg: Any = None, step: int = 0, parameters: int | None = None) -> Any:
        """Open the TensorBoard writer (``root/tb``); log ``cfg`` as text and the parameter count
        at ``step`` when given."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.root / "tb"))
        if cfg is not None:
            self.writer.add_text("config", config_text(cfg), step)
        if parameters is not None:
            self.writer.add_scalar("model/parameters", parameters, step)
        return self.writer

    def open_bar(self, **tqdm_kwargs: Any) -> Any:
        """Open the progress bar (``tqdm(**tqdm_kwargs)``)."""
        from tqdm import tqdm

        self.bar = tqdm(**tqdm_kwargs)
        return self.bar

    def close(self) -> None:
        """Close the progress bar and the writer (each at most once)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def write_summary(self, summary: dict[str, Any], name: str = "summary.json") -> Path:
        """Write ``summary`` as JSON to ``root/name`` atomically; returns the path."""
        path = self.root / name
        write_text_atomic(path, json.dumps(summary, indent=2))
        return path
