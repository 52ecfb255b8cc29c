"""Video feature networks for Frechet distances, and the distance on videos itself.

A Frechet distance is only as comparable as its feature network and preprocessing. The rule here:

* With :class:`I3DFeatures` loaded from the reference Kinetics-400 I3D weights that the user supplies,
  16-frame clips resized to 224x224 and scaled to ``[-1, 1]``, the metric is named **"FVD"**
  (Unterthiner et al. 2018).
* With any other network (a fixed random 3-D conv net, a user-trained encoder, an I3D with other
  weights) the metric is named **"FD-<network name>"**, e.g. ``"FD-random3dconv-seed0"``. Such numbers
  are comparable with each other (same name, same number of videos) but never with published FVDs.

Every extractor is a :class:`VideoFeatureExtractor`: an ``nn.Module`` with a ``name``, a
``preprocess`` method that takes videos ``(B, T, C, H, W)`` in ``[0, 1]`` and a ``forward`` that maps
the preprocessed batch to ``(B, D)`` features.
"""

from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validation import check_frames
from .frechet import feature_statistics, frechet_distance
from .i3d import InceptionI3d

__all__ = [
    "VideoFeatureExtractor",
    "I3DFeatures",
    "RandomConv3dFeatures",
    "EncoderFeatures",
    "FrechetResult",
    "extract_features",
    "video_frechet_distance",
]


class VideoFeatureExtractor(nn.Module):
    """Base class: a named feature network with its preprocessing.

    Subclasses set ``name`` (used in the metric name), ``preprocessing`` (a one-line description that
    goes into results) and ``clip_frames`` (the exact clip length required, or None for any), and
    implement :meth:`preprocess` and :meth:`forward`.
    """

    name: str = "features"
    preprocessing: str = "none"
    clip_frames: int | None = None
    #: True only for the reference I3D: then, and only then, the metric is called "FVD".
    reference_fvd: bool = False

    @property
    def metric_name(self) -> str:
        """``"FVD"`` for the reference I3D, else ``"FD-<name>"``."""
        return "FVD" if self.reference_fvd else f"FD-{self.name}"

    def preprocess(self, videos: Tensor) -> Tensor:
        """Videos ``(B, T, C, H, W)`` in ``[0, 1]`` -> the network's input."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Preprocessed batch -> features ``(B, D)``."""
        raise NotImplementedError

    @torch.no_grad()
    def features(self, videos: Tensor) -> Tensor:
        """Check, preprocess and embed videos, in eval mode: ``(B, T, C, H, W)`` -> ``(B, D)`` float32."""
        videos = check_frames(videos, "videos", min_dims=5)
        if videos.dim() != 5:
            raise ValueError(f"videos must be (B, T, C, H, W), got shape {tuple(videos.shape)}")
        if self.clip_frames is not None and videos.shape[1] != self.clip_frames:
            raise ValueError(
                f"{self.metric_name} uses clips of exactly {self.clip_frames} frames, got "
                f"T={videos.shape[1]}; cut the videos into {self.clip_frames}-frame clips"
            )
        was_training = self.training
        self.eval()
        try:
            out = self(self.preprocess(videos))
        finally:
            self.train(was_training)
        if out.dim() != 2 or out.shape[0] != videos.shape[0]:
            raise ValueError(
                f"feature network {self.name!r} returned shape {tuple(out.shape)}; expected (B, D) "
                f"with B={videos.shape[0]}"
            )
        return out.float()


# ---------------------------------------------------------------------------------------------- I3D

# Keyword arguments of the widely shared TorchScript I3D ("i3d_torchscript.pt", StyleGAN-V and most
# PyTorch FVD code): inputs already resized and in [-1, 1]; return the 400 logits, not probabilities.
TORCHSCRIPT_I3D_KWARGS = {"rescale": False, "resize": False, "return_features": True}


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.split("/", 1)[-1].startswith("code/") for n in names) or any(
        n.endswith("constants.pkl") for n in names
    )


class I3DFeatures(VideoFeatureExtractor):
    """FVD's feature network: I3D logits of 16-frame clips, 224x224, values in ``[-1, 1]``.

    Build it with :meth:`from_file` from weights the user supplies (nothing is downloaded).

    Preprocessing (Unterthiner et al.'s reference): every frame is resized to 224x224 with bilinear
    interpolation (PyTorch ``align_corners=False``, no antialiasing; the TF1 reference used
    ``resize_bilinear`` without half-pixel centres, a small difference), non-square frames are
    stretched as in the reference, values mapped from ``[0, 1]`` to ``[-1, 1]``, layout
    ``(B, 3, 16, 224, 224)``.
    """

    clip_frames = 16
    size = 224

    def __init__(
        self,
        net: nn.Module,
        reference: bool = True,
        name: str = "i3d-kinetics400",
        call_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            net: an :class:`~worldmodel.metrics.i3d.InceptionI3d` with loaded weights, or a TorchScript
                module mapping ``(B, 3, 16, 224, 224)`` in ``[-1, 1]`` to ``(B, D)``.
            reference: the weights are the reference Kinetics-400 I3D, so the metric is "FVD".
            name: network name used when ``reference`` is False (metric ``"FD-<name>"``).
            call_kwargs: extra keyword arguments for ``net`` (e.g. :data:`TORCHSCRIPT_I3D_KWARGS`).
        """
        super().__init__()
        self.net = net
        self.reference_fvd = reference
        self.name = name
        self.call_kwargs = dict(call_kwargs or {})
        self.preprocessing = (
            "16-frame clips, each frame resized to 224x224 (bilinear), values in [-1, 1]"
        )
        self.eval()

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        kind: str = "auto",
        map_location: str | torch.device = "cpu",
        call_kwargs: dict[str, Any] | None = None,
    ) -> I3DFeatures:
        """Load I3D weights supplied by the user.

        Args:
            path: a TorchScript archive (``torch.jit.save``) or a state dict (``torch.save``) for
                :class:`~worldmodel.metrics.i3d.InceptionI3d` (the key names are listed in
                ``worldmodel/metrics/i3d.py``; a ``module.`` prefix from DataParallel is stripped).
            kind: ``"auto"`` (detect from the archive), ``"torchscript"`` or ``"state_dict"``.
            call_kwargs: keyword arguments for a TorchScript module; by default, if its ``forward``
                accepts ``rescale``, ``resize`` and ``return_features`` (the widely shared
                ``i3d_torchscript.pt``), :data:`TORCHSCRIPT_I3D_KWARGS` is passed so it returns the
                400 logits of inputs already preprocessed here.

        The metric is named "FVD" when the file is TorchScript (it is trusted to be the reference
        network: make sure it is) or a state dict with 400 classes; a state dict with another number
        of classes gives ``"FD-i3d-<n>cls"``.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is neither, or the state dict does not match the I3D definition.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"I3D weights not found at {path}; FVD needs the reference Kinetics-400 I3D weights, "
                "which this project does not download: supply the file, or use another "
                "VideoFeatureExtractor (the metric is then called FD-<name>, not FVD)"
            )
        if kind == "auto":
            kind = "torchscript" if _is_torchscript_archive(path) else "state_dict"
        if kind == "torchscript":
            net = torch.jit.load(str(path), map_location=map_location)
            if call_kwargs is None:
                schema = getattr(getattr(net, "forward", None), "schema", None)
                args = {a.name for a in schema.arguments} if schema is not None else set()
                if set(TORCHSCRIPT_I3D_KWARGS) <= args:
                    call_kwargs = dict(TORCHSCRIPT_I3D_KWARGS)
            return cls(net, reference=True, call_kwargs=call_kwargs)
        if kind != "state_dict":
            raise ValueError(f"kind must be 'auto', 'torchscript' or 'state_dict', got {kind!r}")
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except (RuntimeError, ValueError, OSError, EOFError) as err:  # pickle errors subclass these
            raise ValueError(
                f"{path} is neither a TorchScript archive nor a state dict: {err}"
            ) from err
        if not isinstance(state, dict) or "logits.conv3d.weight" not in {
            k.removeprefix("module.") for k in state
        }:
            raise ValueError(
                f"{path} does not hold an I3D state dict (no 'logits.conv3d.weight'); see "
                "worldmodel/metrics/i3d.py for the expected keys"
            )
        state = {k.removeprefix("module."): v for k, v in state.items()}
        num_classes = state["logits.conv3d.weight"].shape[0]
        net = InceptionI3d(num_classes)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(
                f"{path}: state dict does not match the I3D definition: {err}"
            ) from err
        net.to(map_location)
        reference = num_classes == 400
        return cls(net, reference=reference, name=f"i3d-{num_classes}cls")

    def preprocess(self, videos: Tensor) -> Tensor:
        b, t, c, h, w = videos.shape
        if c != 3:
            raise ValueError(f"I3D takes RGB videos (C=3), got C={c}")
        x = videos.reshape(b * t, c, h, w)
        if (h, w) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = x * 2.0 - 1.0
        return x.reshape(b, t, c, self.size, self.size).transpose(1, 2)  # (B, 3, T, 224, 224)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x, **self.call_kwargs)


# ------------------------------------------------------------------------------ offline extractors


class RandomConv3dFeatures(VideoFeatureExtractor):
    """A fixed random 3-D conv net: features that need no download and no training.

    Four 3x3x3 convolutions (widths 16, 32, 64, ``dim``; spatial stride 2 everywhere, temporal stride 2
    from the second), ReLU between them, then the mean over time and space -> ``(B, dim)``. The
    weights are drawn from ``N(0, 2 / fan_in)`` by a CPU generator seeded with ``seed``, biases are
    0: the same seed gives the same network (on the same torch version), so its Frechet distances
    (metric ``"FD-random3dconv-seed<seed>"``) are comparable across runs. Random conv features
    respond to colour, texture and motion statistics, much weaker than a trained network's: use them
    to compare models of the same data with each other, never against published FVDs.

    Preprocessing: frames resized to ``size`` x ``size`` (bilinear, antialiased) if needed, values in
    ``[-1, 1]``, layout ``(B, C, T, size, size)``. Any clip length works.
    """

    def __init__(self, seed: int = 0, dim: int = 64, size: int = 64, channels: int = 3) -> None:
        super().__init__()
        self.seed, self.dim, self.size = seed, dim, size
        suffix = "" if (dim, size, channels) == (64, 64, 3) else f"-d{dim}-s{size}-c{channels}"
        self.name = f"random3dconv{suffix}-seed{seed}"
        self.preprocessing = (
            f"frames resized to {size}x{size} (bilinear, antialiased), values in [-1, 1]"
        )
        widths = (channels, 16, 32, 64, dim)
        strides = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))
        self.convs = nn.ModuleList(
            nn.Conv3d(cin, cout, 3, stride=s, padding=1)
            for cin, cout, s in zip(widths[:-1], widths[1:], strides, strict=True)
        )
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for conv in self.convs:
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=gen) * (2 / fan_in) ** 0.5
                )
                conv.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, videos: Tensor) -> Tensor:
        b, t, c, h, w = videos.shape
        x = videos.reshape(b * t, c, h, w)
        if (h, w) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
            x = x.clamp(0.0, 1.0)
        x = x * 2.0 - 1.0
        return x.reshape(b, t, c, self.size, self.size).transpose(1, 2)  # (B, C, T, S, S)

    def forward(self, x: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return x.mean(dim=(2, 3, 4))  # (B, dim)


class EncoderFeatures(VideoFeatureExtractor):
    """Features from a per-frame image encoder (e.g. a world model's trained encoder).

    Each frame goes through ``encoder`` (``(N, C, H, W)`` in ``[0, 1]`` -> ``(N, D)``, or anything that
    flattens to ``(N, D)``), and the per-frame features are averaged over time -> ``(B, D)``. The
    metric is ``"FD-<name>"``: give ``name`` enough detail to identify the weights (e.g.
    ``"svg-encoder-cheetah-step100k"``).

    Args:
        encoder: the frame encoder (kept in eval mode while computing features).
        name: network name for the metric.
        input_range: ``"unit"`` passes frames in ``[0, 1]`` (this project's models), ``"signed"`` maps
            them to ``[-1, 1]`` first.
    """

    def __init__(self, encoder: nn.Module, name: str, input_range: str = "unit") -> None:
        super().__init__()
        if input_range not in ("unit", "signed"):
            raise ValueError(f"input_range must be 'unit' or 'signed', got {input_range!r}")
        if not name:
            raise ValueError("EncoderFeatures needs a non-empty name (it names the metric)")
        self.encoder = encoder
        self.name = name
        self.input_range = input_range
        self.preprocessing = (
            f"per-frame encoder, frames in {'[0, 1]' if input_range == 'unit' else '[-1, 1]'}, "
            "features averaged over time"
        )

    def preprocess(self, videos: Tensor) -> Tensor:
        return videos * 2.0 - 1.0 if self.input_range == "signed" else videos

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.shape[:2]
        feats = self.encoder(x.reshape(b * t, *x.shape[2:]))
        if isinstance(feats, (tuple, list)):  # encoders that also return skip connections
            feats = feats[0]
        return feats.reshape(b, t, -1).mean(dim=1)


# ------------------------------------------------------------------------------- distance on videos


@dataclass(frozen=True)
class FrechetResult:
    """A Frechet distance with what is needed to compare it: network, preprocessing, sample sizes."""

    name: str  # "FVD" or "FD-<network>"
    value: float
    num_real: int
    num_fake: int
    feature_dim: int
    network: str
    preprocessing: str
    shrinkage: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        extra = f", covariance shrinkage {self.shrinkage}" if self.shrinkage else ""
        return (
            f"{self.name} = {self.value:.4g} ({self.num_real} real vs {self.num_fake} generated "
            f"videos, {self.feature_dim}-dim features of {self.network}; {self.preprocessing}{extra})"
        )


def extract_features(
    videos: Tensor,
    extractor: VideoFeatureExtractor,
    batch_size: int = 16,
    device: torch.device | str | None = None,
) -> Tensor:
    """Embed videos in batches: ``(N, T, C, H, W)`` in ``[0, 1]`` -> ``(N, D)`` float32 on the CPU.

    ``device``: where the extractor runs (default: the device of its first parameter, else the CPU);
    the videos are moved there one batch at a time.
    """
    if not isinstance(videos, Tensor) or videos.dim() != 5:
        raise ValueError("videos must be a tensor of shape (N, T, C, H, W)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        param = next(extractor.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    out = [
        extractor.features(videos[i : i + batch_size].to(device)).cpu()
        for i in range(0, videos.shape[0], batch_size)
    ]
    return torch.cat(out)


def video_frechet_distance(
    real: Tensor,
    fake: Tensor,
    extractor: VideoFeatureExtractor,
    batch_size: int = 16,
    shrinkage: float = 0.0,
    device: torch.device | str | None = None,
) -> FrechetResult:
    """Frechet distance between real and generated videos under ``extractor``'s features.

    Args:
        real: ``(N, T, C, H, W)`` real videos in ``[0, 1]``.
        fake: ``(M, T, C, H, W)`` generated videos in ``[0, 1]``.
        extractor: the feature network; it decides the name ("FVD" only for the reference I3D).
        shrinkage: covariance shrinkage (see :func:`feature_statistics`); 0 requires N, M > D.

    Returns:
        A :class:`FrechetResult` (``.value``, ``.name``, sample sizes, network, preprocessing).
    """
    fr = extract_features(real, extractor, batch_size, device)
    ff = extract_features(fake, extractor, batch_size, device)
    mu1, s1 = feature_statistics(fr, shrinkage)
    mu2, s2 = feature_statistics(ff, shrinkage)
    return FrechetResult(
        name=extractor.metric_name,
        value=frechet_distance(mu1, s1, mu2, s2),
        num_real=fr.shape[0],
        num_fake=ff.shape[0],
        feature_dim=fr.shape[1],
        network=extractor.name,
        preprocessing=extractor.preprocessing,
        shrinkage=shrinkage,
    )
