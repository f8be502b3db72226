"""Invertible residual blocks: i-ResNet, Residual Flows and i-DenseNet.

A block is y = x + g(x) with g contractive (Lipschitz constant < 1), so it is invertible by the
fixed-point iteration x_{k+1} = y - g(x_k) (Banach), and

    log|det dy/dx| = log det(I + J_g) = sum_{k>=1} (-1)^{k+1} tr(J_g^k) / k.

Contractivity comes from spectral normalisation: every convolution is rescaled by
min(1, c / sigma) with sigma its operator norm at the input's size (power iteration on the
convolution and its transpose, `SpectralNormConv2d`), and the activations are 1-Lipschitz
(ELU, LipSwish, CLipSwish).

The logdet has three modes (``logdet_mode``, an attribute of each block):

- ``"exact"``: slogdet of the dense Jacobian of each example, O(D^3); small shapes only. The
  generic exactness tests use it.
- ``"power_series"`` (i-ResNet): the series truncated after ``terms`` terms, each trace by
  Hutchinson's estimator v^T J^k v with v ~ N(0, I): biased by the truncation.
- ``"russian_roulette"`` (Residual Flows, i-DenseNet): ``terms`` terms always, then a random
  number N ~ Geometric(p) more, the k-th term divided by P(N >= k - terms): unbiased. Gradients
  backpropagate through the sampled series (unbiased as well); the Neumann-series gradient of
  the Residual Flows paper, a memory saving, is not implemented.

The two estimators are marked by ``logdet_estimated`` (True), which the flow and the records
carry (BPD of these rows is an estimate).

References:
    Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen, "Invertible Residual Networks", ICML 2019
        (arXiv:1811.00995).
    Chen, Behrmann, Duvenaud & Jacobsen, "Residual Flows for Invertible Generative Modeling",
        NeurIPS 2019 (arXiv:1906.02735).
    Perugachi-Diaz, Tomczak & Bhulai, "Invertible DenseNets with Concatenated LipSwish",
        NeurIPS 2021 (arXiv:2102.02694).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.core import Bijection, check_image

LOGDET_MODES = ("exact", "power_series", "russian_roulette")


class SpectralNormConv2d(nn.Module):
    """A k x k convolution (zero padding, stride 1) whose operator norm is at most ``coeff``:
    W_used = W min(1, coeff / sigma), sigma the largest singular value of the convolution as an
    operator on [C_in, H, W] inputs, estimated by power iteration (conv, then its transpose).

    The estimate is refreshed by ``iterations`` steps in each training forward and by 100 steps
    when the input size changes; evaluation uses the stored one, so forward and inverse see the
    same weights. Power iteration approaches sigma from below: the bound holds up to its error
    (within 2% in the tests), as in the papers' code.

    Args:
        in_channels, out_channels: channels of the convolution.
        kernel_size: k (odd).
        coeff: c < 1, the bound on the operator norm.
        iterations: power-iteration steps per training forward.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        coeff: float = 0.97,
        iterations: int = 1,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.padding, self.coeff, self.iterations = kernel_size // 2, coeff, iterations
        self.register_buffer("u", torch.empty(0))
        self.register_buffer("sigma", torch.ones(()))

    def _conv(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, padding=self.padding)

    @torch.no_grad()
    def power_iteration(self, spatial: tuple[int, int], steps: int) -> None:
        weight = self.weight.detach()
        if self.u.shape[1:] != (weight.shape[1], *spatial):
            self.u = torch.randn(
                1, weight.shape[1], *spatial, dtype=weight.dtype, device=weight.device
            )
            steps = max(steps, 100)
        u = self.u
        for _ in range(steps):
            v = self._conv(u, weight)
            u = F.conv_transpose2d(v, weight, padding=self.padding)
            u = u / u.norm().clamp_min(1e-12)
        self.u = u
        self.sigma = self._conv(u, weight).norm()

    def normalized_weight(self, spatial: tuple[int, int]) -> Tensor:
        if self.training or self.u.shape[2:] != spatial:
            self.power_iteration(spatial, self.iterations)
        scale = torch.clamp(self.coeff / self.sigma, max=1.0)
        return self.weight * scale

    def forward(self, x: Tensor) -> Tensor:
        weight = self.normalized_weight(tuple(x.shape[2:]))
        return self._conv(x, weight) + self.bias[None, :, None, None]


class LipSwish(nn.Module):
    """LipSwish(x) = x sigmoid(beta x) / 1.1, beta = softplus(b) > 0: 1-Lipschitz (the swish's
    slope never exceeds 1.1). x any shape. Chen et al. 2019."""

    def __init__(self):
        super().__init__()
        self.raw_beta = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(F.softplus(self.raw_beta) * x) / 1.1


class CLipSwish(nn.Module):
    """Concatenated LipSwish: [swish(x), swish(-x)] on channels, x [B, C, ...] -> [B, 2C, ...],
    scaled to be 1-Lipschitz. i-DenseNet divides by 1.004 (its tight bound for the pair); we
    divide by 1.1 sqrt(2), a looser bound that holds for any two functions of slope <= 1.1
    (ours: no claim on the tight constant). Perugachi-Diaz et al. 2021."""

    def __init__(self):
        super().__init__()
        self.raw_beta = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: Tensor) -> Tensor:
        beta = F.softplus(self.raw_beta)
        both = torch.cat([x, -x], dim=1)
        return both * torch.sigmoid(beta * both) / (1.1 * math.sqrt(2.0))


def conv_net(
    channels: int, width: int, coeff: float, activation: str, preact: bool = False
) -> nn.Sequential:
    """i-ResNet / Residual Flows' g: 3x3 (C -> width) -> act -> 1x1 (width -> width) -> act ->
    3x3 (width -> C), each spectrally normalised to ``coeff``; act = ELU (i-ResNet) or LipSwish
    (Residual Flows). ``preact``: one more act before the first convolution (the Residual Flows
    code's ``preact``, in every block but the network's first)."""
    act = {"elu": nn.ELU, "lipswish": LipSwish}[activation]
    return nn.Sequential(
        *([act()] if preact else []),
        SpectralNormConv2d(channels, width, 3, coeff),
        act(),
        SpectralNormConv2d(width, width, 1, coeff),
        act(),
        SpectralNormConv2d(width, channels, 3, coeff),
    )


class DenseNet(nn.Module):
    """i-DenseNet's g: ``depth`` dense layers x_{i+1} = [eta1 x_i, eta2 CLipSwish(conv3x3(x_i))]
    (eta1^2 + eta2^2 = 1, learned), then a spectrally normalised 1x1 convolution back to C
    channels. Each map is 1-Lipschitz before the ``coeff`` of the convolutions.

    Args:
        channels: C.
        growth: channels of each dense layer's convolution (2 x growth after CLipSwish).
        depth: dense layers.
        coeff: the convolutions' operator-norm bound.
    """

    def __init__(self, channels: int, growth: int, depth: int, coeff: float):
        super().__init__()
        self.convs = nn.ModuleList()
        self.mix = nn.ParameterList()
        width = channels
        for _ in range(depth):
            self.convs.append(SpectralNormConv2d(width, growth, 3, coeff))
            self.mix.append(nn.Parameter(torch.tensor([1.0, 1.0])))
            width += 2 * growth
        self.act = CLipSwish()
        self.out = SpectralNormConv2d(width, channels, 1, coeff)

    def forward(self, x: Tensor) -> Tensor:
        for conv, mix in zip(self.convs, self.mix, strict=True):
            eta = mix / mix.norm()
            x = torch.cat([eta[0] * x, eta[1] * self.act(conv(x))], dim=1)
        return self.out(x)


class ResidualBlock(Bijection):
    """y = x + g(x), g contractive. x, y [B, C, H, W]; logdet [B] = log det(I + J_g(x)), by
    ``logdet_mode`` (module docstring); inverse by the fixed-point iteration x <- y - g(x) until
    max |change| <= ``tol`` or the dtype's resolution (`tolerance`); a `RuntimeError` naming the
    reached change after ``max_iter``.

    Args:
        net: g, a module [B, C, H, W] -> [B, C, H, W] with Lipschitz constant < 1.
        logdet_mode: ``"exact"``, ``"power_series"`` or ``"russian_roulette"``.
        terms: series terms always taken (power series: all of them).
        p: the Russian roulette's geometric parameter (the mean extra terms are (1 - p) / p).
        tol, max_iter: the fixed-point inverse's stopping rule.
    """

    def __init__(
        self,
        net: nn.Module,
        logdet_mode: str = "russian_roulette",
        terms: int = 2,
        p: float = 0.5,
        tol: float = 1e-10,
        max_iter: int = 500,
    ):
        super().__init__()
        if logdet_mode not in LOGDET_MODES:
            raise ValueError(f"logdet_mode must be one of {LOGDET_MODES}, got {logdet_mode!r}")
        self.net, self.logdet_mode, self.terms, self.p = net, logdet_mode, terms, p
        self.tol, self.max_iter = tol, max_iter
        self.last_inverse: dict[str, float] = {}

    @property
    def logdet_estimated(self) -> bool:
        return self.logdet_mode != "exact"

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, None, type(self).__name__)
        if self.logdet_mode == "exact":
            return x + self.net(x), self.exact_logdet(x)
        training = torch.is_grad_enabled()
        with torch.enable_grad():  # the series needs vector-Jacobian products, also in evaluation
            x_in = x if x.requires_grad else x.detach().requires_grad_()
            gx = self.net(x_in)
            logdet = self.series_logdet(x_in, gx, differentiable=training)
        if not training:
            gx, logdet = gx.detach(), logdet.detach()
        return x + gx, logdet

    def exact_logdet(self, x: Tensor) -> Tensor:
        """slogdet(I + J_g) of each example's dense [D, D] Jacobian."""
        out = []
        for example in x:
            jac = torch.autograd.functional.jacobian(
                lambda v: self.net(v[None])[0], example, create_graph=torch.is_grad_enabled()
            ).reshape(example.numel(), example.numel())
            eye = torch.eye(example.numel(), dtype=x.dtype, device=x.device)
            out.append(torch.linalg.slogdet(eye + jac).logabsdet)
        return torch.stack(out) if out else x.new_zeros(0)

    def series_logdet(self, x: Tensor, gx: Tensor, differentiable: bool = True) -> Tensor:
        """sum_k (-1)^(k+1) v^T J^k v / k / P(term k is taken), v ~ N(0, I) per example;
        ``differentiable``: keep the graph for the gradient of the estimate."""
        v = torch.randn_like(x)
        n = self.terms
        if self.logdet_mode == "russian_roulette":
            extra = int(torch.distributions.Geometric(probs=torch.tensor(self.p)).sample())
            n += extra
        w, total = v, x.new_zeros(len(x))
        for k in range(1, n + 1):
            (w,) = torch.autograd.grad(gx, x, w, retain_graph=True, create_graph=differentiable)
            term = (w * v).flatten(1).sum(1) * ((-1) ** (k + 1) / k)
            total = total + term / self.taken_probability(k)
        return total

    def taken_probability(self, k: int) -> float:
        """P(term k is in the sampled series): 1 for k <= terms, (1 - p)^(k - terms) after."""
        if self.logdet_mode != "russian_roulette" or k <= self.terms:
            return 1.0
        return (1.0 - self.p) ** (k - self.terms)

    def tolerance(self, z: Tensor) -> float:
        """``tol``, or what the dtype can resolve when that is larger: 16 eps max(1, max|z|)
        (float32 cannot reach 1e-10)."""
        scale = max(1.0, float(z.detach().abs().max())) if z.numel() else 1.0
        return max(self.tol, 16 * torch.finfo(z.dtype).eps * scale)

    def inverse(self, z: Tensor) -> Tensor:
        """The fixed point of x = z - g(x). With gradients enabled the iteration is unrolled:
        its derivative sum_j (-J_g)^j converges to (I + J_g)^-1 as the value converges."""
        x, change = z.clone(), float("inf")
        tol = self.tolerance(z)
        for step in range(1, self.max_iter + 1):
            new = z - self.net(x)
            change = float((new - x).detach().abs().max()) if new.numel() else 0.0
            x = new
            if change <= tol:
                self.last_inverse = {"iterations": step, "change": change}
                return x
        raise RuntimeError(
            f"{type(self).__name__}: the fixed-point inverse did not reach tol {tol:g} in "
            f"{self.max_iter} iterations (last change {change:.3g}); is g contractive?"
        )


def iresnet_block(channels: int, width: int, coeff: float = 0.9, **options) -> ResidualBlock:
    """i-ResNet's block: ELU conv net, truncated power series (5 terms)."""
    options = {"logdet_mode": "power_series", "terms": 5, **options}
    return ResidualBlock(conv_net(channels, width, coeff, "elu"), **options)


def residual_flow_block(
    channels: int, width: int, coeff: float = 0.98, preact: bool = True, **options
) -> ResidualBlock:
    """Residual Flows' block: LipSwish conv net, Russian-roulette estimator. ``preact``: a
    LipSwish before the first convolution, as in every block of the authors' network but the
    first (rtqichen/residual-flows resflows/resflow.py, ``_resblock``: ``if not first_resblock
    and preact``; ``--preact True`` and ``--first-resblock True`` in train_img.py)."""
    options = {"logdet_mode": "russian_roulette", **options}
    return ResidualBlock(conv_net(channels, width, coeff, "lipswish", preact), **options)


def idensenet_block(
    channels: int, growth: int, depth: int = 3, coeff: float = 0.98, **options
) -> ResidualBlock:
    """i-DenseNet's block: dense CLipSwish net, Russian-roulette estimator."""
    options = {"logdet_mode": "russian_roulette", **options}
    return ResidualBlock(DenseNet(channels, growth, depth, coeff), **options)
