"""Spectral peaks as stage 1's latents carry them (round 23 of docs/two-stage.md).

A decoder that draws every STFT bin from a latent of 16 channels draws nearly the same fine structure for every
clip: the latent has no room for where the partials are. Here the encoder's side finds, in each of a few bands
spaced evenly in log-frequency, the strongest partial that stands out of its neighbourhood (its place in the band
and its level, two numbers); the decoder's side draws a Hann window's main lobe there. The bins between the lobes
are left to a smooth envelope (``mel_interp``). Pure functions of tensors.
"""
from __future__ import annotations

import math

import torch

BAND_HZ = (100.0, 5000.0)  # where the bands lie; above 5 kHz the envelope carries it
PROMINENCE = 1.0  # nepers a peak must stand above the median of its 9 neighbouring bins
LEVEL_CENTRE, LEVEL_SCALE = 2.0, 3.0  # a peak's log-magnitude (natural log) is squashed as tanh((l - 2) / 3)


def band_edges(sample_rate: int, n_fft: int, bands: int) -> torch.Tensor:
    """(bands + 1,) edges in (fractional) STFT bins, evenly spaced in log-frequency over ``BAND_HZ``."""
    lo, hi = (math.log(f * n_fft / sample_rate) for f in BAND_HZ)
    return torch.exp(torch.linspace(lo, hi, bands + 1, dtype=torch.float64)).float()


def _neighbourhood_median(lm: torch.Tensor, width: int = 9) -> torch.Tensor:
    """Running median over the last axis, edges padded by repetition."""
    pad = torch.nn.functional.pad(lm.reshape(-1, 1, lm.shape[-1]), (width // 2, width // 2), mode="replicate")
    return pad[:, 0].unfold(-1, width, 1).median(-1).values.reshape(lm.shape)


def band_peaks(mag: torch.Tensor, edges: torch.Tensor, prominence: float = PROMINENCE):
    """The strongest prominent peak of each band of STFT magnitudes (B, bins, frames): (its frequency in bins,
    parabolic on the log-magnitude; its log peak magnitude; whether the band has one), each (B, frames, bands)."""
    lm = torch.log(mag.transpose(1, 2).float() + 1e-7)
    a, b, c = lm[..., :-2], lm[..., 1:-1], lm[..., 2:]
    peak = (b > a) & (b >= c) & (b - _neighbourhood_median(lm)[..., 1:-1] > prominence)
    score = torch.where(peak, b, torch.full_like(b, -1e9))
    edges = edges.to(b.device)
    centre = torch.arange(1, b.shape[-1] + 1, dtype=edges.dtype, device=b.device)
    inband = (centre >= edges[:-1, None]) & (centre < edges[1:, None])  # (bands, bins - 2)
    top, i = torch.where(inband, score[..., None, :], torch.full_like(score[..., None, :], -2e9)).max(-1)
    al, be, ga = a.gather(-1, i), b.gather(-1, i), c.gather(-1, i)
    den = al - 2 * be + ga
    p = (0.5 * (al - ga) / torch.where(den.abs() > 1e-9, den, torch.ones_like(den))).clamp(-0.5, 0.5)
    freq = torch.minimum(torch.maximum(i.float() + 1 + p, edges[:-1]), edges[1:] - 1e-3)
    return freq, be - 0.25 * (al - ga) * p, top > -1e8


def peak_latents(freq: torch.Tensor, level: torch.Tensor, valid: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """``band_peaks`` (B, frames, bands) -> latents (B, 2 bands, frames) in [-1, 1]: each band's place (log-frequency
    within the band) then its squashed level. A band without a peak reads level -1 (silent) at the place it last
    had one, so a note's place holds between its frames."""
    lo, hi = edges[:-1].log(), edges[1:].log()
    place = 2 * (freq.log() - lo) / (hi - lo) - 1
    last = torch.where(valid, torch.arange(place.shape[1], device=place.device)[None, :, None], 0).cummax(1).values
    place = torch.where(valid.cumsum(1) > 0, place.gather(1, last), torch.zeros_like(place))
    level = torch.where(valid, torch.tanh((level - LEVEL_CENTRE) / LEVEL_SCALE), -torch.ones_like(level))
    return torch.cat([place, level], -1).transpose(1, 2)


def peaks_of_latents(z: torch.Tensor, edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``peak_latents``' inverse: (B, 2 bands, frames) -> (frequency in bins, peak magnitude), each (B, frames,
    bands); level -1 gives a magnitude of ~1e-4, nothing, and levels are read up to 0.9 (a magnitude of ~600, a
    full-scale sinusoid's 256 and then some), so a stage 2 that overshoots cannot blow a lobe up."""
    n = z.shape[1] // 2
    place, level = z[:, :n].transpose(1, 2).clamp(-1, 1), z[:, n:].transpose(1, 2)
    lo, hi = edges[:-1].log(), edges[1:].log()
    freq = torch.exp(lo + (place + 1) / 2 * (hi - lo))
    return freq, torch.exp(LEVEL_CENTRE + LEVEL_SCALE * torch.atanh(level.clamp(-0.999, 0.9)))


def hann_lobe(d: torch.Tensor) -> torch.Tensor:
    """Magnitude of a Hann window's transform ``d`` bins from its centre, 1 at 0; its main lobe only (|d| < 2)."""
    x = d.abs().clamp(max=2.0)
    near1 = (x - 1).abs() < 1e-3  # 0/0 at one bin: the limit is 1/2
    w = torch.where(near1, torch.full_like(x, 0.5), torch.sinc(x) / (1 - x * x).masked_fill(near1, 1.0))
    return w.abs() * (x < 2)


def render_lobes(freq: torch.Tensor, amp: torch.Tensor, bins: int) -> torch.Tensor:
    """Peaks at ``freq`` (fractional bins) with peak magnitudes ``amp``, both (B, F, K) -> the sum of their Hann
    main lobes (B, F, bins); each lobe touches the 4 bins within 2 of its centre."""
    idx = (freq.detach().floor().long()[..., None] + torch.arange(-1, 3, device=freq.device)).clamp(0, bins - 1)
    val = amp[..., None] * hann_lobe(idx.to(freq.dtype) - freq[..., None])
    return freq.new_zeros(*freq.shape[:-1], bins).scatter_add(-1, idx.flatten(-2), val.flatten(-2))


def mel_interp(sample_rate: int, bins: int, points: int) -> torch.Tensor:
    """(bins, points): linear interpolation on the mel scale from ``points`` values evenly spaced in mel (0 Hz to
    Nyquist) to every STFT bin. Rows sum to 1; a curve linear in mel is reproduced exactly."""
    f = torch.arange(bins, dtype=torch.float64) * (sample_rate / 2) / (bins - 1)
    m = 2595 * torch.log10(1 + f / 700)
    pos = m / m[-1] * (points - 1)
    lo = pos.floor().clamp(max=points - 2).long()
    w = pos - lo
    basis = torch.zeros(bins, points, dtype=torch.float64)
    basis[torch.arange(bins), lo] = 1 - w
    basis[torch.arange(bins), lo + 1] = w
    return basis.float()
