"""Conv encoder/decoder: shapes for every size and kind, exactness of the split-skip decoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from worldmodel.model.nets import Decoder, Encoder, count_params, level_widths, num_levels

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("kind", ["dcgan", "vgg"])
@pytest.mark.parametrize("size", [32, 64, 128])
def test_encoder_decoder_shapes(kind, size):
    torch.manual_seed(0)
    enc = Encoder(kind, size, 3, nf=4, g_dim=6)
    dec = Decoder(kind, size, 3, nf=4, g_dim=6)
    x = torch.rand(3, 3, size, size)
    h, skips = enc(x)
    assert h.shape == (3, 6)
    assert h.abs().max() < 1  # tanh
    levels = num_levels(size)
    assert len(skips) == levels
    first = size // 2 if kind == "dcgan" else size
    for i, (s, w) in enumerate(zip(skips, level_widths(4, levels), strict=True)):
        assert s.shape == (3, w, first >> i, first >> i)
    y = dec.decode(h, skips)
    assert y.shape == (3, 3, size, size)
    assert 0 <= y.min() and y.max() <= 1  # sigmoid


def test_svg_widths_and_levels():
    assert level_widths(64, 4) == [64, 128, 256, 512]  # SVG dcgan_64 / vgg_64
    assert level_widths(64, 5) == [64, 128, 256, 512, 512]  # SVG dcgan_128 / vgg_128
    assert num_levels(64) == 4 and num_levels(128) == 5
    for bad in (16, 48, 100):
        with pytest.raises(ValueError, match="power of two"):
            num_levels(bad)
    with pytest.raises(ValueError, match="encoder"):
        Encoder("resnet", 64, 3, 8, 8)


def test_svg_size_parameter_count():
    # SVG-LP's DCGAN 64x64 encoder + decoder at nf=64, g_dim=128 (RGB): ~10.3M of its 12.6M
    n = count_params(Encoder("dcgan", 64, 3, 64, 128)) + count_params(
        Decoder("dcgan", 64, 3, 64, 128)
    )
    assert 10.0e6 < n < 10.6e6


@pytest.mark.parametrize("kind", ["dcgan", "vgg"])
def test_split_skip_equals_concatenation(kind):
    """conv(cat([d, s])) == conv_main(d) + conv_skip(s): the decoder computes SVG's function."""
    torch.manual_seed(0)
    dec = Decoder(kind, 32, 3, nf=4, g_dim=5).eval()
    level = dec.levels[1]
    d = torch.randn(2, level.main.in_channels, 8, 8)
    s = torch.randn(2, level.skip.in_channels, 8, 8)
    if kind == "dcgan":  # ConvTranspose2d weight: (in, out, k, k)
        cat = nn.ConvTranspose2d(2 * d.shape[1], level.main.out_channels, 4, 2, 1, bias=False)
        cat.weight.data = torch.cat([level.main.weight, level.skip.weight], 0)
    else:  # Conv2d weight: (out, in, k, k)
        cat = nn.Conv2d(2 * d.shape[1], level.main.out_channels, 3, 1, 1, bias=False)
        cat.weight.data = torch.cat([level.main.weight, level.skip.weight], 1)
    torch.testing.assert_close(
        cat(torch.cat([d, s], 1)), level.main(d) + level.skip(s), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("kind", ["dcgan", "vgg"])
def test_shared_skip_terms_broadcast(kind):
    """Skip terms of one frame broadcast over many embeddings == decoding each with its own copy."""
    torch.manual_seed(0)
    enc, dec = Encoder(kind, 32, 3, 4, 6).eval(), Decoder(kind, 32, 3, 4, 6).eval()
    _, skips = enc(torch.rand(2, 3, 32, 32))  # 2 context frames
    g = torch.randn(2, 5, 6)  # 5 predictions per context frame
    shared = dec(g, dec.skip_terms([s[:, None] for s in skips]))  # terms (2, 1, ...)
    copied = dec.decode(g, [s[:, None].expand(-1, 5, -1, -1, -1) for s in skips])
    assert shared.shape == (2, 5, 3, 32, 32)
    torch.testing.assert_close(shared, copied, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["dcgan", "vgg"])
def test_channels_last_same_function(kind):
    torch.manual_seed(0)
    a = (Encoder(kind, 32, 3, 4, 6), Decoder(kind, 32, 3, 4, 6))
    b = (
        Encoder(kind, 32, 3, 4, 6, channels_last=True),
        Decoder(kind, 32, 3, 4, 6, channels_last=True),
    )
    for x, y in zip(a, b, strict=True):
        y.load_state_dict(x.state_dict())
        x.eval(), y.eval()
    frames = torch.rand(3, 3, 32, 32)
    (ha, sa), (hb, sb) = a[0](frames), b[0](frames)
    torch.testing.assert_close(ha, hb, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a[1].decode(ha, sa), b[1].decode(hb, sb), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["dcgan", "vgg"])
def test_composite_decoder_blends_the_skip_frame_with_the_plain_output(kind):
    """composite: out = m * frame + (1 - m) * x_gen, x_gen the plain decoder's frame (same
    weights in the first C channels); a saturated mask gives exactly one or the other."""
    torch.manual_seed(0)
    enc = Encoder(kind, 32, 3, 4, 6).eval()
    plain = Decoder(kind, 32, 3, 4, 6).eval()
    comp = Decoder(kind, 32, 3, 4, 6, composite=True).eval()
    frame = torch.rand(2, 3, 32, 32)
    h, skips = enc(frame)
    with torch.no_grad():
        for p, q in zip(comp.parameters(), plain.parameters(), strict=True):
            if p.shape == q.shape:
                p.copy_(q)
            else:  # the last level: colour rows / columns from the plain decoder, mask row zero
                # ConvTranspose2d weights are (in, out, k, k); Conv2d weights and biases out first
                dim = 1 if kind == "dcgan" and p.dim() == 4 else 0
                p.zero_()
                p.narrow(dim, 0, 3).copy_(q)
        out = comp.levels[0].main if kind == "dcgan" else comp.levels[0].post[-2]
        gen = plain.decode(h, skips)
        for bias, want in ((-100.0, gen), (100.0, frame)):
            out.bias[3] = bias
            torch.testing.assert_close(comp.decode(h, [*skips, frame]), want)
        out.bias[3] = 0.0  # m = 1/2
        torch.testing.assert_close(comp.decode(h, [*skips, frame]), (gen + frame) / 2)
    with pytest.raises(ValueError, match="expected 4 skip tensors"):
        comp.decode(h, skips)
    with pytest.raises(ValueError, match="not logits"):
        Decoder(kind, 32, 3, 4, 6, logits=True, composite=True)


def test_composite_decoder_starts_close_to_copying():
    """The mask's bias starts at MASK_BIAS: an untrained decoder mostly copies its skip frame."""
    from worldmodel.model.nets import MASK_BIAS

    torch.manual_seed(0)
    enc, dec = (
        Encoder("dcgan", 32, 3, 4, 6).eval(),
        Decoder("dcgan", 32, 3, 4, 6, True, composite=True),
    )
    frame = torch.rand(4, 3, 32, 32)
    h, skips = enc(frame)
    with torch.no_grad():
        y = dec.eval().decode(h, [*skips, frame])
    m = torch.sigmoid(torch.tensor(MASK_BIAS))
    # |y - frame| = (1 - m) |x_gen - frame|, x_gen close to 1/2 at initialisation
    assert (y - frame).abs().mean() < (1 - m) * 0.5
    assert (y - frame).abs().mean() > 0
