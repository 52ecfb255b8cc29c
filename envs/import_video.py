"""Videos as action-free episodes: ``python -m envs.import_video src=FILE_OR_DIR out=DIR``.

Each video is decoded with PyAV (through imageio), every ``stride``-th frame is kept,
center-cropped to a square and resized to ``size`` (area average), and the frames are cut into
consecutive clips of ``clip_length`` frames, each written as an episode with no ``action`` and
no ``reward`` (meta ``source: "video"``, ``truncated`` set at its last step). Options:
:class:`envs.config.ImportVideoConfig`.

A file that cannot be decoded is an error when it is the only file; in a directory it is skipped
and named in one line on stderr (and in the result's ``skipped``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig
from tqdm import tqdm

from envs.config import MISSING, ImportVideoConfig
from envs.episodes import next_episode_index, save_episode
from envs.image import center_crop, resize, to_rgb
from wmcommon.cli import exit_on, preflight, to_dataclass

VIDEO_EXTENSIONS = (".mp4", ".avi", ".gif", ".mov", ".mkv", ".webm")

ConfigStore.instance().store(name="import_video_schema", node=ImportVideoConfig)


class VideoDecodeError(ValueError):
    """A video file could not be decoded."""


def _decode_errors() -> tuple[type[BaseException], ...]:
    import av

    # OSError: imageio finds no plugin for the file; av.error.FFmpegError: broken stream.
    return (OSError, ValueError, RuntimeError, av.error.FFmpegError)


def read_frames(path: Path, size: int, stride: int = 1) -> Iterator[np.ndarray]:
    """Decode a video lazily: every ``stride``-th frame as uint8 ``(size, size, 3)``.

    Raises:
        VideoDecodeError: the file is not a decodable video (also in the middle of it).
    """
    import imageio.v3 as iio

    count = 0
    try:
        for count, frame in enumerate(iio.imiter(path, plugin="pyav")):
            if count % stride == 0:
                yield resize(center_crop(to_rgb(np.asarray(frame))), size)
    except _decode_errors() as err:
        where = f" after {count} frames" if count else ""
        raise VideoDecodeError(f"cannot decode video {path}{where}: {err}") from err


def _clips(frames: Iterator[np.ndarray], clip_length: int | None) -> Iterator[np.ndarray]:
    """Consecutive clips ``(clip_length, S, S, 3)``; a shorter remainder is dropped.

    With ``clip_length=None`` the whole video is one clip.
    """
    buffer: list[np.ndarray] = []
    for frame in frames:
        buffer.append(frame)
        if clip_length is not None and len(buffer) == clip_length:
            yield np.stack(buffer)
            buffer = []
    if clip_length is None and len(buffer) >= 2:
        yield np.stack(buffer)


def _video_files(src: Path) -> list[Path]:
    if not src.exists():
        raise FileNotFoundError(f"video source not found: {src}")
    if src.is_file():
        return [src]
    files = sorted(
        p
        for p in src.iterdir()
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise FileNotFoundError(
            f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in directory {src}"
        )
    return files


def _validate(cfg: ImportVideoConfig) -> None:
    for key in ("src", "out"):
        if getattr(cfg, key) in ("", MISSING):
            raise ValueError(f"{key} is required ({key}=PATH)")
    if cfg.size < 1:
        raise ValueError(f"size must be >= 1, got {cfg.size}")
    if cfg.stride < 1:
        raise ValueError(f"stride must be >= 1, got {cfg.stride}")
    if cfg.clip_length is not None and cfg.clip_length < 2:
        raise ValueError(f"clip_length must be >= 2 frames or null, got {cfg.clip_length}")
    if cfg.max_clips is not None and cfg.max_clips < 1:
        raise ValueError(f"max_clips must be >= 1 or null, got {cfg.max_clips}")


def run(cfg: ImportVideoConfig) -> dict[str, Any]:
    """Import ``cfg.src`` into ``cfg.out``.

    Returns:
        ``{"out", "paths", "episodes", "files", "skipped": [one line per skipped file]}``.

    Raises:
        FileNotFoundError: ``src`` is missing or a directory without videos.
        ValueError: a bad option, the only file cannot be decoded, or nothing was imported.
    """
    _validate(cfg)
    files = _video_files(Path(cfg.src))
    out = Path(cfg.out)
    index = next_episode_index(out)
    paths: list[Path] = []
    skipped: list[str] = []
    for path in tqdm(files, unit="video", desc="import", disable=not cfg.progress):
        if cfg.max_clips is not None and len(paths) >= cfg.max_clips:
            break
        clips = 0
        try:
            for clip in _clips(read_frames(path, cfg.size, cfg.stride), cfg.clip_length):
                length = len(clip) - 1
                truncated = np.zeros(length, dtype=bool)
                truncated[-1] = True
                meta = dict(
                    env="video",
                    action_repeat=1,
                    size=cfg.size,
                    seed=None,
                    source="video",
                    file=str(path),
                    clip=clips,
                    frame_stride=cfg.stride,
                )
                paths.append(
                    save_episode(
                        out, index, clip, None, None, np.zeros(length, bool), truncated, meta
                    )
                )
                index += 1
                clips += 1
                if cfg.max_clips is not None and len(paths) >= cfg.max_clips:
                    break
        except VideoDecodeError as err:
            if clips:  # a stream broken midway: keep the clips decoded before the damage
                print(f"{err} (kept its first {clips} clips)", file=sys.stderr)
                continue
            if len(files) == 1:
                raise
            skipped.append(f"skipped {err}")
            print(skipped[-1], file=sys.stderr)
            continue
        if clips == 0:
            message = (
                f"{path}: too short for one clip of {cfg.clip_length} frames (stride {cfg.stride})"
            )
            if len(files) == 1:
                raise ValueError(message)
            skipped.append(f"skipped {message}")
            print(skipped[-1], file=sys.stderr)
    if not paths:
        raise ValueError(f"no clip imported from {cfg.src}: {'; '.join(skipped)}")
    return {
        "out": str(out),
        "paths": paths,
        "episodes": len(paths),
        "files": len(files),
        "skipped": skipped,
    }


@hydra.main(version_base="1.3", config_path="../configs", config_name="import_video")
def main(cfg: DictConfig) -> None:
    with exit_on(ValueError, OSError):
        result = run(to_dataclass(cfg))
    print(
        f"wrote {result['episodes']} video episodes from {result['files']} file(s) "
        f"({len(result['skipped'])} skipped) to {result['out']}"
    )


if __name__ == "__main__":
    preflight(
        "import_video", ImportVideoConfig, sys.argv
    )  # a bad command line: one line, before hydra runs
    main()
