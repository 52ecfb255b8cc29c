"""The fused planning rollout (worldmodel/model/rollout.py) computes what WorldModel.imagine
computes."""

from __future__ import annotations

import pytest
import torch

from agents.objectives import latent_reward_objective
from worldmodel.model.rollout import LatentRollout, latent_rollout, supports
from worldmodel.model.svg import WorldModel

pytestmark = pytest.mark.usefixtures("one_thread")

A, SIZE, ATOL = 3, 64, 1e-5


def build(model_config, variant: str, action_dim: int = A, **overrides) -> WorldModel:
    torch.manual_seed(0)
    cfg = model_config(variant=variant, **overrides)
    return WorldModel(cfg, SIZE, action_dim).eval()


def observed(model: WorldModel, batch: int = 1):
    """A state after 3 frames (batch ``batch``, entries differing)."""
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (batch, 3, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    actions = None
    if model.action_dim:
        actions = torch.rand(batch, 2, model.action_dim, generator=g) * 2 - 1
    with torch.inference_mode():
        return model.observe(frames, actions)


def assert_same(ref, out) -> None:
    assert out.frames is None
    torch.testing.assert_close(out.embedding, ref.embedding, atol=ATOL, rtol=0)
    if ref.reward is None:
        assert out.reward is None
    else:
        assert out.reward.dtype == torch.float32
        torch.testing.assert_close(out.reward, ref.reward, atol=ATOL, rtol=0)
    a, b = ref.state, out.state
    torch.testing.assert_close(b.embedding, a.embedding, atol=ATOL, rtol=0)
    for name in ("predictor", "prior", "posterior"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert y[0].shape == x[0].shape and y[1].shape == x[1].shape, name
            torch.testing.assert_close(y[0], x[0], atol=ATOL, rtol=0)
            torch.testing.assert_close(y[1], x[1], atol=ATOL, rtol=0)
    if a.first is not None:
        torch.testing.assert_close(b.first, a.first)
    assert len(b.skips) == len(a.skips)


LAYOUTS = {
    "default": {},
    "wide, deep, embedded actions": dict(
        rnn_units=48,
        g_dim=24,
        z_dim=6,
        reward_hidden=20,
        action_embed=5,
        predictor_layers=3,
        prior_layers=2,
    ),
}


@pytest.mark.parametrize("variant", ["svg", "lstm", "cnn"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("batch, samples", [(1, 1), (1, 3), (4, 2)])
def test_matches_imagine(model_config, variant, layout, batch, samples):
    model = build(model_config, variant, **LAYOUTS[layout])
    assert supports(model)
    state = observed(model, batch)
    actions = torch.rand(4, 5, A, generator=torch.Generator().manual_seed(2)) * 2 - 1
    if batch == 1:
        state = state.index(0)
    rollout = LatentRollout(model)
    with torch.inference_mode():
        ref = model.imagine(state, actions, samples, generator=torch.Generator().manual_seed(3))
        out = rollout.imagine(state, actions, samples, generator=torch.Generator().manual_seed(3))
    assert out.reward is not None and out.reward.shape == (4, samples, 5)
    assert_same(ref, out)


@pytest.mark.parametrize("variant", ["svg", "cnn"])
def test_matches_imagine_with_given_noise_and_one_prepared_state(model_config, variant):
    model = build(model_config, variant)
    state = observed(model)
    rollout = LatentRollout(model)
    prepared = rollout.prepare(state)
    for seed in range(3):  # one prepared state serves every call of a plan
        g = torch.Generator().manual_seed(seed)
        actions = torch.rand(6, 4, A, generator=g) * 2 - 1
        noise = torch.randn(1, 2, 4, model.z_dim, generator=g)  # common random numbers
        with torch.inference_mode():
            ref = model.imagine(state, actions, 2, noise=noise)
            out = rollout.run(prepared, actions, 2, noise=noise)
        assert_same(ref, out)


def test_matches_imagine_without_actions(model_config):
    model = build(model_config, "svg", action_dim=0)
    state = observed(model)
    with torch.inference_mode():
        ref = model.imagine(state, None, 2, horizon=3, generator=torch.Generator().manual_seed(0))
        out = LatentRollout(model).imagine(
            state, None, 2, horizon=3, generator=torch.Generator().manual_seed(0)
        )
    assert ref.reward is None and ref.embedding.shape == (1, 2, 3, model.g_dim)
    assert_same(ref, out)


def test_continues_from_its_own_final_state(model_config):
    model = build(model_config, "svg")
    state = observed(model)
    actions = torch.rand(3, 4, A) * 2 - 1
    rollout = LatentRollout(model)
    with torch.inference_mode():
        first = rollout.imagine(state, actions[:, :2], generator=torch.Generator().manual_seed(0))
        ref = model.imagine(first.state, actions[:, 2:], generator=torch.Generator().manual_seed(1))
        out = rollout.imagine(
            first.state, actions[:, 2:], generator=torch.Generator().manual_seed(1)
        )
    assert_same(ref, out)


def test_runs_under_bf16_autocast(model_config):
    model = build(model_config, "svg")
    state = observed(model)
    actions = torch.rand(8, 4, A) * 2 - 1
    noise = torch.randn(8, 1, 4, model.z_dim)
    with torch.inference_mode():
        ref = model.imagine(state, actions, noise=noise)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = LatentRollout(model).imagine(state, actions, noise=noise)
    assert out.reward.dtype == torch.float32 and out.embedding.dtype == torch.float32
    torch.testing.assert_close(out.reward, ref.reward, atol=0.05, rtol=0)
    torch.testing.assert_close(out.embedding, ref.embedding, atol=0.05, rtol=0)


def test_argument_errors_are_those_of_imagine(model_config):
    model = build(model_config, "svg")
    rollout = LatentRollout(model)
    state = observed(model)
    with pytest.raises(ValueError, match="samples"):
        rollout.imagine(state, torch.zeros(2, 3, A), samples=0)
    with pytest.raises(ValueError, match="actions must have shape"):
        rollout.imagine(state, torch.zeros(2, 3, A + 1))
    with pytest.raises(ValueError, match="horizon"):
        rollout.imagine(state, None)


def test_cached_rollout_follows_the_parameters(model_config):
    model = build(model_config, "svg")
    first = latent_rollout(model)
    assert first is not None and latent_rollout(model) is first
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()  # in place: the version counters change
    second = latent_rollout(model)
    assert second is not first
    state = observed(model)
    actions = torch.rand(3, 4, A) * 2 - 1
    with torch.inference_mode():
        ref = model.imagine(state, actions, generator=torch.Generator().manual_seed(0))
        out = second.imagine(state, actions, generator=torch.Generator().manual_seed(0))
    assert_same(ref, out)


def test_an_overridden_imagine_is_respected(model_config):
    calls = []

    class Custom(WorldModel):
        def imagine(self, *args, **kwargs):
            calls.append(1)
            return super().imagine(*args, **kwargs)

    torch.manual_seed(0)
    model = Custom(model_config(), SIZE, A).eval()
    assert not supports(model) and latent_rollout(model) is None
    with pytest.raises(ValueError, match="model.imagine"):
        LatentRollout(model)
    latent_reward_objective(model, observed(model))(torch.zeros(2, 3, A))
    assert calls == [1]


@pytest.mark.parametrize("samples, discount", [(1, 1.0), (3, 0.9)])
def test_objective_takes_the_fused_rollout_and_returns_the_same(model_config, samples, discount):
    model = build(model_config, "svg")
    state = observed(model)
    actions = torch.rand(5, 4, A) * 2 - 1
    objective = latent_reward_objective(
        model, state, samples, torch.Generator().manual_seed(0), discount
    )
    got = objective(actions)
    with torch.inference_mode():
        out = model.imagine(state, actions, samples, generator=torch.Generator().manual_seed(0))
    weights = discount ** torch.arange(4, dtype=torch.float32)
    torch.testing.assert_close(got, (out.reward * weights).sum(-1).mean(-1), atol=ATOL, rtol=0)
