"""SVG-LP as an action-conditioned world model (Denton & Fergus 2018; scaled as in Villegas et al. 2019).

Notation: frames ``x_0..x_{L-1}``, actions ``a_0..a_{L-2}`` (``a_t`` leads from ``x_t`` to
``x_{t+1}``), rewards ``r_0..r_{L-2}`` (``r_t`` is received with ``x_{t+1}``).

Per step ``t = 1..L-1`` (variant ``"svg"``)::

    h_t, skips_t = E(x_t)                                   encoder (nets.Encoder), one batched call
    z_t ~ q(z_t | h_1..h_t [, a_{t-1}])                     posterior LSTM  (training, observe)
    z_t ~ p(z_t | h_0..h_{t-1}, a_0..a_{t-1})               learned prior LSTM (imagination)
    g_t, f_t = predictor(h_{t-1}, z_t, a_{t-1})             frame predictor LSTM, g_t = tanh(W f_t)
    x_hat_t = D(g_t, skips of the last context frame)       decoder (nets.Decoder)
    r_hat_{t-1} = reward_head(f_t)                          reward for a_{t-1}

Variants (Villegas et al.'s ablations):

* ``"svg"``: stochastic and recurrent, as above.
* ``"lstm"``: recurrent and deterministic: no ``z``, no prior/posterior, no KL term.
* ``"cnn"``: no recurrence. A feed-forward net predicts ``g_t`` from ``[h_{t-1}, h_first, z_t,
  a_{t-1}]`` (the previous and the first observed frame, as in Villegas et al.'s CNN baseline), with
  ``z_t`` from feed-forward prior ``p(z_t | h_{t-1}, a_{t-1})`` and posterior ``q(z_t | h_t)``.

Capacity: ``M`` multiplies the width of every recurrent / feed-forward layer (``rnn_units``), ``K``
the width of every convolution (``nf``) and the embedding size ``g_dim``.

Latent imagination. Besides the SVG objective, the predicted embedding ``g_t`` is trained to match
the encoder's embedding of the true frame, ``||g_t - stopgrad(E(x_t))||^2``, so that ``g_t`` can be
fed back as the next input ``h_t`` without decoding and re-encoding. :meth:`WorldModel.imagine`
does exactly that by default (``feedback="latent"``; it never runs the encoder, and the decoder only
when frames are asked for); ``feedback="decode"`` re-encodes the decoded frames as SVG's generation
does.

Speed. All frames of a sequence go through the encoder in one batched call and all predicted frames
through the decoder in one; with teacher forcing every LSTM input is known in advance, so each LSTM
runs over the whole sequence in one fused ``nn.LSTM`` call (no Python loop over time at all during
training). During imagination N candidates x S samples form one batch, each step is a few matmuls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wmcommon.checks import is_int, is_number
from worldmodel.model.decoders import MultiScaleDecoder, ProgressiveDecoder
from worldmodel.model.gran import DECODERS, GranDecoder
from worldmodel.model.layers import resize_to
from worldmodel.model.nets import ENCODERS, Decoder, Encoder, count_params

__all__ = [
    "VARIANTS",
    "FEEDBACK",
    "ModelConfig",
    "ModelState",
    "ModelOutput",
    "Imagination",
    "WorldModel",
]

VARIANTS = ("svg", "lstm", "cnn")
FEEDBACK = ("latent", "decode")
_SLOPE = 0.2

LSTMState = tuple[Tensor, Tensor]  # (h, c), each (B, layers, units), float32


@dataclass
class ModelConfig:
    """World-model architecture. Sizes are given at ``M = K = 1``; see :attr:`units` etc.

    The defaults are SVG-LP (DCGAN encoder, g_dim 128, 256 LSTM units, 2-layer predictor, 1-layer
    prior and posterior, z_dim 64) with the conv width halved (``nf = 32`` instead of SVG's 64) so
    that ``M = K = 1`` trains at a useful speed on a CPU; ``K = 2`` has SVG's conv widths.
    """

    variant: str = "svg"  # "svg" | "lstm" (deterministic) | "cnn" (no recurrence)
    M: float = 1.0  # multiplies rnn_units (LSTM / MLP widths)
    K: float = 1.0  # multiplies nf and g_dim (conv widths, embedding size)
    rnn_units: int = 256  # LSTM units at M = 1
    nf: int = 32  # width of the first conv level at K = 1 (doubles per level up to 8 nf)
    g_dim: int = 128  # frame embedding size at K = 1
    z_dim: int = 64  # latent size (not scaled)
    predictor_layers: int = 2  # frame predictor LSTM layers (hidden layers for "cnn")
    prior_layers: int = 1  # learned prior LSTM layers
    posterior_layers: int = 1  # posterior LSTM layers
    encoder: str = "dcgan"  # "dcgan" | "vgg"
    reward_hidden: int = 256  # hidden units of the reward head MLP
    action_embed: int = 0  # 0: feed raw actions; > 0: a Linear+LeakyReLU embedding of this size
    posterior_action: bool = False  # also condition the posterior on a_{t-1}
    channels_last: bool = True  # channels-last convs (faster with oneDNN on CPU and on GPUs)
    # Progressive-GAN options of the decoder (worldmodel.model.nets, worldmodel.model.decoders).
    # Training entry points switch them on from the loss config
    # (worldmodel.training.training_setup.resolve_model_config).
    pixel_norm: bool = False  # pixelwise feature normalisation after each decoder conv block
    progressive_heads: bool = False  # toRGB heads per resolution: the decoder can grow (fade-in)
    # Mathieu et al.'s coarse-to-fine decoder: N scales (S/2^(N-1) .. S), each a residual on the
    # upsampled coarser one; 1 = single scale. The anti-blur GDL and adversarial terms then act at
    # every scale. Not with progressive_heads.
    decoder_scales: int = 1
    # "dcgan": the plain one-pass decoder (mirrors the encoder's dcgan or vgg layout); "gran":
    # GRAN's recurrent canvas (worldmodel.model.gran), the frame drawn in gran_steps increments.
    decoder: str = "dcgan"
    gran_steps: int = 4  # T, GRAN's drawing steps (used by decoder="gran")
    # the decoder also predicts a mask that composites the skip frame's pixels with the generated
    # ones (m * x_skip + (1 - m) * x_gen, worldmodel.model.nets): copying is the easy start. Plain
    # decoder only (decoder="dcgan", decoder_scales=1, no progressive_heads).
    composite: bool = False

    @property
    def units(self) -> int:
        """Width of the recurrent / feed-forward layers: ``round(M * rnn_units)``."""
        return max(1, round(self.M * self.rnn_units))

    @property
    def conv_width(self) -> int:
        """First conv level width: ``round(K * nf)``."""
        return max(1, round(self.K * self.nf))

    @property
    def embed_dim(self) -> int:
        """Frame embedding size: ``round(K * g_dim)``."""
        return max(1, round(self.K * self.g_dim))

    @property
    def stochastic(self) -> bool:
        return self.variant != "lstm"

    def validate(self) -> ModelConfig:
        """Raise ValueError naming the first bad field and its allowed values; return self."""
        if self.variant not in VARIANTS:
            raise ValueError(f"model.variant={self.variant!r}; expected one of {VARIANTS}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"model.encoder={self.encoder!r}; expected one of {ENCODERS}")
        if self.decoder not in DECODERS:
            raise ValueError(f"model.decoder={self.decoder!r}; expected one of {DECODERS}")
        for name in ("M", "K"):
            value = getattr(self, name)
            if not is_number(value) or not value > 0:
                raise ValueError(f"model.{name}={value!r}; expected a number > 0")
        positive = ("rnn_units", "nf", "g_dim", "z_dim", "reward_hidden")
        positive += ("predictor_layers", "prior_layers", "posterior_layers")
        positive += ("decoder_scales", "gran_steps")
        for name in (*positive, "action_embed"):
            value, low = getattr(self, name), 0 if name == "action_embed" else 1
            if not is_int(value, low):
                raise ValueError(f"model.{name}={value!r}; expected an integer >= {low}")
        for name in ("pixel_norm", "progressive_heads", "composite"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"model.{name}={getattr(self, name)!r}; expected true or false")
        if self.decoder_scales > 1 and self.progressive_heads:
            raise ValueError(
                f"model.decoder_scales={self.decoder_scales} (multi-scale decoder) does not combine "
                "with progressive growing of the decoder; set loss.progressive.enabled=false (and "
                "model.progressive_heads=false) or model.decoder_scales=1"
            )
        if self.decoder == "gran" and self.progressive_heads:
            raise ValueError(
                "model.decoder=gran (GRAN's canvas decoder) does not support progressive growing; "
                "set loss.progressive.enabled=false (and model.progressive_heads=false) or "
                "model.decoder=dcgan"
            )
        if self.decoder == "gran" and self.decoder_scales > 1:
            raise ValueError(
                f"model.decoder=gran (GRAN's canvas decoder) does not support a multi-scale "
                f"decoder (model.decoder_scales={self.decoder_scales}); set model.decoder_scales=1 "
                "or model.decoder=dcgan"
            )
        if self.composite and (
            self.decoder != "dcgan" or self.decoder_scales > 1 or self.progressive_heads
        ):
            raise ValueError(
                "model.composite=true needs the plain decoder (model.decoder=dcgan, "
                "model.decoder_scales=1, no progressive growing: loss.progressive.enabled=false); "
                f"got decoder={self.decoder!r}, decoder_scales={self.decoder_scales}, "
                f"progressive_heads={self.progressive_heads}"
            )
        return self


# ---------------------------------------------------------------------------------------------
# state and outputs


@dataclass
class ModelState:
    """Everything the model carries from the observed past into the future; batch is dim 0.

    All tensors are float32 (also when computed under bf16 autocast), so a state can be used with
    or without autocast.

    Attributes:
        embedding: ``(B, g_dim)``, the next step's input ``h``: the encoder embedding of the last
            observed frame (or, during latent imagination, the last predicted embedding).
        skips: encoder features of the last observed frame, ``(B, w_i, S_i, S_i)`` per level
            (with ``model.composite``, then the frame itself, ``(B, C, S, S)``).
        predictor: frame predictor LSTM ``(h, c)``, each ``(B, layers, units)``; None for "cnn".
        prior: learned prior LSTM state; None unless "svg".
        posterior: posterior LSTM state; None unless "svg".
        first: ``(B, g_dim)`` embedding of the first observed frame ("cnn" only, else None).
    """

    embedding: Tensor
    skips: tuple[Tensor, ...]
    predictor: LSTMState | None = None
    prior: LSTMState | None = None
    posterior: LSTMState | None = None
    first: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.embedding.shape[0])

    def map(self, fn: Callable[[Tensor], Tensor]) -> ModelState:
        """A new state with ``fn`` applied to every tensor."""

        def pair(p: LSTMState | None) -> LSTMState | None:
            return None if p is None else (fn(p[0]), fn(p[1]))

        return ModelState(
            embedding=fn(self.embedding),
            skips=tuple(fn(s) for s in self.skips),
            predictor=pair(self.predictor),
            prior=pair(self.prior),
            posterior=pair(self.posterior),
            first=None if self.first is None else fn(self.first),
        )

    def expand(self, n: int) -> ModelState:
        """Broadcast a batch-1 state to batch ``n`` (a view, no copy); a batch-``n`` state is returned."""
        b = self.batch_size
        if b == n:
            return self
        if b != 1:
            raise ValueError(f"cannot expand a state of batch {b} to {n}; expected batch 1 or {n}")
        return self.map(lambda t: t.expand(n, *t.shape[1:]))

    def repeat_interleave(self, repeats: int) -> ModelState:
        """Each batch entry repeated ``repeats`` times in a row: ``(B, ...) -> (B * repeats, ...)``."""
        if repeats == 1:
            return self
        if self.batch_size == 1:
            return self.expand(repeats)
        return self.map(lambda t: t.repeat_interleave(repeats, dim=0))

    def index(self, i: int | slice | Tensor) -> ModelState:
        """Select batch entries; an integer keeps a batch dim of 1."""
        if isinstance(i, int):
            i = slice(i, i + 1) if i != -1 else slice(-1, None)
        return self.map(lambda t: t[i])

    def detach(self) -> ModelState:
        return self.map(Tensor.detach)

    def to(self, device: torch.device | str) -> ModelState:
        return self.map(lambda t: t.to(device))


@dataclass
class ModelOutput:
    """What the training forward pass returns: everything the objective needs.

    Attributes:
        obs: ``(B, L, C, H, W)`` the input frames as floats in [0, 1].
        frames: ``(B, L-1, C, r, r)`` predictions of frames ``1..L-1`` (teacher forcing with
            posterior ``z``; skips from frame ``min(t-1, n_past-1)`` as in SVG). ``r = H`` except
            while the decoder grows progressively (``forward(resolution=r, alpha=...)``).
        embedding: ``(B, L-1, g_dim)`` predicted embeddings ``g_t``.
        target_embedding: ``(B, L-1, g_dim)`` encoder embeddings ``E(x_t)``, detached.
        posterior_mu, posterior_logvar, prior_mu, prior_logvar: ``(B, L-1, z_dim)``; None for "lstm".
        reward: ``(B, L-1)`` predicted rewards, None when no reward target was given.
        reward_target: ``(B, L-1)`` or None.
        n_past: number of context frames.
        alpha: the decoder's fade-in of resolution ``r`` (1: no fade).
        pyramid: a multi-scale decoder's predictions at every scale, coarse to fine, each
            ``(B, L-1, C, r_k, r_k)`` (the last is ``frames``); None for a single-scale decoder.
        rollout_embedding, rollout_reward: ``forward(rollout=True)``: the open-loop rollout
            that planning imagines (:meth:`WorldModel.imagine`, one prior sample, latent
            feedback) from the ``n_past`` context frames under the true actions, predicting
            steps ``n_past..L-1``: ``(B, L-n_past, g_dim)`` and ``(B, L-n_past)`` (None without a
            reward target); their targets are ``target_embedding[:, n_past-1:]`` and
            ``reward_target[:, n_past-1:]``. None when not asked.
    """

    obs: Tensor
    frames: Tensor
    embedding: Tensor
    target_embedding: Tensor
    posterior_mu: Tensor | None
    posterior_logvar: Tensor | None
    prior_mu: Tensor | None
    prior_logvar: Tensor | None
    reward: Tensor | None
    reward_target: Tensor | None
    n_past: int
    alpha: float = 1.0
    pyramid: tuple[Tensor, ...] | None = None
    rollout_embedding: Tensor | None = None
    rollout_reward: Tensor | None = None

    @property
    def resolution(self) -> int:
        """``r``, the size of the predicted frames."""
        return int(self.frames.shape[-1])

    @property
    def target(self) -> Tensor:
        """``(B, L-1, C, r, r)`` the true frames ``1..L-1`` at the predictions' resolution
        (average-pooled while the decoder grows; ``obs[:, 1:]`` itself at full resolution)."""
        return resize_to(self.obs[:, 1:], self.resolution)

    @property
    def context(self) -> Tensor:
        """``(B, n_past, C, H, W)`` the context frames."""
        return self.obs[:, : self.n_past]


@dataclass
class Imagination:
    """Output of :meth:`WorldModel.imagine` for N candidates x S samples x H steps.

    Attributes:
        reward: ``(N, S, H)`` float32 predicted reward for ``actions[:, t]``; None without reward head.
        embedding: ``(N, S, H, g_dim)`` predicted embeddings.
        frames: ``(N, S, H, C, H_img, W_img)`` in [0, 1], or None when not decoded.
        state: the state after the last step, batch ``N * S`` (sample index fastest).
    """

    reward: Tensor | None
    embedding: Tensor
    frames: Tensor | None
    state: ModelState


# ---------------------------------------------------------------------------------------------
# building blocks


class _Recurrent(nn.Module):
    """SVG's LSTM trunk: a linear embedding, then a stacked LSTM; the state is explicit."""

    def __init__(self, in_dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.layers, self.units = layers, units
        self.embed = nn.Linear(in_dim, units)
        self.lstm = nn.LSTM(units, units, layers, batch_first=True)

    def initial_state(self, batch: int, device: torch.device) -> LSTMState:
        zeros = torch.zeros(batch, self.layers, self.units, device=device)
        return zeros, zeros

    def forward(self, x: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """``x (B, T, in)``, state ``(B, layers, units)`` x 2 -> ``(B, T, units)``, new state."""
        hx = (state[0].transpose(0, 1).contiguous(), state[1].transpose(0, 1).contiguous())
        y, (h, c) = self.lstm(self.embed(x), hx)
        return y, (h.transpose(0, 1).float(), c.transpose(0, 1).float())


class _FeedForward(nn.Module):
    """``layers`` x (Linear + LeakyReLU): the non-recurrent trunk of the "cnn" variant."""

    def __init__(self, in_dim: int, units: int, layers: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [nn.Linear(in_dim if i == 0 else units, units), nn.LeakyReLU(_SLOPE)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor, state: None = None) -> tuple[Tensor, None]:
        return self.net(x), None


def _cat(*xs: Tensor | None) -> Tensor:
    return torch.cat([x for x in xs if x is not None], dim=-1)


def _as_float(obs: Tensor) -> Tensor:
    """uint8 frames -> float in [0, 1]; float frames pass through."""
    if obs.dtype == torch.uint8:
        return obs.float().div_(255.0)
    if not obs.is_floating_point():
        raise ValueError(f"frames must be uint8 or float, got {obs.dtype}")
    return obs


# ---------------------------------------------------------------------------------------------
# the model


class WorldModel(nn.Module):
    """SVG-LP world model: encoder, decoder, (prior, posterior,) frame predictor and reward head.

    Args:
        cfg: the architecture (validated here).
        image_size: frame size ``S`` (power of two >= 32).
        action_dim: ``A``; 0 for action-free video (then there is no reward head).
        channels: frame channels ``C``.

    Missing actions (``action=None`` for a model with ``action_dim > 0``, e.g. pretraining on
    imported video) are fed as zeros.
    """

    def __init__(
        self, cfg: ModelConfig, image_size: int, action_dim: int, channels: int = 3
    ) -> None:
        super().__init__()
        cfg.validate()
        if not is_int(action_dim, 0):
            raise ValueError(f"action_dim must be an integer >= 0, got {action_dim!r}")
        self.cfg = cfg
        self.image_size, self.action_dim, self.channels = image_size, action_dim, channels
        g, z, units = cfg.embed_dim, cfg.z_dim, cfg.units
        self.g_dim = g
        self.z_dim = z if cfg.stochastic else 0

        conv = dict(
            kind=cfg.encoder,
            image_size=image_size,
            channels=channels,
            nf=cfg.conv_width,
            g_dim=g,
            channels_last=cfg.channels_last,
        )
        self.encoder = Encoder(**conv)
        # one decoder per architecture (the config refuses the combinations)
        self.decoder: Decoder | GranDecoder
        if cfg.decoder == "gran":
            self.decoder = GranDecoder(**conv, steps=cfg.gran_steps, pixel_norm=cfg.pixel_norm)
        elif cfg.progressive_heads:
            self.decoder = ProgressiveDecoder(**conv, pixel_norm=cfg.pixel_norm)
        elif cfg.decoder_scales > 1:
            self.decoder = MultiScaleDecoder(
                **conv, pixel_norm=cfg.pixel_norm, scales=cfg.decoder_scales
            )
        else:
            self.decoder = Decoder(**conv, pixel_norm=cfg.pixel_norm, composite=cfg.composite)

        if action_dim > 0 and cfg.action_embed > 0:
            self.action_net: nn.Module | None = nn.Sequential(
                nn.Linear(action_dim, cfg.action_embed), nn.LeakyReLU(_SLOPE)
            )
            a = cfg.action_embed
        else:
            self.action_net = None
            a = action_dim
        a_post = a if cfg.posterior_action else 0

        recurrent = cfg.variant != "cnn"
        trunk = _Recurrent if recurrent else _FeedForward
        first = 0 if recurrent else g  # the cnn predictor also sees the first frame
        self.predictor = trunk(g + first + self.z_dim + a, units, cfg.predictor_layers)
        self.to_embedding = nn.Sequential(nn.Linear(units, g), nn.Tanh())
        if cfg.stochastic:
            self.prior = trunk(g + a, units, cfg.prior_layers)
            self.posterior = trunk(g + a_post, units, cfg.posterior_layers)
            self.prior_head = nn.Linear(units, 2 * z)
            self.posterior_head = nn.Linear(units, 2 * z)
        else:
            self.prior = self.posterior = self.prior_head = self.posterior_head = None
        if action_dim > 0:
            self.reward_head: nn.Module | None = nn.Sequential(
                nn.Linear(units, cfg.reward_hidden),
                nn.LeakyReLU(_SLOPE),
                nn.Linear(cfg.reward_hidden, 1),
            )
        else:
            self.reward_head = None

    # -- small helpers -------------------------------------------------------------------------

    def num_params(self) -> int:
        return count_params(self)

    @property
    def has_reward(self) -> bool:
        return self.reward_head is not None

    def _actions(
        self, action: Tensor | None, batch: int, steps: int, device: torch.device
    ) -> Tensor | None:
        """``(B, T, A)`` actions (or None) -> ``(B, T, A')`` predictor/prior inputs (or None)."""
        if self.action_dim == 0:
            if action is not None and action.numel() > 0:
                raise ValueError(
                    f"this model was built with action_dim=0 but got actions of shape "
                    f"{tuple(action.shape)}; build it with the environment's action_dim"
                )
            return None
        if action is None:
            action = torch.zeros(batch, steps, self.action_dim, device=device)
        elif tuple(action.shape) != (batch, steps, self.action_dim):
            raise ValueError(
                f"actions must have shape {(batch, steps, self.action_dim)} (batch, steps, "
                f"action_dim), got {tuple(action.shape)}"
            )
        action = action.float()
        return self.action_net(action) if self.action_net is not None else action

    def _check_frames(self, x: Tensor, name: str = "obs") -> None:
        want = (self.channels, self.image_size, self.image_size)
        if x.dim() != 5 or tuple(x.shape[2:]) != want:
            raise ValueError(
                f"{name} must have shape (B, T, {want[0]}, {want[1]}, {want[2]}), got {tuple(x.shape)}"
            )

    def _encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(B, T, C, S, S)`` -> ``h (B, T, g)`` and skips ``(B, T, w_i, S_i, S_i)``, one encoder
        call; with ``model.composite`` the frames themselves follow as the last skip."""
        b, t = x.shape[:2]
        h, skips = self.encoder(x.reshape(b * t, *x.shape[2:]))
        skips = [s.view(b, t, *s.shape[1:]) for s in skips]
        if self.cfg.composite:
            skips.append(x)
        return h.view(b, t, -1), skips

    @staticmethod
    def _gaussian(head: nn.Module, features: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = head(features).float().chunk(2, dim=-1)
        return mu, logvar

    def _prior(
        self, state: LSTMState | None, h_prev: Tensor, a: Tensor | None
    ) -> tuple[Tensor, Tensor, LSTMState | None]:
        """``p(z_t | h_{t-1}, a_{t-1})`` over ``(B, T, .)`` inputs -> mu, logvar, new state."""
        y, state = self.prior(_cat(h_prev, a), state)
        return (*self._gaussian(self.prior_head, y), state)

    def _posterior(
        self, state: LSTMState | None, h_next: Tensor, a: Tensor | None
    ) -> tuple[Tensor, Tensor, LSTMState | None]:
        """``q(z_t | h_t [, a_{t-1}])`` -> mu, logvar, new state."""
        a = a if self.cfg.posterior_action else None
        y, state = self.posterior(_cat(h_next, a), state)
        return (*self._gaussian(self.posterior_head, y), state)

    def _predict(
        self, state: ModelState, h_prev: Tensor, z: Tensor | None, a: Tensor | None
    ) -> tuple[Tensor, Tensor, LSTMState | None]:
        """Frame predictor over ``(B, T, .)`` inputs -> ``g (B, T, g)``, features ``(B, T, U)``, state."""
        first = None
        if self.cfg.variant == "cnn":
            first = state.first[:, None].expand(-1, h_prev.shape[1], -1)
        y, new = self.predictor(_cat(h_prev, first, z, a), state.predictor)
        return self.to_embedding(y), y, new

    def _reward(self, features: Tensor) -> Tensor:
        return self.reward_head(features).squeeze(-1).float()

    def _initial_state(self, h0: Tensor, skips0: Sequence[Tensor]) -> ModelState:
        """State after observing a single frame: ``h0 (B, g)``, skips ``(B, w_i, S_i, S_i)``."""
        b, dev = h0.shape[0], h0.device
        recurrent = self.cfg.variant != "cnn"
        return ModelState(
            embedding=h0.float(),
            skips=tuple(s.float() for s in skips0),
            predictor=self.predictor.initial_state(b, dev) if recurrent else None,
            prior=self.prior.initial_state(b, dev) if self.cfg.variant == "svg" else None,
            posterior=self.posterior.initial_state(b, dev) if self.cfg.variant == "svg" else None,
            first=h0.float() if not recurrent else None,
        )

    @staticmethod
    def _spread(term: Tensor, steps: int) -> Tensor:
        """``(B, n_past, ...)`` per-context-frame terms -> ``(B, steps, ...)``: step ``t`` (frame
        ``t+1``) uses context frame ``min(t, n_past-1)``; the last one is broadcast, not copied."""
        n_past = term.shape[1]
        if n_past == 1:
            return term  # broadcasts over all steps
        tail = term[:, n_past - 1 :].expand(-1, steps - n_past + 1, *term.shape[2:])
        return torch.cat([term[:, : n_past - 1], tail], dim=1)

    def _sample(self, mu: Tensor, logvar: Tensor, generator: torch.Generator | None) -> Tensor:
        eps = torch.randn(mu.shape, device=mu.device, generator=generator)
        return mu + (0.5 * logvar).exp() * eps

    # -- training ------------------------------------------------------------------------------

    def forward(
        self,
        obs: Tensor,
        action: Tensor | None = None,
        reward: Tensor | None = None,
        n_past: int = 2,
        generator: torch.Generator | None = None,
        *,
        resolution: int | None = None,
        alpha: float = 1.0,
        rollout: bool = False,
    ) -> ModelOutput:
        """Teacher-forced pass over a batch of sequences (the training forward).

        Every frame ``1..L-1`` is predicted from the true previous frame's embedding and a posterior
        sample ``z_t`` (SVG). Frames ``t < n_past`` are decoded with the skips of frame ``t-1``, all
        later frames with the skips of the last context frame ``n_past - 1`` (SVG's
        ``last_frame_skip=False``).

        Args:
            obs: ``(B, L, C, S, S)`` uint8 or float in [0, 1], ``L >= 2``.
            action: ``(B, L-1, A)`` or None.
            reward: ``(B, L-1)`` or None (then no reward is predicted).
            n_past: context frames, ``1 <= n_past <= L-1``.
            generator: for the posterior samples.
            resolution, alpha: progressive growing of the decoder (needs
                ``cfg.progressive_heads`` unless ``resolution`` is None/``S`` and ``alpha`` 1):
                predict frames at ``resolution`` px with resolution ``r`` faded in by ``alpha``
                (see :meth:`worldmodel.model.decoders.ProgressiveDecoder.forward`); the default is
                the full-size path.
            rollout: also roll the model out open-loop from the context frames under the true
                actions, exactly as planning imagines (``ModelOutput.rollout_*``), so that the
                objective can train what the planner uses (``objective.rollout_weight``).
        """
        x = _as_float(obs)
        self._check_frames(x)
        b, length = x.shape[:2]
        if length < 2:
            raise ValueError(f"training sequences need at least 2 frames, got L={length}")
        if not 1 <= n_past <= length - 1:
            raise ValueError(f"n_past must be in [1, L-1] = [1, {length - 1}], got {n_past}")
        if reward is not None and tuple(reward.shape) != (b, length - 1):
            raise ValueError(f"reward must have shape {(b, length - 1)}, got {tuple(reward.shape)}")

        h, skips = self._encode(x)  # (B, L, g), (B, L, w_i, S_i, S_i)
        a = self._actions(action, b, length - 1, x.device)  # (B, L-1, A') or None
        state = self._initial_state(h[:, 0], [s[:, 0] for s in skips])
        h_prev, h_next = h[:, :-1], h[:, 1:]

        post_mu = post_logvar = prior_mu = prior_logvar = z = None
        if self.cfg.stochastic:
            post_mu, post_logvar, _ = self._posterior(state.posterior, h_next, a)
            prior_mu, prior_logvar, _ = self._prior(state.prior, h_prev, a)
            z = self._sample(post_mu, post_logvar, generator)  # (B, L-1, z)
        g, features, _ = self._predict(state, h_prev, z, a)  # (B, L-1, g), (B, L-1, U)

        # skip terms of the n_past context frames, then frame t uses context frame min(t-1, n_past-1)
        terms = self.decoder.skip_terms([s[:, :n_past] for s in skips])  # (B, n_past, ...)
        terms = [self._spread(t, length - 1) for t in terms]  # (B, L-1 or 1, ...)
        pyramid = None
        if isinstance(self.decoder, MultiScaleDecoder):  # coarse to fine, each (B, L-1, C, r, r)
            pyramid = tuple(self.decoder.pyramid(g, terms, resolution, alpha))
            frames = pyramid[-1]
        else:
            frames = self.decoder(g, terms, resolution, alpha)  # (B, L-1, C, r, r)

        predicted_reward = None
        if reward is not None and self.reward_head is not None:
            predicted_reward = self._reward(features)
        rollout_embedding = rollout_reward = None
        if rollout:
            rollout_embedding, rollout_reward = self._open_loop(x, action, n_past, generator)
            if reward is None:
                rollout_reward = None
        return ModelOutput(
            obs=x,
            frames=frames,
            embedding=g,
            target_embedding=h_next.detach(),
            posterior_mu=post_mu,
            posterior_logvar=post_logvar,
            prior_mu=prior_mu,
            prior_logvar=prior_logvar,
            reward=predicted_reward,
            reward_target=reward,
            n_past=n_past,
            alpha=float(alpha),
            rollout_embedding=rollout_embedding,
            rollout_reward=rollout_reward,
            pyramid=pyramid,
        )

    # -- inference -----------------------------------------------------------------------------

    def _open_loop(
        self, x: Tensor, action: Tensor | None, n_past: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor | None]:
        """The training forward's open-loop rollout (``forward(rollout=True)``): filter the
        context frames, then :meth:`imagine` the rest of the sequence under its true actions
        (one prior sample, latent feedback), with gradients."""
        steps = x.shape[1] - n_past
        context_actions = None if action is None else action[:, : n_past - 1]
        state = self.observe(x[:, :n_past], context_actions)
        future = None if action is None else action[:, n_past - 1 :]
        imagined = self.imagine(
            state, future, generator=generator, horizon=None if future is not None else steps
        )
        reward = imagined.reward[:, 0] if imagined.reward is not None else None
        return imagined.embedding[:, 0], reward

    def observe(
        self, obs: Tensor, action: Tensor | None = None, state: ModelState | None = None
    ) -> ModelState:
        """Filter observed frames into a state (posterior mean for ``z``).

        Args:
            obs: ``(B, T, C, S, S)`` uint8 or float, ``T >= 1``.
            action: fresh start (``state=None``): ``(B, T-1, A)``, the actions between the frames;
                continuing (``state`` given): ``(B, T, A)``, the action that led to each new frame.
                None for action-free data.
            state: a state from an earlier call to continue from, or None.

        Returns:
            The state after the last frame; its skips are those of the last frame.
        """
        x = _as_float(obs)
        self._check_frames(x)
        b, t = x.shape[:2]
        if t < 1:
            raise ValueError("observe needs at least one frame")
        h, skips = self._encode(x)  # (B, T, g), (B, T, ...)
        if state is None:
            a = self._actions(action, b, t - 1, x.device)
            state = self._initial_state(h[:, 0], [s[:, 0] for s in skips])
            h = h[:, 1:]
        else:
            if state.batch_size != b:
                raise ValueError(f"state has batch {state.batch_size} but obs has batch {b}")
            a = self._actions(action, b, t, x.device)
        if h.shape[1] == 0:
            return state

        h_prev = torch.cat([state.embedding[:, None].to(h.dtype), h[:, :-1]], dim=1)
        z = prior = posterior = None
        if self.cfg.variant == "svg":
            z, _, posterior = self._posterior(state.posterior, h, a)
            _, _, prior = self._prior(state.prior, h_prev, a)
        elif self.cfg.variant == "cnn":
            z, _, _ = self._posterior(None, h, a)
        _, _, predictor = self._predict(state, h_prev, z, a)
        return ModelState(
            embedding=h[:, -1].float(),
            skips=tuple(s[:, -1].float() for s in skips),
            predictor=predictor,
            prior=prior,
            posterior=posterior,
            first=state.first,
        )

    def imagine(
        self,
        state: ModelState,
        actions: Tensor | None,
        samples: int = 1,
        decode: bool = False,
        generator: torch.Generator | None = None,
        *,
        horizon: int | None = None,
        feedback: str = "latent",
        noise: Tensor | None = None,
    ) -> Imagination:
        """Roll the model forward under N action sequences, S samples each, from the learned prior.

        Call ``model.eval()`` first (BatchNorm then uses its running statistics, so candidates do not
        influence each other) and wrap in ``torch.no_grad()`` / ``torch.inference_mode()`` when no
        gradient is needed; run it under ``worldmodel.device.autocast`` for bf16.

        Args:
            state: from :meth:`observe`, batch 1 (broadcast to all candidates) or N.
            actions: ``(N, H, A)``; None for an action-free model (then give ``horizon``; N is the
                state's batch).
            samples: S samples of ``z`` per candidate.
            decode: also decode the frames (``Imagination.frames``).
            generator: for the prior samples.
            horizon: number of steps when ``actions`` is None.
            feedback: ``"latent"`` feeds the predicted embedding ``g_t`` back as the next input
                (never runs the encoder; runs the decoder only if ``decode``); ``"decode"`` decodes
                ``g_t`` and feeds back the re-encoded frame (SVG's generation).
            noise: standard normal noise for ``z``, broadcastable to ``(N, S, H, z_dim)`` (e.g.
                ``(1, S, H, z_dim)`` for common random numbers across candidates); default: drawn
                with ``generator``.
        """
        if feedback not in FEEDBACK:
            raise ValueError(f"feedback={feedback!r}; expected one of {FEEDBACK}")
        if not is_int(samples, 1):
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        if actions is not None:
            if actions.dim() != 3:
                raise ValueError(f"actions must be (N, H, A), got shape {tuple(actions.shape)}")
            n, steps = actions.shape[:2]
        else:
            if horizon is None:
                raise ValueError("imagine(actions=None) needs horizon=")
            n, steps = state.batch_size, horizon
        if state.batch_size not in (1, n):
            raise ValueError(f"state has batch {state.batch_size}; expected 1 or N={n}")
        s_, bs, dev = samples, state.batch_size, state.embedding.device
        rows = n * s_

        st = state.expand(n).repeat_interleave(s_) if bs == n else state.expand(rows)
        a = None
        if actions is not None:
            a = actions.to(dev).repeat_interleave(s_, dim=0)  # (N*S, H, A) sample index fastest
        a = self._actions(a, rows, steps, dev)
        if noise is not None and self.z_dim > 0:
            noise = noise.to(dev).expand(n, s_, steps, self.z_dim).reshape(rows, steps, self.z_dim)
        need_frames = decode or feedback == "decode"
        terms = None
        if need_frames:  # skip terms of the state's frame, once: (Bs, 1, ...) broadcasts to (N, S)
            terms = self.decoder.skip_terms([x[:, None] for x in state.skips])

        emb = st.embedding
        predictor, prior = st.predictor, st.prior
        embeddings, rewards, frames = [], [], []
        for t in range(steps):
            at = None if a is None else a[:, t : t + 1]  # (N*S, 1, A')
            h_prev = emb[:, None]  # (N*S, 1, g)
            z = None
            if self.cfg.stochastic:
                mu, logvar, prior = self._prior(prior, h_prev, at)
                eps = (
                    noise[:, t : t + 1]
                    if noise is not None
                    else torch.randn(mu.shape, device=dev, generator=generator)
                )
                z = mu + (0.5 * logvar).exp() * eps
            step_state = dataclasses.replace(st, predictor=predictor)
            g, features, predictor = self._predict(step_state, h_prev, z, at)
            g = g[:, 0]  # (N*S, g)
            embeddings.append(g)
            if self.reward_head is not None:
                rewards.append(self._reward(features[:, 0]))
            if need_frames:
                frame = self.decoder(g.view(n, s_, -1), terms)  # (N, S, C, H, W)
                if decode:
                    frames.append(frame)
                if feedback == "decode":
                    g, _ = self.encoder(frame.reshape(rows, *frame.shape[2:]))
            emb = g

        final = dataclasses.replace(st, embedding=emb.float(), predictor=predictor, prior=prior)
        return Imagination(
            reward=torch.stack(rewards, -1).view(n, s_, steps) if rewards else None,
            embedding=torch.stack(embeddings, 1).float().view(n, s_, steps, -1),
            frames=torch.stack(frames, 2).float() if decode else None,
            state=final,
        )
