"""Pieces of any length from a length-agnostic generator, rendered in bounded memory.

A piece of S samples is the crop of an (unbounded) latent sequence: M = ceil(S / frame_samples)
output frames plus ``context_frames`` frames on each side, so the first and last seconds are made
with real neighbours just like the middle (and like training, see :mod:`djenerator.models.spectral`).

- Latents are lazy: frame k of seed s depends only on (s, k) (:func:`frame_latents`), the style only
  on s (it is clip 0's latent; see :mod:`djenerator.latents`).
- :func:`iter_piece` renders chunks of ``chunk_frames`` latent frames, each with ``context_frames``
  frames of overlap on both sides, and yields only its centre; because the generator's output at a
  sample depends on nothing further away than that, the concatenated chunks equal
  :func:`render_piece_one_pass` (to float rounding: convolutions may pick other kernels for other
  lengths). Memory is that of one chunk, whatever the length. A decoder whose phase is a running sum
  (``G.carries_phase``) hands its phase from each chunk to the next (``G.render_carry``), so it too
  equals one pass.
- Interpolation along time: with ``interpolate_to``, frame k's latent and the style slerp from seed
  A's to seed B's as k goes from the first to the last output frame.
- Repetition by the bar: with ``repeat`` > 0, a share of each chunk's latents is replaced by a pattern of
  the place in the bar (``G.lock_to_bar``, two-stage models), a function of (seed, time) like the rest.
- :func:`seam_statistics`: are the sample-to-sample jump and the short-frame spectral flux at given
  join positions distributed like everywhere else? (rank-based, two-sample style KS test).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .generate import evaluating, forward
from .latents import clip_latent, frame_latents, slerp


def is_longform(G: torch.nn.Module) -> bool:
    return bool(getattr(G, "longform", False)) and hasattr(G, "render")


def style_latent(seed: int, dim: int) -> torch.Tensor:
    """The piece's global style vector: the latent of clip 0 of seed ``seed``."""
    return clip_latent(seed, 0, dim)


@dataclass
class PiecePlan:
    """Where a piece of ``n_samples`` lies in latent frames (``total`` = output frames + 2 * context)."""

    n_samples: int
    seed: int
    frame_samples: int
    context: int
    frame_dim: int
    style_dim: int
    interpolate_to: int | None = None
    repeat: float = 0.0

    @classmethod
    def for_generator(cls, G: torch.nn.Module, n_samples: int, seed: int, interpolate_to: int | None = None,
                      repeat: float = 0.0) -> "PiecePlan":
        return cls(int(n_samples), int(seed), G.frame_samples, G.context_frames, G.frame_dim, G.latent_dim,
                   interpolate_to, float(repeat))

    @property
    def out_frames(self) -> int:
        return max(1, math.ceil(self.n_samples / self.frame_samples))

    @property
    def total(self) -> int:
        return self.out_frames + 2 * self.context

    @property
    def joins(self) -> np.ndarray:
        """Sample positions (in the piece) where one latent frame hands over to the next."""
        return np.arange(1, self.out_frames) * self.frame_samples

    def latents(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent frames start..stop-1 (in [0, total)) as (1, frame_dim, K) and the style, (1, style_dim)
        or, when interpolating, (1, style_dim, K)."""
        z = frame_latents(self.seed, start, stop, self.frame_dim)
        style = style_latent(self.seed, self.style_dim)
        if self.interpolate_to is None:
            return z[None], style[None]
        zb = frame_latents(self.interpolate_to, start, stop, self.frame_dim)
        sb = style_latent(self.interpolate_to, self.style_dim)
        k = torch.arange(start, stop, dtype=torch.float32)
        t = ((k - self.context) / max(self.out_frames - 1, 1)).clamp(0, 1)
        styles = slerp(style[:, None].expand(-1, len(k)), sb[:, None].expand(-1, len(k)), t)
        return slerp(z, zb, t)[None], styles[None]


def _track(G: torch.nn.Module, plan: PiecePlan, cond: torch.Tensor | None):
    """The piece's latent track where G makes its latents window by window (a two-stage flow), else None."""
    make = getattr(G, "stream_track", None)
    if make is None:
        return None
    per = G.frame_samples // G.codec.frame_samples  # codec frames per latent frame
    return make(plan.seed, cond, -plan.context * plan.frame_samples / G.sample_rate, plan.repeat,
                plan.interpolate_to, plan.total * per)


def _render(G: torch.nn.Module, plan: PiecePlan, start: int, stop: int, cond: torch.Tensor | None,
            phase: torch.Tensor | None = None, track=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Latent frames start..stop-1 of the piece through the generator -> (samples,), and the phase to hand to
    the next chunk when G's decoder carries one (a running sum over frames; None otherwise). With a ``track``
    (:func:`_track`) the codec latents come from it (frame 0 of the track is the piece's first context frame)."""
    if track is not None:
        per = G.frame_samples // G.codec.frame_samples
        with evaluating(G) as device:
            lat = track.frames(start * per, stop * per).to(device)
            if not G.carries_phase:
                return G.codec.decode(lat).float().cpu()[0, 0], None
            audio, phase = G.decode_carry(lat, stop - start, phase)
        return audio.float().cpu()[0, 0], phase
    z, style = plan.latents(start, stop)
    t0 = (start - plan.context) * plan.frame_samples / G.sample_rate  # the piece's clock (beat grid)
    if plan.repeat > 0:
        z = G.lock_to_bar(z, plan.seed, cond, t0, plan.repeat)
    if not getattr(G, "carries_phase", False):
        return forward(G, z, cond, style=style, t0=t0)[0], None
    with evaluating(G) as device:
        c = cond.to(device) if cond is not None else None
        audio, phase = G.render_carry(z.to(device), style.to(device), c, t0, phase)
    return audio.float().cpu()[0, 0], phase


def iter_piece(G: torch.nn.Module, plan: PiecePlan, cond: torch.Tensor | None = None,
               chunk_frames: int = 32) -> Iterator[np.ndarray]:
    """Yield the piece as consecutive float32 blocks (``chunk_frames`` latent frames each, the last shorter)."""
    fs, c = plan.frame_samples, plan.context
    done, phase, track = 0, None, _track(G, plan, cond)
    for a in range(c, c + plan.out_frames, max(1, int(chunk_frames))):
        b = min(a + chunk_frames, c + plan.out_frames)
        audio, phase = _render(G, plan, a - c, b + c, cond, phase, track)
        audio = audio[c * fs:(c + b - a) * fs][: plan.n_samples - done].clamp(-1, 1).numpy()
        done += len(audio)
        yield audio


def render_piece_one_pass(G: torch.nn.Module, plan: PiecePlan, cond: torch.Tensor | None = None) -> np.ndarray:
    """The whole latent sequence through the generator at once (memory grows with length; for tests)."""
    c, fs = plan.context, plan.frame_samples
    audio = _render(G, plan, 0, plan.total, cond, track=_track(G, plan, cond))[0]
    return audio[c * fs: c * fs + plan.n_samples].clamp(-1, 1).numpy()


# --- seams ---------------------------------------------------------------------------------------
def _percentiles(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Mid-rank percentile of values[at] among all values (uniform on (0, 1) for a position drawn at random)."""
    order = np.sort(values)
    lo = np.searchsorted(order, values[at], side="left")
    hi = np.searchsorted(order, values[at], side="right")
    return (lo + hi) / (2.0 * len(values))


def short_frame_flux(x: np.ndarray, n_fft: int = 256, hop: int = 64) -> np.ndarray:
    """Log-magnitude spectral flux per frame (frame i starts at sample i * hop); flux[0] = 0."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < n_fft + hop:
        return np.zeros(max(0, 1 + (len(x) - n_fft) // hop))
    win = np.hanning(n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * win
    s = np.log1p(1000.0 * np.abs(np.fft.rfft(frames, axis=1)) / win.sum())
    flux = np.zeros(len(s))
    flux[1:] = np.maximum(s[1:] - s[:-1], 0).mean(axis=1)
    return flux


def seam_statistics(x: np.ndarray, sr: int, joins, alpha: float = 0.01, n_fft: int | None = None) -> dict:
    """Compare the audio at ``joins`` (sample indices) with the rest of the piece.

    - jump: |x[j] - x[j-1]| at each join, as a percentile among all sample-to-sample jumps;
    - flux: short-frame (about 16 ms, hop a quarter of it) log-spectral flux, the largest over the frames
      that contain each join, as a percentile among the same quantity at every frame position.

    Where nothing distinguishes the joins these percentiles are uniform on (0, 1); the one-sample KS
    test against the uniform gives a p-value per measure (``jump_p``, ``flux_p``), and the ratios of the
    mean at joins to the mean elsewhere (``jump_ratio``, ``flux_ratio``, ~1 when seamless) give the size.
    ``flagged`` is True when either p-value is below ``alpha / 2`` (Bonferroni over the two measures).
    """
    from scipy.stats import kstest

    x = np.asarray(x, dtype=np.float64).reshape(-1)
    joins = np.asarray([j for j in np.asarray(joins, dtype=np.int64).reshape(-1) if 1 <= j < len(x)], dtype=np.int64)
    if len(joins) == 0:
        raise ValueError("seam_statistics needs at least one join inside the signal")
    jump = np.abs(np.diff(x))
    at = joins - 1
    others = np.setdiff1d(np.arange(len(jump)), at)
    pj = _percentiles(jump, at)
    n_fft = n_fft or max(64, 2 ** round(math.log2(0.016 * sr)))
    hop = n_fft // 4
    flux = short_frame_flux(x, n_fft, hop)
    # a click at j raises the flux of every frame that contains it (frames i0 .. i0+3), most where the
    # window is steepest; so compare the largest flux over the frames containing a position, at joins
    # and at every other position alike.
    span = n_fft // hop
    if len(flux) <= span:
        raise ValueError("seam_statistics needs a signal several short frames long")
    rmax = np.lib.stride_tricks.sliding_window_view(flux, span).max(axis=1)
    fi = np.clip(np.floor((joins - n_fft) / hop).astype(np.int64) + 1, 1, len(rmax) - 1)
    pf = _percentiles(rmax, fi)
    flux = rmax
    rest = np.setdiff1d(np.arange(1, len(flux)), fi)
    jump_p = float(kstest(pj, "uniform").pvalue)
    flux_p = float(kstest(pf, "uniform").pvalue)
    return {
        "n_joins": int(len(joins)),
        "jump_ratio": float(jump[at].mean() / max(jump[others].mean(), 1e-12)),
        "jump_p": jump_p,
        "jump_mean_percentile": float(pj.mean()),
        "flux_ratio": float(flux[fi].mean() / max(flux[rest].mean(), 1e-12)) if len(rest) else float("nan"),
        "flux_p": flux_p,
        "flux_mean_percentile": float(pf.mean()),
        "flagged": bool(min(jump_p, flux_p) < alpha / 2),
    }
