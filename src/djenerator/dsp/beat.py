"""Tempo and beat estimation from an onset envelope: labels for ``prepare``, measures for ``evaluate``.

Below both ``data/`` and ``evaluate/``. The method (band-weighted flux, autocorrelation with a pulse-train
score and a tempo prior, a comb filter for the first beat) is described in docs/tempo-and-beat-grid.md.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import get_window


def frames(x: np.ndarray, hop: int, n_fft: int) -> np.ndarray:
    """Centred frames of ``x`` (zero-padded by n_fft // 2 on both sides), one every ``hop`` samples."""
    pad = n_fft // 2
    xp = np.pad(np.asarray(x, dtype=np.float64), (pad, pad))
    n_frames = 1 + max(0, (len(xp) - n_fft) // hop)
    return np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop][:n_frames]


ONSET_LEAD_FRAMES = 0.7  # the flux of an onset peaks ~0.7 frame before it (measured on click tracks)
TEMPO_BANDS_HZ = (0.0, 500.0, 2000.0, 5000.0, np.inf)
TEMPO_BAND_WEIGHTS = (0.5, 0.5, 1.0, 3.0)  # hats and snare carry the pulse; djent guitars play odd groupings


def tempo_envelope(x: np.ndarray, sr: int, hop: int = 256, n_fft: int = 1024) -> tuple[np.ndarray, float]:
    """Band-weighted spectral flux used for tempo, and its frame rate: each band's log-magnitude flux
    standardised and summed with ``TEMPO_BAND_WEIGHTS``; silent bands are skipped."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return np.zeros(0), sr / hop
    win = get_window("hann", n_fft, fftbins=True)
    s = np.log1p(1000.0 * np.abs(np.fft.rfft(frames(x, hop, n_fft) * win, axis=1)) / win.sum())
    d = np.maximum(0.0, np.diff(s, axis=0))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    bands = []
    for lo, hi, w in zip(TEMPO_BANDS_HZ[:-1], TEMPO_BANDS_HZ[1:], TEMPO_BAND_WEIGHTS):
        m = (freqs >= lo) & (freqs < hi)
        if m.any():
            bands.append((np.concatenate([[0.0], d[:, m].mean(axis=1)]), w))
    top = max((e.mean() for e, _ in bands), default=0.0)
    out = np.zeros(len(s))
    for e, w in bands:
        sd = e.std()
        if top > 0 and e.mean() > 1e-3 * top and sd > 0:
            out += w * (e - e.mean()) / sd
    return out, sr / hop


def _parabolic(y: np.ndarray, i: int) -> float:
    if i <= 0 or i >= len(y) - 1:
        return float(i)
    a, b, c = y[i - 1], y[i], y[i + 1]
    den = a - 2 * b + c
    return float(i) if den >= 0 else i + 0.5 * (a - c) / den


def tempo_from_envelope(env: np.ndarray, fps: float, bpm_range=(60.0, 200.0), prior_bpm: float = 120.0,
                        prior_octaves: float = 1.0) -> float:
    """Tempo (BPM) from an onset envelope: the autocorrelation lag with the best pulse-train score
    ac(L) + ac(2L)/2 + ac(3L)/3 + ac(4L)/4 times a log-Gaussian prior around ``prior_bpm``, refined to
    sub-frame precision. NaN if the envelope is shorter than two beats at ``bpm_range[0]``."""
    lo_bpm, hi_bpm = float(bpm_range[0]), float(bpm_range[1])
    env = np.asarray(env, dtype=np.float64)
    max_lag = 60.0 * fps / lo_bpm
    min_lag = 60.0 * fps / hi_bpm
    if len(env) < 2.0 * max_lag:
        return float("nan")
    e = env - env.mean()
    n = len(e)
    if not np.any(e != 0):
        return float("nan")
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(e, nfft)
    ac = np.fft.irfft(f * np.conj(f), nfft)[:n]
    ac = ac / (n - np.arange(n))  # unbiased: long lags are not penalised for less overlap
    if ac[0] <= 0:
        return float("nan")
    ac /= ac[0]
    lags = np.arange(max(1, int(np.floor(min_lag))), int(np.ceil(max_lag)) + 1)
    lags = lags[lags < n]
    max_ac_lag = int(0.75 * n)  # beyond this the overlap is too short to trust

    def acv(lag: float) -> float:
        if lag >= max_ac_lag:
            return np.nan
        i = int(lag)
        fr = lag - i
        return (1 - fr) * ac[i] + fr * ac[min(i + 1, n - 1)]

    score = np.empty(len(lags))
    for j, L in enumerate(lags):
        vals, wts = [], []
        for k in (1, 2, 3, 4):
            # peak of ac near k*L (tolerate +-k/2 frames of rounding)
            lo_i, hi_i = int(np.floor(k * (L - 0.5))), int(np.ceil(k * (L + 0.5)))
            if hi_i >= max_ac_lag:
                break
            vals.append(ac[lo_i:hi_i + 1].max())
            wts.append(1.0 / k)
        score[j] = np.dot(vals, wts) / np.sum(wts) if vals else acv(L)
    bpm = 60.0 * fps / lags
    prior = np.exp(-0.5 * (np.log2(bpm / prior_bpm) / prior_octaves) ** 2)
    score = np.where(np.isfinite(score), np.maximum(score, 0.0) * prior, -np.inf)
    if not np.any(np.isfinite(score)) or np.max(score) <= 0:
        return float("nan")
    L0 = int(lags[int(np.argmax(score))])
    # sub-frame refinement on the peaks at k*L0
    ests, wts = [], []
    for k in (1, 2, 3, 4):
        lo_i, hi_i = max(1, int(np.floor(k * (L0 - 0.5)))), int(np.ceil(k * (L0 + 0.5)))
        if hi_i >= max_ac_lag:
            break
        i = lo_i + int(np.argmax(ac[lo_i:hi_i + 1]))
        ests.append(_parabolic(ac, i) / k)
        wts.append(float(k))  # longer lags give finer resolution per beat
    lag = float(np.average(ests, weights=wts)) if ests else float(L0)
    return float(60.0 * fps / lag)


def estimate_tempo(x: np.ndarray, sr: int, bpm_range=(60.0, 200.0)) -> float:
    """Tempo in BPM from the autocorrelation of the onset envelope (:func:`tempo_from_envelope`).

    Returns NaN when the clip is shorter than two beats at ``bpm_range[0]`` or has no onsets.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if len(x) < 2.0 * 60.0 / float(bpm_range[0]) * sr:
        return float("nan")
    env, fps = tempo_envelope(x, sr)
    return tempo_from_envelope(env, fps, bpm_range)


def estimate_tempo_batch(clips: np.ndarray, sr: int, bpm_range=(60.0, 200.0)) -> np.ndarray:
    """:func:`estimate_tempo` for each clip of a (batch, samples) or (batch, channels, samples) array
    (channels are averaged). Returns float64 (batch,), NaN where the tempo is unknown."""
    c = np.asarray(clips, dtype=np.float32)
    if c.ndim == 1:
        c = c[None]
    if c.ndim == 3:
        c = c.mean(axis=1)
    return np.array([estimate_tempo(row, sr, bpm_range) for row in c], dtype=np.float64)


def beat_phase(env: np.ndarray, fps: float, bpm: float) -> float:
    """Time (s, in [0, 60/bpm)) of the first beat of an onset envelope whose tempo is ``bpm``.

    A comb filter: every candidate offset is scored by the mean envelope (linearly interpolated) at
    offset + k * period over the whole envelope, and the best one wins; with a steady tempo the
    beats are where the onsets pile up. NaN when the tempo is unknown or the envelope is flat.
    """
    env = np.asarray(env, dtype=np.float64).reshape(-1)
    if not (np.isfinite(bpm) and bpm > 0) or env.size < 2 or not np.any(env != env[0]):
        return float("nan")
    period = 60.0 * fps / float(bpm)  # frames per beat
    if env.size < period:
        return float("nan")
    offsets = np.arange(0.0, period, 0.25)
    ks = np.arange(0.0, (env.size - 1) / period + 1)
    pos = offsets[:, None] + ks[None, :] * period  # (candidates, beats)
    inside = pos <= env.size - 1
    vals = np.interp(np.where(inside, pos, 0.0), np.arange(env.size), env)
    score = np.where(inside, vals, 0.0).sum(1) / np.maximum(inside.sum(1), 1)
    return float(offsets[int(np.argmax(score))] / fps)


def estimate_beats(x: np.ndarray, sr: int, bpm_range=(60.0, 200.0), bpm: float | None = None) -> tuple[float, float]:
    """(tempo in BPM, time of the first beat in s) of a stretch of steady-tempo audio; NaNs when unknown.
    With ``bpm`` known (a label), only the first beat is estimated."""
    x = np.asarray(x).reshape(-1)
    if bpm is None and len(x) < 2.0 * 60.0 / float(bpm_range[0]) * sr:
        return float("nan"), float("nan")
    env, fps = tempo_envelope(x, sr)
    if bpm is None:
        bpm = tempo_from_envelope(env, fps, bpm_range)
    first = beat_phase(env, fps, bpm)
    # the flux of an onset peaks ~0.7 frame before it (the window sees the attack half a window early);
    # measured on click tracks at 8-44.1 kHz
    return bpm, float((first + ONSET_LEAD_FRAMES / fps) % (60.0 / bpm)) if np.isfinite(first) else first
