"""The convolutions of the Self Normalizing Flows experiments (Keller et al. 2021): the exact
conv (logdet by slogdet of the dense Toeplitz matrix) and SNF's self-normalizing conv.

Both build the dense D x D matrix of the conv (D = C H W), so they are for small images only
(the MNIST 9-layer flows of Inverse-Flow Table 4, D = 784); asked for a larger one they raise.

Initialisation (``init``): ``"authors"`` (default) is the SNF code base's
(``snf/layers/selfnorm.py``, ``SelfNormConv.reset_parameters``): a k x k kernel starts at the
Dirac (identity) kernel plus Xavier-normal noise with gain 0.01, i.e. N(0, s^2) with
s = 0.01 sqrt(2 / (fan_in + fan_out)) = 0.01 / (k sqrt(C)); a 1 x 1 kernel starts at a random
orthogonal matrix (Q of the QR of a standard normal C x C matrix); the bias is N(0, t^2) with t
the sample standard deviation of the drawn Xavier noise. ``"ours"`` is the earlier choice of
this code base: Dirac plus N(0, 0.01^2) for every kernel size and a zero bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.core import Bijection, check_image, dense_matrix

MAX_DENSE_DIMS = 4096
INITS = ("authors", "ours")
GRADIENT_RULES = ("authors", "paper")


def identity_kernel(channels: int, kernel_size: int, noise: float) -> Tensor:
    """[C, C, k, k] Dirac kernel (identity map with zero padding) plus N(0, noise^2)."""
    weight = noise * torch.randn(channels, channels, kernel_size, kernel_size)
    weight[:, :, kernel_size // 2, kernel_size // 2] += torch.eye(channels)
    return weight


def xavier_std(channels: int, kernel_size: int, gain: float = 0.01) -> float:
    """Standard deviation of Xavier-normal noise on a [C, C, k, k] kernel:
    gain sqrt(2 / (fan_in + fan_out)) with fan_in = fan_out = C k^2."""
    return gain * (2.0 / (2 * channels * kernel_size**2)) ** 0.5


def snf_init(channels: int, kernel_size: int) -> tuple[Tensor, Tensor]:
    """The SNF code base's initial (weight [C, C, k, k], bias [C]); see the module docstring.

    The bias scale is the sample std of the Xavier noise (as drawn, also for a 1 x 1 kernel whose
    weight does not use it); with a single noise entry it falls back to the Xavier std."""
    noise = torch.randn(channels, channels, kernel_size, kernel_size)
    noise = noise * xavier_std(channels, kernel_size)
    if kernel_size == 1:
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        weight = q[:, :, None, None]
    else:
        weight = noise.clone()
        centre = kernel_size // 2
        weight[:, :, centre, centre] += torch.eye(channels)
    # a 0-dim tensor, not .item(): the same value, and a meta-device build needs no values
    bias_std = noise.std() if noise.numel() > 1 else xavier_std(channels, kernel_size)
    return weight, bias_std * torch.randn(channels)


class ExactConv2d(Bijection):
    """k x k conv with zero padding (k odd). x [B,C,H,W] -> z = W * x + b;
    logdet = log|det J| of the dense [D, D] matrix J (exact, O(D^3)); inverse by dense solve.

    ``init``: ``"authors"`` (SNF code base, default) or ``"ours"``; see the module docstring.
    A singular J raises ``ValueError``; D above ``max_dims`` raises before any work.

    Args:
        channels: C.
        kernel_size: k (odd).
        max_dims: largest D = C H W for which the dense J is built.
        init: ``authors`` or ``ours`` (module docstring).

    References:
        Keller, Peters, Jaini, Hoogeboom, Forre & Welling, "Self Normalizing Flows", ICML 2021
            (arXiv:2011.07248).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        max_dims: int = MAX_DENSE_DIMS,
        init: str = "authors",
    ):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"{type(self).__name__} needs an odd kernel size, got {kernel_size}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose from {INITS}")
        self.channels, self.max_dims, self.init = channels, max_dims, init
        if init == "authors":
            weight, bias = snf_init(channels, kernel_size)
        else:
            weight, bias = identity_kernel(channels, kernel_size, 0.01), torch.zeros(channels)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)

    def conv(self, x: Tensor, weight: Tensor | None = None) -> Tensor:
        """The linear part (no bias) of the conv."""
        weight = self.weight if weight is None else weight
        return F.conv2d(x, weight, padding=weight.shape[-1] // 2)

    def jacobian(self, shape: tuple[int, ...], like: Tensor, weight: Tensor | None = None):
        """Dense [D, D] matrix of the conv on [*shape] images."""
        d = shape[0] * shape[1] * shape[2]
        if d > self.max_dims:
            raise ValueError(
                f"{type(self).__name__} builds the dense {d} x {d} matrix of the conv for input "
                f"{tuple(shape)}; that exceeds max_dims={self.max_dims}. Use it on small images "
                "only (e.g. MNIST 1x28x28, D = 784) or pass a larger max_dims."
            )
        return dense_matrix(lambda v: self.conv(v, weight), shape, like)

    def exact_logdet(self, x: Tensor) -> Tensor:
        if self.weight.shape[-1] == 1:  # a 1x1 conv: H W log|det W|, no dense matrix needed
            sign, logabsdet = torch.linalg.slogdet(self.weight[:, :, 0, 0])
            logabsdet = x.shape[2] * x.shape[3] * logabsdet
        else:
            sign, logabsdet = torch.linalg.slogdet(self.jacobian(tuple(x.shape[1:]), x))
        if sign == 0 or not torch.isfinite(logabsdet):
            raise ValueError(f"{type(self).__name__}: the conv is singular (not invertible)")
        return logabsdet

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, type(self).__name__)
        z = self.conv(x) + self.bias[:, None, None]
        return z, self.exact_logdet(x).expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, f"{type(self).__name__}.inverse")
        z = z - self.bias[:, None, None]
        if self.weight.shape[-1] == 1:
            return F.conv2d(z, torch.linalg.inv(self.weight[:, :, 0, 0])[:, :, None, None])
        jac = self.jacobian(tuple(z.shape[1:]), z)
        return torch.linalg.solve(jac, z.flatten(1).T).T.reshape(z.shape)


def flip_kernel(weight: Tensor) -> Tensor:
    """The kernel of the transposed conv: spatially flipped, channels swapped."""
    return weight.flip(2, 3).transpose(0, 1)


class _AuthorsLinear(torch.autograd.Function):
    """z_lin = W * x (value of an ordinary conv, padding k // 2) with SNF's released backward for
    the likelihood term. Given g = dL/dz_lin [B, C, H, W]:

    - dL/dx = W^T g (the ordinary input gradient, conv_transpose of g with W),
    - dL/dW = (g x^T) / 2 (half the ordinary weight gradient),
    - dL/dR = -(dL/dx) (W x)^T / 2, as a gradient on R's [C, C, k, k] kernel: the ordinary
      gradient of <-(dL/dx) / 2, R * z_lin>.

    The log-det halves of the rule (-flip(R) * counts / 2 on W, + flip(W) * counts / 2 on R) are
    not here: `SelfNormConv2d` puts them in a surrogate logdet so that they scale with whatever
    the loss does with logdets.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, inverse_weight: Tensor) -> Tensor:
        linear = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
        ctx.save_for_backward(x, weight, inverse_weight, linear)
        return linear

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, inverse_weight, linear = ctx.saved_tensors
        pad = weight.shape[-1] // 2
        grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, padding=pad)
        grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, grad, padding=pad) / 2
        grad_r = -torch.nn.grad.conv2d_weight(linear, inverse_weight.shape, grad_x, padding=pad) / 2
        return grad_x, grad_w, grad_r


class SelfNormConv2d(ExactConv2d):
    """SNF's self-normalizing conv. x [B,C,H,W] -> z = W * x + b, with a learned approximate
    inverse R (a conv of the same size, initialised to `flip_kernel` of W).

    logdet: exact in value (as ExactConv2d) in evaluation. In training its value is 0 (so
    train/bpd of an SNF model omits these logdets; val/test BPD are exact) and its gradient
    replaces d log|det J_W| / dW = J_W^-T by J_R^T, which for a conv is ``flip_kernel(R)`` times
    ``counts`` (`tap_counts`: how many pixel pairs each tap links). With L the loss (a mean over
    the batch), delta_z = dL/dz and delta_x = W^T delta_z, the two ``gradient_rule`` values give

    - ``"authors"`` (default; the released code, ``snf/layers/selfnorm.py``,
      ``SelfNormConvFunc.backward`` of akandykeller/SelfNormalizingFlows):
      dL/dW = (delta_z x^T - flip(R) counts) / 2 and
      dL/dR = (-delta_x (W x)^T + flip(W) flip(counts)) / 2 (the likelihood gradient on R were
      W = R^-1 exactly, by the chain rule, halved like W's); the reconstruction loss is on the
      detached input (``SelfNormConv.add_recon_grad``: ``x = self.input.detach()``), so it trains
      W and R but sends no gradient to earlier layers;
    - ``"paper"`` (the rule as the paper writes the W update; this layer's behaviour before the
      authors' rule became the default): dL/dW = delta_z x^T - flip(R) counts, R learns from the
      reconstruction loss only, and that loss reaches the input.

    The bias gradient and dL/dx are the ordinary ones under both rules. The reconstruction loss
    ``||x - R(W x)||^2`` per example [B], times ``recon_weight`` (1 in SNF's CNN flows, 100 in its
    Glow), is the layer's `auxiliary_loss`; its gradients on W and R are the same under both
    rules. Sampling (inverse) uses the exact dense solve, as in the SNF experiments.

    Args:
        channels: C.
        kernel_size: k (odd).
        max_dims: largest D for the exact logdet in evaluation.
        recon_weight: weight of the reconstruction loss |R(W x) - x|^2 reported through
            ``auxiliary_loss``.
        gradient_rule: ``authors`` (the released code's update, default) or ``paper``.
        init: ``authors`` or ``ours``.

    References:
        Keller, Peters, Jaini, Hoogeboom, Forre & Welling, "Self Normalizing Flows", ICML 2021
            (arXiv:2011.07248).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        max_dims: int = MAX_DENSE_DIMS,
        recon_weight: float = 1.0,
        gradient_rule: str = "authors",
        init: str = "authors",
    ):
        if gradient_rule not in GRADIENT_RULES:
            raise ValueError(
                f"unknown gradient_rule {gradient_rule!r}; choose from {GRADIENT_RULES}"
            )
        super().__init__(channels, kernel_size, max_dims, init)
        self.recon_weight, self.gradient_rule = recon_weight, gradient_rule
        self.inverse_weight = nn.Parameter(flip_kernel(self.weight.detach()).clone())
        self._recon: Tensor | None = None

    def tap_counts(self, x: Tensor) -> Tensor:
        """[C, C, k, k]: how many (output, input) pixel pairs each tap links on x's size."""
        ones = x.new_ones(1, *x.shape[1:])
        pad = self.weight.shape[-1] // 2
        return torch.nn.grad.conv2d_weight(ones, self.weight.shape, ones, padding=pad)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, type(self).__name__)
        if not self.training:
            self._recon = None
            z = self.conv(x) + self.bias[:, None, None]
            return z, self.exact_logdet(x).expand(x.shape[0])
        counts = self.tap_counts(x)
        w_term = (self.weight * (flip_kernel(self.inverse_weight) * counts).detach()).sum()
        if self.gradient_rule == "paper":
            linear = self.conv(x)
            surrogate = w_term
            recon_input, recon_linear = x, linear
        else:
            linear = _AuthorsLinear.apply(x, self.weight, self.inverse_weight)
            r_grad = (flip_kernel(self.weight) * flip_kernel(counts)).detach()
            surrogate = (w_term - (self.inverse_weight * r_grad).sum()) / 2
            recon_input = x.detach()
            recon_linear = self.conv(recon_input)
        logdet = surrogate - surrogate.detach()
        recon = recon_input - self.conv(recon_linear, self.inverse_weight)
        self._recon = self.recon_weight * recon.pow(2).flatten(1).sum(1)
        return linear + self.bias[:, None, None], logdet.expand(x.shape[0])

    def auxiliary_loss(self) -> Tensor | None:
        return self._recon
