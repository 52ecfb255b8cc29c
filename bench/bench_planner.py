"""Milliseconds per planned action against PlaNet's own RSSM planner, timed in the same run.

    python bench/bench_planner.py [--quick | --smoke] [--threads 1] [--repeats 3] [--device cpu]

What is timed (a whole ``CEM.plan`` per action, the same ``agents.cem.CEM`` for every planner):

* **PlaNet RSSM** (the baseline, :class:`PlaNetRSSM`): PlaNet's planning rollout at its published
  sizes (Hafner et al. 2019; google-research/planet ``models/rssm.py``, ``scripts/configs.py``):
  a GRU belief of 200, a stochastic state of 30, 200-unit ReLU hidden layers before and after the
  GRU, the prior's mean and softplus std (+0.1) from the belief, a sample, and the reward head on
  ``[sample, belief]`` (PlaNet's ``feed_forward``: 2 x 100 ReLU units; ``PAPERS.md``'s 0.77 MFLOP
  per step assumed 200-unit reward layers, the published code has 100: 0.66 MFLOP). The state is
  tiled to the candidates and the reward head runs once on all imagined states, as in PlaNet's
  ``cross_entropy_method``.
* **this package's latent-reward planner** (``agents.objectives.latent_reward_objective``) with the
  default model (M = K = 1, 64 px, A = 6 as cheetah), which rolls out with the fused
  ``worldmodel.model.rollout.LatentRollout``, and the same objective through ``WorldModel.imagine``
  (the planner before the fused rollout, "imagine" rows).
* the same two at the **cpu profile**'s sizes (``configs/planner/cem/reward_cpu.yaml``, model
  M = K = 0.5), the fused one also with ``kind=icem`` (``planner.cem.kind=icem``: its shrinking
  population evaluates 590 instead of 800 candidates per plan; what it does to the return is not
  measured here, see ``bench/bench_cem.py``), and (full run only) the cpu profile's goal-image
  planner; and the fused one with the cpu profile's model given a 1-layer predictor LSTM
  (``model.predictor_layers=1``, "1-layer" rows: 0.56 instead of 0.81 MFLOP per step).

For each: ms per action (min and median over the repeats, on ``bench.common.clock``: the process
CPU time when timing one CPU thread, which a loaded machine does not inflate, else the wall
clock; the repeats of all planners are interleaved), the minimum wall clock, the
matmul FLOPs of one imagined step per candidate (``torch.utils.flop_counter``, with formulas added
for in-place ``addmm_`` and oneDNN's LSTM layer), and the achieved fraction of the ``torch.mm``
peak measured in the same run. bf16 rows only where bf16 is native.

``--quick`` (at most ~3 minutes on the project's 2-core machine) times 2 of PlaNet's 10 CEM
iterations and scales them (every plain-CEM iteration costs the same), 2 repeats. ``--smoke``
runs everything at toy sizes in seconds (numbers meaningless; the test suite runs it).

The last line is the ratio, ``planner / PlaNet RSSM ms per action (1000x12x10, same run): X.XXx``
(fused planner, fp32, minimum of each on the benchmark clock; the wall-clock ratio is printed on
the line before).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.cem import CEM, CEMConfig, population_sizes  # noqa: E402
from agents.objectives import goal_image_objective, latent_reward_objective  # noqa: E402
from bench.common import (  # noqa: E402
    add_common_args,
    apply_threads,
    clock,
    machine_line,
    peak_lines,
    peaks,
    precisions,
)
from worldmodel.model.svg import ModelConfig, WorldModel  # noqa: E402

A = 6  # cheetah-run's action size
PLANET_CEM = dict(population=1000, elites=100, iterations=10, horizon=12)
RATIO_LINE = "planner / PlaNet RSSM ms per action (1000x12x10, same run)"


class PlaNetRSSM(nn.Module):
    """The planning path of PlaNet's RSSM (prior transition + reward head), PyTorch modules.

    Args:
        action_dim: A.
        state: stochastic state size (30). belief: GRU size (200). hidden: the ReLU layers
            around the GRU (200). reward_units, reward_layers: the reward MLP (100, 2).
        min_std: added to the softplus std (0.1).
    """

    def __init__(
        self,
        action_dim: int,
        state: int = 30,
        belief: int = 200,
        hidden: int = 200,
        reward_units: int = 100,
        reward_layers: int = 2,
        min_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.state_size, self.belief_size, self.min_std = state, belief, min_std
        self.inp = nn.Linear(state + action_dim, hidden)
        self.cell = nn.GRUCell(hidden, belief)
        self.hidden = nn.Linear(belief, hidden)
        self.mean = nn.Linear(hidden, state)
        self.std = nn.Linear(hidden, state)
        layers: list[nn.Module] = []
        width = state + belief
        for _ in range(reward_layers):
            layers += [nn.Linear(width, reward_units), nn.ReLU()]
            width = reward_units
        self.reward = nn.Sequential(*layers, nn.Linear(width, 1))

    def step(self, sample: Tensor, belief: Tensor, action: Tensor, eps: Tensor):
        """One imagined step (PlaNet's ``_transition``): ``(N, state)``, ``(N, belief)``."""
        x = F.relu(self.inp(torch.cat([sample, action], -1)))
        belief = self.cell(x, belief)
        h = F.relu(self.hidden(belief))
        std = F.softplus(self.std(h)) + self.min_std
        return self.mean(h) + std * eps, belief

    def objective(self, sample: Tensor, belief: Tensor, generator: torch.Generator):
        """PlaNet's planning objective from a batch-1 state: ``(N, H, A) -> (N,)`` summed rewards."""

        @torch.inference_mode()
        def returns(actions: Tensor) -> Tensor:
            n, horizon = actions.shape[:2]
            s, b = sample.expand(n, -1), belief.expand(n, -1)  # tile the state
            features = []
            for t in range(horizon):
                eps = torch.randn(s.shape, device=s.device, generator=generator)
                s, b = self.step(s, b, actions[:, t], eps)
                features.append(torch.cat([s, b], -1))
            return self.reward(torch.stack(features, 1)).squeeze(-1).sum(1)  # (N,)

        return returns


class ImagineOnly:
    """Hides the fused rollout: the objective then calls ``model.imagine`` (the planner before
    ``worldmodel/model/rollout.py``)."""

    def __init__(self, model: WorldModel) -> None:
        self.model = model

    def imagine(self, *args, **kwargs):
        return self.model.imagine(*args, **kwargs)


def _addmm_flops(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def _lstm_layer_flops(inp, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    """oneDNN LSTM layer: the gate matmuls ``(T, B, in) x (in, 4H)`` and ``(T, B, H) x (H, 4H)``."""
    return 2 * inp[0] * inp[1] * w_ih[0] * (w_ih[1] + w_hh[1])


def count_flops(fn: Callable[[], object]) -> int:
    """Matmul and convolution FLOPs of one call of ``fn`` (element-wise work not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {torch.ops.aten.addmm_: _addmm_flops}
    if hasattr(torch.ops.aten, "mkldnn_rnn_layer"):
        mapping[torch.ops.aten.mkldnn_rnn_layer] = _lstm_layer_flops
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter:
        fn()
    return counter.get_total_flops()


@dataclasses.dataclass
class Planner:
    """One timed row: ``make_objective()`` is called once per plan (as the agent does per action)."""

    name: str
    cem: dict
    make_objective: Callable[[], Callable[[Tensor], Tensor]]
    step_flops: float = float("nan")  # per imagined step and candidate
    wall: list[float] = dataclasses.field(default_factory=list)  # seconds per action
    cpu: list[float] = dataclasses.field(default_factory=list)

    def plan_once(self, device: torch.device, iterations: int) -> None:
        cfg = CEMConfig(**{**self.cem, "iterations": iterations}).validate()
        low = torch.full((A,), -1.0, device=device)
        cem = CEM(cfg, low, -low, generator=torch.Generator(device=device).manual_seed(0))
        scale = self.cem["iterations"] / iterations
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall, cpu = time.perf_counter(), time.process_time()
        cem.plan(self.make_objective())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.wall.append(scale * (time.perf_counter() - wall))
        self.cpu.append(scale * (time.process_time() - cpu))


def make_state(model: WorldModel, device: torch.device):
    """The model's state after observing two random frames."""
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (1, 2, 3, 64, 64), dtype=torch.uint8, generator=g)
    with torch.inference_mode():
        return model.observe(frames.to(device), torch.zeros(1, 1, A, device=device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, threads_default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed plans per planner")
    args = parser.parse_args()
    apply_threads(args)
    device = torch.device(args.device)
    repeats = args.repeats or (1 if args.smoke else 2 if args.quick else 3)

    print(machine_line(device))
    peak = peaks(device, repeats=3, smoke=args.smoke)
    print(peak_lines(peak, device))
    mm_peak = {name: p.mm for name, p in peak.items()}

    planet_cem = dict(PLANET_CEM)
    cpu_cem = {
        k: v
        for k, v in OmegaConf.to_container(
            OmegaConf.load(ROOT / "configs" / "planner" / "cem" / "reward_cpu.yaml")
        ).items()
    }
    goal_cem = OmegaConf.to_container(
        OmegaConf.load(ROOT / "configs" / "planner" / "cem" / "goal_cpu.yaml")
    )
    default_model, cpu_model = ModelConfig(), ModelConfig(M=0.5, K=0.5)
    # the cpu profile's model with a 1-layer predictor LSTM (model.predictor_layers=1): the
    # cheaper planning path whose return bench/results/rl_cheetah_L1/ measures
    cpu_l1_model = dataclasses.replace(cpu_model, predictor_layers=1)
    if args.smoke:  # toy sizes: seconds
        planet_cem = dict(population=16, elites=4, iterations=2, horizon=3)
        cpu_cem = {**cpu_cem, "population": 8, "elites": 2, "iterations": 2, "horizon": 3}
        goal_cem = {**goal_cem, "population": 4, "elites": 2, "iterations": 1, "horizon": 2}
        default_model = cpu_model = ModelConfig(rnn_units=16, nf=4, g_dim=8, z_dim=2)
        cpu_l1_model = dataclasses.replace(cpu_model, predictor_layers=1)
    # --quick: time 2 of the 10 PlaNet-setting iterations (scaled back to 10)
    planet_iters = 2 if args.quick else planet_cem["iterations"]

    torch.manual_seed(0)
    rssm = PlaNetRSSM(A).to(device).eval()
    rssm_state = (torch.zeros(1, 30, device=device), torch.zeros(1, 200, device=device))
    models = {}
    for key, cfg in (("default", default_model), ("cpu", cpu_model), ("cpu_l1", cpu_l1_model)):
        torch.manual_seed(0)
        model = WorldModel(cfg, 64, A).to(device).eval()
        models[key] = (model, make_state(model, device))

    def reward_objective(key: str, fused: bool, precision: str):
        model, state = models[key]
        gen = torch.Generator(device=device).manual_seed(1)
        m = model if fused else ImagineOnly(model)
        return lambda: latent_reward_objective(m, state, generator=gen, precision=precision)

    def goal_objective(precision: str):
        model, state = models["cpu"]
        gen = torch.Generator(device=device).manual_seed(1)
        goal = torch.rand(3, 64, 64, device=device)
        return lambda: goal_image_objective(model, state, goal, generator=gen, precision=precision)

    def planet_objective(precision: str):
        gen = torch.Generator(device=device).manual_seed(1)
        amp = torch.bfloat16 if precision == "bf16" else None

        def make():
            inner = rssm.objective(*rssm_state, gen)
            if amp is None:
                return inner

            def wrapped(actions):
                with torch.autocast(device.type, dtype=amp):
                    return inner(actions).float()

            return wrapped

        return make

    icem_cem = {**cpu_cem, "kind": "icem"}
    precs = precisions(device)
    planet_size = "x".join(str(planet_cem[k]) for k in ("population", "horizon", "iterations"))
    cpu_size = "x".join(str(cpu_cem[k]) for k in ("population", "horizon", "iterations"))
    groups: dict[str, list[Planner]] = {"planet": [], "cpu": []}
    for p in precs:
        groups["planet"] += [
            Planner(f"PlaNet RSSM {p}", planet_cem, planet_objective(p)),
            Planner(f"planner M=K=1 {p}", planet_cem, reward_objective("default", True, p)),
            Planner(f"imagine M=K=1 {p}", planet_cem, reward_objective("default", False, p)),
        ]
        groups["cpu"] += [
            Planner(f"planner M=K=0.5 {p}", cpu_cem, reward_objective("cpu", True, p)),
            Planner(f"imagine M=K=0.5 {p}", cpu_cem, reward_objective("cpu", False, p)),
            Planner(f"icem M=K=0.5 {p}", icem_cem, reward_objective("cpu", True, p)),
            Planner(f"1-layer M=K=0.5 {p}", cpu_cem, reward_objective("cpu_l1", True, p)),
        ]
        if not (args.quick or args.smoke):
            groups["cpu"].append(Planner(f"goal M=K=0.5 {p}", goal_cem, goal_objective(p)))

    # FLOPs of one imagined step per candidate (fp32; the count is the same in bf16)
    for rows in groups.values():
        for row in rows:
            if " bf16" in row.name or row.name.startswith("goal"):
                continue
            n, h = row.cem["population"], row.cem["horizon"]
            actions = torch.rand(n, h, A, device=device) * 2 - 1
            objective = row.make_objective()
            row.step_flops = count_flops(lambda o=objective, a=actions: o(a)) / (n * h)
        for row in rows:
            if " bf16" in row.name:
                twin = next(r for r in rows if r.name == row.name.replace("bf16", "fp32"))
                row.step_flops = twin.step_flops

    # warm-up (one short plan each), then interleaved timed plans
    for rows in groups.values():
        for row in rows:
            row.plan_once(device, 1)
            row.wall.clear()
            row.cpu.clear()
    for _ in range(repeats):
        for row in groups["planet"]:
            row.plan_once(device, planet_iters)
        for row in groups["cpu"]:
            row.plan_once(device, row.cem["iterations"])

    use_cpu = clock(device)[0] is time.process_time

    def times(row: Planner) -> list[float]:
        """Seconds per action on the benchmark clock (bench.common.clock)."""
        return row.cpu if use_cpu else row.wall

    def report(title: str, rows: list[Planner]) -> None:
        print(f"\n{title}; ms per action on the {clock(device)[1]}")
        print(
            f"  {'planner':<22} {'ms/action min':>13} {'median':>9} {'wall min':>9} "
            f"{'MFLOP/step':>10} {'GFLOP/s':>8} {'% mm peak':>9}"
        )
        for row in rows:
            best, med, wall = min(times(row)), statistics.median(times(row)), min(row.wall)
            cem = row.cem
            # candidates evaluated per plan (icem: its shrinking population; kept elites carry
            # their returns, the mean of the last iteration is one more)
            candidates = sum(population_sizes(CEMConfig(**cem)))
            rollouts = candidates * cem["horizon"]
            rate = row.step_flops * rollouts / best / 1e9
            prec = "bf16" if " bf16" in row.name else "fp32"
            flops = "-" if row.step_flops != row.step_flops else f"{row.step_flops / 1e6:.2f}"
            share = "-" if flops == "-" else f"{100 * rate / mm_peak[prec]:.0f}%"
            rate_s = "-" if flops == "-" else f"{rate:.1f}"
            print(
                f"  {row.name:<22} {1e3 * best:>13,.1f} {1e3 * med:>9,.1f} {1e3 * wall:>9,.1f} "
                f"{flops:>10} {rate_s:>8} {share:>9}"
            )

    scaled = f", {planet_iters} of {planet_cem['iterations']} iterations timed and scaled"
    report(
        f"PlaNet's setting {planet_size} (population x horizon x iterations), {repeats} repeats"
        + (scaled if planet_iters != planet_cem["iterations"] else ""),
        groups["planet"],
    )
    report(
        f"cpu profile: planner/cem/reward_cpu.yaml {cpu_size} ({cpu_cem.get('kind', 'cem')}), "
        f"model M=K=0.5; goal_cpu.yaml for the goal row",
        groups["cpu"],
    )

    def by(rows: list[Planner], name: str) -> Planner:
        return next(r for r in rows if r.name == name)

    print()
    cpu_fused = by(groups["cpu"], "planner M=K=0.5 fp32")
    cpu_ref = by(groups["cpu"], "imagine M=K=0.5 fp32")
    cpu_icem = by(groups["cpu"], "icem M=K=0.5 fp32")
    cpu_l1 = by(groups["cpu"], "1-layer M=K=0.5 fp32")
    fused = by(groups["planet"], "planner M=K=1 fp32")
    ref = by(groups["planet"], "imagine M=K=1 fp32")
    planet = by(groups["planet"], "PlaNet RSSM fp32")
    best = lambda row: min(times(row))  # noqa: E731
    print(
        f"cpu profile planner ms per action ({cpu_size}, M=K=0.5, fp32): "
        f"{1e3 * best(cpu_fused):,.1f} fused vs {1e3 * best(cpu_ref):,.1f} through imagine: "
        f"{best(cpu_ref) / best(cpu_fused):.2f}x faster"
    )
    print(
        f"cpu profile planner ms per action with kind=icem ({cpu_size}, shrinking population, "
        f"fused, fp32): {1e3 * best(cpu_icem):,.1f}: {best(cpu_ref) / best(cpu_icem):.2f}x faster "
        "than plain CEM through imagine (return not measured here)"
    )
    print(
        f"cpu profile planner ms per action with model.predictor_layers=1 ({cpu_size}, fused, "
        f"fp32): {1e3 * best(cpu_l1):,.1f}: {best(cpu_ref) / best(cpu_l1):.2f}x faster than the "
        f"2-layer model through imagine, {best(cpu_fused) / best(cpu_l1):.2f}x than it fused "
        "(return: bench/results/rl_cheetah_L1/)"
    )
    print(
        f"planner M=K=1 ms per action ({planet_size}, fp32): {1e3 * best(fused):,.0f} fused vs "
        f"{1e3 * best(ref):,.0f} through imagine: {best(ref) / best(fused):.2f}x faster"
    )
    print(
        f"planner / PlaNet RSSM MFLOP per imagined step: {fused.step_flops / planet.step_flops:.2f}x "
        f"({fused.step_flops / 1e6:.2f} / {planet.step_flops / 1e6:.2f})"
    )
    print(
        f"planner / PlaNet RSSM wall-clock ms per action ({planet_size}): "
        f"{min(fused.wall) / min(planet.wall):.2f}x"
    )
    print(f"{RATIO_LINE}: {best(fused) / best(planet):.2f}x")


if __name__ == "__main__":
    main()
