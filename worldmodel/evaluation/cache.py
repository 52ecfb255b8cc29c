"""The copy-last-frame baseline evaluated once per protocol.

Every report scores copy-last-frame next to its checkpoints. When many checkpoints are evaluated
on the same clips with the same settings (the capacity sweep), the baseline's numbers are the same
each time: :class:`BaselineCache` keeps them, keyed by everything that defines them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch

from worldmodel.evaluation.clips import Clips
from worldmodel.evaluation.config import EvaluateConfig
from worldmodel.evaluation.scoring import CandidateResult

__all__ = ["BaselineCache"]

# settings that name the models and the output, not the baseline's numbers
_NOT_IN_KEY = ("ckpt", "baselines", "out")


class BaselineCache:
    """Copy-last-frame results of :func:`~worldmodel.evaluation.evaluate`, one per protocol.

    The key is every :class:`EvaluateConfig` setting except ``ckpt``, ``baselines`` and ``out``,
    with the data directory resolved, the clips (episode and first frame of each) and the device:
    two evaluations with the same key compute identical baseline numbers, so the second reuses the
    first's. Pass one instance to every :func:`evaluate` call that may share them.
    """

    def __init__(self) -> None:
        self._results: dict[str, CandidateResult] = {}

    def __len__(self) -> int:
        return len(self._results)

    @staticmethod
    def key(cfg: EvaluateConfig, clips: Clips, device: torch.device) -> str:
        settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_IN_KEY}
        settings["data"] = str(Path(cfg.data).resolve())
        return json.dumps([settings, clips.sources, str(device)], sort_keys=True)

    def get(self, key: str, compute: Callable[[], CandidateResult]) -> CandidateResult:
        """The result stored under ``key``, computed (once) by ``compute`` if absent."""
        if key not in self._results:
            self._results[key] = compute()
        return self._results[key]

    def __contains__(self, key: str) -> bool:
        return key in self._results
