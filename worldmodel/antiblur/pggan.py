"""Layers and schedules from Progressive Growing of GANs (Karras et al., ICLR 2018).

* :class:`MinibatchStdDev` -- the batch-statistics feature map that lets the discriminator see
  (lack of) variety across a minibatch.
* :class:`EqualizedConv2d` / :class:`EqualizedLinear` -- the "equalized learning rate": weights are
  stored as N(0, 1) and multiplied at run time by the He constant ``gain / sqrt(fan_in)``, so an
  adaptive optimiser (Adam) sees every weight on the same scale.
* Progressive growing: :func:`blend_resolution` (the discriminator's input fade) and
  :class:`ProgressiveSchedule` / :class:`ProgressiveConfig` (current resolution and fade-in
  ``alpha`` as a function of the step).

Everything here works on ``(B, C, H, W)`` tensors. PGGAN's layers that the world model uses too
(:class:`~worldmodel.model.layers.PixelNorm`, :func:`~worldmodel.model.layers.fade_in`,
:func:`~worldmodel.model.layers.resize_to`) are in :mod:`worldmodel.model.layers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmcommon.checks import is_int
from worldmodel.model.layers import fade_in

__all__ = [
    "MinibatchStdDev",
    "EqualizedConv2d",
    "EqualizedLinear",
    "blend_resolution",
    "ProgressiveSchedule",
    "ProgressiveConfig",
]


class MinibatchStdDev(nn.Module):
    """Append one feature map holding the average standard deviation over a group of samples.

    For each group of ``G`` samples: the (biased) standard deviation over the group of every feature
    at every pixel, ``sqrt(mean_g((x - mean_g x)^2) + eps)``, averaged over features and pixels to
    one scalar, which is replicated as an extra ``(1, H, W)`` channel for every sample of the group.
    ``G = min(group_size, B)``; when ``B`` is not a multiple of ``G`` the whole batch is one group.
    Sample ``i`` belongs to group ``i % (B // G)`` (the strided grouping of the reference code).
    No parameters. Statistics are computed in float32 (safe under bf16 autocast).

    Shapes: ``(B, C, H, W) -> (B, C + 1, H, W)``.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"MinibatchStdDev group_size must be >= 1, got {group_size}")
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g = min(self.group_size, b)
        if b % g != 0:
            g = b
        y = x.float().reshape(g, b // g, c, h, w)  # (G, M, C, H, W): sample i -> [i // M, i % M]
        std = (y.var(dim=0, unbiased=False) + self.eps).sqrt()  # (M, C, H, W)
        stat = std.mean(dim=(1, 2, 3))  # (M,)
        stat = stat.repeat(g).to(x.dtype)  # (B,), stat of sample i at i % M
        return torch.cat([x, stat.view(b, 1, 1, 1).expand(b, 1, h, w)], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


class EqualizedConv2d(nn.Module):
    """``Conv2d`` with the equalized learning rate.

    ``weight`` ~ N(0, 1) is stored as is and scaled at run time by ``gain / sqrt(fan_in)`` with
    ``fan_in = in_channels * k * k``; the bias starts at zero.

    Shapes: ``(B, in_channels, H, W) -> (B, out_channels, H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        gain: float = math.sqrt(2.0),
    ) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}, scale={self.scale:.4g}"


class EqualizedLinear(nn.Module):
    """``Linear`` with the equalized learning rate (``fan_in = in_features``).

    Shapes: ``(..., in_features) -> (..., out_features)``.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, gain: float = math.sqrt(2.0)
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}, {o}, scale={self.scale:.4g}"


def blend_resolution(x: Tensor, alpha: float) -> Tensor:
    """PGGAN's real-image fade: ``alpha * x + (1 - alpha) * upsample(downsample(x))``.

    While the layers for resolution ``R`` fade in, the discriminator's inputs (reals, and here also
    fakes from a generator that does not grow) are blended the same way, so the network sees
    images whose detail rises with ``alpha``. Down = 2x2 average pooling, up = nearest neighbour.
    Shapes: ``(..., C, H, W) -> (..., C, H, W)``.
    """
    if alpha >= 1.0:
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    low = F.interpolate(F.avg_pool2d(flat, 2), scale_factor=2, mode="nearest")
    return fade_in(alpha, low, flat).reshape(*lead, *x.shape[-3:])


@dataclass(frozen=True)
class ProgressiveSchedule:
    """Resolution and fade-in ``alpha`` as a function of the training step.

    Training starts at ``start_resolution`` (``alpha = 1``) for ``stabilize_steps`` steps; then,
    for each doubling up to ``final_resolution``: ``fade_steps`` steps at the new resolution with
    ``alpha`` rising linearly from 0 to 1, then ``stabilize_steps`` steps at ``alpha = 1``. After the
    last phase it stays at ``(final_resolution, 1.0)``. Resolutions are powers of two apart.
    """

    start_resolution: int
    final_resolution: int
    stabilize_steps: int
    fade_steps: int

    def validate(self) -> ProgressiveSchedule:
        """Raise ValueError unless the resolutions are a power of two apart and the step counts
        are >= 0; return self (:meth:`ProgressiveConfig.schedule` and the
        :class:`~worldmodel.training.train.Trainer` call it)."""
        ratio = self.final_resolution / self.start_resolution
        if self.start_resolution < 1 or ratio < 1 or not float(ratio).is_integer():
            raise ValueError(
                f"progressive growing needs 1 <= start_resolution ({self.start_resolution}) <= "
                f"final_resolution ({self.final_resolution}) with a power-of-two ratio"
            )
        if int(ratio) & (int(ratio) - 1):
            raise ValueError(
                f"final_resolution / start_resolution must be a power of two, got {ratio:g}"
            )
        if self.stabilize_steps < 0 or self.fade_steps < 0:
            raise ValueError("stabilize_steps and fade_steps must be >= 0")
        return self

    @property
    def resolutions(self) -> list[int]:
        """Every resolution visited, from start to final."""
        out, r = [], self.start_resolution
        while r <= self.final_resolution:
            out.append(r)
            r *= 2
        return out

    def at(self, step: int) -> tuple[int, float]:
        """``(resolution, alpha)`` at ``step`` (0-based)."""
        res = self.resolutions
        t = step - self.stabilize_steps
        if t < 0:
            return res[0], 1.0
        for r in res[1:]:
            if t < self.fade_steps:
                return r, t / self.fade_steps
            t -= self.fade_steps
            if t < self.stabilize_steps:
                return r, 1.0
            t -= self.stabilize_steps
        return res[-1], 1.0

    @property
    def total_steps(self) -> int:
        """Step after which the schedule sits at the final resolution with ``alpha = 1``."""
        n = len(self.resolutions) - 1
        return self.stabilize_steps + n * (self.fade_steps + self.stabilize_steps)


@dataclass
class ProgressiveConfig:
    """Progressive growing of the discriminator's input resolution (off by default).

    ``start_resolution`` is the full-scale input size at step 0 (the coarsest scale of a
    multi-scale discriminator then sees ``start_resolution / max(scales)``, which must be >= 4);
    the schedule then doubles it up to the frame size, fading each new resolution in over
    ``fade_steps`` discriminator steps after ``stabilize_steps`` steps at the previous one
    (PGGAN used 600k images per phase, i.e. ~10k steps at batch 64).
    """

    enabled: bool = False
    start_resolution: int = 16
    stabilize_steps: int = 10_000
    fade_steps: int = 10_000

    def validate(self) -> ProgressiveConfig:
        """Raise ValueError naming the first bad field; return self. The checks that need the frame
        size (a power-of-two ratio up to it) are :meth:`ProgressiveSchedule.validate`'s."""
        if not isinstance(self.enabled, bool):
            raise ValueError(f"progressive.enabled={self.enabled!r}; expected true or false")
        if self.enabled and not is_int(self.start_resolution, 1):
            raise ValueError(
                f"progressive.start_resolution={self.start_resolution!r}; expected an integer >= 1"
            )
        for name in ("stabilize_steps", "fade_steps"):
            if not is_int(getattr(self, name), 0):
                raise ValueError(
                    f"progressive.{name}={getattr(self, name)!r}; expected an integer >= 0"
                )
        return self

    def schedule(self, final_resolution: int) -> ProgressiveSchedule:
        """The schedule growing to ``final_resolution`` (a fixed one at it when disabled), checked
        (:meth:`validate`, :meth:`ProgressiveSchedule.validate`)."""
        self.validate()
        start = self.start_resolution if self.enabled else final_resolution
        return ProgressiveSchedule(
            start, final_resolution, self.stabilize_steps, self.fade_steps
        ).validate()
