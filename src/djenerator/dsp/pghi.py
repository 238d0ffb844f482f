"""A phase for an STFT magnitude, from the magnitude alone: phase-gradient integration (Prusa, Balazs and
Sondergaard 2017, "A noniterative method for reconstruction of phase from STFT magnitude"; the real-time
form of Prusa and Holighaus 2017), with each frame's bins integrated from their own magnitude peak.

Under a Gaussian-like window the phase's gradient follows from the log-magnitude's: the phase step per hop of
bin k is 2 pi k hop / n_fft plus (hop n_fft / gamma) d log|S| / dk (a partial between two bins turns at its own
frequency in all of them), and the step per bin is -(gamma / hop n_fft) d log|S| / dframe (an attack aligns
the bins). gamma = 0.25645 n_fft^2 for a Hann window. Each frame, a magnitude peak takes its phase from the
frame before plus its step (trapezoid rule); the other bins take the peak's phase plus the steps across bins
that lead to it, as hill-climbing on the magnitude does. That keeps a partial's lobe coherent, which a running
sum per bin does not. Everything but the one gather per frame is computed for a block of frames at once.

Phases are in ``torch.stft(center=True)``'s convention (the window centred in its frame: (-1)^k per bin).
"""
from __future__ import annotations

import math

import torch

HANN_GAMMA = 0.25645  # gamma / n_fft^2 of the Gaussian that best matches a Hann window (Prusa et al.)
BLOCK = 32  # frames worked through at a time
TIE = 1e-4  # neighbouring bins closer than this are level: float rounding cannot turn a climb (so chunks decode alike)


def peak_of_bin(mag: torch.Tensor) -> torch.Tensor:
    """For each bin (the last dim) of ``mag``, the index of the magnitude peak that climbing the magnitude from
    it reaches (a peak is its own)."""
    K = mag.shape[-1]
    up = torch.zeros_like(mag, dtype=torch.bool)  # the bin to the right is higher: climb right
    up[..., :-1] = mag[..., 1:] > mag[..., :-1] + TIE
    down = torch.zeros_like(up)  # else the bin to the left is higher: climb left
    down[..., 1:] = (mag[..., :-1] > mag[..., 1:] + TIE) & ~up[..., 1:]
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
    (a decoder's head draws it so); returns the phase in the same layout. It works through BLOCK frames at a
    time, so that the temporaries stay in cache (2-3x faster than whole-tensor passes on a CPU)."""
    T, alt = logmag.shape[1], _alternate(logmag.shape[-1], logmag)
    out, last = torch.empty_like(logmag), torch.zeros_like(logmag[:, 0])
    for a in range(0, T, BLOCK):
        b = min(a + BLOCK, T)
        peaks, step = _block_steps(logmag, a, b, n_fft, hop)
        for t in range(a, b):  # the one sequential part
            if t == start and phase is not None:
                last = phase.to(logmag.dtype) - alt
            last = last.gather(-1, peaks[:, t - a]).add_(step[:, t - a])
            out[:, t] = last
        last = out[:, b - 1].remainder_(2 * math.pi)  # wrapped now and then to keep float32's precision
    return out.add_(alt).remainder_(2 * math.pi)


def _block_steps(logmag: torch.Tensor, a: int, b: int, n_fft: int, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For frames a..b-1 of ``logmag`` (B, T, K): each bin's peak (B, b - a, K), and the phase step from the frame
    before's phase at that peak to this frame's phase at the bin."""
    gamma, K = HANN_GAMMA * n_fft ** 2, logmag.shape[-1]
    lo = max(a - 1, 0)
    x = logmag[:, lo:b + 1]  # the block and a frame either side, for the gradients
    inner = slice(a - lo, b - lo)
    # over frames: the trapezoid of this frame's and the last frame's step (d log|S| / dk, to phase per hop)
    d_bin = torch.gradient(x, dim=2)[0]
    before = torch.arange(a - 1, b - 1, device=x.device).clamp_min(0) - lo
    d_bin = (d_bin[:, inner] + d_bin.index_select(1, before)).mul_(hop * n_fft / gamma / 2)
    per_frame = d_bin.add_(2 * math.pi * hop / n_fft * torch.arange(K, dtype=x.dtype, device=x.device))
    # across bins: F[k] = the trapezoid steps (d log|S| / dframe, to phase per bin) summed from bin 0 to k;
    # a bin lies F[k] - F[peak] from its peak
    d_frame = torch.gradient(x, dim=1)[0][:, inner] if x.shape[1] > 1 else torch.zeros_like(x)
    F = (torch.cumsum(d_frame, -1) - (d_frame + d_frame[..., :1]) / 2).mul_(-gamma / (hop * n_fft))
    peaks = peak_of_bin(x[:, inner])
    return peaks, (per_frame - F).gather(-1, peaks).add_(F).remainder_(2 * math.pi)


def _alternate(K: int, like: torch.Tensor) -> torch.Tensor:
    """pi k per bin: a window centred in its frame (torch.stft center=True) against one centred at 0."""
    return math.pi * (torch.arange(K, device=like.device) % 2).to(like.dtype)
