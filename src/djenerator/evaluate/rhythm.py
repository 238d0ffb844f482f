"""Rhythm DSP as pure numpy/scipy functions: onset envelope, onsets, onset rate, IOI histogram, tempo.

Conventions: ``x`` is mono float audio (1-D); times are seconds; the onset envelope has one value
per STFT frame, frame ``t`` centred on sample ``t * hop`` (the signal is zero-padded by
``n_fft // 2`` on both sides), so its frame rate is ``sr / hop``.

Tempo method (:func:`estimate_tempo`):

1. Tempo envelope (:func:`tempo_envelope`): the log-magnitude spectral flux of
   :func:`onset_envelope`, computed in four bands (<500 Hz, 500-2000 Hz, 2-5 kHz, >5 kHz), each
   band's flux standardised (mean 0, std 1) and summed with weights 0.5, 0.5, 1, 3. Cymbals, hats
   and snare carry the 4/4 pulse, while in Djent the low and mid bands (guitar, kick) play
   deliberately odd groupings that repeat every 5, 7, 9... sixteenths; full-band flux locks onto
   that riff period about a third of the time, the band-weighted one on the beat (measured on the
   built-in synth riffs). Silent bands are skipped, so band-limited audio still works.
2. Its autocorrelation (unbiased: divided by the overlap length) over lags that correspond to
   ``bpm_range``.
3. Each candidate beat lag L is scored by a pulse-train (harmonic) sum
   ``ac(L) + ac(2L)/2 + ac(3L)/3 + ac(4L)/4`` (octave-robust: the true beat also lines up at its
   multiples), times a broad log-Gaussian prior on tempo centred on 120 BPM (sigma 1 octave), as in
   Ellis (2007) and librosa. The prior only breaks near-ties between tempo octaves, e.g. a 90 BPM
   riff full of eighth notes is not reported as 180 BPM.
4. The chosen lag is refined to sub-frame precision by parabolic interpolation of the
   autocorrelation peaks at L, 2L, 3L, 4L (each divided by its multiple and averaged), which gives
   <1% error at 62.5 frames/s.

Clips shorter than two beats at the slowest tempo in ``bpm_range`` return NaN: there is not enough
signal for an autocorrelation at that lag, and a number would be noise.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.signal import get_window

DEFAULT_IOI_BINS = np.linspace(0.0, 1.0, 41)


def _frames(x: np.ndarray, hop: int, n_fft: int) -> np.ndarray:
    pad = n_fft // 2
    xp = np.pad(np.asarray(x, dtype=np.float64), (pad, pad))
    n_frames = 1 + max(0, (len(xp) - n_fft) // hop)
    return np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop][:n_frames]


def onset_envelope(x: np.ndarray, sr: int, hop: int = 256, n_fft: int = 1024) -> tuple[np.ndarray, float]:
    """Spectral-flux onset strength, one value per frame, and the envelope's frame rate (``sr / hop``).

    ``S[t, k] = log(1 + 1000 * |STFT[t, k]| / sum(window))`` (Hann window, centred frames), then
    ``env[t] = mean_k max(0, S[t, k] - S[t-1, k])`` with ``env[0] = 0``. The log compression makes
    the flux depend on relative (dB-like) change, so quiet hats count as well as loud chugs; the
    constant 1000 sets the floor ~-60 dB below full scale so noise floors do not flicker.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return np.zeros(0), sr / hop
    win = get_window("hann", n_fft, fftbins=True)
    fr = _frames(x, hop, n_fft) * win
    mag = np.abs(np.fft.rfft(fr, axis=1)) / win.sum()
    s = np.log1p(1000.0 * mag)
    env = np.zeros(len(s))
    if len(s) > 1:
        env[1:] = np.maximum(0.0, np.diff(s, axis=0)).mean(axis=1)
    return env, sr / hop


def detect_onsets(x: np.ndarray, sr: int, hop: int = 256, n_fft: int = 1024, threshold: float | None = None,
                  min_gap_s: float = 0.05) -> np.ndarray:
    """Onset times (s): peaks of the onset envelope above an adaptive threshold.

    The envelope is scaled to max 1. A frame is an onset when it is the maximum within +-3 frames,
    exceeds the local mean over +-0.15 s plus ``threshold`` (default 0.05), and is at least
    ``min_gap_s`` after the previous onset (the stronger of two close peaks wins). A frame's time is
    its centre, ``frame * hop / sr``; on the synth riffs this lands ~5 ms before the true attack.
    """
    env, fps = onset_envelope(x, sr, hop, n_fft)
    if env.size < 3 or env.max() <= 0:
        return np.zeros(0)
    e = env / env.max()
    delta = 0.05 if threshold is None else float(threshold)
    w_mean = max(1, int(round(0.15 * fps)))
    local = ndimage.uniform_filter1d(e, 2 * w_mean + 1, mode="nearest")
    local_max = ndimage.maximum_filter1d(e, 7, mode="nearest")
    cand = np.flatnonzero((e == local_max) & (e > local + delta) & (e > 0))
    # enforce the minimum gap greedily by strength
    min_gap = max(1, int(round(min_gap_s * fps)))
    order = cand[np.argsort(-e[cand], kind="stable")]
    taken = np.zeros(len(e), dtype=bool)
    keep = []
    for i in order:
        lo, hi = max(0, i - min_gap + 1), min(len(e), i + min_gap)
        if not taken[lo:hi].any():
            keep.append(i)
            taken[i] = True
    frames = np.sort(np.asarray(keep, dtype=np.int64))
    return np.maximum(0.0, frames / fps)


def onset_contrast(x: np.ndarray, sr: int, hop: int = 256, n_fft: int = 1024) -> float:
    """How much the onset envelope stands out: its 95th percentile over its median (floored at 1e-3 of
    its maximum). Music with attacks and rests reads >~4 (the built-in riffs ~6, a click track 100s);
    stationary noise ~1.2, because its flux fluctuates evenly, and :func:`detect_onsets`, which scales the
    envelope to its maximum, then finds chance peaks. Silence gives NaN."""
    env, _ = onset_envelope(x, sr, hop, n_fft)
    if env.size < 3 or env.max() <= 0:
        return float("nan")
    return float(np.percentile(env, 95) / max(float(np.median(env)), 1e-3 * float(env.max())))


def stitch(clips, starts_s, sr: int) -> np.ndarray:
    """Rebuild one stretch of a file from clips (N, T) cut from it, given their start times (s).

    Clips are laid in start order; each one's samples past the end of what is already built are appended,
    after scaling the clip onto the overlap by least squares. A prepared clip may carry its own gain
    (``prepare --normalize peak``), and gains that jump every hop would add a pulse of their own for the
    tempo estimator to find. Gaps between clips are silence. Returns float64, peak-normalised to 1.
    """
    c = np.asarray(clips, dtype=np.float64).reshape(len(starts_s), -1)
    order = np.argsort(np.asarray(starts_s, dtype=np.float64), kind="stable")
    pos = np.round((np.asarray(starts_s, dtype=np.float64) - float(np.min(starts_s))) * sr).astype(np.int64)
    out = np.zeros(int(pos.max()) + c.shape[1])
    end = 0
    for k in order:
        p, row = int(pos[k]), c[k]
        ov = max(0, min(end - p, len(row)))
        if ov > 0:
            den = float(row[:ov] @ row[:ov])
            row = row * (float(out[p:p + ov] @ row[:ov]) / den if den > 0 else 1.0)
        out[p + ov:p + len(row)] = row[ov:]
        end = max(end, p + len(row))
    peak = float(np.max(np.abs(out)))
    return out / peak if peak > 0 else out


def onset_rate(x: np.ndarray, sr: int) -> float:
    """Detected onsets per second of audio."""
    x = np.asarray(x).reshape(-1)
    if x.size == 0:
        return 0.0
    return float(len(detect_onsets(x, sr)) / (len(x) / sr))


def ioi_histogram(onsets_s, bins=DEFAULT_IOI_BINS) -> np.ndarray:
    """Histogram of inter-onset intervals (s) over ``bins`` edges, normalised to sum 1 (all zeros when
    there are fewer than two onsets or no interval falls inside the bins)."""
    o = np.sort(np.asarray(onsets_s, dtype=np.float64).reshape(-1))
    bins = np.asarray(bins, dtype=np.float64)
    h = np.histogram(np.diff(o), bins=bins)[0].astype(np.float64) if o.size >= 2 else np.zeros(len(bins) - 1)
    s = h.sum()
    return h / s if s > 0 else h


ONSET_LEAD_FRAMES = 0.7
TEMPO_BANDS_HZ = (0.0, 500.0, 2000.0, 5000.0, np.inf)
TEMPO_BAND_WEIGHTS = (0.5, 0.5, 1.0, 3.0)


def tempo_envelope(x: np.ndarray, sr: int, hop: int = 256, n_fft: int = 1024) -> tuple[np.ndarray, float]:
    """Band-weighted spectral flux used for tempo (see the module docstring), and its frame rate."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return np.zeros(0), sr / hop
    win = get_window("hann", n_fft, fftbins=True)
    s = np.log1p(1000.0 * np.abs(np.fft.rfft(_frames(x, hop, n_fft) * win, axis=1)) / win.sum())
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
    """Tempo (BPM) from an onset envelope; see the module docstring for the method. NaN if too short."""
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
    """Tempo in BPM from the autocorrelation of the onset envelope (method in the module docstring).

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
