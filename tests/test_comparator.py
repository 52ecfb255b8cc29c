"""DeePSiM comparators: AlexNet layout and weight files, the discriminator adapter, the video
encoder (contrastive training, checkpoint round trip) and the factory's errors."""

from __future__ import annotations

import math

import pytest
import torch

from worldmodel.antiblur.adversarial import (
    AntiBlurConfig,
    AntiBlurObjective,
    conditional_pairs,
)
from worldmodel.antiblur.comparator import (
    AlexNetFeatures,
    ComparatorConfig,
    DiscriminatorComparator,
    VideoEncoder,
    VideoEncoderConfig,
    build_comparator,
    build_comparator_from_config,
    pairs_from_clips,
    train_video_encoder,
)
from worldmodel.antiblur.discriminator import DiscriminatorConfig, MultiScaleDiscriminator
from worldmodel.training.losses import gdl, info_nce

# torchvision.models.alexnet().features: conv layers at indices 0, 3, 6, 8, 10
TORCHVISION_FEATURE_KEYS = [
    "features.0.weight", "features.0.bias",
    "features.3.weight", "features.3.bias",
    "features.6.weight", "features.6.bias",
    "features.8.weight", "features.8.bias",
    "features.10.weight", "features.10.bias",
]  # fmt: skip
TORCHVISION_SHAPES = {
    "features.0.weight": (64, 3, 11, 11),
    "features.3.weight": (192, 64, 5, 5),
    "features.6.weight": (384, 192, 3, 3),
    "features.8.weight": (256, 384, 3, 3),
    "features.10.weight": (256, 256, 3, 3),
}


def _torchvision_like_state(seed: int) -> dict[str, torch.Tensor]:
    """A state dict shaped like torchvision's AlexNet (features + a classifier to be ignored)."""
    state = {
        f"features.{k}": v for k, v in AlexNetFeatures(seed=seed).features.state_dict().items()
    }
    state["classifier.1.weight"] = torch.zeros(8, 9216)  # shapes do not matter: ignored
    state["classifier.6.bias"] = torch.zeros(1000)
    return state


def test_alexnet_state_dict_keys_match_torchvision():
    net = AlexNetFeatures()
    state = net.state_dict()
    assert list(state) == TORCHVISION_FEATURE_KEYS
    for k, shape in TORCHVISION_SHAPES.items():
        assert tuple(state[k].shape) == shape


def test_alexnet_random_is_seeded_frozen_and_works_at_64px():
    a = build_comparator("alexnet_random", seed=0)
    b = build_comparator("alexnet_random", seed=0)
    c = build_comparator("alexnet_random", seed=1)
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert all(not p.requires_grad for p in a.parameters()) and not a.training
    x = torch.rand(2, 3, 64, 64)
    feats = a(x)
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 15, 15), (192, 7, 7), (384, 3, 3), (256, 3, 3), (256, 3, 3)
    ]  # fmt: skip
    up = AlexNetFeatures(input_size=128, layers=[2, 5])(x)
    assert [tuple(f.shape[1:]) for f in up] == [(192, 15, 15), (256, 7, 7)]
    with pytest.raises(ValueError, match=">= 32 px"):
        a(torch.rand(1, 3, 16, 16))


def test_alexnet_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "alexnet.pth"
    torch.save(_torchvision_like_state(seed=7), path)
    loaded = build_comparator("alexnet_file", path)
    reference = AlexNetFeatures(seed=7)
    for k, v in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert all(not p.requires_grad for p in loaded.parameters())
    # a DataParallel-style "module." prefix and a {"state_dict": ...} wrapper also load
    wrapped = {"state_dict": {f"module.{k}": v for k, v in _torchvision_like_state(7).items()}}
    torch.save(wrapped, tmp_path / "wrapped.pth")
    again = build_comparator("alexnet_file", tmp_path / "wrapped.pth")
    assert torch.equal(again.features[10].bias, reference.features[10].bias)

    bad = _torchvision_like_state(7)
    del bad["features.10.bias"]
    torch.save(bad, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing keys \['features.10.bias'\]"):
        build_comparator("alexnet_file", tmp_path / "missing.pth")
    wrong = _torchvision_like_state(7)
    wrong["features.3.weight"] = torch.zeros(10, 64, 5, 5)
    torch.save(wrong, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="features.3.weight"):
        build_comparator("alexnet_file", tmp_path / "shape.pth")
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision AlexNet state dict"):
        build_comparator("alexnet_file", tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError, match="comparator.path"):
        build_comparator("alexnet_file", tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="needs a path"):
        build_comparator("alexnet_file")


def test_comparator_loss_zero_for_identical_and_gradients_to_pred():
    comp = build_comparator("alexnet_random")
    target = torch.rand(2, 3, 3, 64, 64)  # any leading dims
    assert comp.loss(target.clone(), target).item() == 0.0
    pred = torch.rand(2, 3, 3, 64, 64, requires_grad=True)
    loss = comp.loss(pred, target)
    assert loss.item() > 0
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in comp.parameters())


def test_discriminator_comparator_does_not_train_the_discriminator():
    d = MultiScaleDiscriminator(DiscriminatorConfig(width=8, max_width=16, hidden=16), 32)
    comp = build_comparator("discriminator", discriminator=d)
    assert isinstance(comp, DiscriminatorComparator)
    assert not list(comp.parameters())  # a reference, not a submodule
    ctx = torch.rand(4, 2, 3, 32, 32)
    target = torch.rand(4, 3, 32, 32)
    pred = torch.rand(4, 3, 32, 32, requires_grad=True)
    assert comp.loss(target, target, ctx).item() == 0.0
    loss = comp.loss(pred, target, ctx)
    loss.backward()
    assert loss.item() > 0 and pred.grad.abs().sum() > 0
    assert all(p.grad is None and p.requires_grad for p in d.parameters())
    with pytest.raises(ValueError, match="needs the discriminator"):
        build_comparator("discriminator")


def test_antiblur_objective_with_all_losses():
    from tests.test_losses import model_output

    cfg = AntiBlurConfig(
        gdl_weight=1.0,
        adv_weight=0.05,
        feature_weight=0.01,
        discriminator=DiscriminatorConfig(width=8, max_width=16, hidden=16),
        comparator=ComparatorConfig(kind="discriminator"),
    )
    torch.manual_seed(0)
    objective = AntiBlurObjective(cfg, image_size=32)
    adv = objective.adversarial
    obs = torch.rand(4, 4, 3, 32, 32)
    frames = torch.rand(4, 3, 3, 32, 32, requires_grad=True)
    out = model_output(obs, frames)
    terms = objective.terms(out)
    assert set(terms) == {"gdl", "adv", "feat"}
    # every term is the paper's per-frame quantity over the pixels per frame; the adversarial and
    # the (discriminator) feature terms judge each predicted frame t >= 2 with the 2 frames before it
    per_pixel = 1 / (3 * 32 * 32)
    real, fake, ctx = conditional_pairs(obs, frames, 2)
    torch.testing.assert_close(terms["gdl"], per_pixel * gdl(frames, obs[:, 1:], reduction="batch"))
    torch.testing.assert_close(terms["adv"], per_pixel * adv.g_loss(fake, ctx)[0])
    torch.testing.assert_close(terms["feat"], per_pixel * adv.as_comparator().loss(fake, real, ctx))
    sum(objective.weights()[k] * v for k, v in terms.items()).backward()
    assert frames.grad.abs().sum() > 0
    assert all(p.grad is None for p in adv.discriminator.parameters())
    before = [p.detach().clone() for p in adv.discriminator.parameters()]
    logs = objective.update(out)  # one discriminator step on the same pairs
    assert {"d/loss", "d/loss_s1", "d/acc_real"} <= set(logs) and logs["d/paused"] == 0.0
    after = list(adv.discriminator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert set(objective.state_dict()) >= {"discriminator", "optimizer", "paused"}


def _toy_clips(n_clips: int = 16, length: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Clips with a per-clip background colour and a coloured square drifting slowly.

    Returns uint8 ``(n_clips, length, 3, size, size)``.
    """
    g = torch.Generator().manual_seed(seed)
    clips = torch.empty(n_clips, length, 3, size, size)
    for c in range(n_clips):
        bg, fg = torch.rand(3, 1, 1, generator=g), torch.rand(3, 1, 1, generator=g)
        y, x = torch.randint(0, size - 12, (2,), generator=g).tolist()
        for t in range(length):
            frame = bg.expand(3, size, size).clone()
            frame[:, y : y + 8, x + t : x + t + 8] = fg
            clips[c, t] = frame + 0.03 * torch.randn(3, size, size, generator=g)
    return (clips.clamp(0, 1) * 255).round().to(torch.uint8)


def test_pairs_from_clips_respects_the_gap():
    obs = torch.arange(8, dtype=torch.uint8).view(1, 8, 1, 1, 1).expand(50, 8, 3, 2, 2)
    pairs = pairs_from_clips(obs, max_gap=2, generator=torch.Generator().manual_seed(0))
    assert pairs.shape == (50, 2, 3, 2, 2) and pairs.dtype == torch.uint8
    gap = pairs[:, 1, 0, 0, 0].long() - pairs[:, 0, 0, 0, 0].long()
    assert gap.min() >= 1 and gap.max() <= 2


def test_video_encoder_contrastive_training_and_round_trip(tmp_path):
    clips = _toy_clips()
    g = torch.Generator().manual_seed(0)

    def sample() -> torch.Tensor:
        idx = torch.randperm(clips.shape[0], generator=g)[:8]
        return pairs_from_clips(clips[idx], max_gap=3, generator=g)

    cfg = VideoEncoderConfig(width=8, depth=3, embed_dim=16)
    enc, history = train_video_encoder(sample, steps=40, cfg=cfg, lr=3e-3, seed=0)
    assert len(history) == 40 and history[0] > 0.6 * math.log(8)  # near chance at the start
    assert sum(history[-5:]) / 5 < 0.25 * history[0]
    assert all(not p.requires_grad for p in enc.parameters())
    # on fresh pairs of all 16 clips the trained encoder beats an untrained one
    pairs = pairs_from_clips(clips, max_gap=3, generator=torch.Generator().manual_seed(9))
    x = pairs.float().flatten(0, 1) / 255

    def contrastive(e: VideoEncoder) -> float:
        with torch.no_grad():
            z = e.embed(x).unflatten(0, (16, 2))
        return info_nce(z[:, 0], z[:, 1]).item()

    torch.manual_seed(0)
    assert contrastive(enc) < 0.5 * contrastive(VideoEncoder(cfg))

    path = tmp_path / "enc" / "video.pt"
    enc.save(path)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    loaded = VideoEncoder.from_file(path)
    assert loaded.cfg == cfg
    x = clips[:3, 0].float() / 255
    for a, b in zip(enc(x), loaded(x), strict=True):
        torch.testing.assert_close(a, b)
    comp = build_comparator("video_encoder", path)
    assert all(not p.requires_grad for p in comp.parameters())
    assert len(comp(x)) == 3
    with pytest.raises(FileNotFoundError, match="train_video_encoder"):
        VideoEncoder.from_file(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a video encoder checkpoint"):
        VideoEncoder.from_file(tmp_path / "bad.pt")


def test_comparator_config_validation():
    with pytest.raises(ValueError, match="unknown comparator kind"):
        ComparatorConfig(kind="vgg").validate()
    with pytest.raises(ValueError, match="needs comparator.path"):
        ComparatorConfig(kind="video_encoder").validate()
    with pytest.raises(ValueError, match="layers"):
        ComparatorConfig(layers=[0, 6]).validate()
    with pytest.raises(ValueError, match="embed_dim must be >= 1"):
        VideoEncoderConfig(embed_dim=0).validate()


def test_comparator_builders_refuse_a_bad_config():
    """Building a config checks nothing; the comparator built from it does."""
    with pytest.raises(ValueError, match="input_size must be >= 32"):
        build_comparator_from_config(ComparatorConfig(input_size=16))
    with pytest.raises(ValueError, match="video encoder width"):
        VideoEncoder(VideoEncoderConfig(width=0))
