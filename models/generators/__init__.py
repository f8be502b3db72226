"""Generators that are not flows: the Deep Fourier Machines generator (`dfm.py`) and the
baselines of its FID table, VAE and WAE (`vae.py`) and DCGAN (`dcgan.py`).

`GENERATORS`: training objective (a row's ``task:``) -> registry name -> constructor, one name
per table row, as `models.registry.MODELS` is for flows.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from models.generators.dcgan import DCGAN
from models.generators.vae import VAE, WAE
from models.names import register

CIFAR_SHAPE = (3, 32, 32)

# Deep Fourier Machines Table 5.2 (CIFAR-10 FID). The thesis gives no configuration for them:
# VAE and WAE share the WAE paper's DCGAN-like encoder/decoder at 32x32 with latent 128 (the
# RAE paper's CIFAR-10 size): 31.0M (VAE; its encoder head is twice the WAE's) and 30.5M (WAE);
# DCGAN is the common 32x32 setup of Radford et al., latent 100, width 64: 3.45M generator +
# 0.66M discriminator.
GENERATORS: dict[str, dict[str, Callable[..., nn.Module]]] = {
    "vae": register(
        {}, "VAE", vae_cifar10=partial(VAE, shape=CIFAR_SHAPE, latent=128, width=128, depth=4)
    ),
    "wae": register(
        {}, "WAE", wae_cifar10=partial(WAE, shape=CIFAR_SHAPE, latent=128, width=128, depth=4)
    ),
    "gan": register(
        {}, "GAN", dcgan_cifar10=partial(DCGAN, shape=CIFAR_SHAPE, latent=100, width=64)
    ),
}

__all__ = ["DCGAN", "GENERATORS", "VAE", "WAE"]
