"""WorldModel: shapes of every variant, gradients, observe/imagine semantics, action-free data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from worldmodel.model.svg import ModelConfig, ModelState, WorldModel

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"

pytestmark = pytest.mark.usefixtures("one_thread")


def make_batch(b=2, length=5, size=64, action_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 256, (b, length, 3, size, size), dtype=torch.uint8, generator=g)
    action = torch.rand(b, length - 1, action_dim, generator=g) * 2 - 1 if action_dim else None
    reward = torch.rand(b, length - 1, generator=g) if action_dim else None
    return obs, action, reward


def test_presets_only_override_and_validate(model_config):
    for name in ("svg", "lstm", "cnn", "tiny"):
        values = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        assert set(values) <= fields, f"{name}.yaml has unknown keys {set(values) - fields}"
        model_config(name)
    assert model_config("svg") == ModelConfig()
    assert model_config("lstm").variant == "lstm" and model_config("cnn").variant == "cnn"


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("variant", "gru", "model.variant.*svg"),
        ("encoder", "resnet", "model.encoder.*dcgan"),
        ("M", 0, "model.M"),
        ("K", -1.0, "model.K"),
        ("z_dim", 0, "model.z_dim"),
        ("predictor_layers", 0, "model.predictor_layers"),
        ("action_embed", -1, "model.action_embed"),
    ],
)
def test_validate_names_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{field: value}).validate()


@pytest.mark.parametrize("variant", ["svg", "lstm", "cnn"])
@pytest.mark.parametrize("encoder", ["dcgan", "vgg"])
@pytest.mark.parametrize("size", [64, 128])
def test_shapes_every_variant(variant, encoder, size, model_config):
    torch.manual_seed(0)
    model = WorldModel(
        model_config("tiny", variant=variant, encoder=encoder, K=0.5), size, action_dim=2
    )
    obs, action, reward = make_batch(size=size)
    out = model(obs, action, reward, n_past=2)
    g = model.g_dim
    assert out.frames.shape == (2, 4, 3, size, size)
    assert out.embedding.shape == out.target_embedding.shape == (2, 4, g)
    assert out.reward.shape == (2, 4)
    if variant == "lstm":
        assert out.posterior_mu is None and out.prior_mu is None
    else:
        assert out.posterior_mu.shape == out.prior_logvar.shape == (2, 4, model.z_dim)

    model.eval()
    with torch.no_grad():
        state = model.observe(obs[:, :3], action[:, :2])
        img = model.imagine(state, torch.zeros(2, 3, 2), samples=2, decode=True)
    assert img.reward.shape == (2, 2, 3)
    assert img.embedding.shape == (2, 2, 3, g)
    assert img.frames.shape == (2, 2, 3, 3, size, size)
    assert img.state.batch_size == 4


@pytest.mark.parametrize("M", [1, 2])
@pytest.mark.parametrize("K", [0.25, 0.5, 1])
def test_capacity_multipliers(M, K, model_config):
    cfg = model_config("tiny", M=M, K=K)
    model = WorldModel(cfg, 64, action_dim=3)
    assert model.predictor.lstm.hidden_size == round(M * cfg.rnn_units)
    assert model.encoder.widths[0] == round(K * cfg.nf)
    assert model.g_dim == round(K * cfg.g_dim)
    obs, action, reward = make_batch(length=4, action_dim=3)
    assert model(obs, action, reward, n_past=1).frames.shape == (2, 3, 3, 64, 64)


def test_parameter_count_grows_with_M_and_K():
    def n(M, K):
        with torch.device("meta"):
            return WorldModel(ModelConfig(M=M, K=K), 64, 6).num_params()

    assert n(1, 1) < n(2, 1) < n(3, 1)
    assert n(1, 1) < n(1, 2) < n(1, 3)
    # SVG-LP's own sizes (nf 64, g 128, rnn 256, z 64, no actions) give SVG's ~12.6M parameters
    with torch.device("meta"):
        svg = WorldModel(ModelConfig(nf=64), 64, 0).num_params()
    assert 12.4e6 < svg < 12.9e6


@pytest.mark.parametrize("variant", ["svg", "lstm", "cnn"])
def test_every_parameter_gets_a_finite_gradient(variant, model_config):
    torch.manual_seed(0)
    model = WorldModel(
        model_config("tiny", variant=variant, action_embed=4, posterior_action=True), 64, 2
    )
    obs, action, reward = make_batch()
    out = model(obs, action, reward, n_past=2)
    loss = (out.frames - out.target).pow(2).mean() + out.reward.pow(2).mean()
    loss = loss + (out.embedding - out.target_embedding).pow(2).mean()
    if out.posterior_mu is not None:
        loss = loss + (out.posterior_mu - out.prior_mu).pow(2).mean() + out.prior_logvar.mean()
        loss = loss + out.posterior_logvar.mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert model.encoder.levels[0][0].weight.grad.abs().sum() > 0


def test_target_embedding_is_detached_and_encoder_is_trained_through_inputs(model_config):
    model = WorldModel(model_config("tiny", variant="lstm"), 64, 2)
    obs, action, reward = make_batch()
    out = model(obs, action, reward)
    assert not out.target_embedding.requires_grad
    out.embedding.sum().backward()  # reaches the encoder through the inputs h_{t-1}
    assert model.encoder.head[1].weight.grad.abs().sum() > 0


def test_forward_rejects_bad_inputs(model_config):
    model = WorldModel(model_config("tiny"), 64, 2)
    obs, action, reward = make_batch()
    with pytest.raises(ValueError, match="n_past"):
        model(obs, action, reward, n_past=5)
    with pytest.raises(ValueError, match="actions must have shape"):
        model(obs, action[:, :2], reward)
    with pytest.raises(ValueError, match=r"obs must have shape"):
        model(obs[:, :, :, :32, :32], action, reward)


def test_imagine_broadcasts_a_batch_one_state(model_config):
    torch.manual_seed(0)
    model = WorldModel(model_config("tiny"), 64, 2).eval()
    obs, action, _ = make_batch(b=1)
    actions = torch.rand(5, 4, 2) * 2 - 1
    with torch.no_grad():
        state = model.observe(obs, action)
        one = model.imagine(state, actions, samples=3, generator=torch.Generator().manual_seed(1))
        many = model.imagine(
            state.expand(5), actions, samples=3, generator=torch.Generator().manual_seed(1)
        )
    assert one.reward.shape == (5, 3, 4)
    torch.testing.assert_close(one.reward, many.reward)
    torch.testing.assert_close(one.embedding, many.embedding)
    # samples differ from each other, candidates with equal actions and noise agree
    assert (one.embedding[:, 0] - one.embedding[:, 1]).abs().max() > 1e-4
    with torch.no_grad():
        same = model.imagine(
            state, actions[:1].expand(2, -1, -1), samples=2, noise=torch.randn(1, 2, 4, model.z_dim)
        )
    torch.testing.assert_close(same.reward[0], same.reward[1])


def test_imagine_is_deterministic_given_a_generator(model_config):
    torch.manual_seed(0)
    model = WorldModel(model_config("tiny"), 64, 2).eval()
    obs, action, _ = make_batch(b=1)
    actions = torch.rand(3, 5, 2)
    with torch.no_grad():
        state = model.observe(obs, action)
        a = model.imagine(state, actions, 2, generator=torch.Generator().manual_seed(7))
        b = model.imagine(state, actions, 2, generator=torch.Generator().manual_seed(7))
        c = model.imagine(state, actions, 2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.reward, b.reward) and torch.equal(a.embedding, b.embedding)
    assert not torch.equal(a.embedding, c.embedding)


@pytest.mark.parametrize("variant", ["svg", "lstm", "cnn"])
def test_decoding_does_not_change_the_latent_rollout(variant, model_config):
    torch.manual_seed(0)
    model = WorldModel(model_config("tiny", variant=variant), 64, 2).eval()
    obs, action, _ = make_batch(b=1)
    actions = torch.rand(4, 3, 2)
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append("encoder"))
    model.decoder.register_forward_hook(lambda *_: calls.append("decoder"))
    with torch.no_grad():
        state = model.observe(obs, action)
        calls.clear()
        latent = model.imagine(state, actions, 2, generator=torch.Generator().manual_seed(3))
        assert calls == [] and latent.frames is None  # decode=False never runs E or D
        decoded = model.imagine(
            state, actions, 2, decode=True, generator=torch.Generator().manual_seed(3)
        )
    assert "encoder" not in calls
    assert torch.equal(latent.reward, decoded.reward)
    assert torch.equal(latent.embedding, decoded.embedding)
    assert decoded.frames.shape == (4, 2, 3, 3, 64, 64)


@pytest.mark.parametrize("variant", ["svg", "lstm", "cnn"])
def test_observe_continuation_matches_one_call(variant, model_config):
    torch.manual_seed(0)
    model = WorldModel(model_config("tiny", variant=variant), 64, 2).eval()
    obs, action, _ = make_batch(b=2, length=6)
    with torch.no_grad():
        whole = model.observe(obs, action)
        part = model.observe(obs[:, :2], action[:, :1])
        part = model.observe(obs[:, 2:4], action[:, 1:3], state=part)
        part = model.observe(obs[:, 4:], action[:, 3:], state=part)
    for x, y in zip(
        dataclasses.astuple(whole), dataclasses.astuple(part), strict=True
    ):  # nested tuples of tensors / None
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def test_state_helpers(model_config):
    model = WorldModel(model_config("tiny"), 64, 2).eval()
    obs, action, _ = make_batch(b=3)
    with torch.no_grad():
        state = model.observe(obs, action)
    first = state.index(0)
    assert first.batch_size == 1 and first.predictor[0].shape == (1, 2, 32)
    assert torch.equal(first.expand(4).skips[1][3], state.skips[1][0])
    rep = state.repeat_interleave(2)
    assert rep.batch_size == 6 and torch.equal(rep.embedding[3], state.embedding[1])
    with pytest.raises(ValueError, match="batch 3"):
        state.expand(5)
    assert isinstance(state.detach(), ModelState)


def test_action_free_model(model_config):
    torch.manual_seed(0)
    model = WorldModel(model_config("tiny"), 64, action_dim=0)
    assert model.reward_head is None
    obs, _, _ = make_batch(action_dim=0)
    out = model(obs, None, None, n_past=2)
    assert out.frames.shape == (2, 4, 3, 64, 64) and out.reward is None
    model.eval()
    with torch.no_grad():
        state = model.observe(obs)
        img = model.imagine(state, None, samples=2, horizon=3, decode=True)
    assert img.reward is None and img.frames.shape == (2, 2, 3, 3, 64, 64)
    with pytest.raises(ValueError, match="action_dim=0"):
        model(obs, torch.zeros(2, 4, 2))


def test_action_model_on_action_free_video(model_config):
    """Pretraining on imported video: a model with actions accepts batches without them."""
    torch.manual_seed(0)
    model = WorldModel(model_config("tiny"), 64, action_dim=2)
    obs, _, _ = make_batch(action_dim=0)
    out = model(obs, None, None)
    assert out.reward is None
    out.frames.mean().backward()
    assert model.reward_head[0].weight.grad is None  # no reward, no reward gradient


def test_actions_change_the_prediction(model_config):
    torch.manual_seed(0)
    model = WorldModel(model_config("tiny"), 64, 2).eval()
    obs, action, _ = make_batch(b=1)
    noise = torch.zeros(1, 1, 3, model.z_dim)
    with torch.no_grad():
        state = model.observe(obs, action)
        out = model.imagine(state, torch.stack([torch.ones(3, 2), -torch.ones(3, 2)]), noise=noise)
    assert (out.embedding[0] - out.embedding[1]).abs().max() > 1e-5
    assert (out.reward[0] - out.reward[1]).abs().max() > 1e-6


def test_bf16_autocast_states_mix_with_fp32(model_config):
    torch.manual_seed(0)
    model = WorldModel(model_config("tiny"), 64, 2).eval()
    obs, action, _ = make_batch(b=1)
    actions = torch.rand(3, 4, 2)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            state = model.observe(obs, action)
            half = model.imagine(
                state, actions, 2, decode=True, generator=torch.Generator().manual_seed(0)
            )
        assert state.embedding.dtype == torch.float32 and state.predictor[0].dtype == torch.float32
        full = model.imagine(
            state, actions, 2, decode=True, generator=torch.Generator().manual_seed(0)
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.imagine(full.state, actions.repeat_interleave(2, 0), 1)  # continue a state
    assert half.reward.dtype == half.frames.dtype == torch.float32
    assert torch.isfinite(half.reward).all() and torch.isfinite(half.frames).all()
    assert (half.reward - full.reward).abs().max() < 0.1  # bf16 rounding only


@pytest.mark.parametrize(
    "overrides",
    [dict(decoder="gran"), dict(decoder_scales=2), dict(progressive_heads=True)],
)
def test_composite_needs_the_plain_decoder(overrides):
    with pytest.raises(ValueError, match="model.composite=true needs the plain decoder"):
        ModelConfig(composite=True, **overrides).validate()


def test_composite_model_carries_its_skip_frame(model_config):
    """model.composite: the state's last skip is the observed frame itself; training, observe and
    imagine (decoded) work with it, and every parameter gets a gradient."""
    torch.manual_seed(0)
    model = WorldModel(model_config("tiny", composite=True), 64, 2)
    obs, action, reward = make_batch(b=2, length=6)
    out = model(obs, action, reward, n_past=2)
    loss = (out.frames - out.target).pow(2).mean() + out.reward.pow(2).mean()
    loss = loss + (out.posterior_mu - out.prior_mu).pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        state = model.observe(obs[:, :3], action[:, :2])
        assert len(state.skips) == len(model.decoder.levels) + 1
        torch.testing.assert_close(state.skips[-1], obs[:, 2].float() / 255)
        part = model.observe(
            obs[:, 3:], action[:, 2:], state=model.observe(obs[:, :3], action[:, :2])
        )
        torch.testing.assert_close(part.skips[-1], obs[:, -1].float() / 255)
        im = model.imagine(state.index(0), torch.rand(4, 3, 2), samples=2, decode=True)
    assert im.frames.shape == (4, 2, 3, 3, 64, 64)
    assert 0 <= im.frames.min() and im.frames.max() <= 1


def test_composite_model_learns_to_copy_a_static_texture(model_config):
    """On video of a still random texture (which a plain decoder cannot draw from a 16-d
    embedding), a few gradient steps move the composite model's prediction towards the copy: its
    mask learns to keep the skip frame."""
    torch.manual_seed(0)
    model = WorldModel(model_config("tiny", composite=True), 64, 0)
    g = torch.Generator().manual_seed(1)
    texture = torch.randint(0, 256, (2, 1, 3, 64, 64), dtype=torch.uint8, generator=g)
    obs = texture.expand(-1, 4, -1, -1, -1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def error() -> float:
        with torch.no_grad():
            out = model.eval()(obs, n_past=2)
        return (out.frames - out.target).abs().mean().item()

    before = error()
    for _ in range(20):
        out = model.train()(obs, n_past=2)
        opt.zero_grad()
        (out.frames - out.target).pow(2).mean().backward()
        opt.step()
    assert error() < 0.5 * before
