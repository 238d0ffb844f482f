"""WaveGAN generator (Donahue, McAuley & Puckette, "Adversarial Audio Synthesis", ICLR 2019).

z (B, latent_dim) -> Linear -> (B, 16*mult*d, 16) -> ReLU -> k transposed 1-D convolutions
(kernel 25, stride 4, padding 11, output_padding 1), channels halving down to d and then 1, ReLU
between and tanh at the end. Each layer multiplies the length by 4, so the output has 16 * 4^k samples:
k = 5 gives the paper's 16384 samples (base width 16d), k = 6 its 65536 samples (base width 32d).
Any other length of that form (256, 1024, 4096, 262144, ...) works the same way.

The paper's shapes for d = 64 and 16384 samples: z(100) -> [16, 1024] -> [64, 512] -> [256, 256] ->
[1024, 128] -> [4096, 64] -> [16384, 1].
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import Config, ConfigError
from .grid import tempo_column


KERNEL, STRIDE, PADDING, OUTPUT_PADDING = 25, 4, 11, 1
BASE_FRAMES = 16  # length after the dense layer
COND_DIM = 16  # width of the tempo embedding concatenated to z


def wavegan_layers(clip_samples: int) -> int:
    """Number of stride-4 layers k with clip_samples == 16 * 4**k (k >= 1); ConfigError otherwise."""
    k, n = 0, BASE_FRAMES
    while n < clip_samples:
        n *= STRIDE
        k += 1
    if n != clip_samples or k < 1:
        ok = ", ".join(str(BASE_FRAMES * STRIDE**i) for i in range(2, 8))
        raise ConfigError(
            f"the WaveGAN models need data.clip_samples = 16 * 4^k; got {clip_samples} "
            f"(lengths that work: {ok}, ...; the paper uses 16384 and 65536)"
        )
    return k


class WaveGANGenerator(nn.Module):
    """``G(z, cond=None) -> (B, 1, clip_samples)`` in [-1, 1].

    With ``cfg.model.tempo_conditioning`` the normalised tempo (``cond[:, 0]``) in [0, 1] goes through a
    Linear embedding (1 -> 16) that is concatenated to z; when ``cond`` is omitted, 0.5 (the middle of
    ``model.bpm_range``) is used.
    """

    def __init__(self, cfg: Config):
        super().__init__()
        m = cfg.model
        self.latent_dim = m.latent_dim
        self.clip_samples = cfg.data.clip_samples
        self.n_layers = k = wavegan_layers(self.clip_samples)
        d = m.dim
        mult = 2 ** (k - 1)  # 16 for 16384 samples, 32 for 65536 (as in the paper)
        self.base_channels = mult * d
        self.tempo_conditioning = bool(m.tempo_conditioning)
        in_dim = m.latent_dim
        if self.tempo_conditioning:
            self.cond_embed = nn.Linear(1, COND_DIM)
            in_dim += COND_DIM
        self.fc = nn.Linear(in_dim, BASE_FRAMES * self.base_channels)
        layers: list[nn.Module] = []
        ch = self.base_channels
        for i in range(k):
            out = 1 if i == k - 1 else ch // 2
            layers.append(nn.ConvTranspose1d(ch, out, KERNEL, STRIDE, padding=PADDING, output_padding=OUTPUT_PADDING))
            layers.append(nn.Tanh() if i == k - 1 else nn.ReLU(inplace=True))
            ch = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.tempo_conditioning:
            if cond is None:
                cond = z.new_full((z.shape[0], 1), 0.5)
            z = torch.cat([z, self.cond_embed(tempo_column(cond).to(z.dtype))], dim=1)
        h = self.fc(z).view(z.shape[0], self.base_channels, BASE_FRAMES)
        return self.net(torch.relu(h))
