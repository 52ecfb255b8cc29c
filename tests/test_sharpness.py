"""worldmodel.metrics.sharpness: gradient-magnitude ratio and Mathieu et al.'s sharpness difference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from worldmodel.metrics import (
    image_gradients,
    mean_gradient_magnitude,
    sharpness,
    sharpness_difference,
)


def _frames(*lead: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``(*lead, 3, size, size)`` frames in [0, 1] with edges at many scales: random rectangles on a
    smooth gradient background."""
    g = torch.Generator().manual_seed(seed)
    n = math.prod(lead) if lead else 1
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = torch.empty(n, 3, size, size)
    for k in range(n):
        img = (0.3 * yy + 0.2 * xx).expand(3, size, size).clone()
        for _ in range(6):
            y0, x0 = torch.randint(0, size - 4, (2,), generator=g).tolist()
            h, w = torch.randint(2, size // 2, (2,), generator=g).tolist()
            img[:, y0 : y0 + h, x0 : x0 + w] = torch.rand(3, 1, 1, generator=g)
        out[k] = img.clamp(0, 1)
    return out.reshape(*lead, 3, size, size)


def _box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    flat = x.reshape(-1, *x.shape[-3:])
    blurred = F.avg_pool2d(flat, k, stride=1, padding=k // 2, count_include_pad=False)
    return blurred.reshape(x.shape)


def _step_edge() -> torch.Tensor:
    """(1, 4, 4): left half 0, right half 1 (a vertical edge between columns 1 and 2)."""
    x = torch.zeros(1, 4, 4)
    x[:, :, 2:] = 1.0
    return x


def test_gradients_and_magnitude_by_hand():
    x = _step_edge()
    d_i, d_j = image_gradients(x)
    assert d_i.shape == d_j.shape == (1, 3, 3)
    assert torch.all(d_i == 0)
    assert torch.equal(d_j[0, :, 1], torch.ones(3)) and d_j.sum() == 3
    # 3 of the 9 cropped pixels have magnitude 1
    assert mean_gradient_magnitude(x).item() == pytest.approx(1 / 3)
    # a diagonal ramp: d_i = d_j = 0.1 everywhere -> magnitude 0.1 * sqrt(2)
    r = torch.arange(5.0)
    ramp = (0.1 * (r[:, None] + r[None, :])).unsqueeze(0)  # values in [0, 0.8]
    assert mean_gradient_magnitude(ramp).item() == pytest.approx(0.1 * math.sqrt(2), rel=1e-5)


def test_identical_frames_are_exactly_one_per_frame_and_step():
    x = _frames(2, 5)  # (B, T, C, H, W)
    s = sharpness(x, x)
    assert s.shape == (2, 5)
    assert torch.equal(s, torch.ones(2, 5))
    assert sharpness(x, x, reduction="mean").item() == 1.0


def test_blur_lowers_and_noise_raises_sharpness():
    x = _frames(4)
    blur3, blur5 = _box_blur(x, 3), _box_blur(x, 5)
    s3, s5 = sharpness(blur3, x), sharpness(blur5, x)
    assert torch.all(s5 < 0.75), s5
    assert torch.all(s5 < s3) and torch.all(s3 < 1)  # more blur, lower ratio
    noise = 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    assert torch.all(sharpness((x + noise).clamp(0, 1), x) > 1.2)
    # scaling the contrast scales the ratio exactly
    assert torch.allclose(sharpness(0.5 * x, x), torch.full((4,), 0.5), atol=1e-6)


def test_flat_truth_and_mean_reduction():
    flat = torch.full((2, 3, 8, 8), 0.4)
    assert torch.equal(sharpness(flat, flat), torch.ones(2))  # equally (not) sharp
    edged = flat.clone()
    edged[:, :, :, 4:] = 0.9
    assert torch.isinf(sharpness(edged, flat)).all()
    assert torch.equal(sharpness(flat, edged), torch.zeros(2))
    x, y = _frames(3), _box_blur(_frames(3), 3)
    assert sharpness(y, x, reduction="mean").item() == pytest.approx(sharpness(y, x).mean().item())


def test_sharpness_difference_by_hand_and_ranking():
    edge = _step_edge()
    # truth: |grad| sums to 1 on 3 of 9 pixels; a flat prediction misses all of it -> mean 1/3
    flat = torch.zeros_like(edge)
    assert sharpness_difference(flat, edge).item() == pytest.approx(10 * math.log10(3), rel=1e-6)
    assert torch.isinf(sharpness_difference(edge, edge))
    assert sharpness_difference(edge, edge, max_db=100.0).item() == 100.0
    x = _frames(4)
    d3 = sharpness_difference(_box_blur(x, 3), x)
    d7 = sharpness_difference(_box_blur(x, 7), x)
    assert d3.shape == (4,) and torch.all(d3 > d7)
    # frames in [0, 2]: max^2 is 4x larger and the gradient differences 2x -> +10 log10(2) dB
    d3_range2 = sharpness_difference(2 * _box_blur(x, 3), 2 * x, data_range=2.0)
    assert torch.allclose(d3_range2, d3 + 10 * math.log10(2), atol=1e-4)


@pytest.mark.parametrize("metric", [sharpness, sharpness_difference])
def test_bad_inputs_raise_clear_errors(metric):
    x = _frames(2)
    with pytest.raises(ValueError, match="uint8"):
        metric((x * 255).to(torch.uint8), x)
    with pytest.raises(ValueError, match="shapes differ"):
        metric(x, x[:1])
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        metric(x * 255, x * 255)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metric(x * 2 - 1, x)
    with pytest.raises(ValueError, match="NaN"):
        metric(torch.full_like(x, float("nan")), x)
    with pytest.raises(ValueError, match="2x2"):
        metric(x[..., :1, :], x[..., :1, :])
    with pytest.raises(ValueError, match="reduction"):
        metric(x, x, reduction="sum")
    with pytest.raises(ValueError, match="at least 3 dims"):
        metric(x[0, 0], x[0, 0])
    with pytest.raises(ValueError, match="uint8"):
        mean_gradient_magnitude((x * 255).to(torch.uint8))
