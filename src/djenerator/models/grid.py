"""The beat grid: a clock that tells the spectral generator and the discriminators where the beats are.

A conv net with a finite receptive field cannot hold one tempo over a minute by itself: nothing links
its output at 0:10 to its output at 0:50, so the pulse drifts wherever the local latents push it. The
grid gives every frame its position in the beat: with ``b(t) = phase + t * bpm / 60`` beats at time t,
the features are ``sin/cos(2 pi m b(t))`` for m in 1/2, 1, 2, 4 (half notes, beats, eighths,
sixteenths). The generator reads them at its frame rate; the discriminators read the same grid
computed for the real clip's labelled tempo and phase, so a generator that ignores the grid is told
so. Because the grid is a function of absolute time, a piece of any length keeps the requested tempo
and streamed chunks see the same clock as one pass.

The condition ``cond`` is (B, 2): normalised tempo in [0, 1] over ``model.bpm_range`` and the beat phase
in [0, 1) at the clip's first sample. A NaN phase (tempo or beats unknown) gives an all-zero grid.
"""
from __future__ import annotations

import math

import torch

MULTIPLES = (0.5, 1.0, 2.0, 4.0)
GRID_DIM = 2 * len(MULTIPLES)


def cond_bpm(cond: torch.Tensor, bpm_range) -> torch.Tensor:
    lo, hi = float(bpm_range[0]), float(bpm_range[1])
    return lo + cond[:, 0].double() * (hi - lo)


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
