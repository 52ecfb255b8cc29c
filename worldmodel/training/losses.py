"""Loss functions: pure functions of tensors with an explicit reduction.

SVG's ELBO terms (KL, reconstruction) and the anti-blur losses: the image gradient difference loss
(Mathieu et al.), adversarial losses from logits (bce / hinge / lsgan / wgan-gp with a gradient
penalty), DeePSiM's feature loss, a multi-scale pyramid helper and InfoNCE (for the video encoder).

Conventions
-----------
* Frames are float tensors in [0, 1] with shape ``(..., C, H, W)``.
* ``reduction`` is one of ``"mean"`` (average over every element), ``"sum"``, ``"batch"`` (sum over
  the non-leading dims of each sample, then mean over the leading dims: the per-frame sum that
  SVG's ELBO uses) or ``"none"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "reduce",
    "kl_normal",
    "apply_free_nats",
    "reconstruction_loss",
    "gdl",
    "ADV_FORMS",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "feature_loss",
    "multiscale",
    "info_nce",
]

_REDUCTIONS = ("mean", "sum", "batch", "none")


def reduce(x: Tensor, reduction: str, event_dims: int = 0) -> Tensor:
    """Reduce an element-wise loss.

    Args:
        x: element-wise loss of shape ``(*batch, *event)``.
        reduction: ``"mean"`` | ``"sum"`` | ``"batch"`` | ``"none"``.
        event_dims: number of trailing dims that form one event (one frame ``C, H, W`` = 3), used by
            ``"batch"``: the event dims are summed, the leading dims averaged.
    """
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "batch":
        if event_dims > 0:
            x = x.flatten(start_dim=x.dim() - event_dims).sum(-1)
        return x.mean()
    if reduction == "none":
        return x
    raise ValueError(f"unknown reduction {reduction!r}; expected one of {_REDUCTIONS}")


def kl_normal(
    mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor, reduction: str = "batch"
) -> Tensor:
    """KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))) for diagonal Gaussians.

    Shapes ``(..., Z)``; the KL of one latent is the sum over ``Z`` (so ``reduction="none"`` returns
    ``(...)``, and ``"batch"`` averages that over the leading dims).

        KL = 0.5 * sum_z [ logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)^2) / exp(logvar_p) - 1 ]
    """
    kl = 0.5 * (
        logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) * (-logvar_p).exp() - 1.0
    )
    kl = kl.sum(-1)
    return reduce(kl, "mean" if reduction == "batch" else reduction)


def apply_free_nats(kl: Tensor, free_nats: float) -> Tensor:
    """PlaNet's free nats: ``max(kl, free_nats)`` element-wise (no gradient below the floor).

    ``kl`` is a per-step KL (reduction ``"none"``); ``free_nats = 0`` returns it unchanged.
    """
    if free_nats <= 0:
        return kl
    return kl.clamp(min=free_nats)


def reconstruction_loss(
    pred: Tensor, target: Tensor, kind: str = "l2", reduction: str = "batch"
) -> Tensor:
    """Pixel reconstruction loss between frames ``(..., C, H, W)``.

    ``kind`` is ``"l2"`` (squared error, SVG's choice) or ``"l1"``. With ``reduction="batch"`` the
    loss is summed over each frame's pixels and averaged over frames, which keeps the paper's
    balance against ``beta * KL``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    diff = pred - target
    if kind == "l2":
        err = diff.pow(2)
    elif kind == "l1":
        err = diff.abs()
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}; expected 'l2' or 'l1'")
    return reduce(err, reduction, event_dims=3)


# --------------------------------------------------------------------------------------------------
# Anti-blur losses: image gradient difference, adversarial, feature (DeePSiM), multi-scale helper.
# --------------------------------------------------------------------------------------------------

ADV_FORMS = ("bce", "hinge", "lsgan", "wgan-gp")


def gdl(pred: Tensor, target: Tensor, alpha: float = 1.0, reduction: str = "batch") -> Tensor:
    """Image gradient difference loss (Mathieu et al., 2016) between frames ``(..., C, H, W)``.

    Per channel::

        L = sum_ij | |Y_ij - Y_i-1,j| - |Yhat_ij - Yhat_i-1,j| |^alpha
                 + | |Y_i,j-1 - Y_ij| - |Yhat_i,j-1 - Yhat_ij| |^alpha

    The element-wise map (``reduction="none"``) has the frame's shape ``(..., C, H, W)``: entry
    ``(i, j)`` holds the vertical term of the pair ``(i-1, i)`` plus the horizontal term of the pair
    ``(j-1, j)`` (row 0 / column 0 have no vertical / horizontal term). ``"batch"`` (default, like
    :func:`reconstruction_loss`) sums each frame and averages over frames; ``"mean"`` divides the
    total by the number of pixel entries ``C * H * W`` per frame.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.dim() < 3:
        raise ValueError(f"gdl expects frames (..., C, H, W), got shape {tuple(pred.shape)}")
    if alpha < 1:
        raise ValueError(
            f"gdl alpha must be >= 1 (its gradient is infinite at 0 below 1), got {alpha}"
        )
    # vertical (along i = H) and horizontal (along j = W) absolute gradients
    dy_t = (target[..., 1:, :] - target[..., :-1, :]).abs()  # (..., C, H-1, W)
    dy_p = (pred[..., 1:, :] - pred[..., :-1, :]).abs()
    dx_t = (target[..., :, 1:] - target[..., :, :-1]).abs()  # (..., C, H, W-1)
    dx_p = (pred[..., :, 1:] - pred[..., :, :-1]).abs()
    ev = (dy_t - dy_p).abs().pow(alpha)
    eh = (dx_t - dx_p).abs().pow(alpha)
    # put each term at the pixel that ends its pair: pad a zero row on top / a zero column on the left
    err = F.pad(ev, (0, 0, 1, 0)) + F.pad(eh, (1, 0, 0, 0))  # (..., C, H, W)
    return reduce(err, reduction, event_dims=3)


def _check_form(form: str) -> None:
    if form not in ADV_FORMS:
        raise ValueError(f"unknown adversarial loss form {form!r}; expected one of {ADV_FORMS}")


def discriminator_loss(
    real_logits: Tensor, fake_logits: Tensor, form: str = "bce", reduction: str = "mean"
) -> Tensor:
    """Discriminator loss from raw logits ``(B,)`` on real and generated samples.

    Computed in float32 whatever the autocast dtype. Forms (``r`` = real logit, ``f`` = fake logit):

    * ``"bce"``: ``BCE(r, 1) + BCE(f, 0) = softplus(-r) + softplus(f)`` (Mathieu; DeePSiM's
      ``L_discr = -log D(y) - log(1 - D(G(x)))``).
    * ``"hinge"``: ``relu(1 - r) + relu(1 + f)``.
    * ``"lsgan"``: ``0.5 (r - 1)^2 + 0.5 f^2`` (Mao et al., targets b = 1, a = 0).
    * ``"wgan-gp"``: ``f - r`` (add :func:`gradient_penalty` and optionally a drift term).

    The real and fake terms are reduced separately and added, so ``"mean"`` is
    ``mean(real term) + mean(fake term)``; ``"none"`` needs the two to have the same shape.
    """
    _check_form(form)
    r, f = real_logits.float(), fake_logits.float()
    if form == "bce":
        real_term, fake_term = F.softplus(-r), F.softplus(f)
    elif form == "hinge":
        real_term, fake_term = F.relu(1.0 - r), F.relu(1.0 + f)
    elif form == "lsgan":
        real_term, fake_term = 0.5 * (r - 1.0).pow(2), 0.5 * f.pow(2)
    else:  # wgan-gp
        real_term, fake_term = -r, f
    if reduction == "none":
        return real_term + fake_term
    return reduce(real_term, reduction) + reduce(fake_term, reduction)


def generator_loss(fake_logits: Tensor, form: str = "bce", reduction: str = "mean") -> Tensor:
    """Generator's adversarial loss from the discriminator's logits ``(B,)`` on generated samples.

    ``"bce"``: the non-saturating ``BCE(f, 1) = softplus(-f) = -log D(G(x))`` (Mathieu; DeePSiM's
    ``L_adv``); ``"hinge"`` and ``"wgan-gp"``: ``-f``; ``"lsgan"``: ``0.5 (f - 1)^2``. float32.
    """
    _check_form(form)
    f = fake_logits.float()
    if form == "bce":
        loss = F.softplus(-f)
    elif form == "lsgan":
        loss = 0.5 * (f - 1.0).pow(2)
    else:  # hinge, wgan-gp
        loss = -f
    return reduce(loss, reduction)


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
    target: float = 1.0,
) -> Tensor:
    """WGAN-GP penalty ``mean_b (||grad_x critic(x_b)||_2 - target)^2`` (Gulrajani et al., 2017).

    ``x = eps * real + (1 - eps) * fake`` with one ``eps ~ U(0, 1)`` per sample; ``real`` and
    ``fake`` are ``(B, ...)`` (``fake`` detached by the caller), ``critic`` maps ``(B, ...)`` to
    logits ``(B,)``. The graph is kept (``create_graph=True``) so the penalty can be
    back-propagated into the critic's parameters. Returns a float32 scalar.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real shape {tuple(real.shape)} != fake shape {tuple(fake.shape)}")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator, device=real.device).to(real.dtype)
    x = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
    norm = grad.float().flatten(1).norm(dim=1)
    return (norm - target).pow(2).mean()


def feature_loss(
    feat_pred: Tensor | Sequence[Tensor],
    feat_target: Tensor | Sequence[Tensor],
    reduction: str = "batch",
) -> Tensor:
    """DeePSiM's feature loss: squared L2 distance between comparator features.

    ``feat_*`` is one feature map ``(B, ...)`` or a list of them (one per comparator layer; each
    pair must match in shape). Reductions:

    * ``"batch"`` (default): per sample, the sum of squared differences over every element of every
      layer, averaged over the batch (``sum_i ||C(G(x_i)) - C(y_i)||^2 / B``).
    * ``"mean"``: the mean squared difference of each layer, summed over layers (balances layers of
      very different sizes).
    * ``"sum"``: the total sum; ``"none"``: per-sample sums ``(B,)``.

    Pure: pass target features computed under ``torch.no_grad()`` if they must not get gradients.
    """
    preds = [feat_pred] if isinstance(feat_pred, Tensor) else list(feat_pred)
    targets = [feat_target] if isinstance(feat_target, Tensor) else list(feat_target)
    if len(preds) != len(targets) or not preds:
        raise ValueError(
            f"feature_loss needs two equally long non-empty lists of feature maps, got "
            f"{len(preds)} and {len(targets)}"
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {_REDUCTIONS}")
    total: Tensor | None = None
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        if p.shape != t.shape:
            raise ValueError(
                f"feature map {i}: pred shape {tuple(p.shape)} != target shape {tuple(t.shape)}"
            )
        sq = (p.float() - t.float()).pow(2)
        if reduction == "mean":
            term = sq.mean()
        elif reduction == "sum":
            term = sq.sum()
        else:  # "batch" and "none": per-sample sums
            term = sq.flatten(1).sum(1) if sq.dim() > 1 else sq
        total = term if total is None else total + term
    assert total is not None
    return total.mean() if reduction == "batch" else total


def multiscale(frames: Tensor, scales: Sequence[int]) -> list[Tensor]:
    """Frames ``(..., C, H, W)`` at several scales by average pooling.

    ``scales`` are integer downsampling factors relative to the input size (``[1, 2, 4]`` on 64 px
    frames gives 64, 32 and 16 px; on 128 px frames 128, 64 and 32 px). Factor 1 returns the
    input itself. Returns a list aligned with ``scales``, entry ``k`` of shape
    ``(..., C, H / s_k, W / s_k)``.
    """
    h, w = frames.shape[-2:]
    out = []
    lead = frames.shape[:-3]
    flat = frames.reshape(-1, *frames.shape[-3:])
    for s in scales:
        if int(s) != s or s < 1 or h % s or w % s:
            raise ValueError(
                f"scale factor {s} must be a positive integer dividing the frame size {h}x{w}"
            )
        if s == 1:
            out.append(frames)
            continue
        y = F.avg_pool2d(flat, int(s))
        out.append(y.reshape(*lead, *y.shape[-3:]))
    return out


def info_nce(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """Symmetric InfoNCE over ``B`` positive pairs ``(z1[b], z2[b])``, shapes ``(B, D)``.

    Embeddings are L2-normalised; the logits are cosine similarities / ``temperature``; every other
    row of the batch is a negative. ``log(B)`` is the loss of an encoder that ignores its input.
    Returns a float32 scalar.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"info_nce needs two (B, D) tensors, got {tuple(z1.shape)}, {tuple(z2.shape)}"
        )
    a = F.normalize(z1.float(), dim=1)
    b = F.normalize(z2.float(), dim=1)
    logits = a @ b.t() / temperature  # (B, B)
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
