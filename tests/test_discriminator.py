"""PGGAN layers, the multi-scale conditional discriminator and the AdversarialTrainer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from worldmodel.antiblur.adversarial import AdversarialTrainer, AntiBlurConfig
from worldmodel.antiblur.discriminator import DiscriminatorConfig, MultiScaleDiscriminator
from worldmodel.antiblur.pggan import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    ProgressiveConfig,
    ProgressiveSchedule,
    blend_resolution,
)
from worldmodel.model.layers import PixelNorm, fade_in, resize_to
from worldmodel.training.train import ObjectiveConfig, TrainConfig, Trainer

TINY = dict(width=8, max_width=16, hidden=16)


# ------------------------------------------------------------------------------------------------
# PGGAN layers
# ------------------------------------------------------------------------------------------------


def test_minibatch_stddev_matches_definition():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 3, 3)
    # one group of 4: biased std over the batch per feature and pixel, averaged to one scalar
    out = MinibatchStdDev(group_size=4)(x)
    assert out.shape == (4, 3, 3, 3)
    torch.testing.assert_close(out[:, :2], x)
    mean = x.mean(dim=0, keepdim=True)
    expected = ((x - mean).pow(2).mean(dim=0) + 1e-8).sqrt().mean()
    torch.testing.assert_close(out[:, 2], expected.expand(4, 3, 3))
    # groups of 2: sample i is in group i % 2 -> {0, 2} and {1, 3}; the std of two values is |a-b|/2
    out2 = MinibatchStdDev(group_size=2)(x)
    g0 = (((x[0] - x[2]) / 2).pow(2) + 1e-8).sqrt().mean()
    g1 = (((x[1] - x[3]) / 2).pow(2) + 1e-8).sqrt().mean()
    for i, g in enumerate([g0, g1, g0, g1]):
        torch.testing.assert_close(out2[i, 2], g.expand(3, 3))
    # a batch that is not a multiple of the group size is one group; no parameters
    assert MinibatchStdDev(group_size=4)(torch.randn(3, 2, 2, 2)).shape == (3, 3, 2, 2)
    assert not list(MinibatchStdDev().parameters())
    # identical samples: the statistic is sqrt(eps) = 1e-4
    same = MinibatchStdDev()(torch.ones(4, 1, 2, 2))
    torch.testing.assert_close(same[:, 1], torch.full((4, 2, 2), 1e-4))


def test_equalized_conv_and_linear_match_definition():
    torch.manual_seed(0)
    conv = EqualizedConv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        conv.bias.copy_(torch.arange(5.0))
    x = torch.randn(2, 3, 6, 6)
    he = math.sqrt(2.0) / math.sqrt(3 * 3 * 3)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * he, conv.bias, padding=1))
    lin = EqualizedLinear(7, 4)
    xl = torch.randn(3, 7)
    torch.testing.assert_close(lin(xl), xl @ (lin.weight * math.sqrt(2.0 / 7)).t())
    # init: weights N(0, 1) (stored unscaled), biases zero
    big = EqualizedConv2d(64, 64, 3)
    assert abs(big.weight.std().item() - 1.0) < 0.02 and abs(big.weight.mean().item()) < 0.02
    assert big.bias.abs().sum() == 0 and EqualizedLinear(5, 5).bias.abs().sum() == 0


def test_pixel_norm():
    x = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # mean_c(a^2) = 12.5
    expected = torch.tensor([3.0, 4.0]) / math.sqrt(12.5 + 1e-8)
    torch.testing.assert_close(PixelNorm()(x).view(2), expected)
    y = PixelNorm()(torch.randn(2, 8, 4, 4))
    torch.testing.assert_close(y.pow(2).mean(dim=1), torch.ones(2, 4, 4))


def test_fade_in_and_real_image_blend():
    old, new = torch.zeros(2, 3), torch.full((2, 3), 4.0)
    assert torch.equal(fade_in(0.0, old, new), old)
    assert torch.equal(fade_in(0.5, old, new), torch.full((2, 3), 2.0))
    assert torch.equal(fade_in(1.0, old, new), new)
    with pytest.raises(ValueError, match="alpha"):
        fade_in(1.5, old, new)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    assert low[0, 0, 0].tolist() == [2.5, 2.5, 4.5, 4.5]
    torch.testing.assert_close(blend_resolution(x, 0.0), low)
    torch.testing.assert_close(blend_resolution(x, 0.5), 0.5 * (x + low))
    assert torch.equal(blend_resolution(x, 1.0), x)
    assert resize_to(x, 2)[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_progressive_schedule():
    s = ProgressiveSchedule(16, 64, stabilize_steps=10, fade_steps=4)
    assert s.resolutions == [16, 32, 64]
    table = {0: (16, 1.0), 9: (16, 1.0), 10: (32, 0.0), 12: (32, 0.5), 14: (32, 1.0),
             23: (32, 1.0), 24: (64, 0.0), 26: (64, 0.5), 28: (64, 1.0), 10_000: (64, 1.0)}  # fmt: skip
    for step, expected in table.items():
        assert s.at(step) == expected, step
    assert s.total_steps == 38
    assert ProgressiveConfig(enabled=False).schedule(64).at(0) == (64, 1.0)
    with pytest.raises(ValueError, match="power of two"):
        ProgressiveSchedule(16, 48, 1, 1).validate()
    # building a config checks nothing; the schedule built from it, and the trainer, do
    with pytest.raises(ValueError, match="progressive.stabilize_steps=-1"):
        ProgressiveConfig(stabilize_steps=-1).schedule(64)
    with pytest.raises(ValueError, match="progressive.start_resolution=True"):  # not an int
        ProgressiveConfig(enabled=True, start_resolution=True).schedule(64)
    with pytest.raises(ValueError, match="power-of-two ratio"):
        ProgressiveConfig(enabled=True, start_resolution=24).schedule(64)
    with pytest.raises(ValueError, match="power of two"):
        Trainer(
            torch.nn.Linear(1, 1),
            TrainConfig(),
            ObjectiveConfig(),
            "cpu",
            progressive=ProgressiveSchedule(16, 48, 1, 1),
        )


# ------------------------------------------------------------------------------------------------
# Discriminator
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 128])
def test_multiscale_discriminator_shapes(size):
    cfg = DiscriminatorConfig(**TINY, equalized_lr=True, dropout=0.5)
    d = MultiScaleDiscriminator(cfg, size)
    frame, ctx = torch.rand(4, 3, size, size), torch.rand(4, 5, 3, size, size)
    logits, feats = d(frame, ctx, return_features=True)
    assert len(logits) == 3 and all(lg.shape == (4,) for lg in logits)
    assert len(feats) == 3
    # scale k's first feature map is its input halved: size / s / 2
    for s, f in zip(cfg.scales, feats, strict=True):
        assert f[0].shape[-1] == size // s // 2 and f[-1].shape[-1] == 4
    # unconditional, clip mode
    clip_cfg = DiscriminatorConfig(**TINY, context_frames=0, clip_length=3, minibatch_std=False)
    out = MultiScaleDiscriminator(clip_cfg, size)(torch.rand(2, 3, 3, size, size))
    assert [lg.shape for lg in out] == [(2,)] * 3


def test_discriminator_input_errors():
    d = MultiScaleDiscriminator(DiscriminatorConfig(**TINY), 64)
    with pytest.raises(ValueError, match="needs context"):
        d(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="not accepted"):
        d(torch.rand(2, 3, 32, 32), torch.rand(2, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="does not fit"):
        MultiScaleDiscriminator(DiscriminatorConfig(**TINY, scales=[1, 32]), 64)
    with pytest.raises(ValueError, match="scales"):
        DiscriminatorConfig(scales=[]).validate()
    # building a config checks nothing; the discriminator built from it does
    with pytest.raises(ValueError, match="discriminator.scales has duplicates"):
        MultiScaleDiscriminator(DiscriminatorConfig(**TINY, scales=[1, 1]), 64)
    with pytest.raises(ValueError, match="discriminator.width=True"):  # a bool is not an int
        MultiScaleDiscriminator(DiscriminatorConfig(width=True), 64)


def test_adversarial_trainer_refuses_a_bad_config():
    with pytest.raises(ValueError, match="pause rule"):
        AdversarialTrainer(AntiBlurConfig(adv_weight=0.05, adv_form="wgan-gp"), 64)
    with pytest.raises(ValueError, match="discriminator.dropout"):
        AdversarialTrainer(
            AntiBlurConfig(adv_weight=0.05, discriminator=DiscriminatorConfig(dropout=1.0)), 64
        )


def test_progressive_discriminator_fades_in():
    cfg = DiscriminatorConfig(**TINY, minibatch_std=True)
    d = MultiScaleDiscriminator(cfg, 64, min_resolution=16)
    x, ctx = torch.rand(4, 3, 32, 32), torch.rand(4, 2, 3, 32, 32)
    # alpha = 0: the new 32 px block is bypassed: same as running the network at 16 px
    at0 = d(x, ctx, alpha=0.0)
    low = d(F.avg_pool2d(x, 2), F.avg_pool2d(ctx.flatten(0, 1), 2).view(4, 2, 3, 16, 16))
    for a, b in zip(at0, low, strict=True):
        torch.testing.assert_close(a, b)
    at1 = d(x, ctx, alpha=1.0)
    at_half = d(x, ctx, alpha=0.5)
    assert not torch.allclose(at1[0], at0[0])
    assert not torch.allclose(at_half[0], at0[0]) and not torch.allclose(at_half[0], at1[0])
    # every size from the start to the full size is accepted
    for r in (16, 32, 64):
        assert d(torch.rand(2, 3, r, r), torch.rand(2, 2, 3, r, r))[2].shape == (2,)


# ------------------------------------------------------------------------------------------------
# AdversarialTrainer
# ------------------------------------------------------------------------------------------------


def _trainer(form: str = "bce", size: int = 32, **dkw) -> AdversarialTrainer:
    kw = dict(TINY, dropout=0.0, lr=1e-3)
    kw.update(dkw)
    pause = kw.pop("pause_threshold", 0.0 if form == "wgan-gp" else 0.1)
    cfg = AntiBlurConfig(
        adv_weight=0.05,
        adv_form=form,
        discriminator=DiscriminatorConfig(**kw, pause_threshold=pause),
    )
    torch.manual_seed(0)
    return AdversarialTrainer(cfg, image_size=size)


def test_g_loss_gradients_reach_fake_not_discriminator():
    adv = _trainer()
    fake = torch.rand(4, 3, 32, 32, requires_grad=True)
    ctx = torch.rand(4, 2, 3, 32, 32)
    loss, logs = adv.g_loss(fake, ctx)
    assert loss.shape == () and loss.dtype == torch.float32
    assert set(logs) == {"g/adv", "g/adv_s1", "g/adv_s2", "g/adv_s4"}
    assert logs["g/adv"] == pytest.approx(sum(logs[f"g/adv_s{s}"] for s in (1, 2, 4)), rel=1e-5)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    params = list(adv.discriminator.parameters())
    assert all(p.grad is None for p in params)
    assert all(p.requires_grad for p in params)  # the freeze is undone


@pytest.mark.parametrize("form", ["bce", "hinge", "lsgan", "wgan-gp"])
def test_d_step_learns_a_separable_toy(form):
    adv = _trainer(form, size=16)
    g = torch.Generator().manual_seed(1)
    first = last = None
    for _ in range(30):
        real = 0.8 + 0.2 * torch.rand(8, 3, 16, 16, generator=g)  # bright
        fake = 0.2 * torch.rand(8, 3, 16, 16, generator=g)  # dark
        ctx = torch.rand(8, 2, 3, 16, 16, generator=g)
        logs = adv.d_step(real, fake, ctx)
        first = logs if first is None else first
        last = logs
    assert last["d/loss"] < 0.7 * first["d/loss"] if first["d/loss"] > 0 else last["d/loss"] < 0
    assert last["d/acc_real"] + last["d/acc_fake"] >= 1.75
    assert last["d/paused"] == 0.0
    if form == "wgan-gp":
        assert "d/gp" in last


def test_pause_rule_triggers_and_releases():
    adv = _trainer(pause_threshold=0.1)
    assert adv.update_pause(1.0, None) is False  # no generator loss yet
    assert adv.update_pause(1.0, 5.0) is False  # ratio 0.2
    assert adv.update_pause(0.4, 5.0) is True  # ratio 0.08 < 0.1: pause
    assert adv.update_pause(0.45, 5.0) is True  # still below
    assert (adv.paused_steps, adv.pause_events) == (2, 1)
    assert adv.update_pause(0.5, 5.0) is False  # ratio 0.1: released at the threshold
    assert adv.update_pause(0.1, 5.0) is True  # a new pause event
    assert (adv.paused_steps, adv.pause_events) == (3, 2)
    assert adv.update_pause(0.1, -1.0) is False  # generator winning: never paused


def test_d_step_skips_update_while_paused():
    adv = _trainer(pause_threshold=0.1)
    real, fake, ctx = (
        torch.rand(4, 3, 32, 32),
        torch.rand(4, 3, 32, 32),
        torch.rand(4, 2, 3, 32, 32),
    )
    before = [p.detach().clone() for p in adv.discriminator.parameters()]
    adv._last_g_adv = torch.tensor(1e6)  # the generator is losing badly: ratio ~1e-6
    logs = adv.d_step(real, fake, ctx)
    assert logs["d/paused"] == 1.0 and logs["d/paused_steps"] == 1.0 and adv.paused
    assert logs["d/ratio"] < 0.1
    assert all(
        torch.equal(a, b) for a, b in zip(before, adv.discriminator.parameters(), strict=True)
    )
    adv._last_g_adv = torch.tensor(1e-3)  # the ratio rises again: released, D updates
    logs = adv.d_step(real, fake, ctx)
    assert logs["d/paused"] == 0.0 and not adv.paused
    assert any(
        not torch.equal(a, b) for a, b in zip(before, adv.discriminator.parameters(), strict=True)
    )


def test_trainer_state_dict_round_trip(tmp_path):
    adv = _trainer()
    real, fake, ctx = (
        torch.rand(4, 3, 32, 32),
        torch.rand(4, 3, 32, 32),
        torch.rand(4, 2, 3, 32, 32),
    )
    adv.g_loss(fake, ctx)
    for _ in range(2):
        adv.d_step(real, fake, ctx)
    adv.paused_steps, adv.pause_events = 5, 2
    torch.save(adv.state_dict(), tmp_path / "adv.pt")
    other = _trainer()
    other.load_state_dict(torch.load(tmp_path / "adv.pt", weights_only=True))
    assert (other.paused_steps, other.pause_events) == (5, 2)
    for a, b in zip(adv.discriminator.parameters(), other.discriminator.parameters(), strict=True):
        assert torch.equal(a, b)
    sa, sb = adv.optimizer.state_dict()["state"], other.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)
    # both continue identically
    la, lb = adv.d_step(real, fake, ctx), other.d_step(real, fake, ctx)
    assert la["d/loss"] == pytest.approx(lb["d/loss"], rel=1e-6)


def test_trainer_progressive_growing_and_autocast():
    cfg = AntiBlurConfig(
        adv_weight=0.05,
        discriminator=DiscriminatorConfig(**TINY, scales=[1, 2]),
        progressive=ProgressiveConfig(
            enabled=True, start_resolution=8, stabilize_steps=2, fade_steps=2
        ),
    )
    adv = AdversarialTrainer(cfg, image_size=32)
    real, fake, ctx = (
        torch.rand(4, 3, 32, 32),
        torch.rand(4, 3, 32, 32),
        torch.rand(4, 2, 3, 32, 32),
    )
    seen = []
    for step in range(11):  # the caller's step picks the point of the schedule
        point = adv.schedule.at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logs = adv.d_step(real, fake, ctx, point=point)
            loss, _ = adv.g_loss(fake, ctx, point=point)
        assert math.isfinite(logs["d/loss"]) and loss.dtype == torch.float32
        seen.append((logs["d/resolution"], logs["d/alpha"]))
    assert seen[0] == (8.0, 1.0) and seen[2] == (16.0, 0.0) and seen[3] == (16.0, 0.5)
    assert seen[-1] == (32.0, 1.0)
