"""Generators and discriminators, built by name from the config: :data:`ARCHS` here, ``DISCRIMINATORS`` in
discriminators.py.

Interfaces every model follows:
- generator: ``G(z, cond=None) -> audio`` with z of shape (B, latent_dim) and audio (B, 1, T) in [-1, 1];
  ``cond`` is an optional (B, 2) tensor: normalised tempo in [0, 1] and beat phase in [0, 1) (NaN when
  unknown; only the beat-grid models read the phase), made by :func:`.grid.tempo_cond`.
- discriminator: ``D(x, cond=None) -> (logits, features)``; logits any shape starting with B,
  features a list of intermediate activations (for feature matching).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..config import Config, ConfigError
from .dense import DenseGenerator
from .discriminators import DISCRIMINATORS, MultiDiscriminator, build_discriminator
from .grid import tempo_cond


@dataclass(frozen=True)
class Arch:
    """A generator family (``model.arch``): how to build it and what the rest of the program may assume of it."""

    build: Callable[[Config], nn.Module]
    longform: bool = False  # renders pieces of any length (stream.py); otherwise one window of data.clip_samples
    beat_grid: bool = False  # reads the beat grid (model.beat_grid)
    two_stage: bool = False  # an autoencoder first, then a GAN judged in its latent space (codec_train.py)


def _dense(cfg: Config) -> nn.Module:
    m = cfg.model
    return DenseGenerator(m.latent_dim, cfg.data.clip_samples, m.dense_hidden, m.dropout, m.batchnorm)


def _wavegan(cfg: Config) -> nn.Module:
    from .wavegan import WaveGANGenerator

    return WaveGANGenerator(cfg)


def _spectral(cfg: Config) -> nn.Module:
    from .spectral import SpectralGenerator

    return SpectralGenerator(cfg)


def _twostage(cfg: Config) -> nn.Module:
    from .twostage import TwoStageGenerator

    return TwoStageGenerator(cfg)


ARCHS: dict[str, Arch] = {
    "dense": Arch(_dense),
    "wavegan": Arch(_wavegan),
    "spectral": Arch(_spectral, longform=True, beat_grid=True),
    "twostage": Arch(_twostage, longform=True, two_stage=True),
}


def arch_of(name: str) -> Arch:
    if name not in ARCHS:
        raise ConfigError(f"unknown generator architecture '{name}' (choose from: {', '.join(ARCHS)})")
    return ARCHS[name]


def build_generator(cfg: Config) -> nn.Module:
    return arch_of(cfg.model.arch).build(cfg)


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


__all__ = ["ARCHS", "Arch", "DISCRIMINATORS", "MultiDiscriminator", "arch_of", "build_generator", "build_discriminator",
           "tempo_cond", "count_parameters"]
