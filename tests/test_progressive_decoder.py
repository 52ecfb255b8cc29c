"""Generator options of the anti-blur objective: PGGAN pixel norm in the decoder, a progressively
growing decoder (toRGB heads, fade-in) that grows with the discriminators, Mathieu et al.'s
multi-scale (coarse-to-fine) decoder; their wiring into the trainer, the entry points
(worldmodel.pretrain, agents.loop) and checkpoints."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import (
    cem_planner,  # noqa: F401 - registers cem_planner_schema
    loop,
)
from tests.test_pretrain import TINY as PRETRAIN_TINY
from tests.test_pretrain import _cfg, _stub_episodes
from worldmodel import pretrain
from worldmodel.antiblur.adversarial import AdversarialTrainer, AntiBlurConfig
from worldmodel.antiblur.discriminator import DiscriminatorConfig
from worldmodel.antiblur.pggan import ProgressiveConfig
from worldmodel.data import Batch
from worldmodel.model.decoders import MultiScaleDecoder, ProgressiveDecoder
from worldmodel.model.layers import PixelNorm
from worldmodel.model.nets import Decoder, Encoder
from worldmodel.model.svg import WorldModel
from worldmodel.training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from worldmodel.training.train import ObjectiveConfig, TrainConfig, Trainer
from worldmodel.training.training_setup import build_trainer, resolve_model_config

TINY_D = dict(width=8, max_width=16, hidden=16, scales=[1, 2])
# agents.loop: 32 px stub episodes of 10 steps, a tiny model and CEM search (as in test_loop.py)
LOOP_TINY = [
    "profile=cpu",
    "env=stub",
    "env.size=32",
    "env.max_episode_steps=10",
    "model=tiny",
    "train.batch_size=4",
    "train.seq_len=6",
    "train_steps=2",
    "planner.cem.population=16",
    "planner.cem.elites=4",
    "planner.cem.iterations=2",
    "planner.cem.horizon=3",
    "seed_episodes=2",
    "eval_every=1",
    "device=cpu",
    "progress=false",
]


def _scalars(tb_dir: Path) -> dict[str, list[float]]:
    """Every scalar series of a TensorBoard log directory: tag -> values in step order."""
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


pytestmark = pytest.mark.usefixtures("one_thread")


def _decoder_inputs(kind: str, size: int, seed: int = 0):
    """A decoder with heads (eval mode), an embedding ``(2, 6)`` and its skip terms."""
    torch.manual_seed(seed)
    enc = Encoder(kind, size, 3, nf=4, g_dim=6)
    dec = ProgressiveDecoder(kind, size, 3, nf=4, g_dim=6).eval()
    with torch.no_grad():
        h, skips = enc(torch.rand(2, 3, size, size))
        terms = dec.skip_terms(skips)
    return dec, torch.randn(2, 6), terms


def _features(dec: Decoder, g: torch.Tensor, terms) -> dict[int, torch.Tensor]:
    """Features at every resolution (the stem at 4 px, each level's output) of the full decode."""
    feats: dict[int, torch.Tensor] = {}
    hooks = [dec.stem.register_forward_hook(lambda m, i, o: feats.__setitem__(4, o))]
    for k, level in enumerate(dec.levels):
        r = dec.image_size >> k
        hooks.append(level.post.register_forward_hook(lambda m, i, o, r=r: feats.__setitem__(r, o)))
    with torch.no_grad():
        dec(g, terms)
    for hk in hooks:
        hk.remove()
    return feats


# -- pixel norm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dcgan", "vgg"])
def test_decoder_pixel_norm_matches_definition(kind, model_config):
    torch.manual_seed(0)
    dec = Decoder(kind, 32, 3, nf=4, g_dim=6, pixel_norm=True)
    norms = [m for m in dec.modules() if isinstance(m, PixelNorm)]
    # one after every conv block but the RGB output: the stem + every BatchNorm of the levels
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in dec.modules())
    assert len(norms) == n_bn >= 1 + len(dec.levels) - 1
    seen = []

    def check(module, inputs, output):
        a = inputs[0]
        expected = a / torch.sqrt(a.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        torch.testing.assert_close(output, expected)
        # unit mean square over channels at every pixel (m / (m + eps) with m = mean_c(a^2))
        m = a.pow(2).mean(dim=1)
        torch.testing.assert_close(output.pow(2).mean(dim=1), m / (m + 1e-8), rtol=1e-5, atol=0)
        assert (output.pow(2).mean(dim=1) - 1).abs().median() < 1e-6
        seen.append(output.shape)

    for m in norms:
        m.register_forward_hook(check)
    with torch.no_grad():
        terms = dec.skip_terms(Encoder(kind, 32, 3, 4, 6)(torch.rand(3, 3, 32, 32))[1])
    y = dec(torch.randn(3, 6), terms)
    assert len(seen) == len(norms) and y.shape == (3, 3, 32, 32)
    assert 0 <= y.min() and y.max() <= 1
    # off: no PixelNorm anywhere; the encoder never has one
    assert not any(isinstance(m, PixelNorm) for m in Decoder(kind, 32, 3, 4, 6).modules())
    model = WorldModel(model_config(encoder=kind, pixel_norm=True), 32, 2)
    assert any(isinstance(m, PixelNorm) for m in model.decoder.modules())
    assert not any(isinstance(m, PixelNorm) for m in model.encoder.modules())


# -- the growing decoder ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dcgan", "vgg"])
def test_fade_in_blends_the_two_heads(kind):
    size = 32
    dec, g, terms = _decoder_inputs(kind, size)
    assert sorted(int(r) for r in dec.to_rgb) == [4, 8, 16]  # toRGB for 4 .. S/2
    assert dec.resolutions == [4, 8, 16, 32]
    feats = _features(dec, g, terms)
    with torch.no_grad():
        rgb = {r: dec.to_rgb[str(r)](f) for r, f in feats.items() if r < size}
        rgb[size] = feats[size]  # the full-size "toRGB" is the decoder's own last level

        def up(x):
            return F.interpolate(x, scale_factor=2, mode="nearest")

        for r in (8, 16, 32):
            for alpha in (0.0, 0.5, 1.0):
                out = dec(g, terms, resolution=r, alpha=alpha)
                expected = alpha * rgb[r] + (1 - alpha) * up(rgb[r // 2])
                assert out.shape == (2, 3, r, r)
                torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
        # alpha 0 is the old head upsampled, alpha 1 the new one (no trace of the other head;
        # a tolerance of float rounding, since the decoder and this test compute them apart)
        exact = dict(rtol=0, atol=1e-6)
        torch.testing.assert_close(dec(g, terms, 16, 0.0), up(rgb[8]), **exact)
        torch.testing.assert_close(dec(g, terms, 16, 1.0), rgb[16], **exact)
        torch.testing.assert_close(dec(g, terms, 4, 1.0), rgb[4], **exact)
        torch.testing.assert_close(dec(g, terms, size, 1.0), dec(g, terms), **exact)


def test_growing_decoder_errors(model_config):
    dec, g, terms = _decoder_inputs("dcgan", 32)
    with pytest.raises(ValueError, match="coarsest"):
        dec(g, terms, resolution=4, alpha=0.5)
    with pytest.raises(ValueError, match="not available"):
        dec(g, terms, resolution=12)
    with pytest.raises(ValueError, match="alpha"):
        dec(g, terms, resolution=16, alpha=1.5)
    plain = Decoder("dcgan", 32, 3, 4, 6)
    assert not hasattr(plain, "to_rgb") and plain.resolutions == [32]
    with pytest.raises(ValueError, match="progressive_heads"):
        plain(g, terms, resolution=16)
    with pytest.raises(ValueError, match="progressive_heads"):
        plain(g, terms, alpha=0.5)
    with pytest.raises(ValueError, match="progressive_heads"):
        model_config(progressive_heads=1)


def _batch(size: int = 32):
    gen = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 256, (2, 5, 3, size, size), dtype=torch.uint8, generator=gen)
    action = torch.rand(2, 4, 2, generator=gen) * 2 - 1
    reward = torch.rand(2, 4, generator=gen)
    return obs, action, reward


@pytest.mark.parametrize("kind", ["dcgan", "vgg"])
def test_options_off_and_fully_grown_are_the_plain_model(kind, model_config):
    obs, action, reward = _batch()
    models = {}
    for name, extra in {
        "default": {},
        "off": dict(pixel_norm=False, progressive_heads=False, decoder_scales=1),
        "heads": dict(progressive_heads=True),
    }.items():
        torch.manual_seed(0)
        models[name] = WorldModel(model_config(encoder=kind, **extra), 32, 2)
    plain = models["default"]
    # no new parameters or buffers unless switched on: old checkpoints keep their keys
    assert models["off"].state_dict().keys() == plain.state_dict().keys()
    assert not any("to_rgb" in k for k in plain.state_dict())
    # the heads do not shift the random stream: every shared weight is the same (same seed)
    grown = models["heads"].state_dict()
    for k, v in plain.state_dict().items():
        assert torch.equal(grown[k], v), k
    assert set(grown) - set(plain.state_dict()) == {
        k for k in grown if k.startswith("decoder.to_rgb.")
    }

    def frames(model, **kw):
        return model(obs, action, reward, generator=torch.Generator().manual_seed(3), **kw).frames

    ref = frames(plain)  # the same weights through other code paths: equal up to rounding
    torch.testing.assert_close(frames(models["off"]), ref)
    torch.testing.assert_close(frames(plain, resolution=32, alpha=1.0), ref)
    torch.testing.assert_close(frames(models["heads"]), ref)  # fully grown == plain
    out = models["heads"](obs, action, reward, resolution=16, alpha=0.25)
    assert out.frames.shape == (2, 4, 3, 16, 16) and out.alpha == 0.25
    assert out.resolution == 16
    torch.testing.assert_close(
        out.target, F.avg_pool2d(out.obs[:, 1:].flatten(0, 1), 2).view(2, 4, 3, 16, 16)
    )
    full = plain(obs, action, reward)
    assert full.target is not None and full.resolution == 32
    torch.testing.assert_close(full.target, full.obs[:, 1:], rtol=0, atol=0)


def test_resolve_model_config_switches_on_without_writing_back(model_config):
    model, loss = model_config(), AntiBlurConfig(pixel_norm=True)
    loss.progressive.enabled = True
    resolved = resolve_model_config(model, loss)
    assert resolved.pixel_norm and resolved.progressive_heads
    assert not model.pixel_norm and not model.progressive_heads  # nothing written back
    assert resolve_model_config(model, AntiBlurConfig()) == model
    forced = dataclasses.replace(model, pixel_norm=True)
    assert resolve_model_config(forced, AntiBlurConfig()).pixel_norm  # the model's own switch


# -- training -----------------------------------------------------------------------------------


def _loss_cfg(**progressive) -> AntiBlurConfig:
    return AntiBlurConfig(
        gdl_weight=1.0,
        adv_weight=0.05,
        discriminator=DiscriminatorConfig(**TINY_D, context_frames=2),
        progressive=ProgressiveConfig(**{"enabled": True, "start_resolution": 8, **progressive}),
    )


def _progressive_trainer(model_config, loss: AntiBlurConfig, seed: int = 0) -> Trainer:
    torch.manual_seed(seed)
    model = WorldModel(resolve_model_config(model_config(), loss), 32, 2)
    train = TrainConfig(lr=1e-3, precision="fp32", seq_len=5, n_past=2)
    return build_trainer(model, train, ObjectiveConfig(), loss, "cpu")


def test_trainer_follows_the_discriminator_schedule(model_config):
    loss = _loss_cfg(stabilize_steps=1, fade_steps=2)
    trainer = _progressive_trainer(model_config, loss)
    adv = trainer.objective.adversarial
    assert trainer.progressive is adv.schedule and adv.generator_grows
    shapes = []
    terms = trainer.objective.terms

    def probe(out):  # what the anti-blur terms see at each step
        shapes.append((out.frames.shape[-1], out.target.shape[-1], out.alpha))
        return terms(out)

    trainer.objective.terms = probe
    obs, action, reward = _batch()
    seen = []
    for _ in range(6):
        logs = trainer.step(Batch(obs, action, reward))
        assert all(math.isfinite(v) for v in logs.values())
        point = (logs["progressive/resolution"], logs["progressive/alpha"])
        assert point == (logs["disc/d/resolution"], logs["disc/d/alpha"])  # G and D together
        seen.append(point)
    assert seen == [(8, 1.0), (16, 0.0), (16, 0.5), (16, 1.0), (32, 0.0), (32, 0.5)]
    assert shapes == [(int(r), int(r), a) for r, a in seen]  # every term compares at r
    # a plain trainer logs no progressive keys
    torch.manual_seed(0)
    plain = Trainer(
        WorldModel(model_config(), 32, 2), TrainConfig(seq_len=5), ObjectiveConfig(), "cpu"
    )
    assert not any(k.startswith("progressive/") for k in plain.step(Batch(obs, action, reward)))
    # progressive growing without heads is refused with a clear message
    with pytest.raises(ValueError, match="progressive heads"):
        build_trainer(
            WorldModel(model_config(), 32, 2),
            TrainConfig(seq_len=5),
            ObjectiveConfig(),
            loss,
            "cpu",
        )


def test_after_the_schedule_a_step_is_exactly_the_plain_step(model_config):
    loss = _loss_cfg(stabilize_steps=1, fade_steps=1)
    grown = _progressive_trainer(model_config, loss)
    plain_loss = dataclasses.replace(loss, progressive=ProgressiveConfig(enabled=False))
    torch.manual_seed(0)
    plain_model = WorldModel(model_config(), 32, 2)
    plain = build_trainer(
        plain_model,
        TrainConfig(lr=1e-3, precision="fp32", seq_len=5, n_past=2),
        ObjectiveConfig(),
        plain_loss,
        "cpu",
    )
    # the same discriminator weights (the growing one also has fromRGB layers for 8 and 16 px)
    d_grown = grown.objective.adversarial.discriminator
    missing, _ = plain.objective.adversarial.discriminator.load_state_dict(
        d_grown.state_dict(), strict=False
    )
    assert not missing
    end = grown.progressive.total_steps
    grown.global_step = end  # jump past the schedule (the one step counter)
    assert grown.resolution_alpha == (32, 1.0)
    batch = Batch(*_batch())
    lg, lp = grown.step(batch), plain.step(batch)
    for k, v in lp.items():  # the same step computed by two code paths: equal up to rounding
        if k != "step":
            assert lg[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    grown_state = grown.model.state_dict()
    for k, v in plain.model.state_dict().items():
        torch.testing.assert_close(grown_state[k], v, msg=k)


def test_discriminator_judges_growing_fakes_as_they_are():
    cfg = _loss_cfg(stabilize_steps=0, fade_steps=4)
    adv = AdversarialTrainer(cfg, 32, generator_grows=True)
    point = adv.schedule.at(2)
    assert point == (16, 0.5)
    fake, real = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 32, 32)
    fake_p, _, alpha = adv.prepare(fake, None, generated=True, point=point)
    assert alpha == 0.5 and torch.equal(fake_p, fake)
    real_p, _, _ = adv.prepare(real, None, point=point)  # reals are blended as in PGGAN
    pooled = F.avg_pool2d(real, 2)
    low = F.interpolate(F.avg_pool2d(pooled, 2), scale_factor=2, mode="nearest")
    torch.testing.assert_close(real_p, 0.5 * pooled + 0.5 * low)
    static = AdversarialTrainer(cfg, 32)  # a generator that does not grow: fakes blended too
    assert not torch.equal(static.prepare(fake, None, generated=True, point=point)[0], fake)
    # without a point the discriminator judges fully grown frames
    assert adv.prepare(real, None)[0] is real and adv.prepare(real, None)[2] == 1.0


# -- checkpoints and the entry point -------------------------------------------------------------


def test_checkpoint_round_trip_and_old_checkpoints(tmp_path, model_config):
    loss = _loss_cfg(stabilize_steps=1, fade_steps=1)
    loss.pixel_norm = True
    trainer = _progressive_trainer(model_config, loss)
    trainer.step(Batch(*_batch()))
    path = trainer.save(tmp_path / "c.pt")
    model = model_from_checkpoint(path)
    assert model.cfg.pixel_norm and model.cfg.progressive_heads
    assert isinstance(model.decoder, ProgressiveDecoder)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    resumed = _progressive_trainer(model_config, loss, seed=1)
    resumed.load(path)
    assert resumed.resolution_alpha == trainer.resolution_alpha == (16, 0.0)

    # a checkpoint written before the fields existed loads as the plain model
    torch.manual_seed(0)
    old_trainer = Trainer(
        WorldModel(model_config(), 32, 2), TrainConfig(seq_len=5), ObjectiveConfig(), "cpu"
    )
    payload = load_checkpoint(old_trainer.save(tmp_path / "old.pt"))
    for name in ("pixel_norm", "progressive_heads", "decoder_scales"):
        del payload["model"]["config"][name]
    old = save_checkpoint(tmp_path / "old.pt", payload)
    model = model_from_checkpoint(old)
    assert not model.cfg.pixel_norm and type(model.decoder) is Decoder
    old_trainer.load(old)  # resuming is not refused for the missing keys


def test_pretrain_full_loss_with_progressive_decoder(tmp_path):
    data = _stub_episodes(tmp_path / "data", n=2, steps=8)
    overrides = [
        *PRETRAIN_TINY,
        "loss=full",
        "loss.adv_weight=0.05",  # every anti-blur option on (the preset leaves some off)
        "loss.feature_weight=0.01",
        "loss.pixel_norm=true",
        f"data={data}",
        "train.seq_len=4",
        "loss.progressive.start_resolution=16",
        "loss.progressive.stabilize_steps=1",
        "loss.progressive.fade_steps=2",
        "log_every=1",
        "video_every=0",
    ]
    cfg = _cfg(*overrides, "steps=5")
    assert not cfg.model.pixel_norm and not cfg.model.progressive_heads  # set by the entry point
    summary = pretrain.run(cfg, tmp_path / "run")
    assert math.isfinite(summary["final_loss"])
    assert {"loss/recon", "loss/gdl", "loss/adv", "loss/feat"} <= set(summary["loss_terms"])
    assert all(math.isfinite(v) for v in summary["loss_terms"].values())

    series = _scalars(tmp_path / "run" / "tb")
    assert series["progressive/resolution"] == [16, 32, 32, 32, 64]
    assert series["progressive/alpha"] == [1.0, 0.0, 0.5, 1.0, 0.0]
    assert series["disc/d/resolution"] == series["progressive/resolution"]
    assert all(math.isfinite(v) for v in series["train/loss"])

    ckpt = Path(summary["checkpoint"])
    model = model_from_checkpoint(ckpt)
    assert model.cfg.pixel_norm and model.cfg.progressive_heads  # the loss config sets both
    resumed = pretrain.run(_cfg(*overrides, "steps=6", "resume=true"), tmp_path / "run")
    assert resumed["start_step"] == 5 and math.isfinite(resumed["final_loss"])


# -- multi-scale (coarse-to-fine) decoder -------------------------------------------------------


@pytest.mark.parametrize("kind", ["dcgan", "vgg"])
def test_multiscale_decoder_is_coarse_to_fine(kind, model_config):
    size = 32
    torch.manual_seed(0)
    enc = Encoder(kind, size, 3, nf=4, g_dim=6)
    dec = MultiScaleDecoder(kind, size, 3, nf=4, g_dim=6, scales=3).eval()
    assert sorted(int(r) for r in dec.residual_heads) == [8, 16]
    with torch.no_grad():
        terms = dec.skip_terms(enc(torch.rand(2, 3, size, size))[1])
    g = torch.randn(2, 6)
    feats = _features(dec, g, terms)  # level outputs; at 32 px: the last level's logits
    with torch.no_grad():
        ys = dec.pyramid(g, terms)
        assert [y.shape[-1] for y in ys] == [8, 16, 32]
        assert all(0 < y.min() and y.max() < 1 for y in ys)
        residual = {r: dec.residual_heads[str(r)](feats[r]) for r in (8, 16)}
        residual[32] = feats[32]
        torch.testing.assert_close(ys[0], torch.sigmoid(residual[8]))
        for k in (1, 2):  # Y_k = u(Y_{k-1}) + G'_k in logit coordinates
            r = ys[k].shape[-1]
            up = F.interpolate(ys[k - 1], scale_factor=2, mode="nearest")
            expected = torch.sigmoid(torch.logit(up) + residual[r])
            torch.testing.assert_close(ys[k], expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(dec(g, terms), ys[-1])  # users get the finest scale
    with pytest.raises(ValueError, match="full size"):
        dec(g, terms, resolution=16)
    with pytest.raises(ValueError, match="scales"):
        MultiScaleDecoder(kind, size, 3, 4, 6, scales=4)  # the coarsest would be 4 px
    with pytest.raises(ValueError, match="decoder_scales"):
        model_config(decoder_scales=2, progressive_heads=True)
    with pytest.raises(ValueError, match="decoder_scales"):
        model_config(decoder_scales=0)
    # the residual heads leave the shared weights' initialisation alone (same seed)
    torch.manual_seed(1)
    plain = Decoder(kind, size, 3, 4, 6).state_dict()
    torch.manual_seed(1)
    multi = MultiScaleDecoder(kind, size, 3, 4, 6, scales=3).state_dict()
    assert set(multi) - set(plain) == {k for k in multi if k.startswith("residual_heads.")}
    assert all(torch.equal(multi[k], v) for k, v in plain.items())


# the parameter names of the decoders before they were split into Decoder and its two wrappers
# (checkpoints store them): a 32 px dcgan decoder's trunk, then its heads
_TRUNK_KEYS = {
    *(f"levels.0.{k}" for k in ("main.bias", "main.weight", "skip.weight")),
    *(f"levels.{i}.{k}" for i in (1, 2) for k in ("main.weight", "skip.weight")),
    *(f"levels.{i}.post.0.{k}" for i in (1, 2) for k in ("weight", "bias")),
    *(f"levels.{i}.post.0.{k}" for i in (1, 2) for k in ("running_mean", "running_var")),
    *(f"levels.{i}.post.0.num_batches_tracked" for i in (1, 2)),
    "stem.0.weight",
    *(f"stem.2.{k}" for k in ("weight", "bias", "running_mean", "running_var")),
    "stem.2.num_batches_tracked",
}


def test_decoder_parameter_names_are_unchanged():
    """Checkpoints written before the split load: same names, trunk weights in the same places."""
    assert set(Decoder("dcgan", 32, 3, 4, 6).state_dict()) == _TRUNK_KEYS
    heads = {f"to_rgb.{r}.0.{k}" for r in (4, 8, 16) for k in ("weight", "bias")}
    assert set(ProgressiveDecoder("dcgan", 32, 3, 4, 6).state_dict()) == _TRUNK_KEYS | heads
    residual = {f"residual_heads.{r}.{k}" for r in (8, 16) for k in ("weight", "bias")}
    multi = MultiScaleDecoder("dcgan", 32, 3, 4, 6, pixel_norm=True, scales=3)
    assert set(multi.state_dict()) == _TRUNK_KEYS | residual
    # a state dict of one loads into another of the same trunk (strict for the shared names)
    plain = Decoder("dcgan", 32, 3, 4, 6, pixel_norm=True)
    missing, unexpected = plain.load_state_dict(multi.state_dict(), strict=False)
    assert not missing and set(unexpected) == residual


def test_discriminator_judges_one_candidate_per_scale():
    d = AdversarialTrainer(
        AntiBlurConfig(
            adv_weight=0.05, discriminator=DiscriminatorConfig(**{**TINY_D, "scales": [1, 2, 4]})
        ),
        32,
    ).discriminator.eval()
    frame, ctx = torch.rand(3, 3, 32, 32), torch.rand(3, 2, 3, 32, 32)
    pooled = [frame, F.avg_pool2d(frame, 2), F.avg_pool2d(frame, 4)]
    with torch.no_grad():
        ref = d(frame, ctx)
        for a, b in zip(d(pooled, ctx), ref, strict=True):  # pooled candidates == one frame
            torch.testing.assert_close(a, b)
        other = [pooled[0], torch.rand(3, 3, 16, 16), pooled[2]]
        changed = d(other, ctx)  # only the scale whose candidate changed sees it
    # the pooled candidates and the discriminator's own pooling agree up to float rounding
    torch.testing.assert_close(changed[0], ref[0])
    torch.testing.assert_close(changed[2], ref[2])
    assert not torch.allclose(changed[1], ref[1])
    with pytest.raises(ValueError, match="scale"):
        d(pooled[:2], ctx)


def _multiscale_trainer(model_config) -> Trainer:
    loss = AntiBlurConfig(
        gdl_weight=1.0,
        adv_weight=0.05,
        discriminator=DiscriminatorConfig(**{**TINY_D, "scales": [1, 2, 4]}),
    )
    torch.manual_seed(0)
    model = WorldModel(resolve_model_config(model_config(decoder_scales=2), loss), 32, 2)
    train = TrainConfig(lr=1e-3, precision="fp32", seq_len=5, n_past=2)
    return build_trainer(model, train, ObjectiveConfig(), loss, "cpu")


def test_multiscale_losses_act_at_every_scale(model_config):
    from worldmodel.training.losses import gdl

    trainer = _multiscale_trainer(model_config)
    obs, action, reward = _batch()
    out = trainer.model(obs, action, reward)
    assert [p.shape[-1] for p in out.pyramid] == [16, 32] and out.frames is out.pyramid[-1]
    # GDL: the sum over the decoder's scales, each against the pooled truth, per pixel
    expected = sum(
        gdl(
            p,
            F.avg_pool2d(out.obs[:, 1:].flatten(0, 1), 32 // p.shape[-1]).view_as(p),
            1.0,
            reduction="batch",
        )
        / p[0, 0].numel()
        for p in out.pyramid
    )
    torch.testing.assert_close(trainer.objective.gdl_term(out), expected)
    # adversarial: D at factor 1 and 2 judges the decoder's 32 and 16 px predictions, D at 4 the
    # finest pooled to 8 px (the decoder has no 8 px scale)
    adv = trainer.objective.adversarial
    seen = {}
    g_loss, d_step = adv.g_loss, adv.d_step

    def record_g(fake, ctx, point=None):
        seen["g"] = fake
        return g_loss(fake, ctx, point)

    def record_d(real, fake, ctx, point=None):
        seen["d"] = fake
        return d_step(real, fake, ctx, point)

    adv.g_loss, adv.d_step = record_g, record_d
    logs = trainer.step(Batch(obs, action, reward))
    assert all(math.isfinite(v) for v in logs.values())
    n = 2  # context frames: the predictions of frames 2..4 are judged, flattened over time
    for key in ("g", "d"):
        assert [tuple(f.shape) for f in seen[key]] == [(2 * (5 - n), 3, r, r) for r in (32, 16, 8)]
    assert {"disc/d/loss_s1", "disc/d/loss_s2", "disc/d/loss_s4"} <= set(logs)


def test_pretrain_with_multiscale_decoder(tmp_path):
    data = _stub_episodes(tmp_path / "data", n=2, steps=8)
    base = [*PRETRAIN_TINY, "loss=full", "loss.adv_weight=0.05", "loss.pixel_norm=true",
            f"data={data}", "train.seq_len=4", "video_every=0"]  # fmt: skip
    with pytest.raises(ValueError, match="decoder_scales"):  # growing is on in loss=full
        pretrain.run(_cfg(*base, "model.decoder_scales=3", "steps=1"), tmp_path / "bad")
    cfg = _cfg(*base, "model.decoder_scales=3", "loss.progressive.enabled=false", "steps=2")
    summary = pretrain.run(cfg, tmp_path / "run")
    assert math.isfinite(summary["final_loss"])
    assert all(math.isfinite(v) for v in summary["loss_terms"].values())
    model = model_from_checkpoint(summary["checkpoint"])
    assert model.cfg.decoder_scales == 3 and model.cfg.pixel_norm
    assert not model.cfg.progressive_heads
    state = load_checkpoint(summary["checkpoint"])["state"]["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v), k


def test_planner_loop_builds_the_decoder_from_the_loss_config(compose, tmp_path):
    """agents.loop with loss=full: pixel norm and the growing decoder are in the checkpoint, and
    the decoder is fully grown by the first evaluation."""
    overrides = [
        *LOOP_TINY,
        "loss=full",
        "loss.adv_weight=0.05",
        "loss.pixel_norm=true",
        "episodes=3",
        "train_steps=3",  # one planned episode, evaluated after it: 3 steps to grow 16 -> 32 px
        "loss.progressive.stabilize_steps=1",
        "loss.progressive.fade_steps=1",
        "video_every=0",
        "strip_every=0",
    ]
    cfg = OmegaConf.to_object(compose("cem_planner", overrides))
    assert not cfg.model.pixel_norm and not cfg.model.progressive_heads  # nothing written back
    loop.run(cfg, tmp_path)
    model = model_from_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert model.cfg.pixel_norm and model.cfg.progressive_heads
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["state"]["global_step"] == 3
    series = _scalars(tmp_path / "tb")  # means over the episode's steps (16, 1), (32, 0), (32, 1)
    assert series["world_model/progressive/resolution"] == [pytest.approx((16 + 32 + 32) / 3)]
    assert series["world_model/progressive/alpha"] == [pytest.approx(2 / 3)]


def test_planner_loop_refuses_a_schedule_longer_than_its_budget(compose):
    """The pretraining schedule (10,000-step phases) would leave the full-size head untrained for
    hundreds of episodes: refused with the phases that fit; the profiles' phases fit."""
    from agents.config import CEMPlannerConfig

    def config(*overrides: str) -> CEMPlannerConfig:
        return OmegaConf.to_object(compose("cem_planner", ["loss=full", *overrides]))

    for profile, steps, phase in (("cpu", 50, 50), ("gpu", 100, 200)):
        cfg = config(f"profile={profile}").validate()
        schedule = cfg.loss.progressive.schedule(cfg.env.size)
        assert (cfg.train_steps, cfg.loss.progressive.stabilize_steps) == (steps, phase)
        assert schedule.total_steps <= cfg.eval_every * cfg.train_steps  # grown when evaluated
    pretraining = ["loss.progressive.stabilize_steps=10000", "loss.progressive.fade_steps=10000"]
    with pytest.raises(ValueError, match=r"1000 planned episodes.*stabilize_steps=50 ") as err:
        config("profile=cpu", *pretraining).validate()
    assert "\n" not in str(err.value)  # one line
    with pytest.raises(ValueError, match=r"to 128 px over 350 .*fade_steps=35 "):
        config("profile=cpu", "env.size=128").validate()  # one more doubling: shorter phases
    with pytest.raises(ValueError, match="enabled=false"):  # no evaluation before the end
        config("profile=cpu", "episodes=6", "eval_every=0", *pretraining).validate()
    # fine: growing off, no training, or evaluating the model as it is
    config("profile=cpu", "loss.progressive.enabled=false", *pretraining).validate()
    config("profile=cpu", "train_steps=0", *pretraining).validate()
    config("profile=cpu", "mode=eval", "ckpt=x.pt", *pretraining).validate()
