"""Generators and discriminators, built by name from the config.

Interfaces every model follows:
- generator: ``G(z, cond=None) -> audio`` with z of shape (B, latent_dim) and audio (B, 1, T) in [-1, 1];
  ``cond`` is an optional (B, 2) tensor: normalised tempo in [0, 1] and beat phase in [0, 1) (NaN when
  unknown; only the beat-grid models read the phase), made by :func:`.grid.tempo_cond`.
- discriminator: ``D(x, cond=None) -> (logits, features)``; logits any shape starting with B,
  features a list of intermediate activations (for feature matching).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import Config, ConfigError
from .dense import DenseDiscriminator, DenseGenerator
from .grid import tempo_cond


class MultiDiscriminator(nn.Module):
    """Several discriminators judging the same input; the losses sum over them."""

    def __init__(self, discs: dict[str, nn.Module]):
        super().__init__()
        self.discs = nn.ModuleDict(discs)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(x, cond) for d in self.discs.values()]


def build_generator(cfg: Config) -> nn.Module:
    m, T = cfg.model, cfg.data.clip_samples
    if m.arch == "dense":
        return DenseGenerator(m.latent_dim, T, m.dense_hidden, m.dropout, m.batchnorm)
    if m.arch == "wavegan":
        from .wavegan import WaveGANGenerator

        return WaveGANGenerator(cfg)
    if m.arch == "spectral":
        from .spectral import SpectralGenerator

        return SpectralGenerator(cfg)
    if m.arch == "twostage":
        from .twostage import TwoStageGenerator

        return TwoStageGenerator(cfg)
    raise ConfigError(f"unknown generator architecture '{m.arch}'")


def _build_one(name: str, cfg: Config) -> nn.Module:
    m, T = cfg.model, cfg.data.clip_samples
    if name == "dense":
        return DenseDiscriminator(T, m.dense_hidden, m.dropout)
    from . import discriminators as D

    if name == "latent":  # the two-stage model's discriminator judges codec latents, not audio
        from .twostage import LatentDiscriminator

        return LatentDiscriminator(cfg)

    builders = {"wave": D.WaveDiscriminator, "msd": D.MultiScaleDiscriminator, "stft": D.MultiResolutionSTFTDiscriminator}
    if name not in builders:
        raise ConfigError(f"unknown discriminator '{name}'")
    return builders[name](cfg)


def build_discriminator(cfg: Config) -> MultiDiscriminator:
    disc = MultiDiscriminator({name: _build_one(name, cfg) for name in cfg.model.discriminators})
    if cfg.model.spectral_norm:
        for mod in disc.modules():
            if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(mod)
    return disc


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


__all__ = ["MultiDiscriminator", "build_generator", "build_discriminator", "tempo_cond", "count_parameters"]
