"""Sliced Wasserstein distance between Laplacian-pyramid patch statistics (Karras et al., ICLR 2018).

Protocol (as in Progressive GAN's evaluation, with the differences stated):

1. Each image set ``(N, C, H, W)`` is decomposed into a Laplacian pyramid from full resolution down to
   16x16: level ``i`` is ``G_i - up(G_{i+1})`` with ``G_{i+1} = down(G_i)``, the coarsest level
   (the last one with both sides >= 16) is the Gaussian level itself. ``down`` / ``up`` are the 5x5
   binomial filter with mirror borders as ``cv2.pyrDown`` / ``cv2.pyrUp``.
2. From every level of every image, ``patches_per_image`` (128) random 7x7xC neighbourhoods are cut
   (fully inside the level).
3. Each descriptor *set* (one level of one image set) is normalised per colour channel: subtract its
   mean and divide by its standard deviation over all its descriptors and pixels. Real and fake sets
   are normalised separately, with their own statistics (so a global colour shift is not measured).
4. ``SWD_level = mean over num_projections random unit directions of W1(sorted projections)``, the 1-D
   Wasserstein-1 distance between the two projected sets (mean absolute difference of sorted values).
   Directions are drawn in chunks of ``projections_per_repeat`` (Karras et al.: 4 repeats x 128).
5. Values are multiplied by ``scale`` = 1e3, as Karras et al. report them (Table 1: "SWD x 10^3").

Difference from the reference code: the patch positions are drawn once per (image index, level) and
shared by the real and the fake set (common random numbers). Both sets are still sampled uniformly, but
``swd(x, x) == 0`` exactly and the variance of a comparison is smaller; the reference draws positions
independently, which leaves a small noise floor. Karras et al. use 16384 images per set; fewer images
give noisier (and biased upward) numbers: report ``N`` with the value.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._validation import check_frames

__all__ = ["laplacian_pyramid", "swd"]

# 5x5 binomial kernel (outer product of [1, 4, 6, 4, 1] / 16), the kernel of cv2.pyrDown.
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur_matrix(n: int, gain: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(n, n)`` matrix ``M`` such that ``x @ M`` filters the last axis of ``x`` with the 5-tap
    binomial kernel (times ``gain``) and mirror borders ('reflect': the edge sample is not repeated),
    i.e. scipy.ndimage's ``mode='mirror'`` / OpenCV's default ``BORDER_REFLECT_101``."""
    k = _BINOMIAL * gain
    out = np.zeros((n, n))
    for t in range(-2, 3):
        src = np.arange(n) + t  # input sample read by output j, for this tap
        src = np.where(src < 0, -src, np.where(src > n - 1, 2 * (n - 1) - src, src))  # mirror
        np.add.at(out, (src, np.arange(n)), k[t + 2])
    out = torch.from_numpy(out)
    return out.to(dtype=dtype, device=device)


def _pyr_down(x: Tensor) -> Tensor:
    """Blur, keep every second row and column: ``(N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2))``."""
    h, w = x.shape[-2:]
    mh = _blur_matrix(h, 1.0, x.dtype, x.device)[:, ::2].T.contiguous()  # (ceil(H/2), H)
    mw = _blur_matrix(w, 1.0, x.dtype, x.device)[:, ::2].contiguous()  # (W, ceil(W/2))
    return mh @ x @ mw


def _pyr_up(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Insert zeros between samples, blur with gain 4 (2 per axis), crop:
    ``(N, C, h, w) -> (N, C, *size)`` with ``size <= (2h, 2w)``."""
    h, w = x.shape[-2:]
    # Zero insertion followed by blurring only reads the even rows of the blur matrix.
    mh = _blur_matrix(2 * h, 2.0, x.dtype, x.device)[::2, : size[0]].T.contiguous()  # (H, h)
    mw = _blur_matrix(2 * w, 2.0, x.dtype, x.device)[::2, : size[1]].contiguous()  # (w, W)
    return mh @ x @ mw


def laplacian_pyramid(images: Tensor, min_size: int = 16) -> list[Tensor]:
    """Laplacian pyramid, finest level first, down to the last level with both sides >= ``min_size``.

    Args:
        images: ``(N, C, H, W)`` float tensor.

    Returns:
        Levels ``[(N, C, H, W), (N, C, H/2, W/2), ...]``; all but the last are band-pass (detail) images,
        the last is the low-pass image. A 64x64 input gives 64, 32 and 16 px levels.
    """
    if min(images.shape[-2:]) < min_size:
        raise ValueError(
            f"images must be at least {min_size}x{min_size} for the pyramid, got "
            f"{tuple(images.shape[-2:])}"
        )
    gaussian = [images]
    while min(-(-s // 2) for s in gaussian[-1].shape[-2:]) >= min_size:
        gaussian.append(_pyr_down(gaussian[-1]))
    levels = [
        g - _pyr_up(g_next, g.shape[-2:])
        for g, g_next in zip(gaussian[:-1], gaussian[1:], strict=True)
    ]
    levels.append(gaussian[-1])
    return levels


def _patches(level: Tensor, ys: Tensor, xs: Tensor, patch_size: int) -> Tensor:
    """Cut ``patch_size`` x ``patch_size`` neighbourhoods.

    Args:
        level: ``(N, C, H, W)``.
        ys, xs: ``(N, P)`` top-left corners.

    Returns:
        ``(N * P, C, patch_size, patch_size)``.
    """
    n, c = level.shape[:2]
    p = ys.shape[1]
    offs = torch.arange(patch_size, device=level.device)
    img = torch.arange(n, device=level.device).repeat_interleave(p).view(-1, 1, 1, 1)
    ch = torch.arange(c, device=level.device).view(1, -1, 1, 1)
    yy = (ys.reshape(-1, 1, 1, 1) + offs.view(1, 1, -1, 1)).to(level.device)
    xx = (xs.reshape(-1, 1, 1, 1) + offs.view(1, 1, 1, -1)).to(level.device)
    return level[img, ch, yy, xx]


def _normalise(desc: Tensor) -> Tensor:
    """Per channel over the whole set: ``(M, C, k, k) -> (M, C * k * k)``, zero mean, unit std."""
    mean = desc.mean(dim=(0, 2, 3), keepdim=True)
    std = desc.std(dim=(0, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-8)
    return ((desc - mean) / std).flatten(1)


def _sliced_w1(a: Tensor, b: Tensor, directions: Tensor) -> Tensor:
    """Mean over directions of W1 between the projected sets: ``a, b (M, D)``, ``directions (D, K)``."""
    pa = torch.sort(directions.T @ a.T, dim=-1).values  # (K, M)
    pb = torch.sort(directions.T @ b.T, dim=-1).values
    return (pa - pb).abs().mean()


@torch.no_grad()
def swd(
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
    patches_per_image: int = 128,
    patch_size: int = 7,
    num_projections: int = 512,
    projections_per_repeat: int = 128,
    min_size: int = 16,
    scale: float = 1e3,
) -> dict[int | str, float]:
    """Sliced Wasserstein distance between two image sets, per Laplacian level and on average.

    See the module docstring for the full protocol. Deterministic: with ``generator=None`` a CPU
    generator seeded with 0 draws the patch positions and the projection directions.

    Args:
        real, fake: ``(N, C, H, W)`` float images in ``[0, 1]``, same shape (frames of videos may be
            flattened into N). ``H, W >= max(min_size, patch_size)``.
        generator: a CPU ``torch.Generator`` for the random patches and directions.
        patches_per_image: descriptors per level per image (128 in Karras et al.).
        patch_size: neighbourhood side (7).
        num_projections: random directions per level (512 = 4 repeats x 128 in Karras et al.).
        projections_per_repeat: directions projected at once (memory: ``N * patches * this`` floats).
        min_size: smallest pyramid level (16).
        scale: factor applied to every value (1e3, as the paper reports "SWD x 10^3").

    Returns:
        ``{level_height: value, ..., "avg": mean over levels}``, e.g. ``{64: .., 32: .., 16: ..,
        "avg": ..}`` for 64x64 images; values are multiplied by ``scale``; 0 for identical sets.
    """
    if not isinstance(real, Tensor) or not isinstance(fake, Tensor) or real.dim() != 4:
        raise ValueError("real and fake must be tensors of shape (N, C, H, W)")
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape (N, C, H, W), got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}; subsample the larger set to the same N"
        )
    if num_projections % projections_per_repeat != 0:
        raise ValueError("num_projections must be a multiple of projections_per_repeat")
    real = check_frames(real, "real")
    fake = check_frames(fake, "fake")
    n, c, h, w = real.shape
    if min(h, w) < max(min_size, patch_size):
        raise ValueError(f"images must be at least {max(min_size, patch_size)} px, got {h}x{w}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    levels_real = laplacian_pyramid(real, min_size)
    levels_fake = laplacian_pyramid(fake, min_size)
    result: dict[int | str, float] = {}
    dim = c * patch_size * patch_size
    for lr, lf in zip(levels_real, levels_fake, strict=True):
        lh, lw = lr.shape[-2:]
        # Top-left corners, shared by both sets (common random numbers).
        ys = torch.randint(0, lh - patch_size + 1, (n, patches_per_image), generator=generator)
        xs = torch.randint(0, lw - patch_size + 1, (n, patches_per_image), generator=generator)
        a = _normalise(_patches(lr, ys, xs, patch_size))  # (N * P, D)
        b = _normalise(_patches(lf, ys, xs, patch_size))
        dists = []
        for _ in range(num_projections // projections_per_repeat):
            d = torch.randn(dim, projections_per_repeat, generator=generator, dtype=torch.float64)
            d = (d / d.norm(dim=0, keepdim=True)).to(dtype=a.dtype, device=a.device)
            dists.append(_sliced_w1(a, b, d))
        result[int(lh)] = float(torch.stack(dists).mean()) * scale
    result["avg"] = sum(v for k, v in result.items()) / len(levels_real)
    return result
