"""Discriminators by name (:data:`DISCRIMINATORS`): the waveform (WaveGAN), multi-scale and multi-resolution
STFT ones for raw audio live here, the dense and latent ones in dense.py and twostage.py.

Every one follows the interface in :mod:`djenerator.models`: ``D(x, cond=None) -> (logits, features)``.
``model.dim`` scales their width; with tempo conditioning each adds a projection term to its logits, and
with ``model.beat_grid`` the multi-scale and STFT ones also read the beat grid. Sources and details:
docs/how-it-works.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, ConfigError
from .dense import DenseDiscriminator
from .grid import GRID_DIM, beat_grid, tempo_column
from .wavegan import BASE_FRAMES, KERNEL, PADDING, STRIDE, wavegan_layers


class PhaseShuffle(nn.Module):
    """Shift each example in time by its own random k in [-n, n], filling the edge by reflection.

    Active only in training mode (identity in eval mode). The shifts last drawn are kept in
    ``last_shift`` (a (B,) tensor) for inspection.
    """

    def __init__(self, n: int):
        super().__init__()
        self.n = int(n)
        self.last_shift: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.n <= 0:
            return x
        b, c, t = x.shape
        n = min(self.n, t - 1)
        if n <= 0:
            return x
        k = torch.randint(-n, n + 1, (b,), device=x.device)
        self.last_shift = k
        padded = F.pad(x, (n, n), mode="reflect")
        # out[..., i] = x[..., i - k] = padded[..., i - k + n]
        idx = torch.arange(t, device=x.device).unsqueeze(0) + (n - k).unsqueeze(1)
        return padded.gather(2, idx.unsqueeze(1).expand(b, c, t))

    def extra_repr(self) -> str:
        return f"n={self.n}"


class _Grid:
    """The beat grid as input channels for a model's (sample rate, bpm range); see :func:`_grid_of`."""

    def __init__(self, cfg: Config):
        self.sample_rate, self.bpm_range = cfg.data.sample_rate, tuple(cfg.model.bpm_range)

    def __call__(self, cond: torch.Tensor | None, b: int, n: int, rate: float, ref: torch.Tensor) -> torch.Tensor:
        if cond is None or cond.dim() != 2:  # unconditional judgement: no clock
            return ref.new_zeros(b, GRID_DIM, n)
        return beat_grid(cond, n, rate, self.bpm_range).to(ref)


def _grid_of(cfg: Config) -> _Grid | None:
    return _Grid(cfg) if cfg.model.beat_grid else None


class _Projection(nn.Module):
    """Projection-discriminator term <embed(cond), h> for a continuous condition (normalised tempo)."""

    def __init__(self, features: int):
        super().__init__()
        self.embed = nn.Linear(1, features)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        e = self.embed(tempo_column(cond).to(h.dtype))
        return (e * h).sum(dim=1, keepdim=True)


def _pad_to(x: torch.Tensor, n: int) -> torch.Tensor:
    return F.pad(x, (0, n - x.shape[-1])) if x.shape[-1] < n else x


# --- WaveGAN discriminator -----------------------------------------------------------------------
class WaveDiscriminator(nn.Module):
    """WaveGAN discriminator: k strided Conv1d (kernel 25, stride 4, padding 11) with channels
    1 -> d -> 2d -> 4d -> 8d -> 16d (-> 32d for 65536 samples), LeakyReLU 0.2, phase shuffle between
    layers (not after the last), flatten -> Linear -> one logit. Returns ((B, 1), features).

    At ``data.clip_samples`` it is exactly the paper's network (16 frames reach the dense layer).
    Other input lengths are accepted too: the last activation is average-pooled to 16 frames and
    inputs shorter than 4^k samples are zero-padded.
    """

    def __init__(self, cfg: Config):
        super().__init__()
        m = cfg.model
        k = wavegan_layers(cfg.data.clip_samples)
        d = m.dim
        self.min_samples = STRIDE**k
        self.convs = nn.ModuleList()
        self.shuffles = nn.ModuleList()
        ch = 1
        for i in range(k):
            out = d * 2**i
            self.convs.append(nn.Conv1d(ch, out, KERNEL, STRIDE, padding=PADDING))
            self.shuffles.append(PhaseShuffle(m.phase_shuffle) if i < k - 1 else nn.Identity())
            ch = out
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.flat_features = BASE_FRAMES * ch
        self.fc = nn.Linear(self.flat_features, 1)
        self.proj = _Projection(self.flat_features) if m.tempo_conditioning else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = _pad_to(x, self.min_samples)
        feats = []
        for conv, shuffle in zip(self.convs, self.shuffles):
            h = self.act(conv(h))
            feats.append(h)
            h = shuffle(h)
        if h.shape[-1] != BASE_FRAMES:
            h = F.adaptive_avg_pool1d(h, BASE_FRAMES)
        h = h.flatten(1)
        logits = self.fc(h)
        if self.proj is not None and cond is not None:
            logits = logits + self.proj(h, cond)
        return logits, feats


# --- multi-scale (MelGAN / HiFi-GAN MSD) ---------------------------------------------------------
def _groups(cin: int, cout: int) -> int:
    return math.gcd(math.gcd(max(cin // 4, 1), cin), cout)


class ScaleDiscriminator(nn.Module):
    """MelGAN's NLayerDiscriminator with widths from d: [d/4, d, 4d, 16d, 16d] (d = 64 gives MelGAN's
    16..1024), grouped strided convs (kernel 41, stride 4), LeakyReLU 0.2, patch logits (B, 1, frames)."""

    def __init__(self, d: int, tempo_conditioning: bool = False, grid: _Grid | None = None, stride: int = 1):
        super().__init__()
        widths = [max(d // 4, 1), max(d, 1), 4 * d, 16 * d, 16 * d]
        self.grid, self.stride = grid, stride  # stride: input samples per sample at this scale
        layers = [nn.Conv1d(1 + (GRID_DIM if grid else 0), widths[0], 15, 1, padding=7, padding_mode="reflect")]
        with torch.no_grad():
            layers[0].weight[:, 1:].zero_()  # the grid starts switched off: D first learns the audio
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers.append(nn.Conv1d(cin, cout, 41, 4, padding=20, groups=_groups(cin, cout)))
        layers.append(nn.Conv1d(widths[-1], widths[-1], 5, 1, padding=2))
        self.convs = nn.ModuleList(layers)
        self.post = nn.Conv1d(widths[-1], 1, 3, 1, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.proj = _Projection(widths[-1]) if tempo_conditioning else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, feats = x, []
        if self.grid is not None:
            h = torch.cat([h, self.grid(cond, x.shape[0], x.shape[-1], self.grid.sample_rate / self.stride, x)], dim=1)
        for conv in self.convs:
            h = self.act(conv(h))
            feats.append(h)
        logits = self.post(h)
        if self.proj is not None and cond is not None:
            logits = logits + self.proj(h.mean(-1), cond).unsqueeze(-1)
        return logits, feats


class MultiScaleDiscriminator(nn.Module):
    """Three :class:`ScaleDiscriminator` on x, pool(x), pool(pool(x)) with AvgPool1d(4, 2, padding=2).

    Returns logits (B, 3 * F): each scale's patch logits, resampled (nearest) to the frame count F of the
    full-rate scale so that every scale weighs the same in the losses, then concatenated. Any input
    length works (inputs shorter than 16 samples are zero-padded).
    """

    n_scales = 3

    def __init__(self, cfg: Config):
        super().__init__()
        d = max(cfg.model.dim, 1)
        grid = _grid_of(cfg)
        self.discs = nn.ModuleList(ScaleDiscriminator(d, cfg.model.tempo_conditioning, grid, 2**i)
                                   for i in range(self.n_scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2, count_include_pad=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = _pad_to(x, 16)
        logits, feats = [], []
        for i, disc in enumerate(self.discs):
            if i > 0:
                x = _pad_to(self.pool(x), 16)
            lg, f = disc(x, cond)
            if logits and lg.shape[-1] != logits[0].shape[-1]:
                lg = F.interpolate(lg, size=logits[0].shape[-1], mode="nearest")
            logits.append(lg.flatten(1))
            feats.extend(f)
        return torch.cat(logits, dim=1), feats


# --- multi-resolution STFT (UnivNet MRD / DAC) ---------------------------------------------------
class STFTDiscriminator(nn.Module):
    """One resolution: STFT (hann, hop n_fft/4, normalised) -> (real, imag) as 2 channels laid out as
    (B, 2, frames, bins) -> Conv2d 3x9 with frequency strides 4, 2, 2 -> Conv2d 3x3 -> Conv2d 3x3 to patch
    logits. The layout and kernels follow descript-audio-codec's MRD (without its band split; a frequency
    stride of 4 instead of 2 in the first layer halves the cost on CPU); width ``ch``."""

    def __init__(self, n_fft: int, ch: int, tempo_conditioning: bool = False, grid: _Grid | None = None):
        super().__init__()
        self.n_fft, self.hop = int(n_fft), max(int(n_fft) // 4, 1)
        self.grid = grid
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.convs = nn.ModuleList([
            nn.Conv2d(2, ch, (3, 9), (1, 4), padding=(1, 4)),
            nn.Conv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
            nn.Conv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
            nn.Conv2d(ch, ch, (3, 3), (1, 1), padding=(1, 1)),
        ])
        self.post = nn.Conv2d(ch, 1, (3, 3), (1, 1), padding=(1, 1))
        # the grid, constant over frequency, enters the first layer as a per-frame bias (what a Conv2d over
        # grid channels broadcast to every bin computes, at 1/bins of the cost)
        self.grid_in = nn.Conv1d(GRID_DIM, ch, 3, padding=1) if self.grid else None
        if self.grid_in is not None:  # the grid starts switched off: D first learns the audio
            nn.init.zeros_(self.grid_in.weight)
            nn.init.zeros_(self.grid_in.bias)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.proj = _Projection(ch) if tempo_conditioning else None

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_to(x.reshape(x.shape[0], -1), self.n_fft)
        spec = torch.stft(x.float(), self.n_fft, self.hop, window=self.window.float(), center=True,
                          normalized=True, return_complex=True)  # (B, bins, frames)
        return torch.view_as_real(spec).permute(0, 3, 2, 1).to(x.dtype)  # (B, 2, frames, bins)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, feats = self.spectrogram(x), []
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i == 0 and self.grid_in is not None:
                g = self.grid(cond, h.shape[0], h.shape[2], self.grid.sample_rate / self.hop, h)
                h = h + self.grid_in(g)[:, :, :, None]
            h = self.act(h)
            feats.append(h)
        logits = self.post(h)
        if self.proj is not None and cond is not None:
            logits = logits + self.proj(h.mean((2, 3)), cond)[:, :, None, None]
        return logits, feats


class MultiResolutionSTFTDiscriminator(nn.Module):
    """One :class:`STFTDiscriminator` per n_fft in ``cfg.model.stft_ffts`` (width max(d/2, 4); d = 64 gives
    DAC's 32). Logits: every resolution's patch logits flattened and concatenated, (B, K); since the
    frequency axis is strided 16x, frames x bins is about the same at every FFT size, so resolutions weigh
    about equally. Any input length works (short inputs are zero-padded to the FFT size)."""

    def __init__(self, cfg: Config):
        super().__init__()
        ch = max(cfg.model.dim // 2, 4)
        grid = _grid_of(cfg)
        self.discs = nn.ModuleList(STFTDiscriminator(n, ch, cfg.model.tempo_conditioning, grid) for n in cfg.model.stft_ffts)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        logits, feats = [], []
        for disc in self.discs:
            lg, f = disc(x, cond)
            logits.append(lg.flatten(1))
            feats.extend(f)
        return torch.cat(logits, dim=1), feats


class MultiDiscriminator(nn.Module):
    """Several discriminators judging the same input; the losses sum over them."""

    def __init__(self, discs: dict[str, nn.Module]):
        super().__init__()
        self.discs = nn.ModuleDict(discs)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(x, cond) for d in self.discs.values()]


@dataclass(frozen=True)
class Disc:
    """A discriminator (a name in ``model.discriminators``) and what its input is."""

    build: Callable[[Config], nn.Module]
    latent: bool = False  # judges the two-stage model's latent sequences, not audio
    decodes: bool = False  # hears latents through the run's frozen decoder: stage 2 lends it with bind(codec)


def _dense(cfg: Config) -> nn.Module:
    return DenseDiscriminator(cfg.data.clip_samples, cfg.model.dense_hidden, cfg.model.dropout)


def _latent(cfg: Config) -> nn.Module:
    from .twostage import LatentDiscriminator

    return LatentDiscriminator(cfg)


def _decoded(cfg: Config) -> nn.Module:
    from .twostage import DecodedCritic

    return DecodedCritic(cfg)


DISCRIMINATORS: dict[str, Disc] = {
    "dense": Disc(_dense),
    "wave": Disc(WaveDiscriminator),
    "msd": Disc(MultiScaleDiscriminator),
    "stft": Disc(MultiResolutionSTFTDiscriminator),
    "latent": Disc(_latent, latent=True),
    "decoded": Disc(_decoded, latent=True, decodes=True),
}


def build_discriminator(cfg: Config) -> MultiDiscriminator:
    """The discriminators named in ``model.discriminators``, with spectral norm on every layer if asked."""
    unknown = [n for n in cfg.model.discriminators if n not in DISCRIMINATORS]
    if unknown:
        raise ConfigError(f"unknown discriminator '{unknown[0]}' (choose from: {', '.join(DISCRIMINATORS)})")
    disc = MultiDiscriminator({name: DISCRIMINATORS[name].build(cfg) for name in cfg.model.discriminators})
    if cfg.model.spectral_norm:
        for mod in disc.modules():
            if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(mod)
    return disc
