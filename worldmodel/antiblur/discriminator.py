"""Multi-scale conditional discriminators (Mathieu et al. 2016) with PGGAN options.

One discriminator ``D_k`` per scale ``s_k`` (an integer downsampling factor of the frame): ``D_k``
sees the context frames ``X_k`` and the candidate frame (or short clip) ``Y_k`` -- real or
generated -- downsampled by ``s_k`` and stacked on the channel dim, and returns one logit per sample.

Each ``D_k`` has a DeePSiM/DCGAN-like body: a 1x1 ``fromRGB`` conv, then strided 4x4 convs halving
the resolution down to 4x4 (channels doubling, capped), LeakyReLU everywhere, then an optional
minibatch-stddev channel, a 3x3 conv, global average pooling and two FC layers (dropout between).
Options: equalized learning rate layers, progressive growing (a ``fromRGB`` per input resolution
and a fade-in of the newest block, see :mod:`worldmodel.antiblur.pggan`).

Frames are in ``[0, 1]`` and are mapped to ``[-1, 1]`` inside. The block outputs are returned on
request so the discriminator can serve as a DeePSiM comparator.

The candidate is either one frame (pooled to every scale here) or, for a multi-scale
(coarse-to-fine) generator, one candidate per scale -- ``D_k`` then judges the generator's own
scale-``k`` prediction ``G_k(X)`` as in Mathieu et al.'s ``L_adv = sum_k BCE(D_k(X_k, G_k(X)), 1)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmcommon.checks import is_int
from worldmodel.antiblur.pggan import EqualizedConv2d, EqualizedLinear, MinibatchStdDev
from worldmodel.model.layers import fade_in, resize_to
from worldmodel.training.losses import multiscale

__all__ = [
    "DEFAULT_CONV_WIDTH",
    "DiscriminatorConfig",
    "MultiScaleDiscriminator",
    "ScaleDiscriminator",
]

#: The generator conv width the widths follow when none is given: ``ModelConfig``'s at ``K = 1``
#: (``nf = 32``).
DEFAULT_CONV_WIDTH = 32


@dataclass
class DiscriminatorConfig:
    """Architecture and optimiser of the multi-scale discriminator.

    Attributes:
        scales: downsampling factors of the frame, one discriminator each (``[1, 2, 4]`` on 64 px
            frames = 64, 32, 16 px as in Mathieu et al.; the same list works at 128 px).
        context_frames: number of context frames (the last ones before the candidate) stacked on
            the channels: the conditional discriminator of Mathieu et al.; 0 = unconditional.
        clip_length: 1 = ``D`` judges a single frame; ``L > 1`` = a clip of the last ``L`` frames.
        width: channels after the first stride-2 block (at half the frame size), as in DCGAN's
            discriminator; doubled at each halving, capped at ``max_width`` (features at full
            size, after ``fromRGB``, have ``width / 2``). None (default): the generator's conv
            width ``round(K * nf)``, the channels of its encoder at the same size (DCGAN's
            symmetric D and G), so the discriminators grow and shrink with ``model.K``: 16 at the
            cpu profile's K = 0.5, 32 at K = 1, 64 at K = 2 (SVG's widths; the fixed widths
            64 / 256 / 256 used before they followed K).
        max_width: channel cap; None: ``4 * width``.
        hidden: width of the first FC layer; None: ``4 * width``.
        leaky_slope: LeakyReLU slope (0.2 PGGAN/DCGAN; DeePSiM used 0.3).
        dropout: dropout before the last FC layer (DeePSiM: 0.5).
        minibatch_std: add PGGAN's minibatch-stddev channel before the last conv.
        minibatch_std_group: group size of that statistic.
        equalized_lr: PGGAN's equalized-learning-rate convs / linears.
        lr: Adam learning rate (DeePSiM 2e-4).
        betas: Adam betas. (0.5, 0.999) is the DCGAN choice used by most conditional GANs; DeePSiM
            reports (0.9, 0.999); PGGAN (0.0, 0.99).
        pause_threshold: DeePSiM's rule: skip discriminator updates while
            ``L_discr / L_adv < pause_threshold`` (0 disables it).
        gp_weight: weight of the gradient penalty (``adv_form="wgan-gp"`` only; 10 in WGAN-GP).
        wgan_drift: PGGAN's drift penalty ``eps * E[D(real)^2]`` (``wgan-gp`` only).
    """

    scales: list[int] = field(default_factory=lambda: [1, 2, 4])
    context_frames: int = 2
    clip_length: int = 1
    width: int | None = None
    max_width: int | None = None
    hidden: int | None = None
    leaky_slope: float = 0.2
    dropout: float = 0.0
    minibatch_std: bool = True
    minibatch_std_group: int = 4
    equalized_lr: bool = False
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    pause_threshold: float = 0.1
    gp_weight: float = 10.0
    wgan_drift: float = 0.001

    def validate(self) -> DiscriminatorConfig:
        """Raise ValueError naming the first bad field; return self
        (:class:`MultiScaleDiscriminator` calls it)."""
        if not self.scales or any(int(s) != s or s < 1 for s in self.scales):
            raise ValueError(
                f"discriminator.scales must be a non-empty list of positive integer downsampling "
                f"factors, got {self.scales}"
            )
        if len(set(self.scales)) != len(self.scales):
            raise ValueError(f"discriminator.scales has duplicates: {self.scales}")
        if self.context_frames < 0 or self.clip_length < 1:
            raise ValueError(
                f"discriminator.context_frames must be >= 0 and clip_length >= 1, got "
                f"{self.context_frames} and {self.clip_length}"
            )
        for name in ("width", "max_width", "hidden"):
            value = getattr(self, name)
            if value is not None and not is_int(value, 1):
                raise ValueError(
                    f"discriminator.{name}={value!r}; expected an integer >= 1 or None"
                )
        if self.width is not None and self.max_width is not None and self.max_width < self.width:
            raise ValueError(
                f"discriminator.max_width={self.max_width} is below discriminator.width="
                f"{self.width}; expected width <= max_width"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"discriminator.dropout must be in [0, 1), got {self.dropout}")
        if len(self.betas) != 2:
            raise ValueError(f"discriminator.betas must be two numbers, got {self.betas}")
        if self.lr <= 0 or self.pause_threshold < 0 or self.gp_weight < 0 or self.wgan_drift < 0:
            raise ValueError("discriminator lr must be > 0 and pause/gp/drift weights >= 0")
        return self

    def resolved(self, conv_width: int = DEFAULT_CONV_WIDTH) -> DiscriminatorConfig:
        """This config with the widths left at None derived from the generator's conv width
        (``width = conv_width``, ``max_width = hidden = 4 * width``); a new config."""
        width = self.width if self.width is not None else max(1, int(conv_width))
        max_width = self.max_width if self.max_width is not None else max(width, 4 * width)
        hidden = self.hidden if self.hidden is not None else 4 * width
        return dataclasses.replace(self, width=width, max_width=max_width, hidden=hidden)

    @property
    def frames_per_input(self) -> int:
        """Frames stacked on the channels of one input: context + candidate clip."""
        return self.context_frames + self.clip_length


def _halvings(resolution: int) -> list[int]:
    """Resolutions at which a stride-2 block runs: r, r/2, ... while r >= 8 and even."""
    out = []
    while resolution >= 8 and resolution % 2 == 0:
        out.append(resolution)
        resolution //= 2
    return out


class ScaleDiscriminator(nn.Module):
    """The discriminator of one scale: stacked frames ``(B, C_in, r, r)`` -> logits ``(B,)``.

    Args:
        in_channels: channels of the stacked input (frames per input x image channels).
        max_resolution: the input size once fully grown.
        min_resolution: the smallest input size it must accept (progressive growing); a
            ``fromRGB`` layer exists for every size from ``min_resolution`` to ``max_resolution``.
        channels_at: the width of the features at a given resolution.
        cfg: the remaining options (slope, dropout, minibatch std, equalized LR, hidden width).
    """

    def __init__(
        self,
        in_channels: int,
        max_resolution: int,
        min_resolution: int,
        channels_at: Callable[[int], int],
        cfg: DiscriminatorConfig,
    ) -> None:
        super().__init__()
        if cfg.hidden is None:
            raise ValueError(
                "ScaleDiscriminator needs resolved widths: DiscriminatorConfig.resolved()"
            )
        conv = EqualizedConv2d if cfg.equalized_lr else nn.Conv2d
        linear = EqualizedLinear if cfg.equalized_lr else nn.Linear
        self.slope = cfg.leaky_slope
        self.max_resolution = max_resolution
        self.min_resolution = min_resolution
        chain = _halvings(max_resolution)
        self.final_resolution = chain[-1] // 2 if chain else max_resolution
        self.input_resolutions = [r for r in chain if r >= min_resolution]
        if self.final_resolution >= min_resolution:
            self.input_resolutions.append(self.final_resolution)
        # fromRGB: a 1x1 conv per accepted input resolution (one only without progressive growing)
        self.from_rgb = nn.ModuleDict(
            {str(r): conv(in_channels, channels_at(r), 1) for r in self.input_resolutions}
        )
        # block r: (B, c(r), r, r) -> (B, c(r/2), r/2, r/2)
        self.blocks = nn.ModuleDict(
            {
                str(r): conv(channels_at(r), channels_at(r // 2), 4, stride=2, padding=1)
                for r in chain
            }
        )
        c = channels_at(self.final_resolution)
        self.mbstd = MinibatchStdDev(cfg.minibatch_std_group) if cfg.minibatch_std else None
        self.final_conv = conv(c + int(cfg.minibatch_std), c, 3, padding=1)
        self.fc1 = linear(c, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc2 = linear(cfg.hidden, 1)

    def _act(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.slope)

    def forward(self, x: Tensor, alpha: float = 1.0) -> tuple[Tensor, list[Tensor]]:
        """Logits ``(B,)`` and features (each block's output, then the last conv's output).

        ``x`` is ``(B, C_in, r, r)`` with ``r`` one of ``input_resolutions``. With ``alpha < 1``
        (progressive fade-in) the newest block's output is blended with the ``fromRGB`` of the
        2x average-pooled input: ``fade_in(alpha, old, new)``.
        """
        r = x.shape[-1]
        if str(r) not in self.from_rgb or x.shape[-2] != r:
            raise ValueError(
                f"discriminator input of size {tuple(x.shape[-2:])} not accepted; this scale takes "
                f"square inputs of size {self.input_resolutions}"
            )
        feats: list[Tensor] = []
        h = self._act(self.from_rgb[str(r)](x))
        if alpha < 1.0 and str(r // 2) in self.from_rgb and str(r) in self.blocks:
            new = self._act(self.blocks[str(r)](h))
            old = self._act(self.from_rgb[str(r // 2)](F.avg_pool2d(x, 2)))
            h = fade_in(alpha, old, new)
            feats.append(h)
            r //= 2
        while str(r) in self.blocks:
            h = self._act(self.blocks[str(r)](h))
            feats.append(h)
            r //= 2
        if self.mbstd is not None:
            h = self.mbstd(h)
        h = self._act(self.final_conv(h))
        feats.append(h)
        h = h.mean(dim=(2, 3))  # global average pooling: (B, c)
        h = self.dropout(self._act(self.fc1(h)))
        return self.fc2(h).squeeze(1), feats


class MultiScaleDiscriminator(nn.Module):
    """Conditional multi-scale discriminator: one :class:`ScaleDiscriminator` per scale.

    Args:
        cfg: :class:`DiscriminatorConfig`.
        image_size: frame size ``H = W`` once fully grown (64 and 128 tested).
        channels: image channels.
        min_resolution: smallest full-scale input size to accept (progressive growing's start);
            ``None`` = ``image_size`` only.
        conv_width: the generator's conv width ``round(K * nf)``, which the widths left at None
            follow (:meth:`DiscriminatorConfig.resolved`); ``self.cfg`` holds the resolved widths.

    ``forward(frame, context)`` returns a list of logits, one ``(B,)`` tensor per scale (same order
    as ``cfg.scales``), and with ``return_features=True`` also a list (per scale) of feature lists.
    """

    def __init__(
        self,
        cfg: DiscriminatorConfig,
        image_size: int,
        channels: int = 3,
        min_resolution: int | None = None,
        conv_width: int = DEFAULT_CONV_WIDTH,
    ) -> None:
        super().__init__()
        cfg = cfg.validate().resolved(conv_width)
        assert cfg.width is not None and cfg.max_width is not None
        min_resolution = image_size if min_resolution is None else min_resolution
        for s in cfg.scales:
            if image_size % s or min_resolution % s or min_resolution // s < 4:
                raise ValueError(
                    f"discriminator scale {s} does not fit: frames of {image_size} px (smallest "
                    f"input {min_resolution} px) must divide by it and leave >= 4 px"
                )
        self.cfg = cfg
        self.image_size = image_size
        self.channels = channels
        self.min_resolution = min_resolution
        in_channels = cfg.frames_per_input * channels

        width, max_width = cfg.width, cfg.max_width

        def widths(r: int) -> int:  # channels at resolution r: `width` at half size, x2 per halving
            return min(max_width, max(1, width * image_size // (2 * r)))

        self.scale_nets = nn.ModuleList(
            ScaleDiscriminator(in_channels, image_size // s, min_resolution // s, widths, cfg)
            for s in cfg.scales
        )

    @property
    def scales(self) -> list[int]:
        return list(self.cfg.scales)

    def stack_inputs(self, frame: Tensor, context: Tensor | None = None) -> Tensor:
        """Stack the context and the candidate on the channels, mapped to ``[-1, 1]``.

        Args:
            frame: ``(B, C, R, R)`` (``clip_length == 1``) or ``(B, L, C, R, R)`` in ``[0, 1]``.
            context: ``(B, n, C, R, R)`` with ``n >= context_frames`` (the last ``context_frames``
                are used); ignored (may be None) for an unconditional discriminator.

        Returns:
            ``(B, (context_frames + clip_length) * C, R, R)``.
        """
        cfg = self.cfg
        if frame.dim() == 4:
            frame = frame.unsqueeze(1)
        if frame.dim() != 5 or frame.shape[1] != cfg.clip_length or frame.shape[2] != self.channels:
            raise ValueError(
                f"discriminator expects frames (B, {self.channels}, R, R) or clips "
                f"(B, {cfg.clip_length}, {self.channels}, R, R), got {tuple(frame.shape)}"
            )
        parts = [frame]
        if cfg.context_frames > 0:
            if context is None or context.dim() != 5 or context.shape[1] < cfg.context_frames:
                got = None if context is None else tuple(context.shape)
                raise ValueError(
                    f"conditional discriminator needs context (B, >={cfg.context_frames}, "
                    f"{self.channels}, R, R), got {got}"
                )
            ctx = context[:, context.shape[1] - cfg.context_frames :]
            if ctx.shape[0] != frame.shape[0] or ctx.shape[2:] != frame.shape[2:]:
                raise ValueError(
                    f"context {tuple(context.shape)} does not match frames {tuple(frame.shape)} in "
                    "batch, channels or size"
                )
            parts.insert(0, ctx.to(frame.dtype))
        x = torch.cat(parts, dim=1)  # (B, n + L, C, R, R)
        return (x * 2.0 - 1.0).flatten(1, 2)

    def scale_inputs(
        self, frame: Tensor | Sequence[Tensor], context: Tensor | None = None
    ) -> list[Tensor]:
        """The stacked input of every scale, ``(B, C_in, R / s_k, R / s_k)`` per scale ``s_k``.

        Args:
            frame: one candidate ``(B, [L,] C, R, R)``, average-pooled to every scale; or one per
                scale (aligned with :attr:`scales`, entry ``k`` of size ``R / s_k``, e.g. the
                scales of a multi-scale generator), each judged as it is.
            context: ``(B, n, C, R, R)`` at the full size ``R``, pooled to every scale.
        """
        if isinstance(frame, Tensor):
            return multiscale(self.stack_inputs(frame, context), self.cfg.scales)
        if len(frame) != len(self.cfg.scales):
            raise ValueError(
                f"expected one candidate per discriminator scale {self.scales}, got {len(frame)}"
            )
        full = frame[0].shape[-1] * self.cfg.scales[0]
        out = []
        for s, f in zip(self.cfg.scales, frame, strict=True):
            if f.shape[-1] * s != full:
                raise ValueError(
                    f"candidate for scale {s} has size {f.shape[-1]}, expected {full // s} px"
                )
            ctx = None if context is None else resize_to(context, full // s)
            out.append(self.stack_inputs(f, ctx))
        return out

    def _run_scales(
        self, inputs: list[Tensor], alpha: float, return_features: bool
    ) -> list[Tensor] | tuple[list[Tensor], list[list[Tensor]]]:
        logits, feats = [], []
        for net, x_k in zip(self.scale_nets, inputs, strict=True):
            out, f = net(x_k, alpha)
            logits.append(out)
            feats.append(f)
        return (logits, feats) if return_features else logits

    def forward_stacked(
        self, x: Tensor, alpha: float = 1.0, return_features: bool = False
    ) -> list[Tensor] | tuple[list[Tensor], list[list[Tensor]]]:
        """Run every scale on stacked inputs ``(B, C_in, R, R)`` (see :meth:`stack_inputs`)."""
        return self._run_scales(multiscale(x, self.cfg.scales), alpha, return_features)

    def forward(
        self,
        frame: Tensor | Sequence[Tensor],
        context: Tensor | None = None,
        alpha: float = 1.0,
        return_features: bool = False,
    ) -> list[Tensor] | tuple[list[Tensor], list[list[Tensor]]]:
        """Logits per scale for candidate frames (or clips) given their context.

        Args:
            frame: ``(B, C, R, R)`` or ``(B, L, C, R, R)`` in ``[0, 1]``; ``R`` = ``image_size``,
                or a smaller grown size with progressive growing. Or one candidate per scale
                (see :meth:`scale_inputs`).
            context: ``(B, n, C, R, R)`` in ``[0, 1]`` (conditional discriminator).
            alpha: progressive fade-in of the newest resolution (1 = fully grown at ``R``).
            return_features: also return ``feats[k]``, the list of feature maps of scale ``k``.

        Returns:
            ``logits`` (list of ``(B,)``, one per scale), or ``(logits, feats)``.
        """
        if isinstance(frame, Tensor):
            return self.forward_stacked(self.stack_inputs(frame, context), alpha, return_features)
        return self._run_scales(self.scale_inputs(frame, context), alpha, return_features)
