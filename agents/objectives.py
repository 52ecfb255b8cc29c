"""Objectives for the planner, built from a world model: functions ``(N, H, A) -> (N,)``.

Each factory closes over a model and the filtered state of the current episode (``model.observe``)
and returns an :data:`agents.cem.Objective` that imagines the future of every candidate action
sequence in one batched ``model.imagine`` call and scores it:

* :func:`latent_reward_objective` (PlaNet): the (discounted) sum of predicted rewards, rolled out in
  latent space without decoding frames.
* :func:`goal_image_objective` (Visual Foresight): minus the distance of the decoded frames to a goal
  image, in pixels or in the feature space of a comparator network (e.g. DeePSiM's).

The model only has to implement ``imagine`` as in the world-model contract::

    out = model.imagine(state, actions (N, H, A), samples=S, decode=bool, generator=g)
    out.reward  (N, S, H)              predicted reward for actions[:, t]
    out.frames  (N, S, H, 3, h, w)     predicted frames in [0, 1] (None unless decode=True)

Extra sample dims are tolerated: rewards of shape ``(N, H)`` or ``(N, *S, H)`` and frames of shape
``(N, H, 3, h, w)`` or ``(N, *S, H, 3, h, w)`` are all averaged over the dims between ``N`` and ``H``.
A non-finite prediction gives a non-finite return for that candidate (never clipped or zeroed), which
the planner ranks last.

Objectives run under ``torch.inference_mode`` and, with ``precision="bf16"`` (or ``"fp16"``), under
``torch.autocast`` of that dtype on the actions' device; returns are always float32. bf16 pays on
GPUs with bf16 tensor cores (Ampere and later) and on recent CPUs with AMX; elsewhere keep float32.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from agents.cem import Objective
from wmcommon.checks import is_int
from worldmodel.model.rollout import PreparedState, latent_rollout

__all__ = ["latent_reward_objective", "goal_image_objective", "ImaginingModel"]

Precision = Literal["fp32", "bf16", "fp16"] | None
_PRECISIONS = {None: None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class ImaginingModel(Protocol):
    """What an objective needs of a world model (``worldmodel.model.svg.WorldModel`` fits)."""

    def imagine(
        self,
        state: Any,
        actions: Tensor,
        samples: int = 1,
        decode: bool = False,
        generator: torch.Generator | None = None,
    ) -> Any: ...


def _autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    dtype = _PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _check_common(samples: int, precision: Precision) -> None:
    if not is_int(samples, 1):
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {list(_PRECISIONS)}, got {precision!r}")


def _check_leading(x: Tensor, name: str, n: int, horizon: int, event_dims: int) -> None:
    """Check ``x`` is ``(N, *S, H, *event)`` for the candidates ``(N, H, A)``."""
    if x.dim() < 2 + event_dims or x.shape[0] != n or x.shape[x.dim() - 1 - event_dims] != horizon:
        want = "(N, [S...,] H" + ", ..." * (event_dims > 0) + ")"
        raise ValueError(
            f"model.imagine returned {name} of shape {tuple(x.shape)} for {n} action sequences "
            f"of horizon {horizon}; expected {want} = ({n}, ..., {horizon}"
            + (", ...)" if event_dims else ")")
        )


def latent_reward_objective(
    model: ImaginingModel,
    state: Any,
    samples: int = 1,
    generator: torch.Generator | None = None,
    discount: float = 1.0,
    precision: Precision = None,
) -> Objective:
    """PlaNet's objective: the expected sum of predicted rewards over the horizon.

    ``return[n] = mean_s sum_t discount**t * reward[n, s, t]``, rolled out with ``decode=False`` (no
    decoder, no encoder). A :class:`worldmodel.model.svg.WorldModel` (``imagine`` not overridden) is
    rolled out by :class:`worldmodel.model.rollout.LatentRollout`: the same function as its
    ``imagine`` (to float rounding, tested), with fused weights and the state projected once per
    objective.

    Args:
        model: world model with ``imagine`` (see the module docstring).
        state: the model state after ``observe`` (batch 1, broadcast to the candidates).
        samples: latent samples ``S`` per candidate, averaged.
        generator: passed to ``imagine`` for reproducible latent samples.
        discount: per-step discount in ``(0, 1]``.
        precision: None/"fp32", "bf16" or "fp16" autocast for the rollout.

    Returns:
        objective mapping ``(N, H, A)`` actions to ``(N,)`` float32 returns.
    """
    _check_common(samples, precision)
    if not 0 < discount <= 1:
        raise ValueError(f"discount must be in (0, 1], got {discount!r}")

    # a plain worldmodel.model.svg.WorldModel takes the fused rollout (the same function, less work:
    # worldmodel/model/rollout.py); the observed state is projected once, for every call of the plan
    fast = latent_rollout(model)
    prepared: list[PreparedState] = []

    def objective(actions: Tensor) -> Tensor:
        n, horizon = actions.shape[:2]
        with torch.inference_mode(), _autocast(actions.device, precision):
            if fast is not None:
                if not prepared:
                    prepared.append(fast.prepare(state))
                out = fast.run(prepared[0], actions, samples=samples, generator=generator)
            else:
                out = model.imagine(
                    state, actions, samples=samples, decode=False, generator=generator
                )
        reward = out.reward
        if reward is None:
            raise ValueError(
                "model.imagine returned reward=None: the model has no reward head (train it on "
                "episodes with rewards), or plan with goal_image_objective instead"
            )
        _check_leading(reward, "reward", n, horizon, event_dims=0)
        reward = reward.float().reshape(n, -1, horizon)  # (N, S, H)
        weights = discount ** torch.arange(horizon, device=reward.device, dtype=reward.dtype)
        return (reward * weights).sum(-1).mean(-1)  # (N,)

    return objective


def goal_image_objective(
    model: ImaginingModel,
    state: Any,
    goal: Tensor,
    distance: Literal["l2", "feature"] = "l2",
    comparator: nn.Module | None = None,
    samples: int = 1,
    generator: torch.Generator | None = None,
    which_frames: Literal["last", "all"] = "last",
    precision: Precision = None,
    chunk_size: int | None = None,
) -> Objective:
    """Visual Foresight's objective: minus the distance of the predicted frames to a goal image.

    ``return[n] = - mean_{s, t in frames} d(frame[n, s, t], goal)`` with

    * ``distance="l2"``: the mean squared pixel difference over ``(3, h, w)`` (frames in [0, 1]);
    * ``distance="feature"``: the mean squared difference of ``comparator`` features, summed over
      the comparator's layers when it returns a list of feature maps (each layer weighs the same
      whatever its size), e.g. a DeePSiM comparator from ``worldmodel.antiblur.comparator`` (put it
      in eval mode yourself; its parameters are not touched).

    Args:
        model: world model with ``imagine``; frames are decoded (``decode=True``).
        state: the model state after ``observe`` (batch 1, broadcast to the candidates).
        goal: ``(3, h, w)`` goal image, float in [0, 1] or uint8 in [0, 255], same size as the
            model's frames. Moved to the actions' device on the first call.
        distance: ``"l2"`` or ``"feature"``.
        comparator: module mapping ``(B, 3, h, w)`` frames in [0, 1] to features ``(B, ...)`` or
            to a list of feature maps ``[(B, ...), ...]``; required for ``distance="feature"``.
        samples: latent samples ``S`` per candidate, averaged.
        generator: passed to ``imagine``.
        which_frames: ``"last"`` scores the final predicted frame only; ``"all"`` averages the
            distance over the ``H`` predicted frames.
        precision: None/"fp32", "bf16" or "fp16" autocast for the rollout and the comparator.
        chunk_size: if given, run the comparator on at most this many frames at a time (bounds its
            activation memory for large populations).

    Returns:
        objective mapping ``(N, H, A)`` actions to ``(N,)`` float32 returns (higher = closer).
    """
    _check_common(samples, precision)
    if distance not in ("l2", "feature"):
        raise ValueError(f"distance must be 'l2' or 'feature', got {distance!r}")
    if distance == "feature" and comparator is None:
        raise ValueError("distance='feature' needs a comparator module (frames -> features)")
    if which_frames not in ("last", "all"):
        raise ValueError(f"which_frames must be 'last' or 'all', got {which_frames!r}")
    if chunk_size is not None and not is_int(chunk_size, 1):
        raise ValueError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
    if goal.dim() != 3 or goal.shape[0] != 3:
        raise ValueError(f"goal must be an image of shape (3, h, w), got {tuple(goal.shape)}")
    goal = goal.float() / 255 if goal.dtype == torch.uint8 else goal.float()
    cache: dict[str, Any] = {}  # the goal (and its features) on the device of the actions

    def features(x: Tensor) -> list[Tensor]:
        """``(B, 3, h, w)`` -> one ``(B, F_i)`` float32 tensor per comparator layer, chunked."""
        assert comparator is not None
        step = chunk_size or x.shape[0]
        chunks = []
        for i in range(0, x.shape[0], step):
            out = comparator(x[i : i + step])
            layers = [out] if isinstance(out, Tensor) else list(out)
            chunks.append([f.float().flatten(1) for f in layers])
        return [torch.cat(layer) for layer in zip(*chunks, strict=True)]

    def objective(actions: Tensor) -> Tensor:
        n, horizon = actions.shape[:2]
        with torch.inference_mode(), _autocast(actions.device, precision):
            out = model.imagine(state, actions, samples=samples, decode=True, generator=generator)
            frames = out.frames
            if frames is None:
                raise ValueError("model.imagine(..., decode=True) returned frames=None")
            _check_leading(frames, "frames", n, horizon, event_dims=3)
            if frames.shape[-3:] != goal.shape:
                raise ValueError(
                    f"goal image has shape {tuple(goal.shape)} but the model predicts frames of "
                    f"shape {tuple(frames.shape[-3:])}; resize the goal to the model's image size"
                )
            frames = frames.reshape(n, -1, horizon, *goal.shape)  # (N, S, H, 3, h, w)
            if which_frames == "last":
                frames = frames[:, :, -1:]  # (N, S, 1, 3, h, w)
            lead = frames.shape[:3]
            if "goal" not in cache:
                cache["goal"] = goal.to(actions.device)
                if distance == "feature":
                    cache["goal_features"] = features(cache["goal"][None])  # per layer (1, F_i)
            if distance == "l2":
                d = (frames.float() - cache["goal"]).square().flatten(3).mean(-1)  # (N, S, T)
            else:
                feats = features(frames.flatten(0, 2))  # per layer (N * S * T, F_i)
                d = sum(
                    (f - g).square().mean(-1)
                    for f, g in zip(feats, cache["goal_features"], strict=True)
                ).reshape(lead)  # (N, S, T)
        return -d.mean(dim=(1, 2))  # (N,)

    return objective
