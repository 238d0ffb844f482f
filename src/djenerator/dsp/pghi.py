"""A phase for an STFT magnitude, from the magnitude alone: phase-gradient integration (Prusa, Balazs and
Sondergaard 2017, "A noniterative method for reconstruction of phase from STFT magnitude"; the real-time
form of Prusa and Holighaus 2017), with each frame's bins integrated from their own magnitude peak.

Under a Gaussian-like window the phase's gradient follows from the log-magnitude's: the phase step per hop of
bin k is 2 pi k hop / n_fft plus (hop n_fft / gamma) d log|S| / dk (a partial between two bins turns at its own
frequency in all of them), and the step per bin is -(gamma / hop n_fft) d log|S| / dframe (an attack aligns
the bins). gamma = 0.25645 n_fft^2 for a Hann window. Each frame, a magnitude peak takes its phase from the
frame before plus its step (trapezoid rule); the other bins take the peak's phase plus the steps across bins
that lead to it, as hill-climbing on the magnitude does. That keeps a partial's lobe coherent, which a running
sum per bin does not. Everything but the one gather per frame is computed for all frames at once.

Phases are in ``torch.stft(center=True)``'s convention (the window centred in its frame: (-1)^k per bin).
"""
from __future__ import annotations

import math

import torch

HANN_GAMMA = 0.25645  # gamma / n_fft^2 of the Gaussian that best matches a Hann window (Prusa et al.)


def _gradients(logmag: torch.Tensor, n_fft: int, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase steps per frame (B, K, T) and per bin (B, K, T) from a log-magnitude (B, K, T)."""
    gamma = HANN_GAMMA * n_fft ** 2
    k = torch.arange(logmag.shape[1], dtype=logmag.dtype, device=logmag.device)[:, None]
    d_bin = torch.gradient(logmag, dim=1)[0]
    d_frame = torch.gradient(logmag, dim=2)[0] if logmag.shape[2] > 1 else torch.zeros_like(logmag)
    per_frame = 2 * math.pi * hop * k / n_fft + hop * n_fft / gamma * d_bin
    per_bin = -gamma / (hop * n_fft) * d_frame
    return per_frame, per_bin


def peak_of_bin(mag: torch.Tensor) -> torch.Tensor:
    """For each bin of each frame (B, K, T), the index of the magnitude peak that climbing the magnitude from it
    reaches (a peak is its own)."""
    K = mag.shape[1]
    idx = torch.arange(K, device=mag.device)[None, :, None].expand_as(mag)
    up = torch.zeros_like(mag, dtype=torch.bool)  # the bin to the right is higher: climb right
    up[:, :-1] = mag[:, 1:] > mag[:, :-1]
    down = torch.zeros_like(up)  # else the bin to the left is higher: climb left
    down[:, 1:] = (mag[:, :-1] > mag[:, 1:]) & ~up[:, 1:]
    top = ~up & ~down
    big = torch.full_like(idx, K)
    # nearest top at or after k (climbing right), nearest top at or before k (climbing left)
    right = torch.flip(torch.cummin(torch.flip(torch.where(top, idx, big), [1]), 1).values, [1])
    left = torch.cummax(torch.where(top, idx, -torch.ones_like(idx)), 1).values
    return torch.where(up, right, torch.where(down, left, idx)).clamp(0, K - 1)


def pghi_phase(mag: torch.Tensor, n_fft: int, hop: int, phase: torch.Tensor | None = None,
               start: int = 0) -> torch.Tensor:
    """A phase (B, K, T) in radians for the magnitude ``mag`` (B, K, T). ``phase`` (B, K), if given, is taken as the
    phase of frame ``start - 1`` (a stream's hand-over: the frames before ``start`` are context, and the gradients
    at ``start`` still see them); otherwise the first frame's peaks start at 0."""
    logmag = torch.log(mag.clamp_min(1e-7))
    per_frame, per_bin = _gradients(logmag, n_fft, hop)
    peaks = peak_of_bin(mag)
    # across bins: F[k] = sum of trapezoid steps from bin 0 to k; a bin's offset from its peak is F[k] - F[peak]
    F = torch.cat([torch.zeros_like(per_bin[:, :1]), torch.cumsum((per_bin[:, 1:] + per_bin[:, :-1]) / 2, 1)], 1)
    # over frames: the peak's own step, the trapezoid of its step in this frame and the one before
    prev_step = torch.cat([per_frame[..., :1], per_frame[..., :-1]], -1)
    step = ((per_frame + prev_step) / 2).gather(1, peaks) + F - F.gather(1, peaks)
    last, out = torch.zeros_like(mag[..., 0]), []
    for t in range(mag.shape[-1]):
        if t == start and phase is not None:
            last = phase.to(mag.dtype) - _alternate(mag)
        last = torch.remainder(last.gather(1, peaks[..., t]) + step[..., t], 2 * math.pi)
        out.append(last)
    return torch.stack(out, -1) + _alternate(mag)[..., None]


def _alternate(mag: torch.Tensor) -> torch.Tensor:
    """pi k per bin: a window centred in its frame (torch.stft center=True) against one centred at 0."""
    return math.pi * (torch.arange(mag.shape[1], device=mag.device, dtype=mag.dtype) % 2)
