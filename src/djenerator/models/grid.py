"""The models' condition (tempo and beat phase) and the beat grid, a clock built from it.

The condition ``cond`` is (B, 2): normalised tempo in [0, 1] over ``model.bpm_range`` (:func:`bpm_unit`,
inverted by :func:`cond_bpm`) and the beat phase in [0, 1) at the clip's first sample. A conv net with a
finite receptive field cannot hold one tempo over a minute by itself, so the grid gives every frame its
position in the beat: with ``b(t) = phase + t * bpm / 60``, the features are ``sin/cos(2 pi m b(t))`` for
m in 1/2, 1, 2, 4. Generator and discriminators read the same clock (the latter from the real clip's
labels), and since it is a function of absolute time, streamed chunks see the clock of one pass. A NaN
phase (tempo or beats unknown) gives an all-zero grid. More in docs/tempo-and-beat-grid.md.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..config import Config

MULTIPLES = (0.5, 1.0, 2.0, 4.0)
GRID_DIM = 2 * len(MULTIPLES)


def bpm_unit(bpm: torch.Tensor, bpm_range) -> torch.Tensor:
    """BPM -> the normalised tempo: 0 at ``bpm_range[0]``, 1 at ``bpm_range[1]``; :func:`cond_bpm` inverts it."""
    lo, hi = float(bpm_range[0]), float(bpm_range[1])
    return (bpm - lo) / (hi - lo)


def cond_bpm(cond: torch.Tensor, bpm_range) -> torch.Tensor:
    """The BPM of a condition's normalised tempo (its first column); the inverse of :func:`bpm_unit`."""
    lo, hi = float(bpm_range[0]), float(bpm_range[1])
    return lo + cond[:, 0].double() * (hi - lo)


def shift_phase(cond: torch.Tensor, seconds: torch.Tensor, bpm_range) -> torch.Tensor:
    """The condition of a crop starting ``seconds`` (B,) into a clip: the phase counts on in beats (it may pass
    1; NaN stays), so every clock built from it, the bar's included, is the clip's own over the crop."""
    beats = seconds.double() * cond_bpm(cond, bpm_range) / 60.0
    return torch.stack([cond[:, 0], (cond[:, 1].double() + beats).to(cond.dtype)], dim=1)


def tempo_cond(bpm: torch.Tensor, cfg: Config, beat: torch.Tensor | None = None) -> torch.Tensor | None:
    """BPM (B,) and beat phase (B,) -> the models' condition (B, 2); None without tempo conditioning.

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
    c = bpm_unit(bpm, (lo, hi)).clamp(0.0, 1.0)
    phase = torch.where(torch.isfinite(c), phase, torch.full_like(phase, float("nan")))
    return torch.stack([torch.nan_to_num(c, nan=0.5), phase], dim=1).float()


def beat_grid(cond: torch.Tensor, n: int, rate: float, bpm_range, t0: float = 0.0) -> torch.Tensor:
    """(B, GRID_DIM, n) grid features at ``n`` frames spaced 1/rate s apart, the first at time ``t0``
    (s, relative to the sample where ``cond``'s phase holds)."""
    t = t0 + torch.arange(n, dtype=torch.float64, device=cond.device) / float(rate)
    phase = cond[:, 1].double()
    known = torch.isfinite(phase)
    beats = torch.nan_to_num(phase)[:, None] + t[None, :] * cond_bpm(cond, bpm_range)[:, None] / 60.0
    m = torch.tensor(MULTIPLES, dtype=torch.float64, device=cond.device)
    ang = 2 * math.pi * torch.remainder(beats[:, None, :] * m[None, :, None], 1.0)  # remainder: exact for long t
    g = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1) * known[:, None, None]
    return g.float()


def tempo_column(cond: torch.Tensor) -> torch.Tensor:
    """The normalised tempo of a condition as (B, 1); a plain (B,) tempo is accepted too."""
    return cond.reshape(-1, 1) if cond.dim() == 1 else cond[:, :1]
