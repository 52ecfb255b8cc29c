"""Convolutional frame encoder and decoder: SVG's DCGAN- and VGG-style nets, width multiplier K.

Both nets follow the SVG code (Denton & Fergus 2018) and work for any power-of-two image size >= 32
(64 and 128 reproduce SVG's ``dcgan_64/128`` and ``vgg_64/128`` layouts):

* **dcgan**: one 4x4 stride-2 conv + BatchNorm + LeakyReLU(0.2) per level, widths
  ``nf, 2nf, 4nf, 8nf, 8nf, ...``, down to 4x4; the decoder mirrors it with 4x4 stride-2 transposed
  convs.
* **vgg**: per level 2-3 3x3 convs + BatchNorm + LeakyReLU(0.2), 2x2 max-pooling between levels; the
  decoder mirrors it with nearest-neighbour upsampling.

The encoder maps a frame to an embedding ``h`` of size ``g_dim`` (BatchNorm + tanh, so in (-1, 1)) and
returns the output of every level as skip features. The decoder maps an embedding plus the skip
features of a (context) frame back to a frame in [0, 1] (sigmoid).

Two exact re-parameterisations of SVG's layers make the nets faster without changing what they can
compute:

* SVG's 4x4 valid conv from the 4x4 map to the 1x1 embedding (and the decoder's 4x4 transposed conv
  back) *is* a linear layer on the flattened 4x4 map, so it is written as ``nn.Linear``.
* SVG's decoder convolves ``cat([d, skip])``; a convolution of a concatenation is the sum of two
  convolutions, ``conv(cat([d, s])) = conv_main(d) + conv_skip(s)``. The decoder keeps the two
  halves apart: :meth:`Decoder.skip_terms` computes ``conv_skip(s)`` once per distinct skip frame
  (the last context frame is shared by every predicted frame, and by all N x S candidates during
  imagination), and :meth:`Decoder.forward` adds it, by broadcasting, to ``conv_main(d)`` of every
  predicted frame. This removes close to half of the decoder's work when many frames share a skip.

Weights are initialised as in SVG (``utils.init_weights``): conv and linear weights N(0, 0.02),
BatchNorm scales N(1, 0.02), biases 0.

The decoder here is the plain one; :mod:`worldmodel.model.decoders` wraps it into the progressively
growing decoder (PGGAN's ``toRGB`` heads and fade-in) and Mathieu et al.'s multi-scale decoder, and
:mod:`worldmodel.model.gran` into GRAN's canvas decoder. Its one option from Progressive GANs
(Karras et al. 2018), off by default, is ``pixel_norm``: pixelwise feature normalisation
``b = a / sqrt(mean_c(a^2) + 1e-8)`` (:class:`PixelNorm`) after the activation of every conv block
of the decoder (the stem and every level except the final RGB output), as in PGGAN's generator.

``composite`` (off by default; ``model.composite``) makes copying the easy start: the last level
also predicts a mask ``m``, and the frame is ``m * x_skip + (1 - m) * x_gen``, the skip frame's
pixels composited with the generated ones (the masks of Finn et al. 2016's CDNA and of SAVP, with
one "copy" transformation). The skip frame rides as one more skip "level" after the encoder's
(:meth:`Decoder.skip_terms` passes it through unchanged), so it is broadcast to every predicted
frame like the other skip terms. The mask's bias starts at :data:`MASK_BIAS` (``m`` about 0.88):
an untrained model predicts close to copy-last-frame and learns where to depart from it.

The generic layers from PGGAN (:class:`PixelNorm`, :func:`fade_in`, :func:`resize_to`) are in
:mod:`worldmodel.model.layers`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodel.model.layers import PixelNorm

__all__ = [
    "ENCODERS",
    "Decoder",
    "Encoder",
    "count_params",
    "full_size_only",
    "init_weights",
    "level_widths",
    "num_levels",
]

ENCODERS = ("dcgan", "vgg")
MASK_BIAS = 2.0  # initial logit of the composite decoder's copy mask: sigmoid(2) = 0.88
_SLOPE = 0.2  # LeakyReLU slope of the SVG nets


def num_levels(image_size: int) -> int:
    """Number of resolution levels between ``image_size`` and the 4x4 map (64 -> 4, 128 -> 5).

    Raises:
        ValueError: ``image_size`` is not a power of two >= 32.
    """
    if not isinstance(image_size, int) or image_size < 32 or image_size & (image_size - 1):
        raise ValueError(
            f"image_size must be a power of two >= 32 (e.g. 64 or 128), got {image_size!r}"
        )
    return int(math.log2(image_size)) - 2


def level_widths(nf: int, levels: int) -> list[int]:
    """Channels per level: ``nf, 2nf, 4nf, 8nf, 8nf, ...`` (SVG's widths, capped at ``8 nf``)."""
    return [nf * 2 ** min(i, 3) for i in range(levels)]


def _vgg_depth(level: int) -> int:
    """3x3 convs per VGG level: 2 at the two finest levels, 3 below (as in SVG's vgg_64/128)."""
    return 2 if level < 2 else 3


def count_params(module: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


def init_weights(module: nn.Module) -> None:
    """SVG/DCGAN initialisation, for ``module.apply``."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _bn_act(channels: int, pixel_norm: bool = False) -> list[nn.Module]:
    """BatchNorm + LeakyReLU (SVG), then PGGAN's pixel norm when ``pixel_norm``."""
    layers: list[nn.Module] = [nn.BatchNorm2d(channels), nn.LeakyReLU(_SLOPE, inplace=True)]
    if pixel_norm:
        layers.append(PixelNorm())
    return layers


def _check_kind(kind: str) -> None:
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder {kind!r}; expected one of {ENCODERS}")


class Encoder(nn.Module):
    """Frame encoder ``E``: ``(N, C, S, S)`` in [0, 1] -> embedding ``(N, g_dim)`` and skip features.

    Args:
        kind: ``"dcgan"`` or ``"vgg"``.
        image_size: ``S``, a power of two >= 32.
        channels: ``C`` (3 for RGB).
        nf: width of the first level (SVG: 64); deeper levels double up to ``8 nf``.
        g_dim: embedding size.
        channels_last: run the convolutions in channels-last memory format (faster with oneDNN).
    """

    def __init__(
        self,
        kind: str,
        image_size: int,
        channels: int,
        nf: int,
        g_dim: int,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        _check_kind(kind)
        self.kind, self.g_dim, self.channels_last = kind, g_dim, channels_last
        self.widths = level_widths(nf, num_levels(image_size))
        levels = []
        c_in = channels
        for i, w in enumerate(self.widths):
            if kind == "dcgan":  # (c_in, r, r) -> (w, r/2, r/2)
                layers = [nn.Conv2d(c_in, w, 4, 2, 1, bias=False), *_bn_act(w)]
            else:  # (c_in, r, r) -> [pool] -> (w, r', r')
                layers = [nn.MaxPool2d(2)] if i > 0 else []
                for j in range(_vgg_depth(i)):
                    layers += [
                        nn.Conv2d(c_in if j == 0 else w, w, 3, 1, 1, bias=False),
                        *_bn_act(w),
                    ]
            levels.append(nn.Sequential(*layers))
            c_in = w
        self.levels = nn.ModuleList(levels)
        self.pool = nn.MaxPool2d(2) if kind == "vgg" else nn.Identity()
        # == SVG's Conv2d(8nf, g_dim, 4) on the 4x4 map, then BatchNorm + tanh
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * 16, g_dim, bias=False),
            nn.BatchNorm1d(g_dim),
            nn.Tanh(),
        )
        self.apply(init_weights)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Encode frames.

        Args:
            x: ``(N, C, S, S)`` frames in [0, 1].

        Returns:
            ``h`` ``(N, g_dim)`` in (-1, 1), and the skip features: one ``(N, w_i, S_i, S_i)`` per
            level, finest first (dcgan: ``S_i = S / 2^(i+1)``; vgg: ``S_i = S / 2^i``).
        """
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for level in self.levels:
            x = level(x)
            skips.append(x)
        return self.head(self.pool(x)), skips


class _UpLevel(nn.Module):
    """One decoder level: ``post(main(up(d)) + skip_term)`` with ``skip_term = skip(s)``."""

    def __init__(self, upsample: bool, main: nn.Module, skip: nn.Module, post: nn.Module) -> None:
        super().__init__()
        self.upsample = upsample
        self.main, self.skip, self.post = main, skip, post


def full_size_only(image_size: int, resolution: int | None, alpha: float, what: str) -> None:
    """Raise ValueError unless ``(resolution, alpha)`` asks for the full-size frame: ``resolution``
    None or ``image_size`` and ``alpha`` 1 (the only output of a decoder that does not grow)."""
    if resolution not in (None, image_size) or alpha != 1.0:
        raise ValueError(
            f"{what} decodes at its full size {image_size} with alpha 1 only, got resolution "
            f"{resolution}, alpha {alpha}"
        )


class Decoder(nn.Module):
    """Frame decoder ``D``: embedding ``(..., g_dim)`` + skip terms -> frame ``(..., C, S, S)`` in [0, 1].

    Mirrors :class:`Encoder` (same ``kind``, ``image_size``, ``nf``, ``g_dim``). Use it in two steps,
    so that the skip features of one context frame are processed once for many predicted frames::

        terms = decoder.skip_terms(skips)   # skips: (*lead_s, w_i, S_i, S_i) per level
        x = decoder(g, terms)                # g: (*lead, g_dim); lead_s broadcasts to lead

    or in one with :meth:`decode` when every frame has its own skips. This is the plain decoder; the
    growing decoder and the multi-scale decoder of :mod:`worldmodel.model.decoders` and GRAN's
    canvas decoder (:mod:`worldmodel.model.gran`) are built on it and read its features
    (:meth:`features`).

    Args:
        kind, image_size, channels, nf, g_dim, channels_last: as for :class:`Encoder`.
        pixel_norm: PGGAN pixel norm after every conv block but the RGB output.
        logits: no final sigmoid: :meth:`forward` returns logits (unbounded) instead of frames in
            [0, 1] (GRAN's canvas increments, the multi-scale decoder's finest residual).
        composite: the last level also predicts a copy mask ``m``; the frame is ``m * x_skip +
            (1 - m) * x_gen`` with ``x_skip`` the skip frame's pixels, which :meth:`skip_terms`
            then takes as one more skip after the encoder's (see the module docstring). Not
            with ``logits``.
    """

    def __init__(
        self,
        kind: str,
        image_size: int,
        channels: int,
        nf: int,
        g_dim: int,
        channels_last: bool = False,
        pixel_norm: bool = False,
        logits: bool = False,
        composite: bool = False,
    ) -> None:
        super().__init__()
        _check_kind(kind)
        if logits and composite:
            raise ValueError("a composite decoder outputs frames, not logits")
        self.kind, self.g_dim, self.channels_last = kind, g_dim, channels_last
        self.channels, self.image_size = channels, image_size
        self.pixel_norm, self.logits, self.composite = pixel_norm, logits, composite
        self.widths = widths = level_widths(nf, num_levels(image_size))
        # the composite decoder's last level: C colour logits and a mask logit, composited in
        # features(); otherwise C channels through a sigmoid (or none for logits)
        rgb_act = nn.Identity if logits or composite else nn.Sigmoid
        pn = pixel_norm
        # == SVG's ConvTranspose2d(g_dim, 8nf, 4) from 1x1 to 4x4, then BatchNorm + LeakyReLU
        self.stem = nn.Sequential(
            nn.Linear(g_dim, widths[-1] * 16, bias=False),
            nn.Unflatten(1, (widths[-1], 4, 4)),
            *_bn_act(widths[-1], pn),
        )
        levels = []
        for i, w in enumerate(widths):  # level i takes (w, S_i, S_i) plus the skip of level i
            last = i == 0
            c_out = (channels + composite) if last else widths[i - 1]
            if kind == "dcgan":  # (w, r, r) -> (c_out, 2r, 2r)
                main = nn.ConvTranspose2d(w, c_out, 4, 2, 1, bias=last)
                skip = nn.ConvTranspose2d(w, c_out, 4, 2, 1, bias=False)
                post = rgb_act() if last else nn.Sequential(*_bn_act(c_out, pn))
                levels.append(_UpLevel(False, main, skip, post))
            else:  # up(w, r/2) -> (w, r, r) -> ... -> (c_out, r, r)
                main = nn.Conv2d(w, w, 3, 1, 1, bias=False)
                skip = nn.Conv2d(w, w, 3, 1, 1, bias=False)
                post = _bn_act(w, pn)
                for _ in range(_vgg_depth(i) - 2):
                    post += [nn.Conv2d(w, w, 3, 1, 1, bias=False), *_bn_act(w, pn)]
                if last:
                    post += [nn.Conv2d(w, c_out, 3, 1, 1), rgb_act()]
                else:
                    post += [nn.Conv2d(w, c_out, 3, 1, 1, bias=False), *_bn_act(c_out, pn)]
                levels.append(_UpLevel(True, main, skip, nn.Sequential(*post)))
        self.levels = nn.ModuleList(levels)
        self.apply(init_weights)
        if composite:
            out = levels[0].main if kind == "dcgan" else levels[0].post[-2]
            with torch.no_grad():
                out.bias[channels] = MASK_BIAS
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def resolutions(self) -> list[int]:
        """Output sizes :meth:`forward` accepts: the full size ``[S]`` only."""
        return [self.image_size]

    def skip_terms(self, skips: Sequence[Tensor]) -> list[Tensor]:
        """The skip half of each level's first convolution.

        Args:
            skips: the encoder's skip features, one ``(*lead, w_i, S_i, S_i)`` per level (any leading
                dims, e.g. ``(B, K)`` for K context frames); for a ``composite`` decoder followed by
                the skip frame itself, ``(*lead, C, S, S)``.

        Returns:
            One ``(*lead, c_i, R_i, R_i)`` per level, to pass to :meth:`forward` (and the skip
            frame, unchanged, for a ``composite`` decoder).
        """
        want = len(self.levels) + self.composite
        if len(skips) != want:
            what = " (the encoder's and the skip frame)" if self.composite else ""
            raise ValueError(f"expected {want} skip tensors{what}, got {len(skips)}")
        if self.composite:
            *skips, frame = skips
        terms = []
        for level, s in zip(self.levels, skips, strict=True):
            lead = s.shape[:-3]
            s = s.reshape(-1, *s.shape[-3:])
            if self.channels_last:
                s = s.contiguous(memory_format=torch.channels_last)
            t = level.skip(s)
            terms.append(t.view(*lead, *t.shape[1:]))
        if self.composite:
            terms.append(frame)
        return terms

    def features(
        self, g: Tensor, terms: Sequence[Tensor], stop: int = 0
    ) -> Iterator[tuple[int, Tensor]]:
        """The decoder's level loop, coarse to fine: the features at every resolution.

        Args:
            g, terms: as for :meth:`forward`.
            stop: the last level to run; the loop ends with the features at ``S / 2^stop`` px.

        Yields:
            ``(k, d)`` with ``d`` the ``(n, c, S / 2^k, S / 2^k)`` features (``n`` = the flattened
            leading dims of ``g``): the stem's at 4 px (``k = L``, the number of levels), then each
            level's output. At ``k = 0`` that is the frame (or its logits with ``logits``).
        """
        lead = g.shape[:-1]
        d = self.stem(g.reshape(-1, self.g_dim))  # (n, 8nf, 4, 4)
        if self.channels_last:
            d = d.contiguous(memory_format=torch.channels_last)
        yield len(self.levels), d
        for i in reversed(range(stop, len(self.levels))):
            level = self.levels[i]
            if level.upsample:
                d = F.interpolate(d, scale_factor=2.0, mode="nearest")
            pre = level.main(d)
            pre = pre.view(*lead, *pre.shape[1:]) + terms[i]  # broadcast the shared skip term
            d = level.post(pre.reshape(-1, *pre.shape[-3:]))
            if i == 0 and self.composite:
                d = self._composite(d.view(*lead, *d.shape[1:]), terms[-1])
                d = d.reshape(-1, *d.shape[-3:])
            yield i, d

    def _composite(self, out: Tensor, frame: Tensor) -> Tensor:
        """``(*lead, C + 1, S, S)`` colour and mask logits, skip frame ``(*lead_s, C, S, S)`` ->
        ``m * frame + (1 - m) * sigmoid(colour)`` with ``m = sigmoid(mask)``."""
        c = self.channels
        gen = torch.sigmoid(out[..., :c, :, :])
        mask = torch.sigmoid(out[..., c:, :, :])
        return torch.lerp(gen, frame.to(gen.dtype), mask)

    def forward(
        self,
        g: Tensor,
        terms: Sequence[Tensor],
        resolution: int | None = None,
        alpha: float = 1.0,
    ) -> Tensor:
        """Decode embeddings.

        Args:
            g: ``(*lead, g_dim)`` embeddings.
            terms: :meth:`skip_terms` output; each ``(*lead_s, c_i, R_i, R_i)`` with ``lead_s``
                broadcastable to ``lead`` (same number of dims).
            resolution, alpha: the interface of the growing decoder
                (:class:`worldmodel.model.decoders.ProgressiveDecoder`); here only the full size
                (None or ``S``) with ``alpha = 1``.

        Returns:
            ``(*lead, C, S, S)`` frames in [0, 1]; logits with ``logits``.
        """
        full_size_only(
            self.image_size,
            resolution,
            alpha,
            "a decoder without progressive heads (model.progressive_heads=false)",
        )
        _, d = deque(self.features(g, terms), maxlen=1)[0]  # the last level's output
        return d.view(*g.shape[:-1], *d.shape[1:])

    def decode(self, g: Tensor, skips: Sequence[Tensor]) -> Tensor:
        """``forward(g, skip_terms(skips))``: ``g (*lead, g_dim)``, skips ``(*lead, w_i, S_i, S_i)``."""
        return self(g, self.skip_terms(skips))
