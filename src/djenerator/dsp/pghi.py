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
    # (in the magnitude's float type, exact to 2^24 bins and faster than integers). Climbing left, or standing on
    # a top, ends at the seen-th top; climbing right, at the next one.
    seen = torch.cumsum(top, -1, dtype=mag.dtype)
    pos = torch.zeros(mag.shape[:-1] + (K + 2,), dtype=torch.long, device=mag.device)
    pos.scatter_(-1, torch.where(top, seen, K + 1).long(), torch.arange(K, device=mag.device).expand(mag.shape))
    return pos.gather(-1, (seen + up).long())


def pghi_phase(mag: torch.Tensor, n_fft: int, hop: int, phase: torch.Tensor | None = None,
               start: int = 0) -> torch.Tensor:
    """A phase (B, K, T) in radians for the magnitude ``mag`` (B, K, T). ``phase`` (B, K), if given, is taken as the
    phase of frame ``start - 1`` (a stream's hand-over: the frames before ``start`` are context, and the gradients
    at ``start`` still see them); otherwise the first frame's peaks start at 0."""
    logm = torch.log(mag.clamp_min(1e-7)).transpose(1, 2).contiguous()
    return pghi_frames(logm, n_fft, hop, phase, start).transpose(1, 2)


def pghi_frames(logmag: torch.Tensor, n_fft: int, hop: int, phase: torch.Tensor | None = None,
                start: int = 0) -> torch.Tensor:
    """``pghi_phase`` for a natural-log magnitude laid out (B, T, K), bins last, so that each frame is contiguous
    (a decoder's head draws it so); returns the phase in the same layout."""
    gamma, K = HANN_GAMMA * n_fft ** 2, logmag.shape[-1]
    k = torch.arange(K, dtype=logmag.dtype, device=logmag.device)
    # over frames: the trapezoid of this frame's and the last frame's step (d log|S| / dk, to phase per hop)
    d_bin = torch.gradient(logmag, dim=2)[0]
    d_bin = (d_bin + torch.cat([d_bin[:, :1], d_bin[:, :-1]], 1)) / 2
    per_frame = 2 * math.pi * hop / n_fft * k + hop * n_fft / gamma * d_bin
    # across bins: F[k] = the trapezoid steps (d log|S| / dframe, to phase per bin) summed from bin 0 to k;
    # a bin lies F[k] - F[peak] from its peak
    d_frame = torch.gradient(logmag, dim=1)[0] if logmag.shape[1] > 1 else torch.zeros_like(logmag)
    F = (torch.cumsum(d_frame, -1) - (d_frame + d_frame[..., :1]) / 2).mul_(-gamma / (hop * n_fft))
    peaks = peak_of_bin(logmag)
    step = (per_frame - F).gather(-1, peaks).add_(F).remainder_(2 * math.pi)
    alt = _alternate(K, logmag)
    # the one sequential part; wrapped now and then to keep float32's precision
    last, out = torch.zeros_like(logmag[:, 0]), []
    for t, (peak, turn) in enumerate(zip(peaks.unbind(1), step.unbind(1))):
        if t == start and phase is not None:
            last = phase.to(logmag.dtype) - alt
        last = last.gather(-1, peak).add_(turn)
        if t % 32 == 31:
            last.remainder_(2 * math.pi)
        out.append(last)
    return torch.stack(out, 1).add_(alt).remainder_(2 * math.pi)


def _alternate(K: int, like: torch.Tensor) -> torch.Tensor:
    """pi k per bin: a window centred in its frame (torch.stft center=True) against one centred at 0."""
    return math.pi * (torch.arange(K, device=like.device) % 2).to(like.dtype)
