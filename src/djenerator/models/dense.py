"""The original design: fully connected generator and discriminator over a whole clip."""
from __future__ import annotations

import torch
from torch import nn


class DenseGenerator(nn.Module):
    """z -> [Linear, BatchNorm, LeakyReLU, Dropout]* -> Linear -> tanh, one clip of ``clip_samples``."""

    def __init__(self, latent_dim: int, clip_samples: int, hidden: list[int], dropout: float = 0.3, batchnorm: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h)]
            if batchnorm:
                layers += [nn.BatchNorm1d(h)]
            layers += [nn.LeakyReLU(0.2)]
            if dropout > 0:
                layers += [nn.Dropout(dropout)]
            width = h
        layers += [nn.Linear(width, clip_samples), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z).unsqueeze(1)


class DenseDiscriminator(nn.Module):
    """Clip -> [Linear, LeakyReLU, Dropout]* -> one logit; returns (logits, hidden features)."""

    def __init__(self, clip_samples: int, hidden: list[int], dropout: float = 0.3):
        super().__init__()
        self.layers = nn.ModuleList()
        width = clip_samples
        for h in reversed(hidden):
            self.layers.append(nn.Sequential(nn.Linear(width, h), nn.LeakyReLU(0.2), nn.Dropout(dropout) if dropout > 0 else nn.Identity()))
            width = h
        self.out = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = x.flatten(1)
        feats = []
        for layer in self.layers:
            h = layer(h)
            feats.append(h)
        return self.out(h), feats
