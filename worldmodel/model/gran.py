"""GRAN's recurrent canvas decoder (Im et al. 2016) as a decoder of the world model.

GRAN's generator draws an image in ``T`` steps, like DRAW: a recurrent cell updates its hidden
state from the previous one and the code, every step emits a canvas increment ``dC_t``, and the
image is ``f(sum_t dC_t)``. Here the code is the frame code of the world model, the predictor's
embedding ``g`` (plus the skip connections of the last context frame, which enter the increment
net exactly as they enter the plain decoder)::

    (r_0, c_0) = 0
    (r_t, c_t) = LSTMCell(g, (r_{t-1}, c_{t-1}))                t = 1..T   (cell: g_dim -> g_dim)
    dC_t       = D_logit(r_t, skips)                           the plain decoder without its sigmoid
    x_hat      = sigmoid(sum_t dC_t)                           f = sigmoid: frames in [0, 1]

``D_logit`` is :class:`worldmodel.model.nets.Decoder` built with ``logits=True`` (same layout,
widths, skip re-parameterisation and pixel-norm option as the plain decoder; its weights are shared
across the ``T`` steps). Because the cell's input is the same ``g`` every step and the increments
are only summed, the ``T`` hidden states are computed first (``T`` tiny LSTM-cell steps) and all
``T`` increments go through ``D_logit`` in **one** batched call (leading dim ``T``), with the skip
terms of the context frame computed once and broadcast over the ``T`` steps. The cost of the decoder
is therefore about ``T`` times the plain decoder's, in one call.

Difference from GRAN: GRAN's cell input at step ``t`` is a conv encoding of the previous increment
``f(dC_{t-1})``; here the cell carries the drawing state in its own hidden state (as DRAW's decoder
without a read does), which keeps the ``T`` decoder passes in one batched call.

Unsupported (refused by :meth:`worldmodel.model.svg.ModelConfig.validate`): progressive growing of
the decoder (``progressive_heads``) and the multi-scale decoder (``decoder_scales > 1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from wmcommon.checks import is_int
from worldmodel.model.nets import Decoder, full_size_only

__all__ = ["DECODERS", "GranDecoder", "draw"]

DECODERS = ("dcgan", "gran")  # model.decoder: the plain one-pass decoder | GRAN's canvas


def draw(increments: Tensor) -> Tensor:
    """The canvas: ``(T, *lead, C, S, S)`` increments (logits) -> ``sigmoid(sum_t increments_t)``.

    Summed in float32 (also under bf16 autocast), so ``T`` small increments add up exactly.
    """
    return torch.sigmoid(increments.float().sum(0))


class GranDecoder(nn.Module):
    """GRAN-style decoder: embedding ``(*lead, g_dim)`` + skip terms -> frame ``(*lead, C, S, S)``.

    The same call interface as :class:`worldmodel.model.nets.Decoder` (``skip_terms``, ``forward``,
    ``decode``), so :class:`worldmodel.model.svg.WorldModel` uses either as ``self.decoder``.

    Args:
        kind, image_size, channels, nf, g_dim, channels_last, pixel_norm: of the increment net,
            as for :class:`~worldmodel.model.nets.Decoder` (``kind`` mirrors the encoder).
        steps: ``T``, the drawing steps (>= 1).

    Attributes:
        cell: ``nn.LSTMCell(g_dim, g_dim)``, the recurrent drawing state.
        increment: the increment net, a :class:`~worldmodel.model.nets.Decoder` with
        ``logits=True``.
    """

    def __init__(
        self,
        kind: str,
        image_size: int,
        channels: int,
        nf: int,
        g_dim: int,
        steps: int = 4,
        channels_last: bool = False,
        pixel_norm: bool = False,
    ) -> None:
        super().__init__()
        if not is_int(steps, 1):
            raise ValueError(f"GRAN drawing steps must be an integer >= 1, got {steps!r}")
        self.steps, self.g_dim = steps, g_dim
        self.image_size, self.channels = image_size, channels
        self.cell = nn.LSTMCell(g_dim, g_dim)
        self.increment = Decoder(
            kind,
            image_size,
            channels,
            nf,
            g_dim,
            channels_last=channels_last,
            pixel_norm=pixel_norm,
            logits=True,
        )

    @property
    def resolutions(self) -> list[int]:
        """Output sizes :meth:`forward` accepts: only the full size ``[S]`` (no growing)."""
        return [self.image_size]

    def skip_terms(self, skips: Sequence[Tensor]) -> list[Tensor]:
        """The increment net's skip terms (computed once, shared by all ``T`` steps); see
        :meth:`worldmodel.model.nets.Decoder.skip_terms`."""
        return self.increment.skip_terms(skips)

    def hidden(self, g: Tensor) -> Tensor:
        """The cell's outputs ``r_1..r_T``: ``g (*lead, g_dim)`` -> ``(T, *lead, g_dim)``, float32."""
        lead = g.shape[:-1]
        x = g.reshape(-1, self.g_dim).float()
        with torch.autocast(x.device.type, enabled=False):  # a tiny cell: keep it float32
            r = c = x.new_zeros(x.shape[0], self.cell.hidden_size)
            out = []
            for _ in range(self.steps):
                r, c = self.cell(x, (r, c))
                out.append(r)
        return torch.stack(out).view(self.steps, *lead, self.cell.hidden_size)

    def increments(self, g: Tensor, terms: Sequence[Tensor]) -> Tensor:
        """Canvas increments ``dC_1..dC_T``, one batched call of the increment net.

        Args:
            g: ``(*lead, g_dim)`` embeddings.
            terms: :meth:`skip_terms` output, each ``(*lead_s, c_i, R_i, R_i)`` with ``lead_s``
                broadcastable to ``lead``.

        Returns:
            ``(T, *lead, C, S, S)`` logits.
        """
        r = self.hidden(g)  # (T, *lead, g_dim)
        return self.increment(r, [t.unsqueeze(0) for t in terms])  # terms broadcast over T

    def forward(
        self,
        g: Tensor,
        terms: Sequence[Tensor],
        resolution: int | None = None,
        alpha: float = 1.0,
    ) -> Tensor:
        """Draw frames: ``sigmoid(sum_t dC_t)``.

        Args:
            g, terms: as for :meth:`increments`.
            resolution, alpha: accepted for the interface of the plain decoder; only the full
                size (``None`` or ``S``) with ``alpha = 1`` (GRAN does not grow progressively).

        Returns:
            ``(*lead, C, S, S)`` frames in (0, 1), float32.
        """
        what = (
            "the GRAN decoder (model.decoder=gran; progressive growing needs model.decoder=dcgan)"
        )
        full_size_only(self.image_size, resolution, alpha, what)
        return draw(self.increments(g, terms))

    def decode(self, g: Tensor, skips: Sequence[Tensor]) -> Tensor:
        """``forward(g, skip_terms(skips))``: ``g (*lead, g_dim)``, skips ``(*lead, w_i, S_i, S_i)``."""
        return self(g, self.skip_terms(skips))
