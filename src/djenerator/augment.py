"""Differentiable audio augmentation of every discriminator input, with its probability tuned by ADA.

With a handful of recordings the discriminator memorises the training clips and the generator follows it
into copying them. Augmenting every discriminator input, real and generated alike (DiffAugment, Zhao et al.
2020), with a probability ``p`` moved by an overfitting signal (ADA, Karras et al. 2020) keeps the
discriminator from overfitting without teaching the generator to make augmented audio. Every op maps
(B, C, T) audio in [-1, 1] to the same shape and range, is differentiable, and fires per example with
probability ``p`` (capped at ``augment.leaky_p_max`` for ops whose leak would be audible); :data:`OPS`
names them in their order of application. The randomness is the global torch RNG's, which checkpoints save.
What each op does, why none leaks below p ~0.8, and how ADA moves p: docs/few-recordings.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .losses import LOSSES

P_MAX = 0.99

# strengths (docs/few-recordings.md has the table)
GAIN_SIGMA_DB = 4.0
SHIFT_MAX = 0.25
PITCH_SEMITONES = 1.0
EQ_DB_PER_OCTAVE = 3.0
EQ_MAX_DB = 12.0
BANDPASS_HP_HZ = (20.0, 300.0)
BANDPASS_LP_HZ = 2500.0
NOISE_DBFS = (-60.0, -40.0)
CUTOUT_FRACTION = (1 / 32, 1 / 8)


def _rand(b: int, x: torch.Tensor) -> torch.Tensor:
    return torch.rand(b, device=x.device, dtype=torch.float32)


def _bshape(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 1))


def _limit_peak(y: torch.Tensor) -> torch.Tensor:
    """Scale down (per example) any example whose peak went above 1; the scale is a constant (detached)."""
    peak = y.detach().abs().flatten(1).amax(1).clamp_min(1.0)
    return y / _bshape(peak, y)


# --- ops: each (x (B, C, T), sample_rate) -> same shape; applied to every example (masking is done outside) --
def polarity(x: torch.Tensor, sr: int) -> torch.Tensor:
    return -x


def gain(x: torch.Tensor, sr: int) -> torch.Tensor:
    b = x.shape[0]
    g = 10.0 ** (torch.randn(b, device=x.device) * GAIN_SIGMA_DB / 20.0)
    peak = x.detach().abs().flatten(1).amax(1).clamp_min(1e-6)
    g = torch.minimum(g, 1.0 / peak)
    return x * _bshape(g, x)


def shift(x: torch.Tensor, sr: int) -> torch.Tensor:
    b, t = x.shape[0], x.shape[-1]
    n = max(1, int(SHIFT_MAX * t))
    k = torch.randint(-n, n + 1, (b,), device=x.device)
    idx = (torch.arange(t, device=x.device)[None, :] - k[:, None]) % t  # out[i] = x[i - k]
    return x.gather(-1, idx[:, None, :].expand(x.shape))


def pitch(x: torch.Tensor, sr: int) -> torch.Tensor:
    """Resample each example by its own ratio r (output sample i reads input position i * r), crop/zero-pad."""
    b, c, t = x.shape
    r = 2.0 ** ((_rand(b, x) * 2 - 1) * PITCH_SEMITONES / 12.0)  # > 1: higher and faster
    pos = torch.arange(t, device=x.device, dtype=torch.float32)[None, :] * r[:, None]  # (B, T)
    i0 = pos.floor().long()
    frac = (pos - i0).to(x.dtype)
    valid0, valid1 = i0 < t, (i0 + 1) < t
    i0c, i1c = i0.clamp_max(t - 1), (i0 + 1).clamp_max(t - 1)
    g0 = x.gather(-1, i0c[:, None, :].expand(b, c, t)) * valid0[:, None, :]
    g1 = x.gather(-1, i1c[:, None, :].expand(b, c, t)) * valid1[:, None, :]
    return g0 * (1 - frac[:, None, :]) + g1 * frac[:, None, :]


def _fft_filter(x: torch.Tensor, gain_fn) -> torch.Tensor:
    t = x.shape[-1]
    spec = torch.fft.rfft(x.float(), dim=-1)
    freqs = torch.fft.rfftfreq(t, device=x.device)  # cycles/sample, 0..0.5
    h = gain_fn(freqs)  # (B, F) real
    y = torch.fft.irfft(spec * h[:, None, :], n=t, dim=-1).to(x.dtype)
    return _limit_peak(y)


def eq(x: torch.Tensor, sr: int) -> torch.Tensor:
    """Spectral tilt: gain(f) = slope * log2(f / 1 kHz) dB, clamped to +-12 dB; DC untouched."""
    b = x.shape[0]
    slope = (_rand(b, x) * 2 - 1) * EQ_DB_PER_OCTAVE

    def h(freqs):
        f_hz = (freqs * sr).clamp_min(20.0)
        db = (slope[:, None] * torch.log2(f_hz / 1000.0)[None, :]).clamp(-EQ_MAX_DB, EQ_MAX_DB)
        return 10.0 ** (db / 20.0)

    return _fft_filter(x, h)


def bandpass(x: torch.Tensor, sr: int) -> torch.Tensor:
    """Smooth (2nd-order Butterworth magnitude) high-pass and low-pass, random corners per example."""
    b = x.shape[0]
    nyq = sr / 2.0
    lo_a, lo_b = BANDPASS_HP_HZ
    hp = torch.exp(math.log(lo_a) + _rand(b, x) * (math.log(lo_b) - math.log(lo_a)))
    lp_lo = min(BANDPASS_LP_HZ, 0.9 * nyq)
    lp = torch.exp(math.log(lp_lo) + _rand(b, x) * (math.log(nyq) - math.log(lp_lo)))

    def h(freqs):
        f = (freqs * sr)[None, :]
        hp_g = (f / hp[:, None]) ** 2 / torch.sqrt(1 + (f / hp[:, None]) ** 4)
        lp_g = 1 / torch.sqrt(1 + (f / lp[:, None]) ** 4)
        return hp_g * lp_g

    return _fft_filter(x, h)


def noise(x: torch.Tensor, sr: int) -> torch.Tensor:
    b = x.shape[0]
    lo, hi = NOISE_DBFS
    std = 10.0 ** ((lo + _rand(b, x) * (hi - lo)) / 20.0)
    return (x + _bshape(std, x) * torch.randn_like(x)).clamp(-1.0, 1.0)


def cutout(x: torch.Tensor, sr: int) -> torch.Tensor:
    b, t = x.shape[0], x.shape[-1]
    lo, hi = CUTOUT_FRACTION
    length = ((lo + _rand(b, x) * (hi - lo)) * t).long().clamp_min(1)
    start = (_rand(b, x) * (t - length + 1).float()).long()
    i = torch.arange(t, device=x.device)[None, :]
    keep = ~((i >= start[:, None]) & (i < (start + length)[:, None]))
    return x * keep[:, None, :].to(x.dtype)


@dataclass(frozen=True)
class Op:
    """An augmentation (a name in ``augment.ops``)."""

    fn: Callable[[torch.Tensor, int], torch.Tensor]  # (x (B, C, T), sample rate) -> every example augmented
    audible: bool  # a leak would be audible, so its probability is capped at augment.leaky_p_max


OPS: dict[str, Op] = {  # in the order they are applied
    "polarity": Op(polarity, audible=False),
    "gain": Op(gain, audible=False),
    "shift": Op(shift, audible=False),
    "pitch": Op(pitch, audible=True),
    "eq": Op(eq, audible=True),
    "bandpass": Op(bandpass, audible=True),
    "noise": Op(noise, audible=True),
    "cutout": Op(cutout, audible=True),
}


def check_ops(ops) -> list[str]:
    """The ops in canonical order; ValueError naming unknown ones."""
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise ValueError(f"unknown augmentation(s) {', '.join(bad)} (known: {', '.join(OPS)})")
    return [o for o in OPS if o in set(ops)]


def augment(x: torch.Tensor, p: float, ops, sample_rate: int, leaky_p_max: float = 0.8) -> torch.Tensor:
    """Apply each op in ``ops`` to each example with probability p (min(p, leaky_p_max) for the ops
    whose leak would be audible). p == 0 returns ``x`` itself and draws no random numbers."""
    if p <= 0 or not ops:
        return x
    b = x.shape[0]
    for name in check_ops(ops):
        q = min(p, leaky_p_max) if OPS[name].audible else p
        if q <= 0:
            continue
        mask = _rand(b, x) < q
        y = OPS[name].fn(x, sample_rate)
        x = torch.where(_bshape(mask, x).bool(), y, x)
    return x


class Augmenter:
    """The augmentation state of a run: config + current probability ``p`` (moved by ADA)."""

    def __init__(self, aug_cfg, sample_rate: int):
        self.cfg = aug_cfg
        self.sample_rate = int(sample_rate)
        self.ops = check_ops(aug_cfg.ops)
        self.enabled = bool(aug_cfg.enabled)
        self.p = float(aug_cfg.p) if self.enabled else 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        return augment(x, self.p, self.ops, self.sample_rate, self.cfg.leaky_p_max)


def overfit_signs(loss: str, real_out, fake_out=None) -> tuple[torch.Tensor, int]:
    """(sum of signs, count) of the overfitting signal r_t for one batch: the sign of each real clip's mean
    logit against the objective's midpoint (a critic's: the batch's mean fake score).

    ``real_out``/``fake_out`` are a MultiDiscriminator's outputs: lists of (logits, features).
    Stays on the device (no host sync).
    """
    total, count = None, 0
    for j, (r, _) in enumerate(real_out):
        r = r.detach().float().reshape(r.shape[0], -1).mean(1)
        mid = LOSSES[loss].midpoint
        if mid is None:  # a critic's offset is arbitrary: the mean fake score of the batch
            f = fake_out[j][0].detach().float()
            mid = f.reshape(f.shape[0], -1).mean()
        s = torch.sign(r - mid).sum()
        total = s if total is None else total + s
        count += r.shape[0]
    return total, count


@dataclass
class AdaController:
    """Accumulates the overfitting signal r_t and every ``interval`` steps moves p by
    sign(r_t - target) * batch * interval / (kimg * 1000), within [p_min, 0.99] (Karras et al. 2020)."""

    target: float = 0.6
    interval: int = 4
    kimg: float = 100.0
    batch: int = 32
    p: float = 0.0
    sign_sum: float = 0.0
    count: int = 0
    last_rt: float = float("nan")
    p_min: float = 0.0  # raised by copies found in the samples; r_t cannot take p below it
    _pending: object = None  # device tensor not yet folded into sign_sum

    def accumulate(self, sign_sum: torch.Tensor, count: int) -> None:
        self._pending = sign_sum if self._pending is None else self._pending + sign_sum
        self.count += int(count)

    def _flush(self) -> None:
        if self._pending is not None:
            self.sign_sum += float(self._pending)
            self._pending = None

    def flushed_counts(self) -> list[float]:
        self._flush()
        return [self.sign_sum, float(self.count)]

    def update(self) -> float:
        """Fold the accumulated signs into r_t, step p, reset; returns the new p."""
        self._flush()
        if self.count > 0:
            self.last_rt = self.sign_sum / self.count
            adjust = math.copysign(1.0, self.last_rt - self.target) if self.last_rt != self.target else 0.0
            self.p = self.step_p(self.p, adjust, self.batch, self.interval, self.kimg, self.p_min)
        self.sign_sum, self.count = 0.0, 0
        return self.p

    def raise_floor(self, amount: float) -> float:
        """The samples copy training clips: lift the floor under p (and p with it); returns the new p."""
        self.p_min = min(self.p_min + amount, P_MAX)
        self.p = max(self.p, self.p_min)
        return self.p

    @staticmethod
    def step_p(p: float, direction: float, batch: int, interval: int, kimg: float, p_min: float = 0.0) -> float:
        return float(min(max(p + direction * batch * interval / (kimg * 1000.0), p_min), P_MAX))

    def state_dict(self) -> dict:
        self._flush()
        return {"p": self.p, "sign_sum": self.sign_sum, "count": self.count, "last_rt": self.last_rt,
                "p_min": self.p_min}

    def load_state_dict(self, state: dict) -> None:
        self._pending = None
        self.p = float(state["p"])
        self.sign_sum = float(state.get("sign_sum", 0.0))
        self.count = int(state.get("count", 0))
        self.last_rt = float(state.get("last_rt", float("nan")))
        self.p_min = float(state.get("p_min", 0.0))
