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


def peak_of_bin(mag: torch.Tensor) -> torch.Tensor:
    """For each bin (the last dim) of ``mag``, the index of the magnitude peak that climbing the magnitude from
    it reaches (a peak is its own)."""
    K = mag.shape[-1]
    up = torch.zeros_like(mag, dtype=torch.bool)  # the bin to the right is higher: climb right
    up[..., :-1] = mag[..., 1:] > mag[..., :-1]
    down = torch.zeros_like(up)  # else the bin to the left is higher: climb left
    down[..., 1:] = (mag[..., :-1] > mag[..., 1:]) & ~up[..., 1:]
    top = ~(up | down)
    # the n-th top of a frame sits at pos[n] (n from 1); `seen` counts the tops up to and including each bin
    seen = torch.cumsum(top, -1)
    idx = torch.arange(K, device=mag.device).expand_as(seen)
    pos = torch.zeros(seen.shape[:-1] + (K + 2,), dtype=seen.dtype, device=mag.device)
    pos.scatter_(-1, torch.where(top, seen, K + 1), idx)
    left = pos.gather(-1, seen)  # the last top at or before the bin: where climbing left ends
    right = pos.gather(-1, (seen + (~top).long()).clamp(max=K))  # the first top at or after it
    return torch.where(up, right, torch.where(down, left, idx))


def pghi_phase(mag: torch.Tensor, n_fft: int, hop: int, phase: torch.Tensor | None = None,
               start: int = 0) -> torch.Tensor:
    """A phase (B, K, T) in radians for the magnitude ``mag`` (B, K, T). ``phase`` (B, K), if given, is taken as the
    phase of frame ``start - 1`` (a stream's hand-over: the frames before ``start`` are context, and the gradients
    at ``start`` still see them); otherwise the first frame's peaks start at 0."""
    m = mag.transpose(1, 2).contiguous()  # (B, T, K): bins last, so that each frame is contiguous
    logm = torch.log(m.clamp_min(1e-7))
    gamma, K = HANN_GAMMA * n_fft ** 2, m.shape[-1]
    k = torch.arange(K, dtype=m.dtype, device=m.device)
    per_frame = 2 * math.pi * hop / n_fft * k + hop * n_fft / gamma * torch.gradient(logm, dim=2)[0]
    d_frame = torch.gradient(logm, dim=1)[0] if m.shape[1] > 1 else torch.zeros_like(logm)
    per_bin = -gamma / (hop * n_fft) * d_frame
    peaks = peak_of_bin(m)
    # across bins: F[k] = the trapezoid steps summed from bin 0 to k; a bin lies F[k] - F[peak] from its peak
    F = torch.cumsum(torch.cat([torch.zeros_like(per_bin[..., :1]), (per_bin[..., 1:] + per_bin[..., :-1]) / 2], -1), -1)
    # over frames: the peak's trapezoid step from the frame before
    prev = torch.cat([per_frame[:, :1], per_frame[:, :-1]], 1)
    step = ((per_frame + prev) / 2 - F).gather(-1, peaks) + F
    alt = _alternate(K, m)
    last, out = torch.zeros_like(m[:, 0]), torch.empty_like(m)
    for t in range(m.shape[1]):
        if t == start and phase is not None:
            last = phase.to(m.dtype) - alt
        last = torch.remainder(last.gather(-1, peaks[:, t]) + step[:, t], 2 * math.pi)
        out[:, t] = last
    return (out + alt).transpose(1, 2)


def _alternate(K: int, like: torch.Tensor) -> torch.Tensor:
    """pi k per bin: a window centred in its frame (torch.stft center=True) against one centred at 0."""
    return math.pi * (torch.arange(K, device=like.device) % 2).to(like.dtype)
