"""The plain decoder's two variants: a progressively growing decoder and a multi-scale decoder.

Both are :class:`worldmodel.model.nets.Decoder` plus a few 1x1 heads on its features
(:meth:`~worldmodel.model.nets.Decoder.features`, the one level loop), so they have its parameters
under the same names, and the heads' own (``to_rgb.*``, ``residual_heads.*``). The heads are built
on a forked random stream: with the same seed, every other weight equals the plain decoder's.
:class:`worldmodel.model.svg.WorldModel` builds one of them from ``model.progressive_heads`` and
``model.decoder_scales`` (not both: :meth:`worldmodel.model.svg.ModelConfig.validate` refuses that).

* :class:`ProgressiveDecoder` (Karras et al. 2018): a ``toRGB`` head (1x1 conv + sigmoid) on the
  features at every resolution from 4 px to ``S / 2``, so that it can decode at a lower
  ``resolution`` and fade the next one in (``alpha``). The full-resolution "toRGB" is the plain
  decoder's own last level, so the fully grown path (``resolution = S, alpha = 1``) *is* the plain
  decoder.
* :class:`MultiScaleDecoder`, the coarse-to-fine form of Mathieu et al. (2016), ``scales = N``:
  scale ``k`` (sizes ``S / 2^(N-1), ..., S / 2, S``) predicts a residual ``G'_k`` on the upsampled
  coarser prediction, ``Y_k = u(Y_{k-1}) + G'_k``, written in the sigmoid's logit coordinates so
  that every ``Y_k`` stays in (0, 1): ``Y_k = sigmoid(logit(u(Y_{k-1})) + G'_k)`` (nearest
  upsampling commutes with the pointwise logit, so ``logit(u(Y)) = u(logit(Y))``). ``G'_k`` is a
  1x1 conv on the features of the level that outputs ``S / 2^(N-k)`` px (a residual head); at full
  size it is the plain decoder's last level without its sigmoid (``logits=True``). The coarser
  predictions reach the finer scales through the shared trunk and the residual sum (Mathieu's
  ``G'_k`` also take the upsampled prediction as an input; here the trunk is shared instead).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmcommon.checks import is_int
from worldmodel.model.layers import fade_in
from worldmodel.model.nets import Decoder, full_size_only, init_weights

__all__ = ["MultiScaleDecoder", "ProgressiveDecoder"]


def _heads(make: Callable[[], dict[str, nn.Module]]) -> nn.ModuleDict:
    """The heads ``make()`` builds as a ModuleDict, built and initialised on a forked random stream
    (the global stream is left where it was, so the rest of the model gets the same weights with
    and without the heads)."""
    with torch.random.fork_rng(devices=[]):
        heads = nn.ModuleDict(make())
        heads.apply(init_weights)
    return heads


def _up(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class ProgressiveDecoder(Decoder):
    """The plain decoder with PGGAN's ``toRGB`` heads: decodes at ``4, 8, ..., S`` px with fade-in.

    Args:
        kind, image_size, channels, nf, g_dim, channels_last, pixel_norm: as for
            :class:`~worldmodel.model.nets.Decoder`.

    Attributes:
        to_rgb: ``{str(r): 1x1 conv + sigmoid}`` for ``r = 4, 8, ..., S/2`` (features of the level
            that outputs ``r`` px -> ``(C, r, r)`` frame).
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
    ) -> None:
        super().__init__(kind, image_size, channels, nf, g_dim, channels_last, pixel_norm)
        # level k (k >= 1) outputs widths[k-1] channels at S / 2^k; the stem (k = L) at 4 px
        self.to_rgb = _heads(
            lambda: {
                str(image_size >> k): nn.Sequential(
                    nn.Conv2d(self.widths[k - 1], channels, 1), nn.Sigmoid()
                )
                for k in range(1, len(self.widths) + 1)
            }
        )
        if channels_last:
            self.to_rgb.to(memory_format=torch.channels_last)

    @property
    def resolutions(self) -> list[int]:
        """Output sizes :meth:`forward` accepts: ``[4, 8, ..., S]``."""
        return sorted([*(int(r) for r in self.to_rgb), self.image_size])

    def _growth(self, resolution: int | None, alpha: float) -> tuple[int, bool]:
        """``(k, fade)``: decode from the level that outputs ``S / 2^k`` px; fade in from ``k + 1``."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"fade-in alpha must be in [0, 1], got {alpha}")
        r = self.image_size if resolution is None else resolution
        if r not in self.resolutions:
            raise ValueError(
                f"decoder resolution {r} not available; expected one of {self.resolutions}"
            )
        k = int(math.log2(self.image_size // r))
        fade = alpha < 1.0
        if fade and k == len(self.levels):
            raise ValueError(f"cannot fade in {r} px: it is the decoder's coarsest resolution")
        return k, fade

    def forward(
        self,
        g: Tensor,
        terms: Sequence[Tensor],
        resolution: int | None = None,
        alpha: float = 1.0,
    ) -> Tensor:
        """Decode embeddings at ``resolution``, faded in by ``alpha``.

        Args:
            g, terms: as for :meth:`worldmodel.model.nets.Decoder.forward`.
            resolution: output size ``r`` (one of :attr:`resolutions`); None: the full size ``S``.
            alpha: PGGAN fade-in of ``r``: ``alpha * toRGB_r(f_r) + (1 - alpha) *
                upsample_nearest(toRGB_{r/2}(f_{r/2}))``, where ``toRGB_S`` is the last level.

        Returns:
            ``(*lead, C, r, r)`` frames in [0, 1].
        """
        k, fade = self._growth(resolution, alpha)
        if k == 0 and not fade:
            return super().forward(g, terms)  # fully grown: the plain decoder
        coarse = d = None
        for _, f in self.features(g, terms, stop=k):
            coarse, d = d, f  # d: the features at r px; coarse: at r / 2 px
        assert d is not None
        r = self.image_size >> k
        if k > 0:  # features (n, c, r, r) -> frame (n, C, r, r)
            d = self.to_rgb[str(r)](d)
        if fade:  # (n, c', r/2, r/2) -> (n, C, r/2, r/2) -> (n, C, r, r)
            assert coarse is not None  # r > 4 px (checked by _growth)
            d = fade_in(alpha, _up(self.to_rgb[str(r // 2)](coarse)), d)
        return d.view(*g.shape[:-1], *d.shape[1:])


class MultiScaleDecoder(Decoder):
    """Mathieu et al.'s coarse-to-fine decoder: ``N`` scales, each a residual on the coarser one.

    Args:
        kind, image_size, channels, nf, g_dim, channels_last, pixel_norm: as for
            :class:`~worldmodel.model.nets.Decoder`.
        scales: ``N``, ``1 <= N <= num_levels(S)`` (the coarsest ``S / 2^(N-1) >= 8`` px).

    Attributes:
        residual_heads: ``{str(r): 1x1 conv}`` for the ``N - 1`` coarser scales (features ->
            logit residual ``(C, r, r)``).
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
        scales: int = 2,
    ) -> None:
        super().__init__(
            kind, image_size, channels, nf, g_dim, channels_last, pixel_norm, logits=True
        )
        n = len(self.widths)
        if not is_int(scales) or not 1 <= scales <= n:
            raise ValueError(
                f"decoder scales={scales!r}; expected an integer in [1, {n}] for "
                f"{image_size} px frames (the coarsest scale must be >= 8 px)"
            )
        self.scales = scales
        # G'_k for the N - 1 coarser scales: S / 2^k px for k = 1 .. N - 1
        self.residual_heads = _heads(
            lambda: {
                str(image_size >> k): nn.Conv2d(self.widths[k - 1], channels, 1)
                for k in range(1, scales)
            }
        )
        if channels_last:
            self.residual_heads.to(memory_format=torch.channels_last)

    def pyramid(
        self,
        g: Tensor,
        terms: Sequence[Tensor],
        resolution: int | None = None,
        alpha: float = 1.0,
    ) -> list[Tensor]:
        """Every scale, coarse to fine.

        Args:
            g, terms: as for :meth:`worldmodel.model.nets.Decoder.forward`.
            resolution, alpha: only the full size (None or ``S``) with ``alpha = 1`` (no growing).

        Returns:
            ``[Y_1, ..., Y_N]``, ``Y_k`` of shape ``(*lead, C, S / 2^(N-k), S / 2^(N-k))`` in (0, 1)
            with ``logit(Y_k) = u(logit(Y_{k-1})) + G'_k``.
        """
        what = f"a multi-scale decoder (model.decoder_scales={self.scales}; no progressive growing)"
        full_size_only(self.image_size, resolution, alpha, what)
        lead = g.shape[:-1]
        z: Tensor | None = None  # logits of the current scale, (n, C, r, r)
        out = []
        for k, d in self.features(g, terms):
            if k >= self.scales:
                continue  # below the coarsest scale
            residual = d if k == 0 else self.residual_heads[str(self.image_size >> k)](d)
            z = residual if z is None else _up(z) + residual
            y = torch.sigmoid(z)
            out.append(y.view(*lead, *y.shape[1:]))
        return out

    def forward(
        self,
        g: Tensor,
        terms: Sequence[Tensor],
        resolution: int | None = None,
        alpha: float = 1.0,
    ) -> Tensor:
        """The finest scale ``Y_N``, ``(*lead, C, S, S)`` in (0, 1); see :meth:`pyramid`."""
        return self.pyramid(g, terms, resolution, alpha)[-1]
