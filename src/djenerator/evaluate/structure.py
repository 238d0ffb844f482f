"""Structure at the bar: does a piece repeat itself by the bar, as riffs do?

A piece is cut at its beats into sixteenth-note slots; each slot is described by its log energy in
log-spaced bands, and each beat by its four slots. Music that repeats a riff by the bar has beats that
resemble the beat one bar (and two bars) later more than the beat at other lags; a drone resembles
every lag alike, and a sequence of unrelated bars resembles none. Pure numpy functions.
"""
from __future__ import annotations

import numpy as np

from ..dsp.beat import estimate_beats, frames as stft_frames


def band_energies(x: np.ndarray, sr: int, hop: int, n_bands: int = 8, fmin: float = 40.0) -> np.ndarray:
    """Log energy per frame in ``n_bands`` log-spaced bands from ``fmin`` to ``sr / 2``: (frames, bands).
    Frame ``t`` is centred on sample ``t * hop``."""
    n_fft = 1 << int(np.ceil(np.log2(0.04 * sr)))  # ~40 ms windows at any rate
    windowed = stft_frames(x, hop, n_fft) * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(windowed, axis=1)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = np.geomspace(fmin, sr / 2, n_bands + 1)
    bands = [power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:])]
    return np.log10(1e-8 + np.stack(bands, axis=1))


def beat_features(x: np.ndarray, sr: int, bpm: float, first_beat: float = 0.0, subdiv: int = 4,
                  n_bands: int = 8) -> np.ndarray:
    """One vector per whole beat in ``x``: the mean band energies of its ``subdiv`` slots, (beats, subdiv * bands)."""
    hop = max(1, sr // 200)  # 5 ms frames: a sixteenth at 200 BPM still spans 15
    energy = band_energies(np.asarray(x, dtype=np.float64).reshape(-1), sr, hop, n_bands)
    frame_t = np.arange(len(energy)) * hop / sr
    beat = 60.0 / bpm
    n_beats = int(np.floor((len(x) / sr - first_beat) / beat))
    slots = first_beat + np.arange(n_beats * subdiv + 1) * beat / subdiv
    idx = np.searchsorted(frame_t, slots)
    feats = [energy[a:b].mean(axis=0) if b > a else energy[min(a, len(energy) - 1)] for a, b in zip(idx[:-1], idx[1:])]
    return np.asarray(feats).reshape(n_beats, subdiv * n_bands) if n_beats > 0 else np.zeros((0, subdiv * n_bands))


def lag_similarity(feats: np.ndarray, lag: int) -> float:
    """Mean cosine similarity between each beat's vector and the one ``lag`` beats later, after removing the
    piece's mean beat (so a constant level counts for nothing)."""
    f = np.asarray(feats, dtype=np.float64)
    f = f - f.mean(axis=0)
    a, b = f[:-lag], f[lag:]
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    ok = norms > 1e-9
    return float(np.mean(np.sum(a * b, axis=1)[ok] / norms[ok])) if ok.any() else 0.0


def bar_repetition(x: np.ndarray, sr: int, bpm: float | None = None, first_beat: float | None = None,
                   beats_per_bar: int = 4, max_cycle_beats: int = 16) -> dict[str, float]:
    """Beat-synchronous self-similarity at lags of one and two bars against the other lags up to two bars,
    and the riff cycle: the most similar lag of 2 to ``max_cycle_beats`` beats (a 5/16 cell over 4/4 comes
    round every 5 beats, so odd-time riffs that never repeat by the bar still repeat).

    ``score`` = mean similarity at the bar lags - mean at the others: about 0 for a drone or unrelated bars,
    1 or a little more for a bar played again and again (with the mean beat removed, the other beats of a
    repeated bar resemble each other slightly less than chance). The tempo and first beat are estimated when not given. NaN
    when the piece holds fewer than three bars.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if bpm is None or first_beat is None:
        est_bpm, est_first = estimate_beats(x, sr)
        bpm = est_bpm if bpm is None else bpm
        first_beat = est_first if first_beat is None else first_beat
    nan = {k: float("nan") for k in ("bar", "two_bars", "other", "score", "cycle", "cycle_beats")}
    nan["bpm"] = float(bpm) if bpm else float("nan")
    if not bpm or not np.isfinite(bpm) or bpm <= 0:
        return nan
    feats = beat_features(x, sr, float(bpm), float(first_beat or 0.0))
    if len(feats) < 3 * beats_per_bar:
        return nan
    n_lags = max(2 * beats_per_bar, min(max_cycle_beats, len(feats) // 2))
    sims = {lag: lag_similarity(feats, lag) for lag in range(1, n_lags + 1)}
    bar_lags = (beats_per_bar, 2 * beats_per_bar)
    other = float(np.mean([s for lag, s in sims.items() if lag <= bar_lags[1] and lag not in bar_lags]))
    bar, two = sims[bar_lags[0]], sims[bar_lags[1]]
    cycle = max(range(2, n_lags + 1), key=lambda lag: sims[lag])
    return {"bar": bar, "two_bars": two, "other": other, "score": (bar + two) / 2 - other,
            "cycle": sims[cycle], "cycle_beats": float(cycle), "bpm": float(bpm)}
