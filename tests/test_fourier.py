"""Fourier-domain and structured layers against explicit dense matrices and direct formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.core import dense_matrix
from models.layers.butterfly import ButterflyLayer
from models.layers.circulant import CirculantDiagonal
from models.layers.fourier import (
    CircularConv2d,
    PeriodicConv2d,
    SneakyReLU,
    SymmetricConv2d,
    dct,
    idct,
)
from models.layers.woodbury import Woodbury
from models.registry import randomize


def check_against_dense(layer, shape):
    """logdet vs slogdet of the explicit matrix, inverse vs torch.linalg.solve."""
    layer = randomize(layer, 0.2).eval()
    matrix = dense_matrix(lambda v: layer(v)[0], shape, torch.zeros(()))
    z = torch.randn(2, *shape)
    _, logdet = layer(torch.randn(2, *shape))
    torch.testing.assert_close(logdet[0], torch.linalg.slogdet(matrix).logabsdet, atol=1e-9, rtol=0)
    expected = torch.linalg.solve(matrix, z.reshape(2, -1).T).T.reshape(z.shape)
    torch.testing.assert_close(layer.inverse(z), expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("shape", [(2, 4, 4), (2, 5, 3)])
@pytest.mark.parametrize(
    "make",
    [
        lambda c: CircularConv2d(c, 3),
        lambda c: CircularConv2d(c, 3, separable=True),
        lambda c: SymmetricConv2d(c, 1),
        lambda c: PeriodicConv2d(c, 3),
    ],
    ids=["circular", "circular_separable", "symmetric", "periodic"],
)
def test_dense_matrix_comparison(make, shape):
    check_against_dense(make(shape[0]), shape)


def test_circular_conv_is_a_circular_convolution():
    layer = randomize(CircularConv2d(2, 3), 0.3)
    x = torch.randn(1, 2, 5, 6)
    padded = F.pad(x, (1, 1, 1, 1), mode="circular")
    expected = F.conv2d(padded, layer.kernel.flip(1, 2)[:, None], groups=2)
    torch.testing.assert_close(layer(x)[0], expected)


def test_symmetric_conv_is_a_symmetric_padded_convolution():
    layer = randomize(SymmetricConv2d(1, 1), 0.3)
    t = layer.taps[0]
    kernel = torch.stack([torch.cat([t[i].flip(0), t[i, 1:]]) for i in range(2)])
    kernel = torch.cat([kernel[1:].flip(0), kernel])  # 3x3 even kernel from one-sided taps
    x = torch.randn(1, 1, 5, 4)
    padded = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=2)  # half-sample symmetric
    padded = torch.cat([padded[..., :1], padded, padded[..., -1:]], dim=3)
    expected = F.conv2d(padded, kernel[None, None])
    torch.testing.assert_close(layer(x)[0], expected)


@pytest.mark.parametrize("n", [1, 4, 5, 8])
def test_dct_is_the_orthonormal_dct_ii(n):
    k = torch.arange(n)[:, None]
    i = torch.arange(n)[None, :]
    matrix = torch.cos(math.pi * k * (2 * i + 1) / (2 * n)) * math.sqrt(2 / n)
    matrix[0] /= math.sqrt(2)
    x = torch.randn(3, n)
    torch.testing.assert_close(dct(x), x @ matrix.T)
    torch.testing.assert_close(idct(dct(x)), x)


def test_periodic_conv_matches_conv2d_with_circular_padding_and_counts_rfft_columns():
    layer = randomize(PeriodicConv2d(3, 3), 0.3).eval()
    for h, w in [(4, 4), (4, 5), (6, 7)]:
        matrix = dense_matrix(lambda v: layer(v)[0], (3, h, w), torch.zeros(()))
        _, logdet = layer(torch.zeros(1, 3, h, w))
        torch.testing.assert_close(logdet[0], torch.linalg.slogdet(matrix).logabsdet)


def test_sneaky_relu_formula_and_slope():
    layer = SneakyReLU(0.1)
    x = torch.tensor([[-1e4, -1.0, 0.0, 2.0, 1e4]])
    y, _ = layer(x)
    a = 0.9 / 1.1
    torch.testing.assert_close(y, (x + a * (torch.sqrt(1 + x * x) - 1)) / (1 + a))
    slope_left = (layer(torch.tensor([[-1e6]]))[0] - layer(torch.tensor([[-1e6 + 1]]))[0]).abs()
    assert abs(slope_left.item() - 0.1) < 1e-3


def test_cdflow_weight_stays_real_and_matches_its_dense_matrix():
    layer = randomize(CirculantDiagonal(8, m=3), 0.3)
    w = layer.matrix()
    assert w.dtype == torch.float64 and not w.is_complex()
    x = torch.randn(2, 8, 3, 2)
    z, logdet = layer(x)
    torch.testing.assert_close(z, torch.einsum("oc,bchw->bohw", w, x))
    torch.testing.assert_close(logdet[0], 6 * torch.linalg.slogdet(w).logabsdet)


def test_near_singular_frequency_response_is_clamped_not_nan():
    layer = CircularConv2d(1, 3)
    with torch.no_grad():
        layer.kernel.zero_()  # every frequency response is 0
    z, logdet = layer(torch.randn(2, 1, 4, 4))
    assert torch.isfinite(z).all() and torch.isfinite(logdet).all()
    cd = CirculantDiagonal(4)
    with torch.no_grad():
        cd.circulants.zero_()
    assert torch.isfinite(cd(torch.randn(1, 4, 2, 2))[1]).all()


def test_singular_layers_raise_clearly():
    periodic = PeriodicConv2d(2, 3)
    with torch.no_grad():
        periodic.weight.zero_()
    with pytest.raises(ValueError, match="singular frequency block"):
        periodic(torch.randn(1, 2, 4, 4))
    butterfly = ButterflyLayer((1, 2, 2), 0)
    with torch.no_grad():
        butterfly.matrices.zero_()
    with pytest.raises(ValueError, match="singular 2x2"):
        butterfly(torch.randn(1, 1, 2, 2))
    woodbury = Woodbury((2, 2, 2), rank=1)
    with torch.no_grad():
        woodbury.channel_u.fill_(1.0)
        woodbury.channel_v.fill_(-0.5)  # I + V U = 1 - 1 = 0
    with pytest.raises(ValueError, match="singular"):
        woodbury(torch.randn(1, 2, 2, 2))


def test_ffts_never_pass_an_empty_batch_to_torch():
    """Some MKL builds raise on zero-size FFTs: the layers' FFTs transform one zero example
    instead and return an empty batch of the right shape."""
    from models.layers.fourier import _batch_safe

    def strict_rfft2(x, **kwargs):
        assert x.numel() > 0, "an empty tensor reached the FFT"
        return torch.fft.rfft2(x, **kwargs)

    out = _batch_safe(strict_rfft2)(torch.zeros(0, 2, 4, 6))
    assert out.shape == (0, 2, 4, 4) and out.dtype == torch.complex128
    full = _batch_safe(strict_rfft2)(torch.ones(1, 2, 4, 6))
    torch.testing.assert_close(full, torch.fft.rfft2(torch.ones(1, 2, 4, 6)))


def test_an_empty_batch_keeps_its_autograd_graph_through_the_ffts():
    from models.layers.fourier import irfft2, rfft2

    x = torch.zeros(0, 2, 4, 6, requires_grad=True)
    irfft2(rfft2(x), s=(4, 6)).sum().backward()
    assert x.grad.shape == x.shape
