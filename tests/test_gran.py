"""GRAN's recurrent canvas decoder (model.decoder=gran): shapes, the canvas sum, accumulation over
the drawing steps, gradients, overfitting, training through worldmodel.pretrain with the anti-blur
losses, checkpoints and the refused combinations."""

from __future__ import annotations

import math

import pytest
import torch

from tests.test_pretrain import TINY as PRETRAIN_TINY
from tests.test_pretrain import _cfg, _stub_episodes
from tests.test_train import square_batch
from worldmodel import pretrain
from worldmodel.model.gran import GranDecoder, draw
from worldmodel.model.nets import Decoder, Encoder
from worldmodel.model.svg import ModelConfig, WorldModel
from worldmodel.training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from worldmodel.training.train import ObjectiveConfig, TrainConfig, Trainer

TINY = dict(rnn_units=16, nf=4, g_dim=8, z_dim=3, reward_hidden=8)


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models are dominated by OpenMP synchronisation on a shared 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _inputs(size: int, kind: str = "dcgan", steps: int = 3, seed: int = 0):
    """A GRAN decoder (eval mode), embeddings ``(2, 3, 6)`` and skip terms of shape ``(2, 1, ...)``.

    The BatchNorm statistics are first estimated on a few training-mode passes (at initialisation
    the running variance 1 would shrink the embedding's path to nothing next to the skip terms).
    """
    torch.manual_seed(seed)
    enc = Encoder(kind, size, 3, nf=4, g_dim=6)
    dec = GranDecoder(kind, size, 3, nf=4, g_dim=6, steps=steps)
    with torch.no_grad():
        _, skips = enc(torch.rand(2, 3, size, size))
        terms = dec.skip_terms([s[:, None] for s in skips])  # one context frame per sequence
        for _ in range(30):
            dec(torch.rand(2, 3, 6) * 2 - 1, terms)
    return dec.eval(), torch.rand(2, 3, 6) * 2 - 1, terms


@pytest.mark.parametrize("size", [64, 32])
@pytest.mark.parametrize("kind", ["dcgan", "vgg"])
def test_shapes(size, kind):
    dec, g, terms = _inputs(size, kind)
    with torch.no_grad():
        x = dec(g, terms)
        inc = dec.increments(g, terms)
    assert x.shape == (2, 3, 3, size, size) and x.dtype == torch.float32
    assert bool(((x > 0) & (x < 1)).all())
    assert inc.shape == (3, 2, 3, 3, size, size)  # (T, *lead, C, S, S)
    assert dec.resolutions == [size]

    # through the world model: training forward and decoded imagination
    torch.manual_seed(0)
    model = WorldModel(ModelConfig(**TINY, decoder="gran", gran_steps=2), size, action_dim=2)
    assert isinstance(model.decoder, GranDecoder) and model.decoder.steps == 2
    obs = torch.randint(0, 256, (2, 4, 3, size, size), dtype=torch.uint8)
    out = model(obs, torch.rand(2, 3, 2), torch.rand(2, 3), n_past=2)
    assert out.frames.shape == (2, 3, 3, size, size) and out.pyramid is None
    with torch.no_grad():
        state = model.observe(obs[:1, :2], torch.rand(1, 1, 2))
        imagined = model.imagine(state, torch.rand(5, 3, 2), samples=2, decode=True)
    assert imagined.frames.shape == (5, 2, 3, 3, size, size)


def test_canvas_is_the_sigmoid_of_the_summed_increments(monkeypatch):
    # hand check: increments 0.5, 1.0, -2.0 at one pixel sum to -0.5; sigmoid(-0.5) = 0.37754067
    fixed = torch.tensor([0.5, 1.0, -2.0]).view(3, 1, 1, 1, 1)
    assert draw(fixed).item() == pytest.approx(1 / (1 + math.exp(0.5)), abs=1e-7)
    assert draw(fixed).shape == (1, 1, 1, 1)

    # the decoder's frame is exactly draw() of its increments: fix them and decode
    dec, g, terms = _inputs(32)
    increments = torch.randn(3, 2, 3, 3, 32, 32)
    monkeypatch.setattr(dec, "increments", lambda g_, t_: increments)
    expected = 1 / (1 + torch.exp(-(increments[0] + increments[1] + increments[2])))
    torch.testing.assert_close(dec(g, terms), expected)


def test_the_steps_accumulate():
    """T = 3 draws on the canvas of T = 1 (same weights): its first increment is T = 1's whole
    canvas, and the two more increments change the frame."""
    dec3, g, terms = _inputs(32, steps=3)
    dec1 = GranDecoder("dcgan", 32, 3, nf=4, g_dim=6, steps=1).eval()
    dec1.load_state_dict(dec3.state_dict())  # the weights do not depend on T
    with torch.no_grad():
        inc3, inc1 = dec3.increments(g, terms), dec1.increments(g, terms)
        x3, x1 = dec3(g, terms), dec1(g, terms)
    assert inc1.shape[0] == 1 and inc3.shape[0] == 3
    torch.testing.assert_close(inc3[0], inc1[0])  # the same first step
    torch.testing.assert_close(
        x3, torch.sigmoid(torch.logit(x1.double()) + inc3[1] + inc3[2]).float()
    )
    assert (x3 - x1).abs().max() > 1e-3  # the later steps really draw
    assert (inc3[1] - inc3[0]).abs().max() > 1e-4  # the recurrent state moves between steps


def test_every_parameter_gets_a_finite_gradient():
    torch.manual_seed(0)
    model = WorldModel(ModelConfig(**TINY, decoder="gran", gran_steps=3), 32, action_dim=2)
    batch = square_batch(torch.Generator().manual_seed(0), 2, 5)
    out = model(batch.obs, batch.action, batch.reward, n_past=2)
    loss = (out.frames - out.obs[:, 1:]).pow(2).mean() + out.reward.sum() * 0
    loss = loss + (out.posterior_mu.pow(2).mean() + out.prior_mu.pow(2).mean()) * 1e-3
    loss.backward()
    for name, p in model.decoder.named_parameters():
        assert p.grad is not None, name
        assert bool(torch.isfinite(p.grad).all()), name
        assert p.grad.abs().sum() > 0, name  # the cell and the increment net both learn
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)


def test_tiny_model_overfits_a_tiny_batch():
    torch.manual_seed(0)
    cfg = ModelConfig(rnn_units=32, nf=8, g_dim=16, z_dim=4, reward_hidden=32, decoder="gran")
    model = WorldModel(cfg, 32, action_dim=2)
    trainer = Trainer(
        model, TrainConfig(lr=3e-3, precision="fp32", seq_len=6), ObjectiveConfig(), "cpu"
    )
    batch = square_batch(torch.Generator().manual_seed(0), 4, 6)
    first = trainer.step(batch)
    for _ in range(40):
        logs = trainer.step(batch)
    assert logs["loss/recon"] < first["loss/recon"] / 8  # measured: / 17 after 40 steps
    assert logs["loss"] < first["loss"] / 2  # measured: / 2.5 (reward and latent terms are slower)


def test_pretrain_with_anti_blur_losses_and_checkpoint(tmp_path):
    data = _stub_episodes(tmp_path / "data", n=2, steps=8)
    overrides = [
        *PRETRAIN_TINY,
        f"data={data}",
        "loss=full",
        "loss.adv_weight=0.05",  # every anti-blur option on (the preset leaves some off)
        "loss.feature_weight=0.01",
        "loss.pixel_norm=true",
        "loss.progressive.enabled=false",  # GRAN does not grow progressively
        "loss.discriminator.scales=[1,2]",
        "loss.discriminator.width=8",  # small discriminators keep the test fast
        "loss.discriminator.max_width=16",
        "loss.discriminator.hidden=16",
        "model.decoder=gran",
        "model.gran_steps=2",
        "steps=2",
        "video_every=0",
    ]
    summary = pretrain.run(_cfg(*overrides), tmp_path / "run")
    assert {"loss/recon", "loss/gdl", "loss/adv", "loss/feat"} <= set(summary["loss_terms"])
    assert all(math.isfinite(v) for v in summary["loss_terms"].values())
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    config = load_checkpoint(ckpt)["model"]["config"]
    assert config["decoder"] == "gran" and config["gran_steps"] == 2 and config["pixel_norm"]
    model = model_from_checkpoint(ckpt)
    assert isinstance(model.decoder, GranDecoder) and model.decoder.steps == 2

    # progressive growing (on in loss=full) is refused with what to do
    bad = [o for o in overrides if not o.startswith("loss.progressive")]
    with pytest.raises(ValueError, match="loss.progressive.enabled=false"):
        pretrain.run(_cfg(*bad), tmp_path / "bad")


def test_checkpoint_round_trip_and_old_checkpoints(tmp_path):
    torch.manual_seed(0)
    model = WorldModel(ModelConfig(**TINY, decoder="gran", gran_steps=3), 32, action_dim=2)
    trainer = Trainer(model, TrainConfig(precision="fp32", seq_len=5), ObjectiveConfig(), "cpu")
    batch = square_batch(torch.Generator().manual_seed(0), 2, 5)
    trainer.step(batch)  # moves the weights and BatchNorm statistics off their initial values
    path = trainer.save(tmp_path / "gran.pt")

    loaded = model_from_checkpoint(path)
    assert loaded.cfg == model.cfg and isinstance(loaded.decoder, GranDecoder)
    model.eval()
    with torch.no_grad():
        a = model(batch.obs, batch.action, n_past=2, generator=torch.Generator().manual_seed(1))
        b = loaded(batch.obs, batch.action, n_past=2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.frames, b.frames)

    # a checkpoint written before model.decoder existed rebuilds the plain decoder
    torch.manual_seed(0)
    plain = Trainer(WorldModel(ModelConfig(**TINY), 32, 2), TrainConfig(), ObjectiveConfig(), "cpu")
    payload = load_checkpoint(plain.save(tmp_path / "plain.pt"))
    for key in ("decoder", "gran_steps"):
        del payload["model"]["config"][key]
    save_checkpoint(tmp_path / "old.pt", payload)
    old = model_from_checkpoint(tmp_path / "old.pt")
    assert type(old.decoder) is Decoder and old.cfg.decoder == "dcgan"
    plain.load(tmp_path / "old.pt")  # and a trainer resumes from it


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(decoder="gran", progressive_heads=True), "progressive growing"),
        (dict(decoder="gran", decoder_scales=2), "multi-scale"),
        (dict(decoder="draw"), "model.decoder"),
        (dict(decoder="gran", gran_steps=0), "model.gran_steps"),
        (dict(decoder="gran", gran_steps=2.5), "model.gran_steps"),
    ],
)
def test_bad_combinations_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**TINY, **overrides).validate()


def test_decoder_refuses_growing_and_bad_steps():
    dec, g, terms = _inputs(32)
    with pytest.raises(ValueError, match="full size"):
        dec(g, terms, resolution=16)
    with pytest.raises(ValueError, match="full size"):
        dec(g, terms, alpha=0.5)
    with pytest.raises(ValueError, match="steps"):
        GranDecoder("dcgan", 32, 3, nf=4, g_dim=6, steps=0)
