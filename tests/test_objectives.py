"""Objectives built from a world model, checked against a deterministic toy model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from agents.cem import CEM, CEMConfig
from agents.objectives import goal_image_objective, latent_reward_objective

N, H, A, SIZE = 6, 4, 2, 8


class ToyModel(nn.Module):
    """A deterministic stand-in for ``WorldModel.imagine``.

    The state is a scalar ``x0``. Sample ``s`` of candidate ``n``:
      * reward[n, s, t] = sum_a actions[n, t, a] + s     (through a Linear layer, so autocast acts)
      * frames[n, s, t] = constant image of value clamp(x0 + 0.1 * cumsum_t actions[n, :, 0]
                          + 0.1 * s, 0, 1)
    ``sample_shape`` replaces the single sample dim (e.g. ``(2, 3)`` or ``()``) to test robustness.
    A candidate with actions[n, 0, 0] > 0.5 gets NaN rewards and frames when ``nan_region``.
    """

    def __init__(self, sample_shape: tuple[int, ...] | None = None, nan_region: bool = False):
        super().__init__()
        self.reward_head = nn.Linear(A, 1, bias=False)
        nn.init.ones_(self.reward_head.weight)
        self.sample_shape = sample_shape
        self.nan_region = nan_region
        self.calls: list[dict] = []

    def imagine(self, state, actions, samples=1, decode=False, generator=None):
        self.calls.append(dict(samples=samples, decode=decode, generator=generator))
        n, h, _ = actions.shape
        s = torch.arange(samples, dtype=torch.float32)  # (S,)
        reward = self.reward_head(actions).squeeze(-1)[:, None, :] + s[None, :, None]  # (N, S, H)
        level = state + 0.1 * actions[..., 0].cumsum(1)  # (N, H)
        level = (level[:, None, :] + 0.1 * s[None, :, None]).clamp(0, 1)  # (N, S, H)
        frames = level[..., None, None, None].expand(n, samples, h, 3, SIZE, SIZE)
        if self.nan_region:
            bad = actions[:, 0, 0] > 0.5
            reward = torch.where(bad[:, None, None], math.nan, reward)
            frames = torch.where(bad[:, None, None, None, None, None], math.nan, frames)
        if self.sample_shape is not None:  # reshape the sample dim (S must match its product)
            reward = reward.reshape(n, *self.sample_shape, h)
            frames = frames.reshape(n, *self.sample_shape, h, 3, SIZE, SIZE)
        return SimpleNamespace(reward=reward, frames=frames if decode else None)


def actions(seed: int = 0) -> Tensor:
    return torch.rand(N, H, A, generator=torch.Generator().manual_seed(seed)) * 2 - 1


X0 = torch.tensor(0.3)


# ---------------------------------------------------------------------------------- reward
def test_latent_reward_sums_over_horizon_and_averages_samples():
    model, a = ToyModel(), actions()
    gen = torch.Generator()
    ret = latent_reward_objective(model, X0, samples=3, generator=gen)(a)
    assert ret.shape == (N,) and ret.dtype == torch.float32
    # mean over s of sum_t (sum_a actions + s) = sum(actions) + H * mean(0, 1, 2)
    assert torch.allclose(ret, a.sum(dim=(1, 2)) + H * 1.0, atol=1e-5)
    assert model.calls == [dict(samples=3, decode=False, generator=gen)]
    assert not ret.requires_grad


def test_latent_reward_discount():
    a = actions()
    ret = latent_reward_objective(ToyModel(), X0, discount=0.5)(a)
    expected = (a.sum(-1) * 0.5 ** torch.arange(H)).sum(-1)
    assert torch.allclose(ret, expected, atol=1e-6)


@pytest.mark.parametrize("sample_shape, samples", [((), 1), ((2, 3), 6), ((6,), 6)])
def test_latent_reward_tolerates_other_sample_dims(sample_shape, samples):
    a = actions()
    ret = latent_reward_objective(ToyModel(sample_shape), X0, samples=samples)(a)
    assert ret.shape == (N,)
    assert torch.allclose(ret, a.sum(dim=(1, 2)) + H * (samples - 1) / 2, atol=1e-5)


def test_latent_reward_bf16_autocast_returns_float32():
    a = actions()
    exact = latent_reward_objective(ToyModel(), X0)(a)
    ret = latent_reward_objective(ToyModel(), X0, precision="bf16")(a)
    assert ret.dtype == torch.float32
    assert torch.allclose(ret, exact, atol=0.1)


def test_non_finite_predictions_pass_through():
    a = actions()
    a[:2, 0, 0] = 0.9  # in the NaN region
    a[2:, 0, 0] = 0.0
    ret = latent_reward_objective(ToyModel(nan_region=True), X0)(a)
    assert torch.isnan(ret[:2]).all() and torch.isfinite(ret[2:]).all()
    goal = torch.full((3, SIZE, SIZE), 0.5)
    ret = goal_image_objective(ToyModel(nan_region=True), X0, goal)(a)
    assert torch.isnan(ret[:2]).all() and torch.isfinite(ret[2:]).all()


def test_reward_of_wrong_shape_is_rejected():
    class Bad(ToyModel):
        def imagine(self, state, actions, **kw):
            out = super().imagine(state, actions, **kw)
            return SimpleNamespace(reward=out.reward[:, :, :-1], frames=None)

    with pytest.raises(ValueError, match="reward of shape"):
        latent_reward_objective(Bad(), X0)(actions())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(samples=0), "samples"),
        (dict(discount=0.0), "discount"),
        (dict(discount=1.5), "discount"),
        (dict(precision="fp8"), "precision"),
    ],
)
def test_latent_reward_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        latent_reward_objective(ToyModel(), X0, **kwargs)


def test_cem_maximises_the_latent_reward():
    # reward = sum of actions: the optimum is the upper bound everywhere
    cem = CEM(
        CEMConfig(population=200, elites=20, iterations=8, horizon=H),
        -torch.ones(A),
        torch.ones(A),
        generator=torch.Generator().manual_seed(0),
    )
    plan = cem.plan(latent_reward_objective(ToyModel(), X0))
    assert (plan > 0.95).all()


# ---------------------------------------------------------------------------------- goal image
def levels(a: Tensor, samples: int = 1) -> Tensor:
    """The toy's frame values (N, S, H)."""
    lv = X0 + 0.1 * a[..., 0].cumsum(1)
    return (lv[:, None, :] + 0.1 * torch.arange(samples)[None, :, None]).clamp(0, 1)


@pytest.mark.parametrize("which", ["last", "all"])
def test_goal_l2_is_minus_mean_squared_pixel_distance(which):
    a, g = actions(), 0.6
    goal = torch.full((3, SIZE, SIZE), g)
    model = ToyModel()
    ret = goal_image_objective(model, X0, goal, samples=2, which_frames=which)(a)
    lv = levels(a, 2)  # (N, S, H)
    lv = lv[..., -1:] if which == "last" else lv
    assert torch.allclose(ret, -((lv - g) ** 2).mean(dim=(1, 2)), atol=1e-6)
    assert model.calls[0]["decode"] is True and model.calls[0]["samples"] == 2


def test_goal_closer_is_higher_and_uint8_goal_matches_float():
    goal = torch.full((3, SIZE, SIZE), 0.7)
    a = torch.zeros(3, H, A)
    a[:, :, 0] = torch.tensor([-1.0, 0.0, 1.0])[:, None]  # final level 0, 0.3, 0.7
    ret = goal_image_objective(ToyModel(), X0, goal)(a)
    assert ret[2] > ret[1] > ret[0] and abs(ret[2]) < 1e-6
    goal_u8 = torch.full((3, SIZE, SIZE), 153, dtype=torch.uint8)  # 153 / 255 = 0.6
    ret_u8 = goal_image_objective(ToyModel(), X0, goal_u8)(a)
    ret_float = goal_image_objective(ToyModel(), X0, torch.full((3, SIZE, SIZE), 0.6))(a)
    assert torch.allclose(ret_u8, ret_float, atol=1e-6)


class MeanColour(nn.Module):
    """A toy comparator: per-channel means and a 2x2 average pooling -> features (B, 3 + 12)."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        assert x.dim() == 4 and x.shape[1] == 3
        self.batches.append(x.shape[0])
        pooled = nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return torch.cat([x.mean(dim=(2, 3)), pooled], dim=1)


def test_goal_feature_distance_and_chunking():
    a, g = actions(), 0.6
    goal = torch.full((3, SIZE, SIZE), g)
    comp = MeanColour()
    full = goal_image_objective(ToyModel(), X0, goal, "feature", comp, which_frames="all")(a)
    # constant frames: every feature equals the level, so the distance is (level - g)^2
    assert torch.allclose(full, -((levels(a) - g) ** 2).mean(dim=(1, 2)), atol=1e-6)
    assert comp.batches == [1, N * H]  # the goal once, then all frames in one batch

    comp = MeanColour()
    chunked = goal_image_objective(
        ToyModel(), X0, goal, "feature", comp, which_frames="all", chunk_size=7
    )
    assert torch.allclose(chunked(a), full, atol=1e-6)
    assert max(comp.batches) <= 7 and sum(comp.batches) == 1 + N * H
    chunked(a)
    assert sum(comp.batches) == 1 + 2 * N * H  # goal features are computed once


class TwoLayers(nn.Module):
    """A comparator returning a list of feature maps, like ``worldmodel.antiblur.comparator``'s."""

    def forward(self, x: Tensor) -> list[Tensor]:
        return [x[:, :1, :2, :2], 3 * nn.functional.avg_pool2d(x, 2)]


def test_goal_feature_distance_sums_the_layer_means():
    a, g = actions(), 0.6
    goal = torch.full((3, SIZE, SIZE), g)
    ret = goal_image_objective(ToyModel(), X0, goal, "feature", TwoLayers())(a)
    # constant frames: layer 1 gives (level - g)^2, layer 2 gives 9 (level - g)^2
    expected = -10 * (levels(a)[..., -1] - g) ** 2
    assert torch.allclose(ret, expected[:, 0], atol=1e-5)


def test_goal_feature_distance_with_the_project_comparator():
    comparator_mod = pytest.importorskip("worldmodel.antiblur.comparator")
    comp = comparator_mod.AlexNetFeatures().eval()
    goal = torch.full((3, 64, 64), 0.5)

    class Frames64(ToyModel):
        def imagine(self, state, actions, **kw):
            out = super().imagine(state, actions, **kw)
            out.frames = nn.functional.interpolate(out.frames.flatten(0, 2), size=64)
            out.frames = out.frames.reshape(len(actions), -1, actions.shape[1], 3, 64, 64)
            return out

    a = torch.zeros(3, H, A)
    a[:, :, 0] = torch.tensor([-1.0, 0.5, 0.0])[:, None]  # final level 0, 0.5, 0.3
    ret = goal_image_objective(Frames64(), X0, goal, "feature", comp)(a)
    assert ret.shape == (3,) and torch.isfinite(ret).all()
    assert ret[1] > ret[2] > ret[0] and abs(ret[1]) < 1e-6


@pytest.mark.parametrize("sample_shape, samples", [((), 1), ((2, 2), 4)])
def test_goal_tolerates_other_sample_dims(sample_shape, samples):
    a, goal = actions(), torch.full((3, SIZE, SIZE), 0.6)
    ret = goal_image_objective(ToyModel(sample_shape), X0, goal, samples=samples)(a)
    expected = -((levels(a, samples)[..., -1] - 0.6) ** 2).mean(1)
    assert torch.allclose(ret, expected, atol=1e-6)


@pytest.mark.parametrize(
    "goal, kwargs, match",
    [
        (torch.zeros(SIZE, SIZE, 3), {}, r"shape \(3, h, w\)"),
        (torch.zeros(3, SIZE, SIZE), dict(distance="l1"), "distance"),
        (torch.zeros(3, SIZE, SIZE), dict(distance="feature"), "comparator"),
        (torch.zeros(3, SIZE, SIZE), dict(which_frames="first"), "which_frames"),
        (torch.zeros(3, SIZE, SIZE), dict(chunk_size=0), "chunk_size"),
    ],
)
def test_goal_argument_errors(goal, kwargs, match):
    with pytest.raises(ValueError, match=match):
        goal_image_objective(ToyModel(), X0, goal, **kwargs)


def test_goal_of_wrong_size_is_rejected_at_the_first_call():
    objective = goal_image_objective(ToyModel(), X0, torch.zeros(3, 2 * SIZE, 2 * SIZE))
    with pytest.raises(ValueError, match="resize the goal"):
        objective(actions())


def test_cem_drives_the_frames_to_the_goal():
    goal = torch.full((3, SIZE, SIZE), 0.7)  # the final level must rise by 0.4: sum a[:, 0] = 4
    cem = CEM(
        CEMConfig(population=200, elites=20, iterations=8, horizon=H),
        -torch.ones(A),
        torch.ones(A),
        generator=torch.Generator().manual_seed(0),
    )
    plan = cem.plan(goal_image_objective(ToyModel(), X0, goal))
    assert abs(levels(plan[None])[0, 0, -1].item() - 0.7) < 0.02


def test_model_without_reward_head_is_reported():
    class NoReward(ToyModel):
        def imagine(self, state, actions, **kw):
            out = super().imagine(state, actions, **kw)
            return SimpleNamespace(reward=None, frames=out.frames)

    with pytest.raises(ValueError, match="no reward head"):
        latent_reward_objective(NoReward(), X0)(actions())


# ---------------------------------------------------------------------------------- real model
def test_objectives_run_on_the_project_world_model(model_config):
    svg = pytest.importorskip("worldmodel.model.svg")
    torch.manual_seed(0)
    model = svg.WorldModel(model_config(), image_size=64, action_dim=A).eval()
    obs = torch.randint(0, 256, (1, 2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        state = model.observe(obs, torch.zeros(1, 1, A))
    a = actions()
    gen = torch.Generator().manual_seed(0)
    reward = latent_reward_objective(model, state, samples=2, generator=gen)(a)
    goal = goal_image_objective(model, state, obs[0, -1], samples=2, generator=gen)(a)
    for ret in (reward, goal):
        assert ret.shape == (N,) and ret.dtype == torch.float32 and torch.isfinite(ret).all()
    assert (goal <= 0).all()
    cem = CEM(
        CEMConfig(population=16, elites=4, iterations=2, horizon=3), -torch.ones(A), torch.ones(A)
    )
    assert cem.act(latent_reward_objective(model, state)).shape == (A,)
