"""Anti-blur losses: hand-computed cases for GDL, the adversarial forms, the gradient penalty,
the feature loss, the multi-scale helper, InfoNCE, and the loss config presets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from worldmodel.antiblur.adversarial import AntiBlurConfig, AntiBlurObjective, context_windows
from worldmodel.antiblur.comparator import ComparatorConfig
from worldmodel.antiblur.discriminator import DiscriminatorConfig
from worldmodel.antiblur.pggan import ProgressiveConfig
from worldmodel.model.svg import ModelOutput
from worldmodel.training.losses import (
    discriminator_loss,
    feature_loss,
    gdl,
    generator_loss,
    gradient_penalty,
    info_nce,
    multiscale,
    reconstruction_loss,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "loss"

# A 1x1x2x3 worked example:
#   Y    = [[0, 1, 3],      Yhat = [[0, 0, 0],
#           [2, 2, 0]]              [1, 2, 4]]
# vertical |grads|:   Y: [2, 1, 3]   Yhat: [1, 2, 4]   -> |diff| = [1, 1, 1]
# horizontal |grads|: Y: row0 [1, 2], row1 [0, 2];  Yhat: row0 [0, 0], row1 [1, 2]
#                     -> |diff| = row0 [1, 2], row1 [1, 0]
# alpha = 1: 3 + (1 + 2 + 1 + 0) = 7;  alpha = 2: 3 + (1 + 4 + 1 + 0) = 9
# element map (term placed at the pixel ending its pair), alpha = 1: [[0, 1, 2], [1, 1+1, 1+0]]
Y = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 0.0]]]])
YHAT = torch.tensor([[[[0.0, 0.0, 0.0], [1.0, 2.0, 4.0]]]])


def test_gdl_zero_for_identical_frames():
    x = torch.rand(2, 4, 3, 16, 16)
    assert gdl(x, x.clone()).item() == 0.0
    # a constant offset keeps every gradient: still zero
    assert gdl(x + 0.3, x).abs().item() < 1e-3  # float rounding only (vs ~380 for random frames)


def test_gdl_worked_example():
    assert gdl(YHAT, Y, alpha=1.0, reduction="sum").item() == pytest.approx(7.0)
    assert gdl(YHAT, Y, alpha=2.0, reduction="sum").item() == pytest.approx(9.0)
    assert gdl(YHAT, Y, alpha=1.0, reduction="batch").item() == pytest.approx(7.0)
    assert gdl(YHAT, Y, alpha=1.0, reduction="mean").item() == pytest.approx(7.0 / 6.0)
    expected_map = torch.tensor([[[[0.0, 1.0, 2.0], [1.0, 2.0, 1.0]]]])
    torch.testing.assert_close(gdl(YHAT, Y, alpha=1.0, reduction="none"), expected_map)
    # symmetric in its arguments, batched over leading dims
    two = gdl(torch.stack([YHAT, Y]), torch.stack([Y, Y]), reduction="none").sum(dim=(-3, -2, -1))
    torch.testing.assert_close(two, torch.tensor([[7.0], [0.0]]))


def test_gdl_errors_and_gradient():
    with pytest.raises(ValueError, match="shape"):
        gdl(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="alpha"):
        gdl(Y, Y, alpha=0.5)
    pred = YHAT.clone().requires_grad_(True)
    gdl(pred, Y).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_gdl_under_an_uncertain_edge_alpha_1_flattens_and_alpha_2_keeps_the_mean(alpha):
    """Why ``configs/loss/full.yaml`` uses alpha = 2. One prediction fitted to three equally likely
    truths, a step edge at column 2, 4 or 6: each edge column has a gradient magnitude of 1 with
    probability 1/3. With alpha = 1 GDL is an L1 loss on gradient magnitudes, whose minimiser is
    their median, 0: a flat frame. With alpha = 2 it is the mean, 1/3 at each column: a staircase
    that keeps every probable edge."""
    columns = (2, 4, 6)
    truths = torch.zeros(len(columns), 1, 1, 8)
    for k, c in enumerate(columns):
        truths[k, ..., c:] = 1.0
    torch.manual_seed(0)
    pred = (0.5 + 0.3 * torch.rand(1, 1, 8)).requires_grad_(True)  # uneven at the start
    opt = torch.optim.Adam([pred], lr=0.01)
    for step in range(1500):
        for group in opt.param_groups:
            group["lr"] = 0.01 if step < 1000 else 0.001
        opt.zero_grad()
        gdl(
            pred.expand(len(columns), -1, -1, -1), truths, alpha=alpha, reduction="batch"
        ).backward()
        opt.step()
    steps = (pred[..., 1:] - pred[..., :-1]).detach().abs().flatten()  # |column j+1 - column j|
    at_edges = steps[[c - 1 for c in columns]]
    if alpha == 1.0:
        assert steps.max() < 0.03  # flat: every probable edge gone
    else:
        torch.testing.assert_close(at_edges, torch.full((3,), 1 / 3), atol=0.02, rtol=0)
        assert steps[[0, 2, 4, 6]].max() < 0.02  # and no edge where none can be


# logits: r = [0, 2], f = [0.5, -2];  softplus(x) = log(1 + e^x)
# softplus(0) = 0.693147, softplus(-2) = 0.126928, softplus(0.5) = 0.974077,
# softplus(-0.5) = 0.474077, softplus(2) = 2.126928
R = torch.tensor([0.0, 2.0])
F_ = torch.tensor([0.5, -2.0])
HAND = {
    # D: mean softplus(-r) + mean softplus(f) = (0.693147 + 0.126928)/2 + (0.974077 + 0.126928)/2
    # G: mean softplus(-f) = (0.474077 + 2.126928) / 2
    "bce": (0.410038 + 0.550503, 1.300503),
    # D: mean relu(1 - r) + mean relu(1 + f) = (1 + 0)/2 + (1.5 + 0)/2;  G: -mean f = 0.75
    "hinge": (0.5 + 0.75, 0.75),
    # D: mean 0.5 (r-1)^2 + mean 0.5 f^2 = (0.5 + 0.5)/2 + (0.125 + 2)/2
    # G: mean 0.5 (f-1)^2 = (0.125 + 4.5)/2
    "lsgan": (0.5 + 1.0625, 2.3125),
    # D: mean f - mean r = -0.75 - 1;  G: -mean f
    "wgan-gp": (-1.75, 0.75),
}


@pytest.mark.parametrize("form", list(HAND))
def test_adversarial_forms_on_known_logits(form):
    d_expected, g_expected = HAND[form]
    assert discriminator_loss(R, F_, form).item() == pytest.approx(d_expected, abs=1e-5)
    assert generator_loss(F_, form).item() == pytest.approx(g_expected, abs=1e-5)


def test_adversarial_losses_fp32_and_reductions():
    d = discriminator_loss(R.bfloat16(), F_.bfloat16(), "bce")
    assert d.dtype == torch.float32
    per = discriminator_loss(R, F_, "bce", reduction="none")
    torch.testing.assert_close(
        per, torch.tensor([0.693147 + 0.974077, 0.126928 + 0.126928]), atol=1e-5, rtol=0
    )
    assert generator_loss(F_, "bce", reduction="sum").item() == pytest.approx(
        2 * 1.300503, abs=1e-5
    )
    # bce equals torch's BCE-with-logits against targets 1 / 0
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(R, torch.ones(2)) + bce(F_, torch.zeros(2))
    assert discriminator_loss(R, F_, "bce").item() == pytest.approx(expected.item(), abs=1e-6)
    with pytest.raises(ValueError, match="unknown adversarial loss form"):
        generator_loss(F_, "vanilla")


def test_gradient_penalty_linear_critic():
    # critic(x) = <w, x> has gradient w everywhere: penalty (||w|| - 1)^2 = (3 - 1)^2 = 4
    w = torch.tensor([[1.0, 2.0], [2.0, 0.0]])  # ||w|| = 3

    def critic(x):
        return (x * w).sum(dim=(1, 2))

    real, fake = torch.rand(5, 2, 2), torch.rand(5, 2, 2)
    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx(4.0, abs=1e-5)
    # differentiable w.r.t. the critic's parameters
    wp = w.clone().requires_grad_(True)
    gradient_penalty(lambda x: (x * wp).sum(dim=(1, 2)), real, fake).backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = 4/3 w
    torch.testing.assert_close(wp.grad, 4.0 / 3.0 * w)


def test_feature_loss_values():
    x = [torch.rand(2, 4, 3, 3), torch.rand(2, 8)]
    assert feature_loss(x, [t.clone() for t in x]).item() == 0.0
    y = [t + 0.1 for t in x]
    assert feature_loss(x, y).item() > 0
    # hand case: layer 1 differs by 1 in 3 entries, layer 2 in 2 entries, per sample
    a = [torch.ones(2, 3), torch.zeros(2, 1, 2)]
    b = [torch.zeros(2, 3), torch.ones(2, 1, 2)]
    assert feature_loss(a, b, "batch").item() == pytest.approx(5.0)
    assert feature_loss(a, b, "sum").item() == pytest.approx(10.0)
    assert feature_loss(a, b, "mean").item() == pytest.approx(2.0)
    torch.testing.assert_close(feature_loss(a, b, "none"), torch.tensor([5.0, 5.0]))
    assert feature_loss(a[0], b[0]).item() == pytest.approx(3.0)  # single tensor
    with pytest.raises(ValueError, match="equally long"):
        feature_loss(a, b[:1])
    with pytest.raises(ValueError, match="feature map 1"):
        feature_loss(a, [b[0], torch.zeros(2, 2)])


def test_multiscale_average_pools():
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(2, 3, 1, 4, 4)  # (B, T, C, H, W)
    s1, s2, s4 = multiscale(x, [1, 2, 4])
    assert s1 is x
    assert s2.shape == (2, 3, 1, 2, 2) and s4.shape == (2, 3, 1, 1, 1)
    # top-left 2x2 block of 0..15 row-major: (0 + 1 + 4 + 5) / 4
    assert s2[0, 0, 0, 0, 0].item() == 2.5
    assert s4[1, 2, 0, 0, 0].item() == 7.5
    with pytest.raises(ValueError, match="scale factor 3"):
        multiscale(x, [3])


def test_info_nce_hand_case():
    # orthogonal, perfectly matched pairs at temperature 1: logits = I, loss = log(1 + (B-1)/e)
    z = torch.eye(3)
    expected = -math.log(math.e / (math.e + 2.0))
    assert info_nce(z, z, temperature=1.0).item() == pytest.approx(expected, abs=1e-6)
    # an encoder that ignores its input scores log(B)
    c = torch.ones(4, 5)
    assert info_nce(c, c).item() == pytest.approx(math.log(4), abs=1e-5)


def test_context_windows():
    frames = torch.arange(6.0).view(1, 6, 1, 1, 1).expand(2, 6, 3, 2, 2)
    win = context_windows(frames, n=2, start=2)
    assert win.shape == (2, 4, 2, 3, 2, 2)
    torch.testing.assert_close(
        win[0, :, :, 0, 0, 0], torch.tensor([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0]])
    )
    assert context_windows(frames, n=1, start=3)[0, :, 0, 0, 0, 0].tolist() == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="start"):
        context_windows(frames, n=3, start=2)


def _compose(name: str) -> AntiBlurConfig:
    from omegaconf import OmegaConf

    schema = OmegaConf.structured(AntiBlurConfig)
    return OmegaConf.to_object(OmegaConf.merge(schema, OmegaConf.load(CONFIGS / f"{name}.yaml")))


def test_loss_presets_compose():
    mse, full = _compose("mse"), _compose("full")
    assert isinstance(mse, AntiBlurConfig) and isinstance(full, AntiBlurConfig)
    assert mse.weights() == {"gdl": 0.0, "adv": 0.0, "feat": 0.0}
    assert not mse.needs_discriminator
    # the measured recipe: GDL (alpha 2) and DeePSiM's feature term; the adversarial term and
    # pixel norm are options (README, result 3), with Mathieu's weight ready in the preset's comment
    assert full.weights() == {"gdl": 1.0, "adv": 0.0, "feat": pytest.approx(0.01)}
    assert full.gdl_alpha == 2.0
    assert full.discriminator.minibatch_std and full.discriminator.equalized_lr
    assert full.progressive.enabled and not full.pixel_norm
    assert not full.needs_discriminator  # the feature term's comparator is a fixed network


def test_config_validation():
    with pytest.raises(ValueError, match="adv_form"):
        AntiBlurConfig(adv_form="vanilla").validate()
    with pytest.raises(ValueError, match="pause rule"):
        AntiBlurConfig(adv_form="wgan-gp").validate()
    with pytest.raises(ValueError, match="start_resolution"):
        AntiBlurConfig(progressive=ProgressiveConfig(enabled=True, start_resolution=8)).validate()
    with pytest.raises(ValueError, match="judged_per_sequence=True"):  # a bool is not an int
        AntiBlurConfig(judged_per_sequence=True).validate()
    # the nested configs are checked through it
    with pytest.raises(ValueError, match="discriminator.dropout"):
        AntiBlurConfig(discriminator=DiscriminatorConfig(dropout=1.5)).validate()
    with pytest.raises(ValueError, match="unknown comparator kind"):
        AntiBlurConfig(comparator=ComparatorConfig(kind="vgg")).validate()
    with pytest.raises(ValueError, match="progressive.fade_steps=-1"):
        AntiBlurConfig(progressive=ProgressiveConfig(fade_steps=-1)).validate()


def test_antiblur_objective_refuses_a_bad_config():
    """Building a config checks nothing; the objective that consumes it does."""
    bad = AntiBlurConfig(gdl_weight=-1.0)
    with pytest.raises(ValueError, match="anti-blur weights"):
        AntiBlurObjective(bad, 8)
    with pytest.raises(ValueError, match="unknown comparator kind"):
        AntiBlurObjective(AntiBlurConfig(comparator=ComparatorConfig(kind="vgg")), 8)


def model_output(obs: torch.Tensor, frames: torch.Tensor, n_past: int = 2) -> ModelOutput:
    """A training forward pass's output holding only frames: ``obs (B, L, C, H, W)`` and the
    predictions ``frames (B, L-1, C, r, r)`` of frames ``1..L-1``."""
    b, length = obs.shape[:2]
    emb = torch.zeros(b, length - 1, 1)
    return ModelOutput(obs, frames, emb, emb, None, None, None, None, None, None, n_past)


def test_antiblur_terms_are_enabled_differentiable_and_per_pixel():
    cfg = AntiBlurConfig(gdl_weight=1.0)
    objective = AntiBlurObjective(cfg, image_size=8)
    assert objective.adversarial is None and objective.comparator is None
    obs = torch.rand(2, 4, 3, 8, 8)
    frames = torch.rand(2, 3, 3, 8, 8, requires_grad=True)
    out = model_output(obs, frames)
    terms = objective.terms(out)
    assert set(terms) == {"gdl"}
    # the paper's per-frame sum divided by the pixels per frame: the reconstruction term's scale
    expected = gdl(frames, obs[:, 1:], 1.0, reduction="batch") / (3 * 8 * 8)
    torch.testing.assert_close(terms["gdl"], expected)
    weights = objective.weights()
    loss = reconstruction_loss(frames, obs[:, 1:], reduction="mean") + sum(
        weights[k] * v for k, v in terms.items()
    )
    loss.backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0
    assert objective.update(out) == {} and objective.state_dict() == {}  # nothing to train
    # the exponent reaches the loss
    alpha2 = AntiBlurObjective(AntiBlurConfig(gdl_weight=1.0, gdl_alpha=2.0), 8).terms(out)
    expected2 = gdl(frames, obs[:, 1:], 2.0, reduction="batch") / (3 * 8 * 8)
    torch.testing.assert_close(alpha2["gdl"], expected2)
