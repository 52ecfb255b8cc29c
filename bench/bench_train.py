"""Training-step throughput of the world model on this machine, and the cost of ``loss=full``.

Prints a machine line (CPU model, cores, threads, torch version, native bf16, CUDA device), then,
for batch 16 x 12 frames at 64x64:

* the machine's measured peak: a 3x3 conv (the best case for convolutions) and torch.mm 2048^2,
  fp32 and, where it is native, bf16 (emulated bf16 is skipped, and the output says so);
* FLOPs of one training step (forward + backward), counted with torch.utils.flop_counter;
* seconds per step, frames/s and the fraction of the conv peak reached (fp32, and bf16 where
  native) for the default model (configs/model/svg.yaml) and for SVG-LP's original size (nf 64,
  g_dim 128, 256 LSTM units, z 64: 12.6M parameters), and for the same model trained the way the
  original SVG code does it (:class:`SVGBaseline`: a per-time-step loop encoding every frame
  twice, fp32, NCHW), in the same run;
* a latent imagination rollout of 1000 candidates x 12 steps (the planner's inner loop);
* the parameter count for M in {1, 2, 3} x K in {1, ..., 5} (built on the meta device);
* last, the anti-blur objective's cost: a ``loss=full`` step against a ``loss=mse`` step of the
  same model (the cpu profile's M = K = 0.5), timed in the same run, interleaved, one thread, fp32
  (bf16 where native), ``loss=full`` fully grown (its progressive schedule over: the most
  expensive and the steady-state step), with where its time goes and the same step as it was
  before the discriminator followed K and judged one frame per sequence. The last line reads
  ``loss=full / loss=mse step time: X.XXx`` (minimum step times).

Run: ``.venv/bin/python bench/bench_train.py`` (``--steps N`` timed steps, ``--threads N``);
``--quick`` prints the machine line, the peaks, the SVG-LP-size step against the original SVG loop
(one timed step each, fp32, with its fraction of the conv peak) and the loss=full / loss=mse
section with fewer steps (about 3-4 minutes of CPU on the project's 2-core machine); ``--smoke``
runs the same sections on tiny settings in seconds (numbers meaningless). Both ratio lines are
printed in every mode: ``SVG-LP size step: original SVG loop / this package (fp32, same run):
X.XXx`` and, last, ``loss=full / loss=mse step time: X.XXx``. The full run also prints, where bf16
is native, ``SVG-LP size step: original SVG loop (fp32) / this package (bf16, native, same run):
X.XXx`` (the original code trains in fp32 only).

Times are on ``bench.common.clock``: the process CPU time when one thread is timed (a shared
machine does not inflate it), else the wall clock. The minimum and median of the timed steps are
both printed; compare numbers from the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    add_common_args,
    apply_threads,
    bf16_skip_note,
    clock,
    machine_line,
    native_bf16,
    peak_lines,
    peaks,
    precisions,
    timeit,
)
from worldmodel.data import Batch  # noqa: E402
from worldmodel.device import autocast  # noqa: E402
from worldmodel.model.svg import ModelConfig, WorldModel  # noqa: E402
from worldmodel.training.train import ObjectiveConfig, TrainConfig, Trainer  # noqa: E402

B, L, SIZE, A = 16, 12, 64, 6
# --smoke: the SVG-size comparison at toy widths (the original loop and ours, same sizes)
SMOKE_SVG = dict(nf=4, g=8, rnn=16, z=4)
RATIO_SVG = "SVG-LP size step: original SVG loop / this package (fp32, same run)"
RATIO_SVG_BF16 = (
    "SVG-LP size step: original SVG loop (fp32) / this package (bf16, native, same run)"
)


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


def bench_baseline(
    steps: int, warmup: int = 1, b: int = B, length: int = L, sizes: dict | None = None
) -> tuple[int, int, float, float]:
    """(params, FLOPs, min s, median s) of the SVG-structured step (fp32, NCHW, 5 Adam optimisers
    in the original; one here, the same arithmetic). FLOPs are counted at batch 2 (batch norm needs
    more than one value) and scaled to ``b`` (every counted op is linear in the batch)."""
    torch.manual_seed(0)
    model = SVGBaseline(**(sizes or {}))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.999))
    x = make_batch(0, b, length).obs.float() / 255

    def step() -> None:
        opt.zero_grad()
        model.loss(x).backward()
        opt.step()

    counter = FlopCounterMode(display=False)
    with counter:
        model.loss(x[:2]).backward()
    t_min, t_med = timeit(step, steps, warmup=warmup)
    flops = counter.get_total_flops() * b // min(b, 2)
    return sum(p.numel() for p in model.parameters()), flops, t_min, t_med


def make_batch(action_dim: int, b: int = B, length: int = L) -> Batch:
    g = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (b, length, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    if action_dim == 0:
        return Batch(obs)
    return Batch(
        obs,
        torch.rand(b, length - 1, action_dim, generator=g) * 2 - 1,
        torch.rand(b, length - 1, generator=g),
    )


def step_flops(cfg: ModelConfig, action_dim: int, b: int = B, length: int = L) -> int:
    """FLOPs of one forward + backward at batch ``b`` (counted at batch 2, scaled to ``b``)."""
    torch.manual_seed(0)
    model = WorldModel(cfg, SIZE, action_dim)
    batch = make_batch(action_dim, min(b, 2), length)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(batch.obs, batch.action, batch.reward, n_past=2)
        loss = (out.frames - out.target).pow(2).mean() + out.embedding.mean()
        if out.posterior_mu is not None:
            loss = loss + out.posterior_mu.mean() + out.prior_mu.mean()
        if out.reward is not None:
            loss = loss + out.reward.mean()
        loss.backward()
    return counter.get_total_flops() * b // min(b, 2)


def bench_step(
    cfg: ModelConfig,
    action_dim: int,
    precision: str,
    steps: int,
    warmup: int = 2,
    b: int = B,
    length: int = L,
) -> tuple[float, float]:
    torch.manual_seed(0)
    model = WorldModel(cfg, SIZE, action_dim)
    trainer = Trainer(model, TrainConfig(precision=precision), ObjectiveConfig(), "cpu")
    batch = make_batch(action_dim, b, length)
    return timeit(lambda: trainer.step(batch), steps, warmup=warmup)


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


# ---------------------------------------------------------------------------------------------
# loss=full against loss=mse


def compose_trainer(overrides: list[str], size: int, steps_done: str | None) -> Trainer:
    """A trainer exactly as ``python -m worldmodel.pretrain <overrides>`` builds it (the real
    presets of configs/), on ``size`` px frames with ``A``-D actions; ``steps_done="grown"`` puts
    it after its progressive schedule (the generator at full size, alpha 1)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from worldmodel import pretrain
    from worldmodel.training.training_setup import build_trainer, resolve_model_config

    pretrain.register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("pretrain", overrides=["data=/unused", *overrides]))
    torch.manual_seed(0)
    model = WorldModel(resolve_model_config(cfg.model, cfg.loss), size, A)
    trainer = build_trainer(model, cfg.train, cfg.objective, cfg.loss, "cpu")
    if steps_done == "grown" and trainer.progressive is not None:
        trainer.global_step = trainer.progressive.total_steps
    return trainer


class StepClock:
    """Seconds spent in named parts of a trainer's steps (wraps the anti-blur objective's term
    functions, its discriminator update and the model's forward pass; the rest of a step is the
    backward pass -- through the discriminator and the comparator too -- and Adam)."""

    def __init__(self, trainer: Trainer, now: Callable[[], float]) -> None:
        self.seconds: dict[str, float] = {}
        self.steps = 0
        self.now = now
        self._wrap(trainer.module, "forward", "model forward")
        objective = trainer.objective
        if objective is not None:
            self._wrap(objective, "gdl_term", "GDL")
            self._wrap(objective, "adversarial_term", "adversarial term (D forward, all scales)")
            self._wrap(objective, "feature_term", "feature term (comparator forward)")
            self._wrap(objective, "update", "discriminator update (2 D passes, backward, Adam)")

    def _wrap(self, owner: Any, name: str, label: str) -> None:
        fn: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = self.now()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + self.now() - start

        setattr(owner, name, timed)


def loss_ratio(args: argparse.Namespace) -> None:
    """Time loss=full against loss=mse (same model, same batch, one thread) and print the ratio."""
    smoke, quick = args.smoke, args.quick
    b, length, size = (2, 4, 32) if smoke else (B, L, SIZE)
    precision = "bf16" if native_bf16("cpu") else "fp32"
    base = [
        "model.M=0.5",  # the cpu profile's model (configs/profile/cpu.yaml)
        "model.K=0.5",
        f"train.batch_size={b}",
        f"train.seq_len={length}",
        f"train.precision={precision}",
    ]
    adv_on = (
        "loss.adv_weight=0.05"  # the adversarial term, an option of loss=full (Mathieu's weight)
    )
    old_d = [  # loss=full before its discriminator followed K and judged one frame per sequence
        adv_on,
        "loss.discriminator.width=64",
        "loss.discriminator.max_width=256",
        "loss.discriminator.hidden=256",
        "loss.judged_per_sequence=null",
    ]
    variants: dict[str, tuple[list[str], str | None]] = {
        "loss=mse": (["loss=mse"], None),
        "loss=full": (["loss=full"], "grown"),
    }
    if not smoke:
        variants["loss=full + adversarial (loss.adv_weight=0.05)"] = (
            ["loss=full", adv_on],
            "grown",
        )
        variants["loss=full as before (D 64/256/256, every frame judged)"] = (
            ["loss=full", *old_d],
            "grown",
        )
    if not (smoke or quick):
        variants["loss=full, every frame judged (D follows K)"] = (
            ["loss=full", adv_on, "loss.judged_per_sequence=null"],
            "grown",
        )
        variants["loss=full at the start of growing (16 px)"] = (["loss=full"], None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    now = clock("cpu")[0]  # one thread: the process CPU time
    try:
        trainers = {
            name: compose_trainer([*base, *ov], size, at) for name, (ov, at) in variants.items()
        }
        clocks = {name: StepClock(trainers[name], now) for name in ("loss=mse", "loss=full")}
        batch = make_train_batch(b, length, size)
        warmup, steps = (1, 1) if smoke else (1, 2) if quick else (1, args.steps)
        slow = "loss=full as before (D 64/256/256, every frame judged)"
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for r in range(warmup + steps):  # interleaved: drifts of a shared machine hit all alike
            for name, trainer in trainers.items():
                if name == slow and r > warmup:  # ~20-40x a loss=mse step: one timed step
                    continue
                if name in clocks and r == warmup:
                    clocks[name].seconds.clear()
                start = now()
                trainer.step(batch)
                if r >= warmup:
                    times[name].append(now() - start)
    finally:
        torch.set_num_threads(threads)

    mse = trainers["loss=mse"]
    full = trainers["loss=full"]
    print(
        f"\nloss=full vs loss=mse: model.M=0.5 model.K=0.5 ({mse.model.num_params() / 1e6:.2f}M "
        f"parameters), batch {b} x {length} frames, {size} px, {precision}, 1 thread; loss=full "
        f"after its progressive schedule unless said; s/step min / median of {steps} interleaved "
        "steps (1 for the old preset), process CPU time"
    )
    t_mse = min(times["loss=mse"])
    for name, ts in times.items():
        print(
            f"  {name:58s} {min(ts):7.3f} / {statistics.median(ts):7.3f}   "
            f"{min(ts) / t_mse:6.2f}x loss=mse"
        )
    with_d = trainers.get("loss=full + adversarial (loss.adv_weight=0.05)", full)
    adv = with_d.objective.adversarial if with_d.objective is not None else None
    if adv is not None:
        d = adv.discriminator
        n_params = sum(p.numel() for p in d.parameters())
        print(
            f"discriminator: {n_params / 1e6:.3f}M parameters, scales {d.scales}, widths follow "
            f"K (width {d.cfg.width}, max {d.cfg.max_width}, hidden {d.cfg.hidden}); judged "
            f"frames per sequence: {with_d.objective.cfg.judged_per_sequence}"
        )
    for name, step_clock in clocks.items():
        per_step = {k: v / steps for k, v in step_clock.seconds.items()}
        total = statistics.mean(times[name])
        parts = ", ".join(f"{k} {v:.3f}" for k, v in per_step.items())
        rest = (
            "backward (through D and the comparator too) + Adam"
            if name != "loss=mse"
            else ("base terms, backward + Adam")
        )
        print(
            f"where a {name} step's {total:.3f} s go (mean): {parts}, "
            f"{rest} {total - sum(per_step.values()):.3f}"
        )
    print(f"loss=full / loss=mse step time: {min(times['loss=full']) / t_mse:.2f}x")


def make_train_batch(b: int, length: int, size: int) -> Batch:
    """``b`` random sequences of ``length`` frames of ``size`` px with actions and rewards."""
    g = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (b, length, 3, size, size), dtype=torch.uint8, generator=g)
    action = torch.rand(b, length - 1, A, generator=g) * 2 - 1
    return Batch(obs, action, torch.rand(b, length - 1, generator=g))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per setting")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)
    print(machine_line("cpu"))
    peak = peaks("cpu", smoke=args.smoke)
    print(peak_lines(peak, "cpu"))
    if args.quick or args.smoke:
        svg_size(args, peak)
    else:
        throughput(args, peak)
    loss_ratio(args)


def svg_size(args: argparse.Namespace, peak: dict) -> None:
    """--quick / --smoke: the SVG-LP-size step, this package against the original loop, fp32, one
    timed step each after one warm-up (--smoke: toy widths, batch 2 x 4 frames)."""
    sizes = SMOKE_SVG if args.smoke else {}
    b, length = (2, 4) if args.smoke else (B, L)
    cfg = (
        ModelConfig(nf=sizes["nf"], g_dim=sizes["g"], rnn_units=sizes["rnn"], z_dim=sizes["z"])
        if args.smoke
        else ModelConfig(nf=64)
    )
    with torch.device("meta"):
        n_params = WorldModel(cfg, SIZE, 0).num_params()
    flops = step_flops(cfg, 0, b, length)
    t_ours, t_ours_med = bench_step(cfg, 0, "fp32", 1, warmup=1, b=b, length=length)
    n_base, f_base, t_base, t_base_med = bench_baseline(1, 1, b, length, sizes)
    print(
        f"\ntraining step, SVG-LP original size{' (smoke: toy widths)' if args.smoke else ''}, no "
        f"actions, batch {b} x {length} frames, {SIZE}x{SIZE}, fp32, 1 timed step after 1 "
        f"warm-up, {clock('cpu')[1]}"
    )
    conv = peak["fp32"].conv
    for name, n, f, t in (
        ("this package", n_params, flops, t_ours),
        ("original SVG loop", n_base, f_base, t_base),
    ):
        print(
            f"  {name:18s} {n / 1e6:6.2f}M params {f / 1e9:6.1f} GFLOP/step {t:8.3f} s/step "
            f"{b * length / t:6.0f} frames/s {f / t / 1e9:6.1f} GFLOP/s = {f / t / 1e9 / conv:.0%} "
            "of the conv peak"
        )
    note = bf16_skip_note("cpu")
    if note:
        print(f"  {note}")
    print(f"{RATIO_SVG}: {t_base / t_ours:.2f}x")


def throughput(args: argparse.Namespace, peak: dict) -> None:
    """The step's FLOPs and speed, the original SVG loop, imagination, parameter counts."""
    timed = precisions("cpu")  # bf16 only where native

    models = {
        "svg (default, configs/model/svg.yaml)": (ModelConfig(), A),
        "SVG-LP original size (nf=64), no actions": (ModelConfig(nf=64), 0),
    }
    print(
        f"\ntraining step, batch {B} x {L} frames, {SIZE}x{SIZE} (time: min / median of {args.steps}"
        f", {clock('cpu')[1]})"
    )
    svg_times: dict[str, float] = {}  # the SVG-LP-size step's minimum per precision
    for name, (cfg, action_dim) in models.items():
        with torch.device("meta"):
            n_params = WorldModel(cfg, SIZE, action_dim).num_params()
        flops = step_flops(cfg, action_dim)
        print(f"{name}: {n_params / 1e6:.2f}M params, {flops / 1e9:.0f} GFLOP/step")
        for precision in timed:
            t_min, t_med = bench_step(cfg, action_dim, precision, args.steps)
            if name.startswith("SVG-LP"):
                svg_times[precision] = t_min
            print(
                f"  {precision}: {t_min:.3f} / {t_med:.3f} s/step   {B * L / t_min:6.0f} frames/s   "
                f"{flops / t_min / 1e9:5.0f} GFLOP/s = "
                f"{flops / t_min / 1e9 / peak[precision].conv:.0%} of the conv peak"
            )
    note = bf16_skip_note("cpu")
    if note:
        print(f"  {note}")

    n_params, flops, t_min, t_med = bench_baseline(args.steps)
    print(
        f"SVG-LP original training loop (same model size, this run): {n_params / 1e6:.2f}M params, "
        f"{flops / 1e9:.0f} GFLOP/step\n  fp32: {t_min:.3f} / {t_med:.3f} s/step   "
        f"{B * L / t_min:6.0f} frames/s   {flops / t_min / 1e9:5.0f} GFLOP/s = "
        f"{flops / t_min / 1e9 / peak['fp32'].conv:.0%} of the conv peak"
    )
    print(f"{RATIO_SVG}: {t_min / svg_times['fp32']:.2f}x")
    if "bf16" in svg_times:  # only where bf16 is native; the original code has fp32 only
        print(f"{RATIO_SVG_BF16}: {t_min / svg_times['bf16']:.2f}x")

    print("\nlatent imagination, 1000 candidates x 12 steps, default model")
    for precision in timed:
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
