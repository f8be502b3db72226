"""SNF's training update of `SelfNormConv2d` against a by-hand computation, in float64.

The reference builds the dense [D, D] matrices T_W, T_R of the two convs (D = C H W) with an
explicit loop over taps and pixels, writes the update in matrix form, and maps each matrix
gradient back to the kernel by summing it over the entries each tap fills (the adjoint of the
same loop). Nothing here goes through the layer's own gradient code.

The authors' rule is transcribed from akandykeller/SelfNormalizingFlows at commit 4007e24,
snf/layers/selfnorm.py:

- ``SelfNormConvFunc.backward`` (lines 63-82), per batch of B with output_grad = delta_z:
  ``weight_grad_fwd = (delta_z_xt - flip_kernel(R) * multiple) / 2.0``
  ``weight_grad_inv = (neg_delta_x_Wxt + flip_kernel(W) * flip_kernel(multiple)) / 2.0``
  with ``multiple`` the per-example tap counts and ``input_grad = W^T delta_z`` (delta_x);
  in matrix form dL/dT_W = (sum_b delta_z x^T - T_R^T) / 2 and
  dL/dT_R = (-sum_b delta_x (T_W x)^T + T_W^T) / 2; dL/dx = T_W^T delta_z.
- ``SelfNormConv.add_recon_grad`` (lines 187-216): ``x = self.input.detach()``, then
  ``recon_loss_weight * mean_b ||x - R(W x)||^2`` backpropagated into W and R only.

The paper's rule (the previous behaviour, ``gradient_rule="paper"``): dL/dT_W =
sum_b delta_z x^T - T_R^T, R learns from the reconstruction loss only, and that loss reaches x.
"""

from __future__ import annotations

import pytest
import torch

from models.layers.snf import SelfNormConv2d

B, C, H, W = 3, 2, 4, 5
RECON_WEIGHT = 0.7


def pixel_pairs(k: int):
    """(o, c, a, b, row, col): kernel tap (o, c, a, b) links output pixel (o, i, j) = row to
    input pixel (c, i + a - k//2, j + b - k//2) = col, for every pair inside the image
    (F.conv2d is a cross-correlation with zero padding k // 2)."""
    pad = k // 2
    for o in range(C):
        for c in range(C):
            for a in range(k):
                for b in range(k):
                    for i in range(H):
                        for j in range(W):
                            ii, jj = i + a - pad, j + b - pad
                            if 0 <= ii < H and 0 <= jj < W:
                                yield o, c, a, b, (o * H + i) * W + j, (c * H + ii) * W + jj


def toeplitz(kernel: torch.Tensor) -> torch.Tensor:
    """Dense [D, D] matrix of the conv with ``kernel`` on [C, H, W] images (row-major)."""
    d = C * H * W
    out = torch.zeros(d, d, dtype=kernel.dtype)
    for o, c, a, b, row, col in pixel_pairs(kernel.shape[-1]):
        out[row, col] += kernel[o, c, a, b]
    return out


def to_kernel(grad_matrix: torch.Tensor, k: int) -> torch.Tensor:
    """Kernel gradient [C, C, k, k] of a loss whose gradient on the dense matrix is given."""
    out = torch.zeros(C, C, k, k, dtype=grad_matrix.dtype)
    for o, c, a, b, row, col in pixel_pairs(k):
        out[o, c, a, b] += grad_matrix[row, col]
    return out


def by_hand(rule: str, weight, inverse_weight, x, upstream):
    """Gradients (W, R, bias, x) of L = mean_b(<upstream_b, z_b> - logdet_b + recon_b)."""
    k = weight.shape[-1]
    tw, tr = toeplitz(weight), toeplitz(inverse_weight)
    xs = x.flatten(1)  # [B, D]
    delta_z = upstream.flatten(1) / B  # dL/dz_b
    delta_x = delta_z @ tw  # rows: (T_W^T delta_z_b)^T
    wx = xs @ tw.T  # rows: (T_W x_b)^T
    resid = xs - wx @ tr.T  # e_b = x_b - T_R T_W x_b
    scale = 2 * RECON_WEIGHT / B  # d/de of (w / B) sum_b ||e_b||^2 is scale * e_b
    recon_tw = -scale * tr.T @ resid.T @ xs  # sum_b -scale T_R^T e_b x_b^T
    recon_tr = -scale * resid.T @ wx  # sum_b -scale e_b (T_W x_b)^T
    nll_tw = delta_z.T @ xs - tr.T  # sum_b delta_z x^T - T_W^{-T}, with T_W^{-1} ~ T_R
    if rule == "authors":
        grad_tw = nll_tw / 2 + recon_tw
        grad_tr = (-delta_x.T @ wx + tw.T) / 2 + recon_tr
        grad_x = delta_x
    else:
        grad_tw = nll_tw + recon_tw
        grad_tr = recon_tr
        grad_x = delta_x + scale * resid @ (torch.eye(tw.shape[0], dtype=tw.dtype) - tr @ tw)
    grad_b = upstream.sum((0, 2, 3)) / B
    return to_kernel(grad_tw, k), to_kernel(grad_tr, k), grad_b, grad_x.reshape(x.shape)


def ours(layer: SelfNormConv2d, x, upstream):
    x = x.clone().requires_grad_(True)
    z, logdet = layer(x)
    loss = ((upstream * z).flatten(1).sum(1) - logdet + layer.auxiliary_loss()).mean()
    params = [layer.weight, layer.inverse_weight, layer.bias, x]
    return torch.autograd.grad(loss, params)


def generic_layer(rule: str, k: int) -> SelfNormConv2d:
    """A layer with W, R and b moved apart (R no longer the adjoint of W)."""
    torch.manual_seed(1)
    layer = SelfNormConv2d(C, k, recon_weight=RECON_WEIGHT, gradient_rule=rule).train()
    with torch.no_grad():
        for p in (layer.weight, layer.inverse_weight, layer.bias):
            p.add_(0.2 * torch.randn_like(p))
    return layer


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("rule", ["authors", "paper"])
def test_gradients_match_the_rule_computed_by_hand(rule, k):
    layer = generic_layer(rule, k)
    x, upstream = torch.randn(B, C, H, W), torch.randn(B, C, H, W)
    expected = by_hand(rule, layer.weight.detach(), layer.inverse_weight.detach(), x, upstream)
    got = ours(layer, x, upstream)
    for name, g, want in zip(("W", "R", "bias", "x"), got, expected, strict=True):
        torch.testing.assert_close(g, want, atol=1e-10, rtol=1e-10, msg=name)


def test_rules_differ_only_in_the_gradient():
    """Same values (z, logdet 0 in training, reconstruction loss) under both rules; the
    authors' W update from the likelihood is half the paper's and R gets one."""
    authors, paper = generic_layer("authors", 3), generic_layer("paper", 3)
    x = torch.randn(B, C, H, W)
    (za, la), (zp, lp) = authors(x), paper(x)
    torch.testing.assert_close(za, zp, rtol=0, atol=0)
    torch.testing.assert_close(la, torch.zeros(B))
    torch.testing.assert_close(lp, torch.zeros(B))
    torch.testing.assert_close(authors.auxiliary_loss(), paper.auxiliary_loss())
    authors.recon_weight = paper.recon_weight = 0.0
    upstream = torch.randn(B, C, H, W)
    ga, gp = ours(authors, x, upstream), ours(paper, x, upstream)
    torch.testing.assert_close(ga[0], gp[0] / 2)
    assert gp[1].abs().max() == 0 and ga[1].abs().max() > 0
    torch.testing.assert_close(ga[3], gp[3])  # no reconstruction: the same input gradient


def test_eval_mode_is_exact_under_both_rules():
    x = torch.randn(B, C, H, W)
    for rule in ("authors", "paper"):
        layer = generic_layer(rule, 3).eval()
        _, logdet = layer(x)
        exact = torch.linalg.slogdet(toeplitz(layer.weight.detach())).logabsdet
        torch.testing.assert_close(logdet, exact.expand(B))
        assert layer.auxiliary_loss() is None


def test_unknown_rule_raises():
    with pytest.raises(ValueError, match="gradient_rule"):
        SelfNormConv2d(2, gradient_rule="exact")
