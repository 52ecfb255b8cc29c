"""Tests for worldmodel.metrics: values against closed forms and independent implementations,
perfect scores for identical inputs, monotonicity, and clear errors for bad input."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from worldmodel.metrics import (
    WANG2003_WEIGHTS,
    EncoderFeatures,
    I3DFeatures,
    InceptionI3d,
    Protocol,
    RandomConv3dFeatures,
    diversity,
    feature_statistics,
    frechet_distance,
    gam,
    laplacian_pyramid,
    ms_ssim,
    ms_ssim_settings,
    per_step_metrics,
    psnr,
    ssim,
    swd,
    to_unit_range,
    video_frechet_distance,
)
from worldmodel.metrics.gam import mcnemar_p

os.environ.setdefault("MUJOCO_GL", "egl")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ test images


def _natural_image(size: int = 64, seed: int = 0) -> np.ndarray:
    """A natural-looking RGB image (H, W, 3) in [0, 1]: 1/f noise (the power spectrum of natural
    images) per channel with correlated channels, plus a few smooth-edged discs."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / size)
    base = rng.standard_normal((size, size))
    channels = []
    for _ in range(3):
        noise = 0.7 * base + 0.3 * rng.standard_normal((size, size))
        img = np.real(np.fft.ifft2(np.fft.fft2(noise) * amp))
        channels.append((img - img.min()) / (img.max() - img.min()))
    img = np.stack(channels, axis=-1)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(4):
        cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 10, size / 4)]
        mask = 1 / (1 + np.exp((np.hypot(yy - cy, xx - cx) - r) * 2.0))
        img = img * (1 - mask[..., None]) + mask[..., None] * rng.uniform(0, 1, 3)
    return img.clip(0, 1)


def _render_cheetah(n: int, size: int = 64) -> np.ndarray:
    """(n, H, W, 3) uint8 frames of cheetah-run under random actions (envs.make_env if available)."""
    try:
        from envs import make_env  # noqa: PLC0415

        env = make_env("cheetah", size=size, seed=0)
        obs, _ = env.reset(seed=0)
        env.action_space.seed(0)
        frames = [obs]
        for _ in range(n - 1):
            obs, *_ = env.step(env.action_space.sample())
            frames.append(obs)
        env.close()
        return np.stack(frames)
    except ImportError:
        pass
    from dm_control import suite  # noqa: PLC0415

    env = suite.load("cheetah", "run", task_kwargs={"random": 0})
    env.reset()
    rng = np.random.default_rng(0)
    spec = env.action_spec()
    frames = [env.physics.render(size, size, camera_id=0)]
    for _ in range(n - 1):
        for _ in range(4):
            env.step(rng.uniform(spec.minimum, spec.maximum))
        frames.append(env.physics.render(size, size, camera_id=0))
    return np.stack(frames)


@pytest.fixture(scope="module")
def cheetah_frames() -> torch.Tensor:
    """(6, 3, 64, 64) float frames in [0, 1] rendered from dm_control (skipped if rendering fails)."""
    try:
        frames = _render_cheetah(6)
    except Exception as err:  # noqa: BLE001 - any rendering backend failure means "no real frames"
        pytest.skip(f"cannot render dm_control frames here: {err}")
    return to_unit_range(torch.from_numpy(frames).permute(0, 3, 1, 2), assume="uint8")


@pytest.fixture(scope="module")
def natural_frames() -> torch.Tensor:
    """(4, 3, 64, 64) procedural natural-looking frames in [0, 1]."""
    imgs = np.stack([_natural_image(64, seed) for seed in range(4)])
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float()


def _distortions(x: torch.Tensor) -> dict[str, torch.Tensor]:
    noisy = (x + 0.08 * torch.randn(x.shape, generator=_gen(1))).clamp(0, 1)
    blurred = nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    dimmer = x * 0.7 + 0.1
    return {"noisy": noisy, "blurred": blurred, "dimmer": dimmer, "next": x.roll(1, dims=0)}


# ------------------------------------------------------------------------ numpy reference SSIM


def _ref_ssim_cs(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> tuple[float, float]:
    """Independent SSIM of one (H, W, C) float64 image pair: explicit 11x11 Gaussian-weighted
    windows over the valid region with centred moments, per channel, then averaged."""
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    px = sliding_window_view(x, (11, 11), axis=(0, 1))  # (H-10, W-10, C, 11, 11)
    py = sliding_window_view(y, (11, 11), axis=(0, 1))
    mx = (px * w).sum(axis=(-2, -1))
    my = (py * w).sum(axis=(-2, -1))
    dx = px - mx[..., None, None]
    dy = py - my[..., None, None]
    vx = (w * dx * dx).sum(axis=(-2, -1))
    vy = (w * dy * dy).sum(axis=(-2, -1))
    cov = (w * dx * dy).sum(axis=(-2, -1))
    cs = (2 * cov + c2) / (vx + vy + c2)
    lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    return (lum * cs).mean(axis=(0, 1)), cs.mean(axis=(0, 1))  # per channel (C,)


def _ref_ms_ssim(x: np.ndarray, y: np.ndarray, weights: tuple[float, ...]) -> float:
    factors = []
    for j in range(len(weights)):
        if j > 0:
            h, w = x.shape[0] // 2, x.shape[1] // 2
            x = x[: 2 * h, : 2 * w].reshape(h, 2, w, 2, -1).mean(axis=(1, 3))
            y = y[: 2 * h, : 2 * w].reshape(h, 2, w, 2, -1).mean(axis=(1, 3))
        s, cs = _ref_ssim_cs(x, y)
        factors.append(s if j == len(weights) - 1 else cs)
    per_channel = np.prod(
        [np.maximum(f, 0) ** wt for f, wt in zip(factors, weights, strict=True)], axis=0
    )
    return float(per_channel.mean())


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).double().numpy()


# ---------------------------------------------------------------------------- input validation


def test_to_unit_range_conversions():
    u8 = torch.tensor([0, 128, 255], dtype=torch.uint8)
    assert torch.allclose(to_unit_range(u8, "uint8"), torch.tensor([0.0, 128 / 255, 1.0]))
    assert to_unit_range(np.array([0, 255], dtype=np.uint8)).dtype == torch.float32
    signed = torch.tensor([-1.0, 0.0, 1.0])
    assert torch.allclose(to_unit_range(signed, "signed"), torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(to_unit_range(torch.tensor([0.25]), "unit"), torch.tensor([0.25]))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        to_unit_range(torch.tensor([0.0, 2.0]), "signed")
    with pytest.raises(ValueError, match="assume='uint8'"):
        to_unit_range(u8, "unit")
    with pytest.raises(ValueError, match="assume must be"):
        to_unit_range(signed, "tanh")  # type: ignore[arg-type]


@pytest.mark.parametrize("metric", [psnr, ssim, ms_ssim])
def test_bad_inputs_raise_clear_errors(metric):
    x = torch.rand(2, 3, 64, 64, generator=_gen())
    with pytest.raises(ValueError, match=r"uint8.*to_unit_range\(pred, assume='uint8'\)"):
        metric((x * 255).to(torch.uint8), x)
    with pytest.raises(ValueError, match=r"\[-1, 1\] data.*assume='signed'"):
        metric(x * 2 - 1, x)
    with pytest.raises(ValueError, match=r"\[0, 255\] data.*assume='uint8'"):
        metric(x, x * 255)
    with pytest.raises(ValueError, match="shapes differ"):
        metric(x, x[:1])
    with pytest.raises(ValueError, match="shapes differ"):
        metric(x.unsqueeze(0).expand(2, -1, -1, -1, -1), x)  # no silent broadcasting
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        metric(nan, x)
    with pytest.raises(ValueError, match="floating point"):
        metric(x.to(torch.int64), x.to(torch.int64))


def test_frames_too_small_for_the_window():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x, x)
    with pytest.raises(ValueError, match="at least 11x11"):
        ms_ssim(x, x)


# --------------------------------------------------------------------------------------- PSNR


def test_psnr_values_and_shapes():
    target = torch.full((2, 5, 3, 16, 16), 0.5)
    pred = target + 0.1  # MSE 0.01 -> 20 dB
    values = psnr(pred, target)
    assert values.shape == (2, 5)
    assert torch.allclose(values, torch.full((2, 5), 20.0), atol=1e-4)
    assert psnr(pred, target, reduction="mean").shape == ()
    # A [0, 255] range is allowed when declared.
    assert torch.allclose(psnr(pred * 255, target * 255, data_range=255.0), values, atol=1e-3)
    assert torch.isinf(psnr(target, target)).all()
    assert torch.equal(psnr(target, target, max_db=100.0), torch.full((2, 5), 100.0))


# --------------------------------------------------------------------------------------- SSIM


def test_ssim_identical_is_one(natural_frames):
    assert torch.allclose(ssim(natural_frames, natural_frames), torch.ones(4), atol=1e-6)
    assert torch.allclose(ms_ssim(natural_frames, natural_frames), torch.ones(4), atol=1e-6)


def test_ssim_matches_numpy_reference_on_real_frames(cheetah_frames, natural_frames):
    for frames in (cheetah_frames[:3], natural_frames[:3]):
        for name, distorted in _distortions(frames).items():
            ours = ssim(distorted, frames)
            ref = [
                _ref_ssim_cs(_hwc(d), _hwc(f))[0].mean()
                for d, f in zip(distorted, frames, strict=True)
            ]
            assert np.abs(ours.numpy() - np.array(ref)).max() < 1e-4, name


def test_ssim_matches_skimage_on_real_frames(cheetah_frames, natural_frames):
    metrics = pytest.importorskip("skimage.metrics")
    for frames in (cheetah_frames, natural_frames):
        for name, distorted in _distortions(frames).items():
            ours = ssim(distorted, frames)
            ref = [
                metrics.structural_similarity(
                    _hwc(d),
                    _hwc(f),
                    channel_axis=-1,
                    data_range=1.0,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                )
                for d, f in zip(distorted, frames, strict=True)
            ]
            assert np.abs(ours.numpy() - np.array(ref)).max() < 1e-3, name


def test_ssim_ranks_distortions(natural_frames):
    x = natural_frames
    mild = (x + 0.02 * torch.randn(x.shape, generator=_gen())).clamp(0, 1)
    strong = (x + 0.2 * torch.randn(x.shape, generator=_gen())).clamp(0, 1)
    for metric in (ssim, ms_ssim):
        assert (metric(mild, x) > metric(strong, x)).all()


# ------------------------------------------------------------------------------------ MS-SSIM


def test_ms_ssim_scale_choice():
    s64 = ms_ssim_settings(64, 64)
    assert s64.scales == 3 and s64.sizes == ((64, 64), (32, 32), (16, 16))
    assert math.isclose(sum(s64.weights), 1.0)
    expected = np.array(WANG2003_WEIGHTS[:3]) / sum(WANG2003_WEIGHTS[:3])
    assert np.allclose(s64.weights, expected)
    assert "renormalised" in s64.weights_source and "3 scales" in s64.describe()
    assert ms_ssim_settings(128, 128).scales == 4
    s176 = ms_ssim_settings(176, 176)
    assert s176.scales == 5 and s176.weights == WANG2003_WEIGHTS
    assert ms_ssim_settings(256, 256).scales == 5  # never more than the standard 5
    with pytest.raises(ValueError, match="do not fit"):
        ms_ssim_settings(64, 64, scales=5)
    with pytest.raises(ValueError, match="3 weights for 2 scales"):
        ms_ssim_settings(64, 64, scales=2, weights=(0.2, 0.3, 0.5))


def test_ms_ssim_matches_numpy_reference(cheetah_frames, natural_frames):
    for frames in (cheetah_frames[:2], natural_frames[:2]):
        weights = ms_ssim_settings(64, 64).weights
        for name, distorted in _distortions(frames).items():
            ours = ms_ssim(distorted, frames)
            ref = [
                _ref_ms_ssim(_hwc(d), _hwc(f), weights)
                for d, f in zip(distorted, frames, strict=True)
            ]
            assert np.abs(ours.numpy() - np.array(ref)).max() < 1e-4, name


def test_ms_ssim_standard_five_scales_and_single_scale():
    x = torch.from_numpy(_natural_image(176, 3)).permute(2, 0, 1).float()[None]
    y = (x + 0.05 * torch.randn(x.shape, generator=_gen())).clamp(0, 1)
    ref = _ref_ms_ssim(_hwc(y[0]), _hwc(x[0]), WANG2003_WEIGHTS)
    assert abs(float(ms_ssim(y, x)) - ref) < 1e-4
    # One scale with weight 1 is plain SSIM.
    assert torch.allclose(ms_ssim(y, x, scales=1), ssim(y, x), atol=1e-6)


# ----------------------------------------------------------------------- per-step and diversity


def test_per_step_metrics_mean_and_best_of_n():
    b, s, t = 3, 4, 5
    target = torch.rand(b, t, 3, 32, 32, generator=_gen())
    noise = torch.randn(b, s, t, 3, 32, 32, generator=_gen(1))
    scale = torch.tensor([0.3, 0.2, 0.1, 0.05]).view(1, s, 1, 1, 1, 1)
    pred = (target.unsqueeze(1) + scale * noise).clamp(0, 1)  # sample 3 is the best everywhere
    proto = Protocol(context_frames=2, dataset="toy", checkpoint="none")
    out = per_step_metrics(pred, target, metrics=("psnr", "ssim", "ms_ssim"), protocol=proto)
    assert set(out) == {f"{m}/{a}" for m in ("psnr", "ssim", "ms_ssim") for a in ("mean", "best")}
    for m in ("psnr", "ssim", "ms_ssim"):
        mean, best = out[f"{m}/mean"], out[f"{m}/best"]
        assert mean.curve.shape == (t,) and mean.per_video.shape == (b, t)
        assert (best.curve >= mean.curve).all()
        assert mean.protocol.aggregate == "mean" and best.protocol.aggregate == "best-of-N"
        assert best.protocol.samples_per_video == s and best.protocol.num_videos == b
        assert best.protocol.predicted_frames == t and best.protocol.context_frames == 2
        assert best.protocol.metric == m and "best_of_n_selection" in best.protocol.details
    # Best-of-N picks sample 3 for every video: its curve equals that sample's values.
    expected = psnr(pred[:, 3], target).mean(dim=0)
    assert torch.allclose(out["psnr/best"].curve, expected)
    assert "2 scales" in out["ms_ssim/mean"].protocol.details["ms_ssim"]
    assert "best of 4 samples" in out["ssim/best"].protocol.describe()
    with pytest.raises(ValueError, match="protocol.predicted_frames=7"):
        per_step_metrics(pred, target, protocol=Protocol(predicted_frames=7))
    with pytest.raises(ValueError, match="does not match target"):
        per_step_metrics(pred, target[:, :-1])
    with pytest.raises(ValueError, match="unknown metrics"):
        per_step_metrics(pred, target, metrics=("lpips",))
    with pytest.raises(ValueError, match="aggregate"):
        Protocol(aggregate="median").validate()
    # building a Protocol checks nothing; per_step_metrics and Protocol.replace do
    with pytest.raises(ValueError, match="aggregate must be"):
        per_step_metrics(pred, target, protocol=Protocol(aggregate="median"))
    with pytest.raises(ValueError, match="samples_per_video must be >= 1"):
        Protocol().replace(samples_per_video=0)


def test_diversity_lower_is_more_diverse(natural_frames):
    video = natural_frames.unsqueeze(0).expand(3, -1, -1, -1, -1)  # (S=3, T=4, 3, 64, 64)
    assert torch.allclose(diversity(video), torch.tensor(1.0), atol=1e-5)
    similar = (video + 0.02 * torch.randn(video.shape, generator=_gen())).clamp(0, 1)
    varied = (video + 0.2 * torch.randn(video.shape, generator=_gen())).clamp(0, 1)
    assert diversity(varied) < diversity(similar) < 1.0
    batch = torch.stack([similar, varied])  # (B=2, S, T, C, H, W)
    assert torch.allclose(
        diversity(batch, pair_batch=2), torch.stack([diversity(similar), diversity(varied)])
    )
    with pytest.raises(ValueError, match="at least 2 samples"):
        diversity(video[:1])


# ------------------------------------------------------------------------------------------ SWD


def test_laplacian_pyramid_levels_and_reconstruction(natural_frames):
    levels = laplacian_pyramid(natural_frames)
    assert [lv.shape[-1] for lv in levels] == [64, 32, 16]
    from worldmodel.metrics.swd import _pyr_up  # the pyramid must be invertible

    img = levels[-1]
    for lv in reversed(levels[:-1]):
        img = lv + _pyr_up(img, lv.shape[-2:])
    assert torch.allclose(img, natural_frames, atol=1e-5)


def test_pyramid_filters_match_the_reference_definition():
    """pyrDown / pyrUp as Progressive GAN's numpy code defines them with scipy.ndimage (mirror)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    from worldmodel.metrics.swd import _pyr_down, _pyr_up

    g = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])[None, None] / 256.0
    x = np.random.default_rng(0).random((2, 3, 32, 32))
    down = ndimage.convolve(x, g, mode="mirror")[:, :, ::2, ::2]
    assert np.allclose(_pyr_down(torch.from_numpy(x)).numpy(), down, atol=1e-12)
    zeros = np.zeros((2, 3, 64, 64))
    zeros[:, :, ::2, ::2] = x
    up = ndimage.convolve(zeros, g * 4.0, mode="mirror")
    assert np.allclose(_pyr_up(torch.from_numpy(x), (64, 64)).numpy(), up, atol=1e-12)


def test_sliced_w1_is_the_1d_wasserstein_distance_of_projections():
    stats = pytest.importorskip("scipy.stats")
    from worldmodel.metrics.swd import _sliced_w1

    a = torch.randn(200, 5, generator=_gen(0), dtype=torch.float64)
    b = torch.randn(200, 5, generator=_gen(1), dtype=torch.float64) * 1.5 + 0.3
    d = torch.randn(5, 3, generator=_gen(2), dtype=torch.float64)
    d = d / d.norm(dim=0)
    ref = np.mean([stats.wasserstein_distance(a @ d[:, k], b @ d[:, k]) for k in range(3)])
    assert math.isclose(float(_sliced_w1(a, b, d)), ref, rel_tol=1e-9)


def test_swd_zero_for_identical_sets_and_monotone_in_noise():
    real = torch.from_numpy(np.stack([_natural_image(32, s) for s in range(12)])).permute(
        0, 3, 1, 2
    )
    real = real.float()
    kwargs = {"patches_per_image": 32, "num_projections": 128, "projections_per_repeat": 64}
    same = swd(real, real.clone(), **kwargs)
    assert set(same) == {32, 16, "avg"}
    assert all(v == 0.0 for v in same.values())
    noise = torch.randn(real.shape, generator=_gen(5))
    avgs = [
        swd(real, (real + s * noise).clamp(0, 1), **kwargs)["avg"] for s in (0.02, 0.05, 0.1, 0.2)
    ]
    assert all(a < b for a, b in zip(avgs[:-1], avgs[1:], strict=True)), avgs
    # Deterministic: same generator seed -> same numbers; default is seeded too.
    fake = (real + 0.1 * noise).clamp(0, 1)
    assert swd(real, fake, **kwargs) == swd(real, fake, **kwargs)
    assert swd(real, fake, generator=_gen(3), **kwargs) == swd(
        real, fake, generator=_gen(3), **kwargs
    )
    with pytest.raises(ValueError, match="same shape"):
        swd(real, fake[:5])
    with pytest.raises(ValueError, match="uint8"):
        swd((real * 255).to(torch.uint8), fake)


# ------------------------------------------------------------------------------ Frechet distance


def test_frechet_distance_closed_form_diagonal():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 2.0, d), rng.uniform(0.1, 2.0, d)
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    got = frechet_distance(torch.tensor(mu1), torch.diag(torch.tensor(s1)), mu2, np.diag(s2))
    assert math.isclose(got, expected, rel_tol=1e-9)
    assert frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_full_covariance_matches_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    d = 8
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    covmean = np.real(linalg.sqrtm(s1 @ s2))
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert math.isclose(frechet_distance(mu1, s1, mu2, s2), expected, rel_tol=1e-7)


def test_feature_statistics_and_errors():
    feats = torch.randn(50, 4, generator=_gen(), dtype=torch.float64)
    mu, sigma = feature_statistics(feats)
    assert torch.allclose(mu, feats.mean(0))
    assert np.allclose(sigma.numpy(), np.cov(feats.numpy(), rowvar=False))
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="at least 2 samples"):
        feature_statistics(feats[:1])
    with pytest.raises(ValueError, match="too few for a covariance"):
        feature_statistics(feats[:4])
    _, shrunk = feature_statistics(feats[:4], shrinkage=0.5)
    assert torch.linalg.matrix_rank(shrunk) == 4  # shrinkage makes it full rank
    with pytest.raises(ValueError, match="not symmetric"):
        frechet_distance(mu, sigma + torch.triu(torch.ones(4, 4), 1), mu, sigma)
    with pytest.raises(ValueError, match="same length"):
        frechet_distance(mu, sigma, mu[:3], sigma[:3, :3])


def test_random_feature_distance_is_named_fd_and_behaves():
    net = RandomConv3dFeatures(seed=0, dim=8, size=32)
    assert net.metric_name == "FD-random3dconv-d8-s32-c3-seed0"
    assert RandomConv3dFeatures().metric_name == "FD-random3dconv-seed0"
    videos = torch.rand(24, 4, 3, 32, 32, generator=_gen())
    f1 = net.features(videos)
    assert f1.shape == (24, 8)
    assert torch.equal(
        f1, RandomConv3dFeatures(seed=0, dim=8, size=32).features(videos)
    )  # fixed seed
    assert not torch.allclose(f1, RandomConv3dFeatures(seed=1, dim=8, size=32).features(videos))
    same = video_frechet_distance(videos, videos.clone(), net, batch_size=7)
    assert same.name == "FD-random3dconv-d8-s32-c3-seed0" and same.value < 1e-6
    assert same.num_real == 24 and same.feature_dim == 8 and "FD-" in same.describe()
    noise = torch.randn(videos.shape, generator=_gen(2))
    values = [
        video_frechet_distance(videos, (videos + s * noise).clamp(0, 1), net).value
        for s in (0.1, 0.3)
    ]
    assert 0 < values[0] < values[1]
    with pytest.raises(ValueError, match="too few for a covariance"):
        video_frechet_distance(videos[:6], videos[:6], net)
    with pytest.raises(ValueError, match="assume='signed'"):
        net.features(videos * 2 - 1)


def test_encoder_features_name():
    enc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))
    ext = EncoderFeatures(enc, "toy-encoder")
    assert ext.metric_name == "FD-toy-encoder"
    assert ext.features(torch.rand(2, 3, 3, 16, 16)).shape == (2, 5)


class _ScriptedI3DStandIn(nn.Module):
    """Mimics the call convention of the widely shared TorchScript I3D."""

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = True,
        resize: bool = True,
        return_features: bool = False,
    ) -> torch.Tensor:
        assert not rescale and not resize and return_features
        return torch.cat([x.mean(dim=(1, 2, 3, 4))[:, None], x.amin(dim=(1, 2, 3, 4))[:, None]], 1)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_i3d_from_torchscript_file(tmp_path):
    path = tmp_path / "i3d.pt"
    torch.jit.script(_ScriptedI3DStandIn()).save(str(path))
    ext = I3DFeatures.from_file(path)
    assert ext.metric_name == "FVD"
    videos = torch.rand(2, 16, 3, 64, 64, generator=_gen())
    x = ext.preprocess(videos)
    assert x.shape == (2, 3, 16, 224, 224) and x.min() >= -1 and x.max() <= 1
    feats = ext.features(videos)
    assert feats.shape == (2, 2) and torch.allclose(feats[:, 0], x.mean(dim=(1, 2, 3, 4)))
    with pytest.raises(ValueError, match="exactly 16 frames"):
        ext.features(torch.rand(2, 10, 3, 64, 64))


def test_i3d_state_dict_loading_and_errors(tmp_path):
    net = InceptionI3d(400)
    keys = list(net.state_dict())
    assert len(keys) == 344 and keys[0] == "Conv3d_1a_7x7.conv3d.weight"
    assert "Mixed_5c.b3b.bn.running_var" in keys and keys[-1] == "logits.conv3d.bias"
    path = tmp_path / "i3d_state.pt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)  # DataParallel prefix
    ext = I3DFeatures.from_file(path)
    assert isinstance(ext.net, InceptionI3d) and ext.metric_name == "FVD"
    assert torch.equal(ext.net.Mixed_4d.b1b.conv3d.weight, net.Mixed_4d.b1b.conv3d.weight)
    other = tmp_path / "charades.pt"
    torch.save(InceptionI3d(157).state_dict(), other)
    assert I3DFeatures.from_file(other).metric_name == "FD-i3d-157cls"  # not the FVD network
    with pytest.raises(FileNotFoundError, match="does not download"):
        I3DFeatures.from_file(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="logits.conv3d.weight"):
        I3DFeatures.from_file(bad)


def test_i3d_forward_on_a_reference_clip():
    torch.manual_seed(0)
    ext = I3DFeatures(InceptionI3d(400).eval())
    feats = ext.features(torch.rand(1, 16, 3, 64, 64, generator=_gen()))
    assert feats.shape == (1, 400) and torch.isfinite(feats).all()


# ------------------------------------------------------------------------------------------ GAM


def _energy(x: torch.Tensor) -> torch.Tensor:
    """High-frequency energy per image (N, C, H, W) -> (N,)."""
    return (x[..., 1:, :] - x[..., :-1, :]).square().mean(dim=(1, 2, 3))


def _abs_grad(x: torch.Tensor) -> torch.Tensor:
    return (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))


def _real_images(n: int, seed: int) -> torch.Tensor:
    g = _gen(seed)
    base = torch.linspace(0, 1, 16).view(1, 1, 1, 16)
    return (base + 0.05 * torch.randn(n, 1, 16, 16, generator=g)).clamp(0, 1)


def test_gam_picks_the_generator_of_the_true_distribution():
    test = _real_images(400, 0)
    g1 = _real_images(400, 1)  # model 1 samples from the data distribution
    g2 = (_real_images(400, 2) + 0.08 * torch.randn(400, 1, 16, 16, generator=_gen(3))).clamp(0, 1)
    # Two different "discriminators": real iff a texture statistic is below its 90% quantile on
    # (separate) held-out real data, so both err on ~10% of real test data.
    held_out = _real_images(400, 9)
    t1, t2 = _energy(held_out).quantile(0.9), _abs_grad(held_out).quantile(0.9)

    def d1(x):
        return (t1 - _energy(x)) * 100

    def d2(x):
        return (t2 - _abs_grad(x)) * 100

    result = gam(d1, d2, g1, g2, test, test_tolerance=0.5)
    assert abs(result.r_test - 1) <= 0.5
    assert result.r_samples < 1 and result.winner == "model1", result.explanation
    assert result.err_d2_on_g1 > 0.5 and result.err_d1_on_g2 < 0.1
    swapped = gam(d2, d1, g2, g1, test, test_tolerance=0.5)
    assert swapped.winner == "model2" and swapped.r_samples > 1


def test_mcnemar_p_exact_values():
    def flags(*idx, n=100):
        w = torch.zeros(n, dtype=torch.bool)
        w[list(idx)] = True
        return w

    # 1 error against 4 on other items: b = 1, c = 4 -> 2 * (C(5,0) + C(5,1)) / 2^5 = 0.375
    assert mcnemar_p(flags(0), flags(1, 2, 3, 4)) == pytest.approx(0.375)
    # the same items wrong: no discordant pair, nothing to tell them apart
    assert mcnemar_p(flags(0, 1), flags(0, 1)) == 1.0
    # 0 against 12: 2 / 2^12
    assert mcnemar_p(flags(), flags(*range(12))) == pytest.approx(2 / 4096)


def test_gam_near_perfect_judges_ratio_rule_and_mcnemar_rule():
    """Two judges that err on 1 and 4 of 1,000 real frames: GRAN's ratio rule (r_test = 0.25)
    leaves the battle undecided; with test_rule="ratio_or_mcnemar" (McNemar p = 0.375) the
    samples decide. The p-value is reported either way."""
    n = 1000
    real = torch.zeros(n, 1)
    wrong1, wrong2 = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    wrong1[0], wrong2[1:5] = True, True
    g1, g2 = torch.ones(n, 1), 2 * torch.ones(n, 1)

    def judge(wrong_on_real, fooled_by):  # real items are told apart by their index
        def d(x):
            out = torch.where(x[:, 0] == 0, 1.0, -1.0)
            out[(x[:, 0] == 0) & wrong_on_real] = -1.0  # one batch: batch_size=n
            return torch.where(x[:, 0] == fooled_by, torch.ones(len(x)), out)

        return d

    # G1 fools D2 on every sample, G2 never fools D1: model 1 wins on the samples
    d1, d2 = judge(wrong1, fooled_by=-9), judge(wrong2, fooled_by=1)
    gran = gam(d1, d2, g1, g2, real, batch_size=n)
    assert gran.r_test == pytest.approx(0.25) and gran.winner == "undecided"
    assert gran.test_p == pytest.approx(0.375) and "ratio_or_mcnemar would" in gran.explanation
    both = gam(d1, d2, g1, g2, real, batch_size=n, test_rule="ratio_or_mcnemar")
    assert both.winner == "model1" and "McNemar p = 0.38" in both.explanation
    with pytest.raises(ValueError, match="test_rule"):
        gam(d1, d2, g1, g2, real, test_rule="vibes")


def test_gam_undecided_tie_and_zero_denominators():
    x = torch.zeros(10, 2)

    def always_real(v, *rest):
        return torch.ones(v.shape[0])

    def always_fake(v, *rest):
        return -torch.ones(v.shape[0], 1)

    # D2 always says "fake": it errs on all real test data, D1 on none -> r_test = 0: undecided.
    res = gam(always_real, always_fake, x, x, x)
    assert res.r_test == 0.0 and res.winner == "undecided" and "not within" in res.explanation
    # Both always "fake": perfect on samples, 100% wrong on test: r_test 1, r_samples 0/0 := 1.
    res = gam(always_fake, always_fake, x, x, x)
    assert res.r_test == 1.0 and res.r_samples == 1.0 and res.winner == "tie"
    # D1 never fooled by G2 samples is fine (ratio 0); D2 never fooled by G1 gives inf.
    res = gam(always_fake, always_real, x, x, x, test_tolerance=math.inf)
    assert res.r_samples == 0.0 and res.winner == "model1"
    res = gam(always_real, always_fake, x, x, x, test_tolerance=math.inf)
    assert math.isinf(res.r_samples) and res.winner == "model2" and "infinite" in res.explanation
    # (context, frame) pairs are unpacked into the discriminator call.
    res = gam(lambda c, f: f.sum(1) - c.sum(1), always_fake, (x, x + 1), (x, x - 1), (x, x + 1))
    assert res.err_d1_test == 0.0
    with pytest.raises(ValueError, match="one logit per sample"):
        gam(lambda v: torch.zeros(v.shape[0], 2), always_fake, x, x, x)
