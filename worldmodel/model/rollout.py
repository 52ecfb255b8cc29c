"""Fused latent imagination for planning: the function of ``WorldModel.imagine`` with less work.

:class:`LatentRollout` computes what :meth:`worldmodel.model.svg.WorldModel.imagine` computes with
``decode=False, feedback="latent"`` (rewards, embeddings, final state; the same prior samples for
the same generator or noise), up to float rounding (about 1e-7), for the ``svg``, ``lstm`` and
``cnn`` variants. The planner's latent-reward objective runs it (``agents/objectives.py``). The
trained function is unchanged; only the arithmetic is arranged differently:

* **Folded input layers.** SVG's LSTM trunks are ``LSTM(Linear(x))`` with nothing in between, so
  the embedding is folded into the first LSTM layer once: ``W_ih (W_e x + b_e) + b = (W_ih W_e) x
  + (W_ih b_e + b)``.
* **One GEMM per step for both inputs.** The prior and the predictor both read ``[g_{t-1},
  a_{t-1}]``: one matrix ``(g + a + 1) x (4U_prior + 4U_predictor)`` (the last row holds the
  biases, multiplied by a constant 1 column), accumulated in place onto the recurrent terms.
* **No bias passes, no per-step allocations.** Every gate pre-activation is accumulated in place
  (``addmm_``, BLAS ``beta = 1``) in a work buffer allocated once per call: the recurrent term
  ``h_{t-1} W_hh``, the input term, ``z W_z``; biases ride on constant-1 columns.
* **Constants once per plan.** :meth:`LatentRollout.prepare` projects the observed state (first
  input embedding, recurrent states, the ``cnn`` variant's first-frame embedding) once, at the
  state's batch (1), for every CEM iteration of a plan; the candidates broadcast it (no
  ``repeat_interleave`` of the state).
* **Hand-written LSTM cell**, in place, with ``tanh(x) = 2 sigmoid(2x) - 1`` (the factor 2 is
  folded into the weights, exactly): ``nn.LSTM`` costs milliseconds per single-step call at batch
  1000 on a CPU (oneDNN primitive set-up), and ``torch.tanh`` runs about 8x slower than
  ``torch.sigmoid`` per element on this project's CPUs.

At ``M = K = 1`` one imagined step is about 3.0 MFLOP per candidate instead of 3.6, and almost all
of the time is in GEMMs (``bench/bench_planner.py`` prints the fraction of the measured peak).

The fused weights are copies derived from the model's parameters when a :class:`LatentRollout` is
built; :func:`latent_rollout` keeps one per model and rebuilds it when a parameter changed (an
optimiser step bumps the parameters' version counters), so a training loop never plans with stale
weights.

Example::

    rollout = latent_rollout(model)           # None if model.imagine must be used instead
    plan = rollout.prepare(state)             # once per plan (state: batch 1 or N)
    with torch.inference_mode():
        out = rollout.run(plan, actions, samples=1, generator=g)   # = model.imagine(...)
        out.reward  # (N, S, H)
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmcommon.checks import is_int
from worldmodel.model.svg import Imagination, ModelState, WorldModel

__all__ = ["LatentRollout", "PreparedState", "latent_rollout", "supports"]


class _Unsupported(Exception):
    """The model's layout is not the one this module fuses."""


def _linears(seq: nn.Module | None) -> tuple[list[nn.Linear], float | None]:
    """``Sequential(Linear, LeakyReLU, Linear, LeakyReLU, ...)`` -> the Linears and the slope."""
    if not isinstance(seq, nn.Sequential):
        raise _Unsupported("expected an nn.Sequential")
    linears, slope = [], None
    for i, mod in enumerate(seq.children()):
        if i % 2 == 0:
            if not isinstance(mod, nn.Linear) or mod.bias is None:
                raise _Unsupported(f"expected Linear with bias, got {type(mod).__name__}")
            linears.append(mod)
        else:
            if not isinstance(mod, nn.LeakyReLU):
                raise _Unsupported(f"expected LeakyReLU, got {type(mod).__name__}")
            if slope is not None and mod.negative_slope != slope:
                raise _Unsupported("mixed LeakyReLU slopes")
            slope = mod.negative_slope
    if not linears:
        raise _Unsupported("empty Sequential")
    return linears, slope


def _check_layout(model: WorldModel) -> None:
    """Raise :class:`_Unsupported` unless the modules are the ones ``svg.py`` builds."""
    cfg = model.cfg
    trunks = [model.predictor] + ([model.prior] if cfg.stochastic else [])
    for trunk in trunks:
        if cfg.variant != "cnn":
            lstm, embed = getattr(trunk, "lstm", None), getattr(trunk, "embed", None)
            if not isinstance(lstm, nn.LSTM) or not isinstance(embed, nn.Linear):
                raise _Unsupported("trunk is not Linear + nn.LSTM")
            if not lstm.bias or not lstm.batch_first or lstm.bidirectional or lstm.proj_size:
                raise _Unsupported("LSTM options")
            if lstm.input_size != embed.out_features or lstm.input_size != lstm.hidden_size:
                raise _Unsupported("LSTM sizes")
        else:
            _linears(getattr(trunk, "net", None))
    to_emb = list(model.to_embedding.children())
    if (
        len(to_emb) != 2
        or not isinstance(to_emb[0], nn.Linear)
        or not isinstance(to_emb[1], nn.Tanh)
    ):
        raise _Unsupported("to_embedding is not Linear + Tanh")
    if cfg.stochastic and not isinstance(model.prior_head, nn.Linear):
        raise _Unsupported("prior head is not a Linear")
    if model.reward_head is not None:
        linears, _ = _linears(model.reward_head)
        if len(linears) != 2 or linears[1].out_features != 1:
            raise _Unsupported("reward head is not Linear, LeakyReLU, Linear(., 1)")
    if model.action_net is not None:
        _linears(model.action_net)


def supports(model: object) -> bool:
    """Whether :class:`LatentRollout` reproduces ``model.imagine``: a :class:`WorldModel` whose
    ``imagine`` is not overridden and whose trunks have the layout built in ``svg.py``."""
    if not isinstance(model, WorldModel) or type(model).imagine is not WorldModel.imagine:
        return False
    try:
        _check_layout(model)
    except _Unsupported:
        return False
    return True


def _gates(w: Tensor, units: int) -> Tensor:
    """LSTM gate rows (i, f, g, o) -> (i, f, o, 2 g): one sigmoid then covers all four gates,
    ``tanh(g) = 2 sigmoid(2 g) - 1`` (scaling by 2 is exact in floating point)."""
    i, f, g, o = w.split(units, dim=0)
    return torch.cat([i, f, o, 2 * g], dim=0)


def _lstm_cell_(
    x: Tensor, gates: tuple[Tensor, Tensor, Tensor, Tensor], d: Tensor, h: Tensor, tmp: Tensor
) -> None:
    """One LSTM cell, in place, on fused gate pre-activations ``x (R, 4U)`` in :func:`_gates`
    order (overwritten by their sigmoids; ``gates`` are the four ``(R, U)`` views of ``x``).

    The cell state is kept as ``d = -2 c`` (exact), so that with ``tanh(y) = 2 sigmoid(2y) - 1``
    a cell is six element-wise passes and no ``tanh``::

        d' = f d - 4 i sigmoid(2 g) + 2 i          (= -2 c',  c' = f c + i tanh(g))
        h' = o - 2 o sigmoid(d')                   (= o tanh(c'))

    ``d (R, U)`` is updated, ``h (R, U)`` written, ``tmp (R, U)`` is scratch.
    """
    x.sigmoid_()
    i, f, o, g2 = gates
    d.mul_(f).addcmul_(i, g2, value=-4.0).add_(i, alpha=2.0)
    torch.sigmoid(d, out=tmp)
    torch.addcmul(o, o, tmp, value=-2.0, out=h)


@dataclass
class _Layer:
    """One layer of a fused trunk (weights as ``(in, out)`` matrices for ``x @ w``).

    ``w_in``: layers >= 1, ``(U + 1, D)`` input weights with the bias as the last row (the layer
    below's output carries a constant 1 column); None for layer 0 (its input is the fused input
    GEMM). ``b_in``: the same bias alone, ``(D,)`` (feed-forward layers). ``w_hh``: ``(U, 4U)``
    recurrent weights (None for feed-forward layers).
    """

    w_in: Tensor | None
    b_in: Tensor | None
    w_hh: Tensor | None


@dataclass
class _Trunk:
    units: int
    width: int  # D: 4U for an LSTM layer, U for a feed-forward one
    layers: list[_Layer]
    head_w: Tensor  # (U, C) the heads read the top layer (prior: mu, logvar; predictor: g, reward)
    head_b: Tensor  # (C,)
    slope: float  # LeakyReLU slope of a feed-forward trunk


@dataclass
class _Work:
    """Per-call buffers of one layer: ``x (rows, D)`` its pre-activations (for layer 0 a view of
    the fused input buffer), ``h`` the ``(rows, U)`` output view of ``h_full (rows, U + 1)`` whose
    last column is 1, and for an LSTM layer ``d`` the cell state as ``-2 c``, the gate views,
    the scratch ``tmp`` and ``init`` the state's recurrent term (layers >= 1)."""

    x: Tensor | None
    h: Tensor
    h_full: Tensor
    w_in: Tensor | None
    w_hh: Tensor | None = None
    d: Tensor | None = None
    gates: tuple[Tensor, ...] | None = None
    tmp: Tensor | None = None
    init: Tensor | None = None


@dataclass
class PreparedState:
    """Per-plan constants of :meth:`LatentRollout.prepare`; batch ``B`` = the state's batch.

    Attributes:
        state: the observed state.
        first_in: ``(B, D)`` the first step's fused input term: the state's embedding projected,
            the biases, the layer-0 recurrent terms, the ``cnn`` first-frame term.
        step_bias: ``(B or 1, D)`` the ``cnn`` variant's per-step input bias with its
            first-frame term (None for the recurrent variants: their biases are in the weights).
        gates: per trunk, per layer >= 1: ``(B, 4U)`` the state's ``h`` times ``W_hh``.
        cells: per trunk, per layer: ``(B, U)`` the state's ``c``.
    """

    state: ModelState
    first_in: Tensor
    step_bias: Tensor | None
    gates: dict[str, list[Tensor]]
    cells: dict[str, list[Tensor]]


class LatentRollout:
    """Fused weights of a :class:`WorldModel` for latent imagination (see the module docstring).

    Args:
        model: a world model for which :func:`supports` is true. Its parameters are read once,
            here; build a new one (or use :func:`latent_rollout`) after they change.
    """

    def __init__(self, model: WorldModel) -> None:
        if not supports(model):
            raise ValueError(
                "LatentRollout needs a worldmodel.model.svg.WorldModel with the layout of svg.py, "
                f"got {type(model).__name__}; use model.imagine instead"
            )
        self._model = weakref.ref(model)  # the cache below must not keep the model alive
        cfg = model.cfg
        self.recurrent = cfg.variant != "cnn"
        self.g_dim, self.z_dim = model.g_dim, model.z_dim
        self.has_actions = model.action_dim > 0
        self.has_reward = model.reward_head is not None
        self.a_dim = 0
        if self.has_actions:
            self.a_dim = cfg.action_embed if model.action_net is not None else model.action_dim
        self._by_dtype: dict[torch.dtype, dict[str, Tensor]] = {}
        device_type = next(model.parameters()).device.type
        with torch.no_grad(), torch.autocast(device_type, enabled=False):  # float32 weights
            self._build(model)

    @property
    def model(self) -> WorldModel:
        model = self._model()
        if model is None:
            raise RuntimeError("the WorldModel of this LatentRollout no longer exists")
        return model

    # -- construction --------------------------------------------------------------------------

    def _first_layer(self, trunk: nn.Module) -> tuple[Tensor, Tensor]:
        """The trunk's first layer as one affine map of its raw input ``[g, (first,) (z,) a]``:
        ``(D, in)``, ``(D,)`` (an LSTM's in :func:`_gates` order, with both of its biases)."""
        if self.recurrent:
            lstm, embed, u = trunk.lstm, trunk.embed, trunk.units
            w_ih = lstm.weight_ih_l0.float()
            w = w_ih @ embed.weight.float()
            b = w_ih @ embed.bias.float() + lstm.bias_ih_l0.float() + lstm.bias_hh_l0.float()
            return _gates(w, u), _gates(b, u)
        first = _linears(trunk.net)[0][0]
        return first.weight.float(), first.bias.float()

    def _trunk(self, trunk: nn.Module, head_w: Tensor, head_b: Tensor) -> _Trunk:
        layers = []
        if self.recurrent:
            lstm, u = trunk.lstm, trunk.units
            for k in range(trunk.layers):
                w_in = b_in = None
                if k > 0:
                    w = _gates(getattr(lstm, f"weight_ih_l{k}").float(), u)  # (4U, U)
                    b_in = _gates(
                        getattr(lstm, f"bias_ih_l{k}").float()
                        + getattr(lstm, f"bias_hh_l{k}").float(),
                        u,
                    )
                    w_in = torch.cat([w.t(), b_in[None]], 0).contiguous()  # (U + 1, 4U)
                w_hh = _gates(getattr(lstm, f"weight_hh_l{k}").float(), u).t().contiguous()
                layers.append(_Layer(w_in, b_in, w_hh))
            width = 4 * u
        else:
            linears, _ = _linears(trunk.net)
            u = linears[0].out_features
            for k, lin in enumerate(linears):
                w_in = b_in = None
                if k > 0:
                    b_in = lin.bias.float().contiguous()
                    w_in = torch.cat([lin.weight.float().t(), b_in[None]], 0).contiguous()
                layers.append(_Layer(w_in, b_in, None))
            width = u
        slope = 0.0 if self.recurrent else (_linears(trunk.net)[1] or 0.0)
        return _Trunk(u, width, layers, head_w.t().contiguous(), head_b.contiguous(), slope)

    def _build(self, model: WorldModel) -> None:
        g, z, a = self.g_dim, self.z_dim, self.a_dim
        first = 0 if self.recurrent else g

        # heads of the predictor's top layer: the embedding (pre-activation doubled, so that
        # tanh(x) = 2 sigmoid(2x) - 1) and the reward head's hidden layer
        emb = list(model.to_embedding.children())[0]
        pred_w, pred_b = [2 * emb.weight.float()], [2 * emb.bias.float()]
        if self.has_reward:
            (r1, r2), slope = _linears(model.reward_head)
            pred_w.append(r1.weight.float())
            pred_b.append(r1.bias.float())
            self.reward_slope = slope if slope is not None else 0.0
            self.reward_hidden = r1.out_features
            self.reward_w = r2.weight.float()[0].contiguous()  # (R,)
            self.reward_b = r2.bias.float().contiguous()  # (1,)

        # the fused input projection of [g, a, 1] for (prior, predictor); svg.py's input order
        # is [g, a] for the prior and [g, first, z, a] for the predictor
        names, w_g, w_a, b_in = [], [], [], []
        self.trunks: dict[str, _Trunk] = {}
        if model.cfg.stochastic:
            wp, bp = self._first_layer(model.prior)
            names.append("prior")
            w_g.append(wp[:, :g])
            w_a.append(wp[:, g : g + a])
            b_in.append(bp)
            # the prior head's log-variance rows halved (exact): exp of it is the std
            half = torch.ones(2 * z, 1)
            half[z:] = 0.5
            head = model.prior_head
            self.trunks["prior"] = self._trunk(
                model.prior, half * head.weight.float(), half[:, 0] * head.bias.float()
            )
        wq, bq = self._first_layer(model.predictor)
        names.append("predictor")
        w_g.append(wq[:, :g])
        w_a.append(wq[:, g + first + z :])
        b_in.append(bq)
        self.trunks["predictor"] = self._trunk(
            model.predictor, torch.cat(pred_w, 0), torch.cat(pred_b, 0)
        )
        self.names = names
        self.d_prior = self.trunks["prior"].width if "prior" in self.trunks else 0

        w_g_t = torch.cat(w_g, 0).t()  # (g, D)
        w_a_t = torch.cat(w_a, 0).t()  # (a, D)
        self.b_in = torch.cat(b_in).contiguous()  # (D,)
        self.w_in_g = w_g_t.contiguous()  # for the observed embedding (first step)
        self.w_in_a = w_a_t.contiguous() if a else None
        # later steps feed back s = sigmoid(2 y) instead of g = tanh(y) = 2 s - 1:
        # W g + b = (2 W) s + (b - W 1)
        self.b_in_s = (self.b_in - w_g_t.sum(0)).contiguous()
        # recurrent variants: biases as the last row, input [s, a, 1]; cnn: input [s, a]
        parts = [2 * w_g_t, w_a_t] + ([self.b_in_s[None]] if self.recurrent else [])
        self.w_in = torch.cat(parts, 0).contiguous()
        self.w_first = wq[:, g : g + first].t().contiguous() if first else None  # (g, Dq)
        self.w_z = wq[:, g + first : g + first + z].t().contiguous() if z else None  # (z, Dq)

    # -- per plan ------------------------------------------------------------------------------

    def prepare(self, state: ModelState) -> PreparedState:
        """Project the observed state once (batch 1 or N); reuse it for every call of a plan.
        Always float32 (autocast is switched off here)."""
        device_type = state.embedding.device.type
        with torch.no_grad(), torch.autocast(device_type, enabled=False):
            step_bias = None
            bias = self.b_in[None]  # (1, D)
            if self.w_first is not None:  # cnn: the first frame enters every predictor step
                extra = state.first.float() @ self.w_first  # (B, Dq)
                d_q = extra.shape[1]

                def with_first(b: Tensor) -> Tensor:
                    return torch.cat([b[:, :-d_q].expand(len(extra), -1), b[:, -d_q:] + extra], 1)

                bias, step_bias = with_first(bias), with_first(self.b_in_s[None])
            first_in = torch.addmm(bias, state.embedding.float(), self.w_in_g)  # (B, D)
            gates: dict[str, list[Tensor]] = {}
            cells: dict[str, list[Tensor]] = {}
            if self.recurrent:
                col = 0
                for name in self.names:
                    trunk = self.trunks[name]
                    h, c = getattr(state, name)  # (B, layers, U)
                    rec = [h[:, k].float() @ layer.w_hh for k, layer in enumerate(trunk.layers)]
                    first_in[:, col : col + trunk.width] += rec[0]
                    col += trunk.width
                    gates[name] = rec[1:]
                    cells[name] = [c[:, k].float() for k in range(len(trunk.layers))]
        return PreparedState(state, first_in, step_bias, gates, cells)

    # -- the rollout ---------------------------------------------------------------------------

    def run(
        self,
        prepared: PreparedState,
        actions: Tensor | None,
        samples: int = 1,
        generator: torch.Generator | None = None,
        *,
        horizon: int | None = None,
        noise: Tensor | None = None,
    ) -> Imagination:
        """``model.imagine(state, actions, samples, decode=False, generator=generator,
        horizon=horizon, noise=noise)`` for the state given to :meth:`prepare`: the same
        arguments and checks, the same output (``frames`` is None)."""
        model, state = self.model, prepared.state
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
        if steps < 1:
            raise ValueError(f"the horizon must be >= 1, got {steps}")
        bs, dev = state.batch_size, state.embedding.device
        if bs not in (1, n):
            raise ValueError(f"state has batch {bs}; expected 1 or N={n}")
        s_ = samples
        rows = n * s_

        def per_row(t: Tensor) -> Tensor:
            """``(B, ...)`` per state row -> ``(1 or rows, ...)``, sample index fastest."""
            return t if t.shape[0] == 1 or s_ == 1 else t.repeat_interleave(s_, dim=0)

        a = None
        if actions is not None:
            a = model._actions(actions.to(dev), n, steps, dev)  # (N, H, A') checked, embedded
            if a is not None and s_ > 1:
                a = a.repeat_interleave(s_, dim=0)  # (N*S, H, A')
        elif self.has_actions:
            a = model._actions(None, rows, steps, dev)  # zeros
        if noise is not None and self.z_dim > 0:
            noise = noise.to(dev).expand(n, s_, steps, self.z_dim).reshape(rows, steps, self.z_dim)

        # GEMMs in the autocast dtype if any (the cell states stay float32); the dtypes are
        # explicit below, so autocast itself is switched off
        dtype = torch.float32
        if torch.is_autocast_enabled(dev.type):
            dtype = torch.get_autocast_dtype(dev.type)
        with torch.autocast(dev.type, enabled=False):
            return self._rollout(prepared, a, noise, generator, n, s_, steps, dtype, per_row)

    def _rollout(self, prepared, a, noise, generator, n, s_, steps, dtype, per_row) -> Imagination:
        """The loop of :meth:`run` over checked arguments: ``a (rows, H, A')`` or None, ``noise
        (rows, H, z)`` or None."""
        state, dev = prepared.state, prepared.state.embedding.device
        bs, rows = state.batch_size, n * s_
        g, ad = self.g_dim, self.a_dim
        w = self._weights(dtype)
        f32 = torch.float32

        def cast(t: Tensor) -> Tensor:
            return t if t.dtype == dtype else t.to(dtype)

        # work buffers and their views, made once per call
        inp = torch.empty(rows, g + ad + 1, device=dev, dtype=dtype)  # [g, a, 1]
        inp[:, g + ad :] = 1.0
        emb, act = inp[:, :g], inp[:, g : g + ad]
        gin = torch.empty(rows, w["w_in"].shape[1], device=dev, dtype=dtype)
        layers: dict[str, list[_Work]] = {}
        col = 0
        for name in self.names:
            trunk, ws = self.trunks[name], w[name]
            u = trunk.units
            tmp = torch.empty(rows, u, device=dev, dtype=f32) if self.recurrent else None
            layers[name] = []
            for k, layer_w in enumerate(ws["layers"]):
                h_full = torch.empty(rows, u + 1, device=dev, dtype=dtype)
                h_full[:, u:] = 1.0  # the constant column that carries the next layer's bias
                if k == 0:
                    x = gin[:, col : col + trunk.width]
                    col += trunk.width
                elif self.recurrent:
                    x = torch.empty(rows, trunk.width, device=dev, dtype=dtype)
                else:
                    x = None
                work = _Work(x=x, h=h_full[:, :u], h_full=h_full, w_in=layer_w["w_in"])
                if self.recurrent:
                    work.w_hh, work.tmp = layer_w["w_hh"], tmp
                    work.gates = tuple(x.split(u, dim=1))
                    c0 = per_row(prepared.cells[name][k]).to(f32)
                    work.d = (-2.0 * c0).expand(rows, -1).clone()  # the cell state as -2 c
                    if k > 0:
                        work.init = cast(per_row(prepared.gates[name][k - 1]))
                layers[name].append(work)
        first_in = cast(per_row(prepared.first_in))
        step_bias = None if prepared.step_bias is None else cast(per_row(prepared.step_bias))
        x_q = gin[:, self.d_prior :]
        # the predictor's heads of every step: embedding pre-activation (doubled) | reward hidden
        heads = torch.empty(rows, steps, w["predictor"]["head_w"].shape[1], device=dev, dtype=dtype)

        for t in range(steps):
            last = t == steps - 1
            at = None if a is None else a[:, t]  # (rows, A')
            # the fused input term of layer 0 of every trunk -> gin (rows, D)
            if t == 0:
                if at is None:
                    gin.copy_(first_in.expand(rows, -1))
                else:
                    torch.addmm(first_in, cast(at), w["w_in_a"], out=gin)
            else:
                if at is not None:
                    act.copy_(at)
                if self.recurrent:  # gin holds the recurrent terms: accumulate in place
                    gin.addmm_(inp, w["w_in"])
                else:
                    torch.addmm(step_bias, inp[:, : g + ad], w["w_in"], out=gin)
            if "prior" in layers:
                top = self._trunk_step(self.trunks["prior"], layers["prior"], t, last)
                head = torch.addmm(w["prior"]["head_b"], top, w["prior"]["head_w"])
                mu, half_logvar = head[:, : self.z_dim], head[:, self.z_dim :]
                if dtype != f32:
                    mu, half_logvar = mu.float(), half_logvar.float()
                eps = (
                    noise[:, t]
                    if noise is not None
                    else torch.randn(mu.shape, device=dev, generator=generator)
                )
                z = torch.addcmul(mu, half_logvar.exp_(), eps)  # mu + std eps: (rows, z)
                x_q.addmm_(cast(z), w["w_z"])
            top = self._trunk_step(self.trunks["predictor"], layers["predictor"], t, last)
            head = torch.addmm(
                w["predictor"]["head_b"], top, w["predictor"]["head_w"], out=heads[:, t]
            )
            if not last:  # feedback s = sigmoid(2 y); the input weights take 2 s - 1 = tanh(y)
                torch.sigmoid(head[:, :g], out=emb)

        # every step's embedding and reward at once
        embeddings = torch.sigmoid(heads[..., :g].float()).mul_(2.0).sub_(1.0)  # tanh
        rewards = None
        if self.has_reward:
            hid = F.leaky_relu(heads[..., g:], self.reward_slope)  # (rows, H, R)
            rewards = torch.matmul(hid, w["reward_w"]).add_(w["reward_b"]).float()  # (rows, H)

        st = state.expand(n).repeat_interleave(s_) if bs == n else state.expand(rows)
        final = dataclasses.replace(st, embedding=embeddings[:, -1].clone())
        if self.recurrent:
            for name, works in layers.items():
                h = torch.stack([x.h.float() for x in works], 1)
                c = torch.stack([x.d * -0.5 for x in works], 1)
                final = dataclasses.replace(final, **{name: (h, c)})
        return Imagination(
            reward=None if rewards is None else rewards.view(n, s_, steps),
            embedding=embeddings.view(n, s_, steps, g),
            frames=None,
            state=final,
        )

    def _trunk_step(self, trunk: _Trunk, works: list[_Work], t: int, last: bool) -> Tensor:
        """One step of a trunk whose layer-0 pre-activation is in ``works[0].x`` (overwritten);
        returns the top layer's output ``(rows, U)``. For a recurrent trunk, also writes the next
        step's recurrent terms (``h_t W_hh``) into the pre-activation buffers."""
        below = None
        for k, work in enumerate(works):
            if self.recurrent:
                x = work.x
                if k > 0:  # x holds h_{t-1} W_hh of this layer (the state's at t = 0)
                    if t == 0:
                        x.copy_(work.init.expand_as(x))
                    x.addmm_(below.h_full, work.w_in)  # + input term and bias
                _lstm_cell_(x, work.gates, work.d, work.h, work.tmp)
                if not last:  # the next step's recurrent term, into the same buffer
                    torch.mm(work.h, work.w_hh, out=x)
            else:
                x = works[0].x if k == 0 else torch.mm(below.h_full, work.w_in)
                work.h.copy_(F.leaky_relu(x, trunk.slope))
            below = work
        return works[-1].h

    def _weights(self, dtype: torch.dtype) -> dict:
        """Every fused weight in ``dtype`` (cached per dtype): ``w_in``, ``w_in_a``, ``w_z``,
        ``reward_w``, ``reward_b`` and per trunk ``head_w``, ``head_b``, ``layers[k]["w_in" |
        "w_hh"]``."""
        if dtype not in self._by_dtype:

            def cast(t: Tensor | None) -> Tensor | None:
                return None if t is None else t.to(dtype)

            w: dict = {"w_in": cast(self.w_in), "w_in_a": cast(self.w_in_a), "w_z": cast(self.w_z)}
            if self.has_reward:
                w["reward_w"], w["reward_b"] = cast(self.reward_w), cast(self.reward_b)
            for name, trunk in self.trunks.items():
                w[name] = {
                    "head_w": cast(trunk.head_w),
                    "head_b": cast(trunk.head_b),
                    "layers": [{"w_in": cast(x.w_in), "w_hh": cast(x.w_hh)} for x in trunk.layers],
                }
            with torch.no_grad():
                self._by_dtype[dtype] = w
        return self._by_dtype[dtype]

    def imagine(
        self,
        state: ModelState,
        actions: Tensor | None,
        samples: int = 1,
        generator: torch.Generator | None = None,
        *,
        horizon: int | None = None,
        noise: Tensor | None = None,
    ) -> Imagination:
        """:meth:`prepare` then :meth:`run` (one call; a plan of several calls should prepare
        once)."""
        return self.run(
            self.prepare(state), actions, samples, generator, horizon=horizon, noise=noise
        )


_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, LatentRollout]] = (
    weakref.WeakKeyDictionary()
)


def _signature(model: nn.Module) -> tuple:
    """Changes whenever a parameter is modified in place (optimiser step), replaced or moved."""
    return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in model.parameters())


def latent_rollout(model: object) -> LatentRollout | None:
    """The :class:`LatentRollout` of ``model`` (cached, rebuilt when its parameters changed), or
    None when :func:`supports` says that ``model.imagine`` must be used."""
    if not supports(model):
        return None
    sig = _signature(model)
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == sig:
        return hit[1]
    rollout = LatentRollout(model)
    _CACHE[model] = (sig, rollout)
    return rollout
