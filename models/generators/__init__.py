"""Generators that are not flows: the Deep Fourier Machines generator (`dfm.py`) and the
baselines of its FID table, VAE and WAE (`vae.py`) and DCGAN (`dcgan.py`).

One registry (name -> constructor, one name per table row, as `models.registry.MODELS` is for
flows) per training objective: `DFM_MODELS`, `VAE_MODELS`, `WAE_MODELS`, `GAN_MODELS`
(`bench.tasks.TASK_SPECS` says which task reads which).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from models.generators.dcgan import DCGAN
from models.generators.dfm import FourierGenerator
from models.generators.vae import VAE, WAE
from models.names import register

CIFAR_SHAPE = (3, 32, 32)

# The Fourier Net generator is configured by each row's model_kwargs.
DFM_MODELS: dict[str, Callable[..., nn.Module]] = register(
    {}, "DFM generator", fourier_generator=FourierGenerator
)

# Deep Fourier Machines Table 5.2 (CIFAR-10 FID). The thesis gives no configuration for them:
# VAE and WAE share the WAE paper's DCGAN-like encoder/decoder at 32x32 with latent 128 (the
# RAE paper's CIFAR-10 size): 31.0M (VAE; its encoder head is twice the WAE's) and 30.5M (WAE);
# DCGAN is the common 32x32 setup of Radford et al., latent 100, width 64: 3.45M generator +
# 0.66M discriminator.
VAE_MODELS: dict[str, Callable[..., nn.Module]] = register(
    {}, "VAE", vae_cifar10=partial(VAE, shape=CIFAR_SHAPE, latent=128, width=128, depth=4)
)
WAE_MODELS: dict[str, Callable[..., nn.Module]] = register(
    {}, "WAE", wae_cifar10=partial(WAE, shape=CIFAR_SHAPE, latent=128, width=128, depth=4)
)
GAN_MODELS: dict[str, Callable[..., nn.Module]] = register(
    {}, "GAN", dcgan_cifar10=partial(DCGAN, shape=CIFAR_SHAPE, latent=100, width=64)
)

__all__ = ["DCGAN", "DFM_MODELS", "GAN_MODELS", "VAE", "VAE_MODELS", "WAE", "WAE_MODELS"]
