"""Masked autoregressive layers over the flattened image: MADE (Germain et al. 2015, "MADE: Masked
Autoencoder for Distribution Estimation") as an affine autoregressive bijection, the building
block of MAF (Papamakarios et al. 2017, "Masked Autoregressive Flow for Density Estimation").

An image x [B,C,H,W] is flattened row-major to v [B,D], D = C H W (channel-major, the layout the
MAF code used for CIFAR-10). Each input i has a degree d(i), a permutation of 1..D: the order.
Hidden unit j of layer l has a degree m_l(j) in [1, D-1]; a weight from a unit of degree a to a
hidden unit of degree b exists only if a <= b, and to output i only if a < d(i). So the outputs
(mu_i, alpha_i) depend on the inputs that come strictly before i in the order, and

    z_i = (v_i - mu_i(v_<i)) exp(-alpha_i(v_<i))

has a Jacobian dz/dv that is triangular in the order with diagonal exp(-alpha): logdet =
-sum_i alpha_i, exact. The inverse v_i = mu_i + exp(alpha_i) z_i runs in increasing degree, D
sequential steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.core import Bijection, check_image


def made_degrees(
    input_degrees: Tensor, hidden: tuple[int, ...], generator: torch.Generator
) -> list[Tensor]:
    """Degrees of the inputs (given) and of each hidden layer's units.

    A hidden layer's degrees are drawn uniformly from [min(previous layer's degrees), D - 1]
    (MADE's random connectivity, the ``mode='random'`` of the MAF code), so every unit has at
    least one input and no unit sees input D, which no output may depend on.
    """
    d = input_degrees.numel()
    degrees = [input_degrees]
    for width in hidden:
        low = min(int(degrees[-1].min()), d - 1)
        degrees.append(
            torch.randint(low, d, (width,), generator=generator, device=generator.device)
        )
    return degrees


class MaskedLinear(nn.Linear):
    """y = x (W * M)^T + b with a fixed binary mask M [out, in]; masked entries are not
    parameters (``parameter_masks``) and receive zero gradient."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor):
        super().__init__(in_features, out_features)
        if mask.shape != (out_features, in_features):
            raise ValueError(
                f"MaskedLinear mask must have shape {(out_features, in_features)}, "
                f"got {tuple(mask.shape)}"
            )
        # counted where the mask has values (a meta-device build counts through MADE's CPU masks)
        self.free_count = None if mask.is_meta else int(mask.count_nonzero())
        self.register_buffer("mask", mask.bool().to(self.weight.device))
        with torch.no_grad():  # N(0, 1/(fan_in + 1)) as in the MAF code
            self.weight.normal_(0.0, 1.0 / math.sqrt(in_features + 1))
            self.bias.zero_()

    def parameter_masks(self) -> dict[str, Tensor]:
        return {"weight": self.mask}

    def free_parameter_counts(self) -> dict[str, int]:
        return {} if self.free_count is None else {"weight": self.free_count}

    def masked_weight(self) -> Tensor:
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


class MADE(Bijection):
    """Gaussian MADE as an affine autoregressive bijection over the flattened image.

    x [B,C,H,W] -> v [B,D] -> z = (v - mu(v)) exp(-alpha(v)) reshaped to [B,C,H,W];
    logdet [B] = -sum_i alpha_i. (mu, alpha) come from an MLP of masked linear layers (ReLU)
    whose output i sees only the inputs before i in the order (module docstring).

    ``hidden``: widths of the hidden layers. ``reverse``: the order is D..1 over the row-major
    flattening instead of 1..D (MAF reverses the order between consecutive MADEs). ``seed``:
    draws the hidden degrees, so a model rebuilds with the same masks; the masks are also in the
    state dict. The output layer starts at zero, so a new layer is the identity.

    Inverse: D sequential steps in increasing degree. Step k sets the input of degree k from the
    outputs of the last hidden layer's finished units (degree < k), adds that input's column to
    the first layer's pre-activations, and finishes the hidden units of degree k, layer by layer
    (their inputs all have degree <= k). Every weight is used once: the arithmetic of one forward
    pass, in D small steps.

    Args:
        shape: (C, H, W); D = C H W inputs in raster order.
        hidden: widths of the masked hidden layers.
        reverse: use the reversed input order (MAF alternates orders).
        seed: seed of the hidden units' degrees.

    References:
        Germain, Gregor, Murray & Larochelle, "MADE: Masked Autoencoder for Distribution
            Estimation", ICML 2015 (arXiv:1502.03509).
        Papamakarios, Pavlakou & Murray, "Masked Autoregressive Flow for Density Estimation",
            NeurIPS 2017 (arXiv:1705.07057).
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        hidden: tuple[int, ...] = (1024, 1024),
        reverse: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.shape = tuple(shape)
        d = math.prod(self.shape)
        if d < 2:
            raise ValueError(f"MADE needs at least 2 dimensions, got shape {self.shape}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"MADE needs at least one hidden layer of width >= 1, got {hidden}")
        self.num_inputs = d
        order = torch.arange(1, d + 1, device="cpu")  # degrees and masks: fixed, on the CPU
        degrees = made_degrees(
            order.flip(0) if reverse else order, hidden, torch.Generator().manual_seed(seed)
        )
        for i, deg in enumerate(degrees):
            self.register_buffer(f"degrees{i}", deg.to(torch.get_default_device()))
        self.hidden = nn.ModuleList(
            MaskedLinear(degrees[i].numel(), width, degrees[i][None, :] <= degrees[i + 1][:, None])
            for i, width in enumerate(hidden)
        )
        out_mask = degrees[-1][None, :] < degrees[0][:, None]
        self.output = MaskedLinear(hidden[-1], 2 * d, out_mask.repeat(2, 1))
        nn.init.zeros_(self.output.weight)

    def degrees(self) -> list[Tensor]:
        """Input degrees, then each hidden layer's."""
        return [getattr(self, f"degrees{i}") for i in range(len(self.hidden) + 1)]

    def conditionals(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, alpha) [B,D] of the flat input v [B,D]."""
        h = v
        for layer in self.hidden:
            h = F.relu(layer(h))
        mu, alpha = self.output(h).chunk(2, dim=1)
        return mu, alpha

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.shape[0], "MADE")
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"MADE expects [B, {self.shape}], got shape {tuple(x.shape)}")
        v = x.flatten(1)
        mu, alpha = self.conditionals(v)
        z = (v - mu) * torch.exp(-alpha)
        return z.view_as(x), -alpha.sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.shape[0], "MADE.inverse")
        if tuple(z.shape[1:]) != self.shape:
            raise ValueError(f"MADE.inverse expects [B, {self.shape}], got shape {tuple(z.shape)}")
        d, flat = self.num_inputs, z.flatten(1)
        degrees = self.degrees()
        order = torch.argsort(degrees[0]).tolist()
        finishing = [_units_by_degree(deg, d) for deg in degrees[1:]]
        weights = [layer.masked_weight() for layer in self.hidden]
        first_columns = weights[0].T  # [D, H1]: row i is input i's column
        out_weight = self.output.masked_weight().view(2, d, -1)
        out_bias = self.output.bias.view(2, d)
        pre = [layer.bias.expand(z.shape[0], -1) for layer in self.hidden]
        last = z.new_zeros(z.shape[0], self.hidden[-1].out_features)
        columns: list[Tensor | None] = [None] * d
        for k, i in enumerate(order, start=1):
            params = last @ out_weight[:, i].T + out_bias[:, i]
            column = params[:, 0] + torch.exp(params[:, 1]) * flat[:, i]
            columns[i] = column
            pre[0] = pre[0] + column[:, None] * first_columns[i]
            for layer, units in enumerate(finishing):
                index = units.get(k)
                if index is None:
                    continue
                done = F.relu(pre[layer][:, index])
                if layer + 1 < len(pre):
                    pre[layer + 1] = pre[layer + 1] + done @ weights[layer + 1][:, index].T
                else:
                    last = last.index_copy(1, index, done)
        return torch.stack(columns, dim=1).view_as(z)


def _units_by_degree(degrees: Tensor, d: int) -> dict[int, Tensor]:
    """{degree: indices of the units with that degree} for the degrees present."""
    ordered = torch.argsort(degrees, stable=True)
    counts = torch.bincount(degrees, minlength=d + 1).tolist()
    groups = torch.split(ordered, counts)
    return {k: group for k, group in enumerate(groups) if group.numel()}


class ElementwiseActNorm(Bijection):
    """z = (x + bias) * exp(log_scale) with one bias and scale per element of [C,H,W] (MAF's
    per-dimension normalisation between MADEs, as an ActNorm). x [B,C,H,W];
    logdet = sum log_scale.

    Data-dependent initialisation on the first training batch: bias = -mean, scale = 1/std per
    element, recorded in the ``initialized`` buffer.

    Args:
        shape: (C, H, W): one bias and scale per element.
        eps: added to the std in the data-dependent initialisation.

    References:
        Papamakarios, Pavlakou & Murray, "Masked Autoregressive Flow for Density Estimation",
            NeurIPS 2017 (arXiv:1705.07057).
        Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018
            (arXiv:1807.03039).
    """

    def __init__(self, shape: tuple[int, int, int], eps: float = 1e-6):
        super().__init__()
        self.shape = tuple(shape)
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(1, *self.shape))
        self.log_scale = nn.Parameter(torch.zeros(1, *self.shape))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        self.bias.copy_(-x.mean(0, keepdim=True))
        self.log_scale.copy_(-torch.log(x.std(0, keepdim=True, unbiased=False) + self.eps))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.shape[0], "ElementwiseActNorm")
        if self.training and not bool(self.initialized) and x.shape[0] > 1:
            self.initialize(x)
        z = (x + self.bias) * torch.exp(self.log_scale)
        return z, self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.shape[0], "ElementwiseActNorm.inverse")
        return z * torch.exp(-self.log_scale) - self.bias
