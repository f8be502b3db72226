"""MaCow and MintNet: triangular structure, sequential inverse, and honest non-convergence."""

from __future__ import annotations

import pytest
import torch

from models.layers.autoregressive import MaskedRowConvFlow, MintNetLayer
from models.registry import randomize


def test_macow_row_depends_only_on_rows_above():
    layer = randomize(MaskedRowConvFlow(2, "down", 8), 0.5)
    x = torch.randn(1, 2, 5, 4)
    z, _ = layer(x)
    x2 = x.clone()
    x2[:, :, 3] += 1.0  # change row 3
    z2, _ = layer(x2)
    assert torch.equal(z[:, :, :3], z2[:, :, :3])
    assert not torch.equal(z[:, :, 4], z2[:, :, 4])


def test_mintnet_jacobian_is_lower_triangular_in_raster_order():
    layer = randomize(MintNetLayer(2, 2, tol=1e-12, max_iter=300), 0.3)
    x = torch.randn(1, 2, 3, 3)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v)[0], x).reshape(18, 18)
    order = torch.arange(18).reshape(2, 3, 3).permute(1, 2, 0).flatten()  # (pixel, channel)
    jac = jac[order][:, order]
    assert torch.allclose(jac.triu(1), torch.zeros(18, 18))
    assert (torch.diagonal(jac) > 0).all()


def test_mintnet_inverse_reports_non_convergence_instead_of_silence():
    layer = randomize(MintNetLayer(2, 2, max_iter=3, tol=1e-12), 0.3)
    with torch.no_grad():
        layer.w0.mul_(40.0)  # strongly coupled, far from the identity: 3 steps cannot solve it
        layer.w2.mul_(40.0)
    z, _ = layer(torch.randn(2, 2, 4, 4))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        layer.inverse(z)
    assert layer.last_inverse["converged"] is False and layer.last_inverse["iterations"] == 3
    layer.strict = True
    with pytest.raises(RuntimeError, match="did not converge"):
        layer.inverse(z)


def test_mintnet_inverse_records_its_iterations_when_it_converges():
    layer = randomize(MintNetLayer(2, 2, max_iter=200, tol=1e-12), 0.1)
    x = torch.randn(2, 2, 4, 4)
    z, _ = layer(x)
    torch.testing.assert_close(layer.inverse(z), x, atol=1e-10, rtol=0)
    assert layer.last_inverse["converged"] and layer.last_inverse["iterations"] < 200
