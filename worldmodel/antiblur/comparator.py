"""DeePSiM comparators: networks ``C`` whose features define the perceptual loss ``||C(x) - C(y)||^2``.

A comparator maps frames ``(B, 3, H, W)`` in ``[0, 1]`` to a list of feature maps ``(B, c_i, h_i,
w_i)``. No pretrained weights can be downloaded here, so the kinds are:

* ``"alexnet_random"``: :class:`AlexNetFeatures` with a fixed-seed random (He-normal) init.
  DeePSiM found random AlexNet features weaker than trained ones but still useful.
* ``"alexnet_file"``: :class:`AlexNetFeatures` loaded from a user-supplied torchvision AlexNet
  state-dict file (``features.N.*`` keys; the classifier is ignored).
* ``"discriminator"``: the adversarial discriminator's own features (DeePSiM: "C may be part of the
  discriminator"); trained by the discriminator's optimiser, never by the feature loss.
* ``"video_encoder"``: :class:`VideoEncoder`, a small conv net trained on the project's own video
  with a contrastive objective (DeePSiM's VideoNet idea), see :func:`train_video_encoder`.

Every comparator except ``"discriminator"`` is frozen (``requires_grad=False``, eval mode). Keep
comparators outside the world model's module tree so their weights are not saved with it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodel.training.losses import feature_loss, info_nce

if TYPE_CHECKING:
    from worldmodel.antiblur.discriminator import MultiScaleDiscriminator

__all__ = [
    "COMPARATOR_KINDS",
    "ComparatorConfig",
    "Comparator",
    "AlexNetFeatures",
    "DiscriminatorComparator",
    "VideoEncoderConfig",
    "VideoEncoder",
    "frozen",
    "pairs_from_clips",
    "train_video_encoder",
    "build_comparator",
    "build_comparator_from_config",
]

COMPARATOR_KINDS = ("alexnet_random", "alexnet_file", "discriminator", "video_encoder")


@dataclass
class ComparatorConfig:
    """Which comparator the feature loss uses.

    Attributes:
        kind: one of :data:`COMPARATOR_KINDS`.
        path: weights file for ``"alexnet_file"`` (a torchvision AlexNet state dict) and
            ``"video_encoder"`` (a :meth:`VideoEncoder.save` checkpoint).
        seed: seed of the random AlexNet initialisation.
        input_size: AlexNet first resizes its input (bilinear) to this size; None (default) keeps
            the native size, as LPIPS does with AlexNet on 64x64 patches. On 64 px frames the
            maps are 15, 7, 3, 3, 3 px (relu1..5) and a forward pass costs ~0.08 GFLOP per frame;
            128 gives 31..7 px for ~0.39 GFLOP, ImageNet's 224 gives 55..13 px for ~1.3 GFLOP.
        layers: which AlexNet ReLU outputs to compare (1..5 = relu1..relu5).
    """

    kind: str = "alexnet_random"
    path: str | None = None
    seed: int = 0
    input_size: int | None = None
    layers: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])

    def validate(self) -> ComparatorConfig:
        """Raise ValueError naming the first bad field; return self
        (:func:`build_comparator_from_config` calls it)."""
        if self.kind not in COMPARATOR_KINDS:
            raise ValueError(
                f"unknown comparator kind {self.kind!r}; expected one of {COMPARATOR_KINDS}"
            )
        if self.kind in ("alexnet_file", "video_encoder") and not self.path:
            raise ValueError(
                f"comparator kind {self.kind!r} needs comparator.path (a weights file)"
            )
        if not self.layers or any(layer not in range(1, 6) for layer in self.layers):
            raise ValueError(
                f"comparator.layers must be a non-empty subset of 1..5, got {self.layers}"
            )
        if self.input_size is not None and self.input_size < 32:
            raise ValueError(
                f"comparator.input_size must be >= 32 px or None, got {self.input_size}"
            )
        return self


class frozen:  # noqa: N801 - used like a function: `with frozen(module): ...`
    """Context manager: turn off ``requires_grad`` of a module's parameters, restore on exit.

    Outputs computed inside still carry gradients to their *inputs*, but the module's parameters
    are not part of the graph, so a later ``backward()`` leaves their ``.grad`` untouched.
    """

    def __init__(self, module: nn.Module) -> None:
        self.params = list(module.parameters())
        self.saved: list[bool] = []

    def __enter__(self) -> None:
        self.saved = [p.requires_grad for p in self.params]
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for p, flag in zip(self.params, self.saved, strict=True):
            p.requires_grad_(flag)


class Comparator(nn.Module):
    """Base class: ``forward(x (B, 3, H, W) in [0, 1], context=None) -> list of feature maps``."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        raise NotImplementedError

    def loss(
        self,
        pred: Tensor,
        target: Tensor,
        context: Tensor | None = None,
        reduction: str = "batch",
    ) -> Tensor:
        """DeePSiM's ``L_feat`` between frames ``(..., 3, H, W)`` (leading dims are flattened).

        Target features are computed without gradients; gradients flow to ``pred`` only (and,
        for a trainable comparator, to its parameters). See :func:`feature_loss` for reductions.
        """
        if pred.shape != target.shape:
            raise ValueError(
                f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
            )
        if context is None:  # frames of any leading shape
            pred = pred.reshape(-1, *pred.shape[-3:])
            target = target.reshape(-1, *target.shape[-3:])
        with torch.no_grad():
            feat_target = self(target, context)
        return feature_loss(self(pred, context), feat_target, reduction)


def _freeze(module: nn.Module) -> None:
    module.requires_grad_(False)
    module.eval()


# ------------------------------------------------------------------------------------------------
# AlexNet
# ------------------------------------------------------------------------------------------------

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# index in `features` of each ReLU output: relu1 .. relu5 (torchvision's layout)
_ALEXNET_RELU = {1: 1, 2: 4, 3: 7, 4: 9, 5: 11}
ALEXNET_KEYS = tuple(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias"))


class AlexNetFeatures(Comparator):
    """AlexNet's convolutional trunk with torchvision's layout and state-dict key names.

    ``features`` = conv 11x11/4 (64) - ReLU - maxpool 3/2 - conv 5x5 (192) - ReLU - maxpool 3/2 -
    conv 3x3 (384) - ReLU - conv 3x3 (256) - ReLU - conv 3x3 (256) - ReLU, so its parameters are
    exactly ``features.{0,3,6,8,10}.{weight,bias}`` and a torchvision ``alexnet`` state dict loads
    (:meth:`load_torchvision`). Inputs ``(B, 3, H, W)`` in ``[0, 1]`` are resized to
    ``input_size`` (bilinear; None keeps the size, which must be >= 32 px) and ImageNet-normalised.
    Returns the ReLU outputs listed in ``layers`` (1..5). Random init: He-normal weights from a
    ``torch.Generator`` seeded with ``seed``, zero biases -- identical on every machine.
    """

    def __init__(
        self,
        seed: int = 0,
        input_size: int | None = None,
        layers: tuple[int, ...] | list[int] = (1, 2, 3, 4, 5),
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.layers = sorted(set(layers))
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0
            nn.ReLU(),  # 1
            nn.MaxPool2d(kernel_size=3, stride=2),  # 2
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
            nn.ReLU(),  # 4
            nn.MaxPool2d(kernel_size=3, stride=2),  # 5
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
            nn.ReLU(),  # 7
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
            nn.ReLU(),  # 9
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
            nn.ReLU(),  # 11
        )
        # not persistent: the state dict holds exactly torchvision's `features.*` keys
        self.register_buffer(
            "mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        g = torch.Generator().manual_seed(seed)
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu", generator=g)
                nn.init.zeros_(m.bias)

    def load_torchvision(self, path: str | os.PathLike[str]) -> AlexNetFeatures:
        """Load the ``features.*`` weights of a torchvision AlexNet state-dict file (in place).

        Accepts a plain state dict or ``{"state_dict": ...}``, with or without a ``module.``
        prefix; ``classifier.*`` keys are ignored. Raises FileNotFoundError / ValueError with the
        missing, unexpected or mis-shaped keys.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"AlexNet weights file {str(path)!r} not found; set comparator.path to a torchvision "
                "AlexNet state dict (torch.save(alexnet.state_dict(), path))"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
            raise ValueError(f"cannot read AlexNet weights {str(path)!r}: {e}") from e
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(
                f"{str(path)!r} does not hold a state dict (got {type(state).__name__})"
            )
        state = {k.removeprefix("module."): v for k, v in state.items()}
        feats = {k: v for k, v in state.items() if k.startswith("features.")}
        expected = self.features.state_dict()
        missing = sorted(set(ALEXNET_KEYS) - set(feats))
        unexpected = sorted(set(feats) - set(ALEXNET_KEYS))
        shapes = [
            f"{k}: file {tuple(v.shape)} vs expected {tuple(expected[k.removeprefix('features.')].shape)}"
            for k, v in feats.items()
            if k in ALEXNET_KEYS
            and tuple(v.shape) != tuple(expected[k.removeprefix("features.")].shape)
        ]
        if missing or unexpected or shapes:
            raise ValueError(
                f"{str(path)!r} is not a torchvision AlexNet state dict: missing keys {missing}, "
                f"unexpected keys {unexpected}, shape mismatches {shapes}; expected keys "
                f"{list(ALEXNET_KEYS)} (classifier.* keys are ignored)"
            )
        self.features.load_state_dict({k.removeprefix("features."): v for k, v in feats.items()})
        return self

    def forward(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        """Frames ``(B, 3, H, W)`` in ``[0, 1]`` -> ReLU outputs of the selected layers."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"AlexNet comparator expects (B, 3, H, W) frames, got {tuple(x.shape)}"
            )
        if self.input_size is None and min(x.shape[-2:]) < 32:
            raise ValueError(
                f"AlexNet comparator needs frames of >= 32 px, got {tuple(x.shape[-2:])}; set "
                "comparator.input_size to upsample them"
            )
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            )
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out, last = [], _ALEXNET_RELU[self.layers[-1]]
        wanted = {_ALEXNET_RELU[layer] for layer in self.layers}
        for i, module in enumerate(self.features):
            h = module(h)
            if i in wanted:
                out.append(h)
            if i == last:
                break
        return out


# ------------------------------------------------------------------------------------------------
# The discriminator as comparator
# ------------------------------------------------------------------------------------------------


class DiscriminatorComparator(Comparator):
    """Features of a :class:`~worldmodel.antiblur.discriminator.MultiScaleDiscriminator` (all
    scales).

    Holds a *reference* to the discriminator (not a submodule: its weights are saved once, with
    the adversarial trainer). The discriminator's parameters are frozen while features are
    computed, so the feature loss never trains it; its own optimiser does.

    Args:
        discriminator: the discriminator.
        prepare: optional ``(frames, context) -> (frames, context, alpha)`` applied first (the
            adversarial trainer's progressive-growing resize and blend).
    """

    def __init__(
        self,
        discriminator: MultiScaleDiscriminator,
        prepare: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor | None, float]]
        | None = None,
    ) -> None:
        super().__init__()
        self.__dict__["discriminator"] = discriminator  # a reference, not a registered submodule
        self.prepare = prepare

    def forward(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        """``x``: ``(B, 3, H, W)`` (or a clip, as the discriminator takes); ``context`` as it takes."""
        d: MultiScaleDiscriminator = self.__dict__["discriminator"]
        alpha = 1.0
        if self.prepare is not None:
            x, context, alpha = self.prepare(x, context)
        with frozen(d):
            _, feats = d(x, context, alpha=alpha, return_features=True)
        return [f for per_scale in feats for f in per_scale]


# ------------------------------------------------------------------------------------------------
# Video encoder trained contrastively on the project's own video
# ------------------------------------------------------------------------------------------------

_VIDEO_FORMAT = "worldmodel-video-encoder/1"


@dataclass
class VideoEncoderConfig:
    """Architecture of :class:`VideoEncoder` (stored in its checkpoint)."""

    width: int = 32
    depth: int = 4
    embed_dim: int = 128
    leaky_slope: float = 0.2

    def validate(self) -> VideoEncoderConfig:
        """Raise ValueError on a non-positive size; return self (:class:`VideoEncoder` calls it)."""
        if self.width < 1 or self.depth < 1 or self.embed_dim < 1:
            raise ValueError("video encoder width, depth and embed_dim must be >= 1")
        return self


class VideoEncoder(Comparator):
    """Small conv encoder (DeePSiM's VideoNet idea): ``depth`` blocks of conv 4x4/2 + GroupNorm +
    LeakyReLU, channels ``width * 2^i`` (capped at 512); a projection head (global average pool +
    linear) gives the embedding used by the contrastive loss.

    ``forward`` (the comparator) returns the block outputs; :meth:`embed` the ``(B, embed_dim)``
    embedding. Input frames ``(B, 3, H, W)`` in ``[0, 1]``, ``H`` and ``W`` divisible by
    ``2^depth``.
    """

    def __init__(self, cfg: VideoEncoderConfig | None = None, channels: int = 3) -> None:
        super().__init__()
        self.cfg = (cfg or VideoEncoderConfig()).validate()
        blocks, c_in = [], channels
        for i in range(self.cfg.depth):
            c_out = min(512, self.cfg.width * 2**i)
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c_out, 4, stride=2, padding=1),
                    nn.GroupNorm(8 if c_out % 8 == 0 else 1, c_out),
                    nn.LeakyReLU(self.cfg.leaky_slope),
                )
            )
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(c_in, self.cfg.embed_dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        """Frames ``(B, 3, H, W)`` in ``[0, 1]`` -> the ``depth`` block outputs."""
        h, out = x * 2.0 - 1.0, []
        for block in self.blocks:
            h = block(h)
            out.append(h)
        return out

    def embed(self, x: Tensor) -> Tensor:
        """Frames ``(B, 3, H, W)`` in ``[0, 1]`` -> embeddings ``(B, embed_dim)``."""
        return self.head(self(x)[-1].mean(dim=(2, 3)))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``{"format", "config", "state_dict"}`` atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ckpt = {
            "format": _VIDEO_FORMAT,
            "config": json.dumps(asdict(self.cfg)),
            "state_dict": self.state_dict(),
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(ckpt, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
    ) -> VideoEncoder:
        """Load a :meth:`save` checkpoint (``weights_only=True``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"video encoder file {str(path)!r} not found; train one with "
                "worldmodel.antiblur.comparator.train_video_encoder and save it there"
            )
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != _VIDEO_FORMAT:
            raise ValueError(
                f"{str(path)!r} is not a video encoder checkpoint (expected format {_VIDEO_FORMAT!r})"
            )
        enc = cls(VideoEncoderConfig(**json.loads(ckpt["config"])))
        enc.load_state_dict(ckpt["state_dict"])
        return enc


def pairs_from_clips(
    obs: Tensor, max_gap: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Two distinct frames of each clip: ``(B, L, C, H, W)`` -> ``(B, 2, C, H, W)``.

    The second frame is 1..``max_gap`` steps after the first (``None`` = anywhere in the clip).
    Frames keep their dtype (uint8 stays uint8).
    """
    b, length = obs.shape[:2]
    if length < 2:
        raise ValueError(f"pairs_from_clips needs clips of >= 2 frames, got {length}")
    gap_max = length - 1 if max_gap is None else max(1, min(max_gap, length - 1))
    gap = torch.randint(1, gap_max + 1, (b,), generator=generator)
    first = (torch.rand(b, generator=generator) * (length - gap)).long()
    idx = torch.stack([first, first + gap], dim=1).to(obs.device)  # (B, 2)
    return obs[torch.arange(b, device=obs.device)[:, None], idx]


def train_video_encoder(
    sample_fn: Callable[[], Tensor],
    steps: int,
    cfg: VideoEncoderConfig | None = None,
    *,
    lr: float = 3e-4,
    temperature: float = 0.1,
    device: str | torch.device = "cpu",
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> tuple[VideoEncoder, list[float]]:
    """Train a :class:`VideoEncoder` with InfoNCE over pairs of frames from the same clip.

    Each step draws ``sample_fn() -> (B, 2, 3, H, W)`` (uint8, or float in ``[0, 1]``): two frames of
    each of ``B`` different clips. Frames of the same clip are positives, frames of the other clips
    negatives (:func:`~worldmodel.training.losses.info_nce`). Note: this makes features invariant to
    what changes *within* a clip; keep the pair gap short (:func:`pairs_from_clips` ``max_gap``).

    Returns the trained encoder (frozen, eval mode) and the loss of every step.
    """
    torch.manual_seed(seed)
    enc = VideoEncoder(cfg).to(device)
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    history: list[float] = []
    for step in range(steps):
        pair = sample_fn().to(device)
        if pair.dim() != 5 or pair.shape[1] != 2:
            raise ValueError(
                f"sample_fn must return (B, 2, C, H, W) frame pairs, got {tuple(pair.shape)}"
            )
        x = pair.float() / 255.0 if pair.dtype == torch.uint8 else pair.float()
        z = enc.embed(x.flatten(0, 1)).unflatten(0, (x.shape[0], 2))  # (B, 2, D)
        loss = info_nce(z[:, 0], z[:, 1], temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item())
        if callback is not None:
            callback(step, history[-1])
    _freeze(enc)
    return enc, history


# ------------------------------------------------------------------------------------------------
# Factory
# ------------------------------------------------------------------------------------------------


def build_comparator(
    kind: str,
    path: str | os.PathLike[str] | None = None,
    discriminator: object | None = None,
    *,
    seed: int = 0,
    input_size: int | None = None,
    layers: tuple[int, ...] | list[int] = (1, 2, 3, 4, 5),
    device: str | torch.device | None = None,
) -> Comparator:
    """Build a comparator by kind (see the module docstring).

    ``discriminator`` (kind ``"discriminator"``) is a ``MultiScaleDiscriminator`` or an object with
    an ``as_comparator()`` method (the :class:`~worldmodel.antiblur.adversarial.AdversarialTrainer`,
    which adds its progressive-growing input preparation). Frozen kinds come back in eval mode.
    """
    if kind == "alexnet_random":
        comp: Comparator = AlexNetFeatures(seed=seed, input_size=input_size, layers=layers)
    elif kind == "alexnet_file":
        if path is None:
            raise ValueError(
                "comparator 'alexnet_file' needs a path to a torchvision AlexNet state dict"
            )
        comp = AlexNetFeatures(seed=seed, input_size=input_size, layers=layers).load_torchvision(
            path
        )
    elif kind == "video_encoder":
        if path is None:
            raise ValueError("comparator 'video_encoder' needs a path to a VideoEncoder checkpoint")
        comp = VideoEncoder.from_file(path)
    elif kind == "discriminator":
        if discriminator is None:
            raise ValueError(
                "comparator 'discriminator' needs the discriminator (or the AdversarialTrainer)"
            )
        as_comparator = getattr(discriminator, "as_comparator", None)
        if callable(as_comparator):
            return as_comparator()
        from worldmodel.antiblur.discriminator import MultiScaleDiscriminator

        if not isinstance(discriminator, MultiScaleDiscriminator):
            raise ValueError(
                f"comparator 'discriminator' needs a MultiScaleDiscriminator or AdversarialTrainer, "
                f"got {type(discriminator).__name__}"
            )
        return DiscriminatorComparator(discriminator)
    else:
        raise ValueError(f"unknown comparator kind {kind!r}; expected one of {COMPARATOR_KINDS}")
    _freeze(comp)
    return comp.to(device) if device is not None else comp


def build_comparator_from_config(
    cfg: ComparatorConfig,
    discriminator: object | None = None,
    device: str | torch.device | None = None,
) -> Comparator:
    """:func:`build_comparator` with the values of a :class:`ComparatorConfig` (checked first)."""
    cfg.validate()
    return build_comparator(
        cfg.kind,
        cfg.path,
        discriminator,
        seed=cfg.seed,
        input_size=cfg.input_size,
        layers=cfg.layers,
        device=device,
    )
