"""The models of a report: checkpoints (each file read once) and the copy-last-frame baseline.

:func:`load_candidates` turns ``cfg.ckpt`` and ``cfg.baselines`` into :class:`Candidate` records
(unique labels, the world model on the device, the discriminator when GAM is asked for) after one
``load_checkpoint`` per file, and appends the copy-last-frame baseline.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from worldmodel.antiblur.adversarial import AdversarialTrainer, AntiBlurConfig
from worldmodel.data import EpisodeDataset
from worldmodel.evaluation.config import COPY_LAST, EvaluateConfig
from worldmodel.model.svg import ModelConfig, WorldModel
from worldmodel.training.checkpoint import load_checkpoint, model_from_checkpoint

__all__ = [
    "Candidate",
    "check_compatible",
    "copy_last_candidate",
    "load_candidate",
    "load_candidates",
    "load_discriminator",
    "model_from_payload",
]


@dataclass
class Candidate:
    """One model of the report."""

    label: str
    kind: str  # "checkpoint" | COPY_LAST
    path: str | None = None
    step: int | None = None
    parameters: int = 0
    model: WorldModel | None = None
    spec: dict[str, Any] | None = None
    adversarial: AdversarialTrainer | None = None
    discriminator_note: str = ""

    def checkpoint_desc(self) -> str:
        if self.kind == COPY_LAST:
            return f"{COPY_LAST} (baseline, no checkpoint)"
        return f"{self.path} (step {self.step})"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "parameters": self.parameters}
        if self.kind == "checkpoint":
            out.update(checkpoint=self.path, step=self.step, model=self.spec)
            out["discriminator"] = self.discriminator_note
        else:
            out["description"] = "repeats the last context frame (deterministic, 1 sample)"
        return out


def copy_last_candidate() -> Candidate:
    return Candidate(label=COPY_LAST, kind=COPY_LAST)


def load_candidates(
    cfg: EvaluateConfig, dataset: EpisodeDataset, device: torch.device
) -> list[Candidate]:
    """``cfg.ckpt``, then ``cfg.baselines`` (each file read once), then copy-last-frame."""
    taken: set[str] = set()
    cands = [
        load_candidate(p, _label_for(Path(p), taken), dataset, device, "gam" in cfg.metrics)
        for p in (cfg.ckpt, *cfg.baselines)
    ]
    return [*cands, copy_last_candidate()]


def load_candidate(
    path: str, label: str, dataset: EpisodeDataset, device: torch.device, want_disc: bool
) -> Candidate:
    """Read the checkpoint file once; build its model (and discriminator if ``want_disc``).

    Raises:
        ValueError: not a trainer checkpoint, or a model that does not fit the data.
        CheckpointError: an unreadable file.
    """
    payload = load_checkpoint(path, map_location="cpu")
    model = model_from_payload(payload, path, device)
    check_compatible(model, dataset, f"checkpoint {path}")
    cand = Candidate(
        label=label,
        kind="checkpoint",
        path=str(path),
        step=int(payload.get("state", {}).get("global_step", -1)),
        parameters=model.num_params(),
        model=model,
        spec=payload.get("model"),
    )
    if want_disc:
        cand.adversarial, cand.discriminator_note = load_discriminator(payload, path, device)
    else:
        cand.discriminator_note = (
            "present (not loaded: gam not requested)"
            if _discriminator_state(payload) is not None
            else "none in the checkpoint"
        )
    return cand


def model_from_payload(
    payload: Mapping[str, Any], path: str | Path, device: torch.device | str
) -> WorldModel:
    """The :class:`WorldModel` of a loaded trainer checkpoint, on ``device``, in eval mode
    (:func:`worldmodel.training.checkpoint.model_from_checkpoint`, without reading the file
    again)."""
    return model_from_checkpoint(path, device, payload=payload)


def load_discriminator(
    payload: Mapping[str, Any], path: str | Path, device: torch.device | str
) -> tuple[AdversarialTrainer | None, str]:
    """The discriminator a checkpoint was trained with, rebuilt and loaded (eval mode).

    The architecture comes from the run's ``loss`` config: ``extra.config.loss`` in the checkpoint
    if present, else ``<run dir>/.hydra/config.yaml`` (the checkpoint being
    ``<run dir>/checkpoints/last.pt``).

    Returns:
        ``(adversarial, note)``: the :class:`AdversarialTrainer` (its discriminator in eval mode,
        its progressive schedule at the saved step) or None, and a sentence saying where the
        config came from or why there is no discriminator.
    """
    path = Path(path)
    state = _discriminator_state(payload)
    if state is None:
        return None, "no discriminator in the checkpoint (trained without the adversarial loss)"
    loss, where = _loss_config(payload, path)
    if loss is None:
        return None, (
            "the checkpoint has a discriminator state but no loss config to rebuild it (neither in "
            f"the checkpoint nor in {path.resolve().parent.parent / '.hydra' / 'config.yaml'})"
        )
    spec = payload["model"]
    adv = AdversarialTrainer(
        _from_dict(AntiBlurConfig, loss),
        spec["image_size"],
        spec["channels"],
        device=device,
        conv_width=_from_dict(ModelConfig, spec["config"]).conv_width,  # D widths may follow K
    )
    adv.load_state_dict(state)
    adv.discriminator.eval()
    return adv, f"discriminator rebuilt from the loss config in {where}"


def _discriminator_state(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The saved anti-blur state if it holds a discriminator, else None. An objective without an
    adversarial term (GDL and a feature loss with a fixed comparator) saves its own state under
    the same key, with no discriminator in it."""
    state = payload.get("state", {}).get("discriminator")
    return state if state is not None and "discriminator" in state else None


def _from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Build a (nested) dataclass from a plain dict; unknown keys are ignored."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        kind = hints.get(f.name)
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            value = _from_dict(kind, value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _loss_config(payload: Mapping[str, Any], path: Path) -> tuple[dict | None, str]:
    """The ``loss`` section of the run's config: from the checkpoint, else the run's hydra config."""
    for where, section in (
        ("checkpoint extra.config.loss", payload.get("extra", {}).get("config", {})),
        ("checkpoint config.loss", payload.get("config", {})),
    ):
        if isinstance(section, Mapping) and isinstance(section.get("loss"), Mapping):
            return dict(section["loss"]), where
    hydra_cfg = path.resolve().parent.parent / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        import yaml

        cfg = yaml.safe_load(hydra_cfg.read_text())
        if isinstance(cfg, Mapping) and isinstance(cfg.get("loss"), Mapping):
            return dict(cfg["loss"]), str(hydra_cfg)
    return None, ""


def _label_for(path: Path, taken: set[str]) -> str:
    """A short unique label: the run directory of ``<run>/checkpoints/x.pt``, else the file stem."""
    p = path.resolve()
    base = p.parent.parent.name if p.parent.name == "checkpoints" else p.stem
    base = base or p.stem
    label, k = base, 2
    while label in taken or label == COPY_LAST:
        label, k = f"{base}#{k}", k + 1
    taken.add(label)
    return label


def check_compatible(model: WorldModel, dataset: EpisodeDataset, what: str) -> None:
    """Raise ValueError if ``dataset``'s frames or actions do not fit ``model`` (``what`` names
    the model in the message)."""
    h, w = dataset.frame_shape
    if (h, w) != (model.image_size, model.image_size):
        raise ValueError(
            f"{what} was trained on {model.image_size}x{model.image_size} frames but the data has "
            f"{h}x{w} frames; evaluate on episodes of the model's frame size "
            f"(e.g. collect them with env.size={model.image_size})"
        )
    if model.channels != 3:
        raise ValueError(f"{what} has {model.channels} channels; episodes are RGB (3 channels)")
    if model.action_dim > 0:
        if not dataset.has_action:
            raise ValueError(
                f"{what} is action-conditioned (action_dim={model.action_dim}) but the data is "
                "action-free video; evaluate it on episodes recorded with actions"
            )
        if dataset.action_dim != model.action_dim:
            raise ValueError(
                f"{what} takes {model.action_dim}-dim actions but the data has "
                f"{dataset.action_dim}-dim actions; evaluate on episodes of the same environment"
            )
