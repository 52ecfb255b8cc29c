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

Two Progressive-GAN options of the decoder (Karras et al. 2018), both off by default:

* ``pixel_norm``: pixelwise feature normalisation ``b = a / sqrt(mean_c(a^2) + 1e-8)`` after the
  activation of every conv block of the decoder (the stem and every level except the final RGB
  output), as in PGGAN's generator.
* ``progressive_heads``: a ``toRGB`` head (1x1 conv + sigmoid) on the features at every resolution
  from 4 px to ``S / 2``, so that :meth:`Decoder.forward` can decode at a lower ``resolution`` and
  fade the next one in (``alpha``). The full-resolution "toRGB" is the decoder's own last level, so
  the fully grown path (``resolution = S, alpha = 1``) *is* the normal decoder. The heads are built
  on a forked random stream: a decoder with heads has the same initial weights elsewhere as one
  without (same seed).

And a multi-scale decoder in the coarse-to-fine form of Mathieu et al. (2016), ``scales = N > 1``:
scale ``k`` (sizes ``S / 2^(N-1), ..., S / 2, S``) predicts a residual ``G'_k`` on the upsampled
coarser prediction, ``Y_k = u(Y_{k-1}) + G'_k``, written in the sigmoid's logit coordinates so that
every ``Y_k`` stays in (0, 1): ``Y_k = sigmoid(logit(u(Y_{k-1})) + G'_k)`` (nearest upsampling
commutes with the pointwise logit, so ``logit(u(Y)) = u(logit(Y))``). ``G'_k`` is a 1x1 conv on the
features of the level that outputs ``S / 2^(N-k)`` px (a residual head, on a forked random stream
as above); at full size it is the last level's output without its sigmoid. The coarser predictions
reach the finer scales through the shared trunk and the residual sum (Mathieu's ``G'_k`` also take
the upsampled prediction as an input; here the trunk is shared instead). :meth:`Decoder.pyramid`
returns every ``Y_k``; :meth:`Decoder.forward` the finest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodel.pggan import PixelNorm, fade_in

__all__ = [
    "ENCODERS",
    "Decoder",
    "Encoder",
    "count_params",
    "init_weights",
    "level_widths",
    "num_levels",
]

ENCODERS = ("dcgan", "vgg")
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


class Decoder(nn.Module):
    """Frame decoder ``D``: embedding ``(..., g_dim)`` + skip terms -> frame ``(..., C, S, S)`` in [0, 1].

    Mirrors :class:`Encoder` (same ``kind``, ``image_size``, ``nf``, ``g_dim``). Use it in two steps,
    so that the skip features of one context frame are processed once for many predicted frames::

        terms = decoder.skip_terms(skips)   # skips: (*lead_s, w_i, S_i, S_i) per level
        x = decoder(g, terms)                # g: (*lead, g_dim); lead_s broadcasts to lead

    or in one with :meth:`decode` when every frame has its own skips.

    Args:
        kind, image_size, channels, nf, g_dim, channels_last: as for :class:`Encoder`.
        pixel_norm: PGGAN pixel norm after every conv block but the RGB output.
        progressive_heads: build the ``toRGB`` heads (:attr:`to_rgb`) for progressive growing.
        scales: ``N``, the scales of a multi-scale (coarse-to-fine) decoder; 1 = single scale.
            ``2 <= N <= num_levels(S)`` (coarsest ``S / 2^(N-1) >= 8`` px); not with
            ``progressive_heads``.
        logits: a single-scale decoder without its final sigmoid: :meth:`forward` returns
            logits (unbounded) instead of frames in [0, 1]. Used as the canvas-increment net of
            :class:`worldmodel.gran.GranDecoder`; no progressive heads.

    Attributes:
        to_rgb: ``{str(r): 1x1 conv + sigmoid}`` for ``r = 4, 8, ..., S/2`` (features of the level
            that outputs ``r`` px -> ``(C, r, r)`` frame), or None without ``progressive_heads``.
        residual_heads: ``{str(r): 1x1 conv}`` for the ``N - 1`` coarser scales (features ->
            logit residual ``(C, r, r)``), or None for a single-scale decoder.
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
        progressive_heads: bool = False,
        scales: int = 1,
        logits: bool = False,
    ) -> None:
        super().__init__()
        _check_kind(kind)
        self.kind, self.g_dim, self.channels_last = kind, g_dim, channels_last
        self.channels, self.image_size = channels, image_size
        self.pixel_norm = pixel_norm
        widths = level_widths(nf, num_levels(image_size))
        if (
            isinstance(scales, bool)
            or not isinstance(scales, int)
            or not 1 <= scales <= len(widths)
        ):
            raise ValueError(
                f"decoder scales={scales!r}; expected an integer in [1, {len(widths)}] for "
                f"{image_size} px frames (the coarsest scale must be >= 8 px)"
            )
        if scales > 1 and progressive_heads:
            raise ValueError(
                "a multi-scale decoder (scales > 1) does not combine with progressive growing "
                "(progressive_heads); switch one off (e.g. loss.progressive.enabled=false)"
            )
        if logits and (scales > 1 or progressive_heads):
            raise ValueError("a logits decoder is single-scale and has no progressive heads")
        self.scales, self.logits = scales, logits
        # multi-scale: logits, see pyramid(); logits: no output activation at all
        rgb_act = nn.Sigmoid if scales == 1 and not logits else nn.Identity
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
            c_out = channels if last else widths[i - 1]
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
        self.to_rgb: nn.ModuleDict | None = None
        if progressive_heads:
            # level k (k >= 1) outputs widths[k-1] channels at S / 2^k; the stem (k = L) at 4 px.
            # A forked random stream keeps every other weight equal to a decoder without heads.
            with torch.random.fork_rng(devices=[]):
                heads = {
                    str(image_size >> k): nn.Sequential(
                        nn.Conv2d(widths[k - 1], channels, 1), nn.Sigmoid()
                    )
                    for k in range(1, len(widths) + 1)
                }
                self.to_rgb = nn.ModuleDict(heads)
                self.to_rgb.apply(init_weights)
        self.residual_heads: nn.ModuleDict | None = None
        if scales > 1:  # G'_k for the N - 1 coarser scales: S / 2^k px for k = 1 .. N - 1
            with torch.random.fork_rng(devices=[]):
                residual = {
                    str(image_size >> k): nn.Conv2d(widths[k - 1], channels, 1)
                    for k in range(1, scales)
                }
                self.residual_heads = nn.ModuleDict(residual)
                self.residual_heads.apply(init_weights)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def resolutions(self) -> list[int]:
        """Output sizes :meth:`forward` accepts: ``[4, 8, ..., S]`` with heads, else ``[S]``."""
        if self.to_rgb is None:
            return [self.image_size]
        return sorted([*(int(r) for r in self.to_rgb), self.image_size])

    def _growth(self, resolution: int | None, alpha: float) -> tuple[int, bool]:
        """``(k, fade)``: decode from the level that outputs ``S / 2^k`` px; fade in from ``k + 1``."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"fade-in alpha must be in [0, 1], got {alpha}")
        r = self.image_size if resolution is None else resolution
        if r == self.image_size and alpha == 1.0:
            return 0, False
        if self.to_rgb is None:
            raise ValueError(
                f"this decoder has no progressive heads (model.progressive_heads=false): it decodes "
                f"only at its full resolution {self.image_size} with alpha 1, got resolution {r}, "
                f"alpha {alpha}"
            )
        if r not in self.resolutions:
            raise ValueError(
                f"decoder resolution {r} not available; expected one of {self.resolutions}"
            )
        k = int(math.log2(self.image_size // r))
        fade = alpha < 1.0
        if fade and k == len(self.levels):
            raise ValueError(f"cannot fade in {r} px: it is the decoder's coarsest resolution")
        return k, fade

    def skip_terms(self, skips: Sequence[Tensor]) -> list[Tensor]:
        """The skip half of each level's first convolution.

        Args:
            skips: the encoder's skip features, one ``(*lead, w_i, S_i, S_i)`` per level (any leading
                dims, e.g. ``(B, K)`` for K context frames).

        Returns:
            One ``(*lead, c_i, R_i, R_i)`` per level, to pass to :meth:`forward`.
        """
        if len(skips) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} skip tensors, got {len(skips)}")
        terms = []
        for level, s in zip(self.levels, skips, strict=True):
            lead = s.shape[:-3]
            s = s.reshape(-1, *s.shape[-3:])
            if self.channels_last:
                s = s.contiguous(memory_format=torch.channels_last)
            t = level.skip(s)
            terms.append(t.view(*lead, *t.shape[1:]))
        return terms

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
            resolution: output size ``r`` (one of :attr:`resolutions`); None: the full size ``S``.
            alpha: PGGAN fade-in of ``r``: ``alpha * toRGB_r(f_r) + (1 - alpha) *
                upsample_nearest(toRGB_{r/2}(f_{r/2}))``, where ``toRGB_S`` is the last level.
                ``r < S`` or ``alpha < 1`` need ``progressive_heads``.

        Returns:
            ``(*lead, C, r, r)`` frames in [0, 1] (``r = S`` by default); logits with ``logits``.
        """
        if self.scales > 1:
            if (resolution not in (None, self.image_size)) or alpha != 1.0:
                raise ValueError("a multi-scale decoder decodes at full size only (no growing)")
            return self.pyramid(g, terms)[-1]
        stop, fade = self._growth(resolution, alpha)
        lead = g.shape[:-1]
        d = self.stem(g.reshape(-1, self.g_dim))  # (n, 8nf, 4, 4)
        if self.channels_last:
            d = d.contiguous(memory_format=torch.channels_last)
        coarse = d
        for i in reversed(range(stop, len(self.levels))):
            level = self.levels[i]
            if fade and i == stop:
                coarse = d  # features at r / 2 for the fading-out head
            if level.upsample:
                d = F.interpolate(d, scale_factor=2.0, mode="nearest")
            pre = level.main(d)
            pre = pre.view(*lead, *pre.shape[1:]) + terms[i]  # broadcast the shared skip term
            d = level.post(pre.reshape(-1, *pre.shape[-3:]))
        if stop > 0 or fade:
            assert self.to_rgb is not None  # checked by _growth
            r = self.image_size >> stop
            if stop > 0:  # features (n, c, r, r) -> frame (n, C, r, r)
                d = self.to_rgb[str(r)](d)
            if fade:  # (n, c', r/2, r/2) -> (n, C, r/2, r/2) -> (n, C, r, r)
                old = F.interpolate(
                    self.to_rgb[str(r // 2)](coarse), scale_factor=2.0, mode="nearest"
                )
                d = fade_in(alpha, old, d)
        return d.view(*lead, *d.shape[1:])

    def pyramid(self, g: Tensor, terms: Sequence[Tensor]) -> list[Tensor]:
        """Every scale of a multi-scale decoder, coarse to fine.

        Args:
            g, terms: as for :meth:`forward`.

        Returns:
            ``[Y_1, ..., Y_N]``, ``Y_k`` of shape ``(*lead, C, S / 2^(N-k), S / 2^(N-k))`` in (0, 1)
            with ``logit(Y_k) = u(logit(Y_{k-1})) + G'_k``; ``[forward(g, terms)]`` for ``N = 1``.
        """
        if self.scales == 1:
            return [self(g, terms)]
        assert self.residual_heads is not None
        lead = g.shape[:-1]
        d = self.stem(g.reshape(-1, self.g_dim))  # (n, 8nf, 4, 4)
        if self.channels_last:
            d = d.contiguous(memory_format=torch.channels_last)
        z: Tensor | None = None  # logits of the current scale, (n, C, r, r)
        out = []
        for i in reversed(range(len(self.levels))):
            level = self.levels[i]
            if level.upsample:
                d = F.interpolate(d, scale_factor=2.0, mode="nearest")
            pre = level.main(d)
            pre = pre.view(*lead, *pre.shape[1:]) + terms[i]
            d = level.post(pre.reshape(-1, *pre.shape[-3:]))
            if i >= self.scales:
                continue  # below the coarsest scale
            residual = d if i == 0 else self.residual_heads[str(self.image_size >> i)](d)
            z = (
                residual
                if z is None
                else F.interpolate(z, scale_factor=2.0, mode="nearest") + residual
            )
            y = torch.sigmoid(z)
            out.append(y.view(*lead, *y.shape[1:]))
        return out

    def decode(self, g: Tensor, skips: Sequence[Tensor]) -> Tensor:
        """``forward(g, skip_terms(skips))``: ``g (*lead, g_dim)``, skips ``(*lead, w_i, S_i, S_i)``."""
        return self(g, self.skip_terms(skips))
