"""Generators and discriminators, built by name from the config.

Interfaces every model follows:
- generator: ``G(z, cond=None) -> audio`` with z of shape (B, latent_dim) and audio (B, 1, T) in [-1, 1];
  ``cond`` is an optional (B, 2) tensor: normalised tempo in [0, 1] and beat phase in [0, 1) (NaN when
  unknown; only the beat-grid models read it, see grid.py).
- discriminator: ``D(x, cond=None) -> (logits, features)``; logits any shape starting with B,
  features a list of intermediate activations (for feature matching).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import Config, ConfigError
from .dense import DenseDiscriminator, DenseGenerator


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


def tempo_cond(bpm: torch.Tensor, cfg: Config, beat: torch.Tensor | None = None) -> torch.Tensor | None:
    """BPM (B,) and beat phase (B,) -> the models' condition (B, 2), see the module docstring.

    A tempo outside ``model.bpm_range`` is moved by octaves into it where it fits (a 70 BPM track is a
    140 BPM one counted in eighths: the phase doubles with it), then clamped; unknown tempo (NaN) ->
    the middle of the range with an unknown phase."""
    if not cfg.model.tempo_conditioning:
        return None
    lo, hi = cfg.model.bpm_range
    bpm = bpm.double().clone()
    phase = torch.full_like(bpm, float("nan")) if beat is None else beat.double().clone()
    for _ in range(4):
        up = bpm * 2 <= hi
        low = bpm < lo
        bpm = torch.where(low & up, bpm * 2, bpm)
        phase = torch.where(low & up, torch.remainder(phase * 2, 1.0), phase)
        high = (bpm > hi) & (bpm / 2 >= lo)
        bpm = torch.where(high, bpm / 2, bpm)
        phase = torch.where(high, phase / 2, phase)
    c = ((bpm - lo) / (hi - lo)).clamp(0.0, 1.0)
    phase = torch.where(torch.isfinite(c), phase, torch.full_like(phase, float("nan")))
    return torch.stack([torch.nan_to_num(c, nan=0.5), phase], dim=1).float()


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
