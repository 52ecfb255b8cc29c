"""Video-prediction metrics whose protocol is written next to the number.

* Image metrics per frame: :func:`psnr`, :func:`ssim` (Wang et al. 2004), :func:`ms_ssim` (scales
  chosen from the frame size, see :func:`ms_ssim_settings`). Inputs are float frames in ``[0, 1]``;
  anything else is an error (convert explicitly with :func:`to_unit_range`).
* :func:`per_step_metrics`: per-time-step curves, mean over samples AND best of S, each with a
  :class:`Protocol`.
* :func:`diversity`: mean pairwise MS-SSIM between samples (lower = more diverse).
* :func:`swd`: sliced Wasserstein distance on Laplacian-pyramid patches (Progressive GAN).
* :func:`frechet_distance`, :func:`feature_statistics`, :func:`video_frechet_distance` with a
  :class:`VideoFeatureExtractor`: "FVD" only with the reference I3D (:class:`I3DFeatures`), otherwise
  "FD-<network>" (:class:`RandomConv3dFeatures`, :class:`EncoderFeatures`).
* :func:`gam`: GRAN's generative adversarial metric between two (generator, discriminator) pairs.
"""

from __future__ import annotations

from ._validation import to_unit_range
from .features import (
    EncoderFeatures,
    FrechetResult,
    I3DFeatures,
    RandomConv3dFeatures,
    VideoFeatureExtractor,
    extract_features,
    video_frechet_distance,
)
from .frechet import feature_statistics, frechet_distance
from .gam import GAMResult, error_rate, gam
from .i3d import InceptionI3d
from .image import (
    WANG2003_WEIGHTS,
    MSSSIMSettings,
    ms_ssim,
    ms_ssim_settings,
    psnr,
    ssim,
)
from .protocol import MetricCurve, Protocol, diversity, per_step_metrics
from .sharpness import image_gradients, mean_gradient_magnitude, sharpness, sharpness_difference
from .swd import laplacian_pyramid, swd

__all__ = [
    "to_unit_range",
    "psnr",
    "ssim",
    "ms_ssim",
    "ms_ssim_settings",
    "MSSSIMSettings",
    "WANG2003_WEIGHTS",
    "Protocol",
    "MetricCurve",
    "per_step_metrics",
    "diversity",
    "swd",
    "laplacian_pyramid",
    "frechet_distance",
    "feature_statistics",
    "VideoFeatureExtractor",
    "I3DFeatures",
    "InceptionI3d",
    "RandomConv3dFeatures",
    "EncoderFeatures",
    "FrechetResult",
    "extract_features",
    "video_frechet_distance",
    "gam",
    "GAMResult",
    "error_rate",
    "sharpness",
    "sharpness_difference",
    "mean_gradient_magnitude",
    "image_gradients",
]
