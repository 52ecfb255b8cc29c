"""Training-step throughput of the world model on this machine, against its measured peak.

Prints, for batch 16 x 12 frames at 64x64:

* the machine's measured peak: a 3x3 conv (the best case for convolutions) and torch.mm 2048^2,
  fp32 and bf16;
* FLOPs of one training step (forward + backward), counted with torch.utils.flop_counter;
* seconds per step, frames/s and the fraction of the conv peak reached, fp32 and bf16, for the
  default model (configs/model/svg.yaml) and for SVG-LP's original size (nf 64, g_dim 128, 256 LSTM
  units, z 64: 12.6M parameters), and for the same model trained the way the original SVG code
  does it (:class:`SVGBaseline`: a per-time-step loop encoding every frame twice, fp32, NCHW; the
  original code was timed at ~2.8 s/step, ~442 GFLOP, on this machine), in the same run;
* a latent imagination rollout of 1000 candidates x 12 steps (the planner's inner loop);
* the parameter count for M in {1, 2, 3} x K in {1, ..., 5} (built on the meta device).

Run: ``.venv/bin/python bench/bench_train.py`` (``--steps N`` timed steps, ``--threads N``).
The machine may be shared: the minimum and median of the timed steps are both printed; compare
numbers from the same run (the peaks are measured in it too).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from worldmodel.data import Batch
from worldmodel.device import autocast, cpu_has_native_bf16
from worldmodel.svg import ModelConfig, WorldModel
from worldmodel.train import ObjectiveConfig, TrainConfig, Trainer

B, L, SIZE, A = 16, 12, 64, 6


def timeit(fn, steps: int, warmup: int = 1) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def peaks(dtype: torch.dtype | None) -> tuple[float, float]:
    """(conv3x3, mm) GFLOP/s: conv 128->128 at 32x32, batch 32, channels-last; mm 2048^2."""
    x = torch.randn(32, 128, 32, 32).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3).contiguous(memory_format=torch.channels_last)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    if dtype is not None:
        x, w, a, b = x.to(dtype), w.to(dtype), a.to(dtype), b.to(dtype)
    conv_flops = 2 * 32 * 128 * 128 * 9 * 32 * 32
    t_conv, _ = timeit(lambda: F.conv2d(x, w, padding=1), 5)
    t_mm, _ = timeit(lambda: torch.mm(a, b), 5)
    return conv_flops / t_conv / 1e9, 2 * 2048**3 / t_mm / 1e9


class SVGBaseline(nn.Module):
    """The structure of the original SVG-LP training step, for a same-run timing comparison.

    SVG-LP's BAIR model (DCGAN 64x64, nf 64, g_dim 128, 256 LSTM units, z 64) trained the way the
    original code does: a Python loop over time that encodes x_{t-1} and x_t separately at every
    step, LSTM cells stepped one at a time, a decoder on ``cat([d, skip])``, fp32, NCHW.
    """

    def __init__(self, nf: int = 64, g: int = 128, rnn: int = 256, z: int = 64) -> None:
        super().__init__()

        def down(i: int, o: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(i, o, 4, 2, 1), nn.BatchNorm2d(o), nn.LeakyReLU(0.2))

        def up(i: int, o: int) -> nn.Module:
            return nn.Sequential(
                nn.ConvTranspose2d(i, o, 4, 2, 1), nn.BatchNorm2d(o), nn.LeakyReLU(0.2)
            )

        self.g, self.z = g, z
        self.enc = nn.ModuleList([down(3, nf), down(nf, 2 * nf), down(2 * nf, 4 * nf)])
        self.enc.append(down(4 * nf, 8 * nf))
        self.enc_out = nn.Sequential(nn.Conv2d(8 * nf, g, 4), nn.BatchNorm2d(g), nn.Tanh())
        self.dec_in = nn.Sequential(
            nn.ConvTranspose2d(g, 8 * nf, 4), nn.BatchNorm2d(8 * nf), nn.LeakyReLU(0.2)
        )
        self.dec = nn.ModuleList([up(16 * nf, 4 * nf), up(8 * nf, 2 * nf), up(4 * nf, nf)])
        self.dec_out = nn.Sequential(nn.ConvTranspose2d(2 * nf, 3, 4, 2, 1), nn.Sigmoid())
        self.pred_in, self.pred_out = nn.Linear(g + z, rnn), nn.Linear(rnn, g)
        self.pred = nn.ModuleList([nn.LSTMCell(rnn, rnn), nn.LSTMCell(rnn, rnn)])
        self.post_in, self.post, self.post_out = (
            nn.Linear(g, rnn),
            nn.LSTMCell(rnn, rnn),
            nn.Linear(rnn, 2 * z),
        )
        self.prior_in, self.prior, self.prior_out = (
            nn.Linear(g, rnn),
            nn.LSTMCell(rnn, rnn),
            nn.Linear(rnn, 2 * z),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips = []
        for layer in self.enc:
            x = layer(x)
            skips.append(x)
        return self.enc_out(x).flatten(1), skips

    def decode(self, g: Tensor, skips: list[Tensor]) -> Tensor:
        d = self.dec_in(g[:, :, None, None])
        for layer, s in zip(self.dec, skips[:0:-1], strict=True):
            d = layer(torch.cat([d, s], 1))
        return self.dec_out(torch.cat([d, skips[0]], 1))

    def loss(self, x: Tensor, n_past: int = 2, beta: float = 1e-4) -> Tensor:
        """x: (B, L, 3, 64, 64) float; SVG's train() body."""
        b = x.shape[0]
        zeros = x.new_zeros(b, self.pred_in.out_features)
        pred = [(zeros, zeros), (zeros, zeros)]
        post, prior = (zeros, zeros), (zeros, zeros)
        mse = kld = x.new_zeros(())
        for t in range(1, x.shape[1]):
            h, skip_t = self.encode(x[:, t - 1])
            h_target = self.encode(x[:, t])[0]
            if t < n_past:
                skips = skip_t
            post = self.post(self.post_in(h_target), post)
            mu, logvar = self.post_out(post[0]).chunk(2, 1)
            prior = self.prior(self.prior_in(h), prior)
            mu_p, logvar_p = self.prior_out(prior[0]).chunk(2, 1)
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
            inp = self.pred_in(torch.cat([h, z], 1))
            for i, cell in enumerate(self.pred):
                pred[i] = cell(inp, pred[i])
                inp = pred[i][0]
            x_pred = self.decode(torch.tanh(self.pred_out(inp)), skips)
            mse = mse + F.mse_loss(x_pred, x[:, t])
            kl = 0.5 * (logvar_p - logvar + (logvar.exp() + (mu - mu_p) ** 2) / logvar_p.exp() - 1)
            kld = kld + kl.sum() / b
        return mse + beta * kld


def bench_baseline(steps: int) -> tuple[int, int, float, float]:
    """(params, FLOPs, min s, median s) of the SVG-structured step (fp32, NCHW, 5 Adam optimisers
    in the original; one here, the same arithmetic)."""
    torch.manual_seed(0)
    model = SVGBaseline()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.999))
    x = make_batch(0).obs.float() / 255

    def step() -> None:
        opt.zero_grad()
        model.loss(x).backward()
        opt.step()

    counter = FlopCounterMode(display=False)
    with counter:
        model.loss(x).backward()
    t_min, t_med = timeit(step, steps, warmup=1)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops(), t_min, t_med


def make_batch(action_dim: int) -> Batch:
    g = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (B, L, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    if action_dim == 0:
        return Batch(obs)
    return Batch(obs, torch.rand(B, L - 1, action_dim, generator=g) * 2 - 1, torch.rand(B, L - 1))


def step_flops(cfg: ModelConfig, action_dim: int) -> int:
    torch.manual_seed(0)
    model = WorldModel(cfg, SIZE, action_dim)
    batch = make_batch(action_dim)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(batch.obs, batch.action, batch.reward, n_past=2)
        loss = (out.frames - out.target).pow(2).mean() + out.embedding.mean()
        if out.posterior_mu is not None:
            loss = loss + out.posterior_mu.mean() + out.prior_mu.mean()
        if out.reward is not None:
            loss = loss + out.reward.mean()
        loss.backward()
    return counter.get_total_flops()


def bench_step(
    cfg: ModelConfig, action_dim: int, precision: str, steps: int
) -> tuple[float, float]:
    torch.manual_seed(0)
    model = WorldModel(cfg, SIZE, action_dim)
    trainer = Trainer(model, TrainConfig(precision=precision), ObjectiveConfig(), "cpu")
    batch = make_batch(action_dim)
    return timeit(lambda: trainer.step(batch), steps, warmup=2)


def bench_imagine(cfg: ModelConfig, precision: str, steps: int) -> float:
    torch.manual_seed(0)
    model = WorldModel(cfg, SIZE, A).eval()
    batch = make_batch(A)
    actions = torch.rand(1000, 12, A) * 2 - 1
    dtype = torch.bfloat16 if precision == "bf16" else None
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode(), autocast(torch.device("cpu"), dtype):
        state = model.observe(batch.obs[:1, :2], batch.action[:1, :1])
        t, _ = timeit(lambda: model.imagine(state, actions, generator=gen), steps)
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per setting")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"native bf16: {cpu_has_native_bf16()}"
    )

    peak = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        conv, mm = peaks(dtype)
        peak[name] = conv
        print(f"peak {name}: conv3x3 {conv:7.0f} GFLOP/s   mm 2048^2 {mm:7.0f} GFLOP/s")

    models = {
        "svg (default, configs/model/svg.yaml)": (ModelConfig(), A),
        "SVG-LP original size (nf=64), no actions": (ModelConfig(nf=64), 0),
    }
    print(
        f"\ntraining step, batch {B} x {L} frames, {SIZE}x{SIZE} (time: min / median of {args.steps})"
    )
    for name, (cfg, action_dim) in models.items():
        with torch.device("meta"):
            n_params = WorldModel(cfg, SIZE, action_dim).num_params()
        flops = step_flops(cfg, action_dim)
        print(f"{name}: {n_params / 1e6:.2f}M params, {flops / 1e9:.0f} GFLOP/step")
        for precision in ("fp32", "bf16"):
            t_min, t_med = bench_step(cfg, action_dim, precision, args.steps)
            print(
                f"  {precision}: {t_min:.3f} / {t_med:.3f} s/step   {B * L / t_min:6.0f} frames/s   "
                f"{flops / t_min / 1e9:5.0f} GFLOP/s = {flops / t_min / 1e9 / peak[precision]:.0%} "
                f"of the conv peak"
            )

    n_params, flops, t_min, t_med = bench_baseline(args.steps)
    print(
        f"SVG-LP original training loop (same model size, this run): {n_params / 1e6:.2f}M params, "
        f"{flops / 1e9:.0f} GFLOP/step\n  fp32: {t_min:.3f} / {t_med:.3f} s/step   "
        f"{B * L / t_min:6.0f} frames/s   {flops / t_min / 1e9:5.0f} GFLOP/s = "
        f"{flops / t_min / 1e9 / peak['fp32']:.0%} of the conv peak"
    )

    print("\nlatent imagination, 1000 candidates x 12 steps, default model")
    for precision in ("fp32", "bf16"):
        t = bench_imagine(ModelConfig(), precision, args.steps)
        print(f"  {precision}: {t * 1e3:.0f} ms  ({1000 * 12 / t:,.0f} candidate-steps/s)")

    print(f"\nparameters (millions), default config, {SIZE}x{SIZE}, action_dim {A}")
    ks = [1, 2, 3, 4, 5]
    print("      " + "".join(f"   K={k:<5d}" for k in ks))
    for m in (1, 2, 3):
        row = []
        for k in ks:
            with torch.device("meta"):
                row.append(WorldModel(ModelConfig(M=m, K=k), SIZE, A).num_params() / 1e6)
        print(f"M={m}   " + "".join(f"{n:9.1f}  " for n in row))


if __name__ == "__main__":
    main()
