"""Spectral contrast of a drawn log-magnitude: the structure between a Hann lobe and a wide envelope, scaled.

A decoder fitted by L1 distances draws the expected spectrum of whatever its latents leave uncertain: partials a few
dB low and the bins between them a few dB high, so its audio is flatter than the music it reconstructs
(docs/two-stage.md, round 24). ``sharpen`` scales each frame's structure at scales between ``INNER`` bins (under a
Hann main lobe: the ISTFT smooths finer detail away whatever one draws) and ``WIDTH`` bins (the envelope) by
``amount``; ``fit_amount`` finds the amount at which reconstructions are as flat as the clips they reconstruct.
This is the variance restoration of statistical speech synthesis (global variance, Toda and Tokuda 2007), done on
the spectral shape of each frame.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

INNER, WIDTH = 3, 31  # bins: a Hann lobe is 4 wide; 31 bins are 670 Hz at 22.05 kHz and n_fft 1024
MAX_AMOUNT = 4.0


def moving_average(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of each value's k neighbours (k odd) along the last axis, the edges repeated outward."""
    flat = F.pad(x.reshape(-1, 1, x.shape[-1]), (k // 2, k // 2), mode="replicate")
    return F.avg_pool1d(flat, k, 1).reshape(x.shape)


def sharpen(logmag: torch.Tensor, amount: float, width: int = WIDTH) -> torch.Tensor:
    """A log-magnitude (..., bins) with its structure between INNER and ``width`` bins scaled by ``amount`` (1: as it
    is); its envelope's shape, its finer detail and each frame's power are kept (contrast moves energy between a
    frame's bins, it adds no loudness)."""
    if amount == 1.0:
        return logmag
    inner, env = moving_average(logmag, INNER), moving_average(logmag, width)
    out = logmag + (amount - 1.0) * (inner - env)
    return out - 0.5 * (torch.logsumexp(2 * out, -1, keepdim=True) - torch.logsumexp(2 * logmag, -1, keepdim=True))


def fit_amount(flatness_at: Callable[[float], float], target: float = 1.0, hi: float = MAX_AMOUNT,
               steps: int = 8) -> float:
    """The amount in [1, hi] at which ``flatness_at`` (falling with the amount: generated over real flatness)
    reaches ``target``, by bisection; 1 when it is already there, ``hi`` when even that does not reach it."""
    lo = 1.0
    if flatness_at(lo) <= target:
        return lo
    if flatness_at(hi) > target:
        return hi
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if flatness_at(mid) > target else (lo, mid)
    return (lo + hi) / 2


def parse_setting(text: str) -> float | None:
    """``train.codec_contrast``: "none" (1), "fit" (None: fitted to the data after stage 1) or an amount from 1 to
    MAX_AMOUNT; a ValueError names what is wrong."""
    if text == "none":
        return 1.0
    if text == "fit":
        return None
    try:
        amount = float(text)
    except ValueError:
        raise ValueError(f'must be "none", "fit" or an amount from 1 to {MAX_AMOUNT:g}, got {text!r}') from None
    if not 1.0 <= amount <= MAX_AMOUNT:
        raise ValueError(f"must be an amount from 1 to {MAX_AMOUNT:g} (1 = off), got {text}")
    return amount
