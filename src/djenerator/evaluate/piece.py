"""A long generated piece against the recordings it imitates: noise, rhythm and rests, in three numbers.

- spectral flatness (per-frame, averaged): white noise ~0.56, a tone ~0; Djent riffs ~0.03;
- onset rate (onsets per second, ``rhythm.onset_rate``);
- energy CV: the coefficient of variation (std / mean) of frame energy. A steady drone or a pulse without
  rests reads low (~0.3), riffs with palm-muted chugs and rests read ~0.6-0.7.

Used by the demo's verdict and by ``benchmarks/train_base.py`` to pick the shipped base model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .features import power_spectrogram
from .metrics import spectral_flatness
from .rhythm import onset_rate

# (measure, allowed ratio band generated / real): flatness within 2x, onset rate within 50 %, energy CV within 30 %
TARGETS = {"flatness": (0.5, 2.0), "onset_rate": (0.5, 1.5), "energy_cv": (0.7, 1.3)}
NAMES = {"flatness": "spectral flatness", "onset_rate": "onsets per second", "energy_cv": "energy variation (CV)"}


def energy_cv(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> float:
    """Coefficient of variation of frame energy (power summed over the spectrum); 0 for silence."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32).reshape(1, 1, -1))
    e = power_spectrogram(x, n_fft, hop)[0].sum(0).double()
    m = float(e.mean())
    return float(e.std() / m) if m > 1e-12 else 0.0


def audio_stats(x: np.ndarray, sr: int) -> dict[str, float]:
    """flatness, onset_rate and energy_cv of one mono signal."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    return {"flatness": float(spectral_flatness(x[None], sr)[0]), "onset_rate": onset_rate(x, sr),
            "energy_cv": energy_cv(x)}


def folder_stats(folder: str | Path, sr: int, limit: int = 64) -> dict[str, float]:
    """Mean :func:`audio_stats` over the audio files of ``folder`` (first ``limit``), resampled to ``sr``."""
    from ..audio import load_audio

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3"))[:limit]
    if not files:
        raise FileNotFoundError(f"no audio files in {folder}")
    stats = [audio_stats(load_audio(f, sr)[0], sr) for f in files]
    return {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}


def mean_stats(stats: list[dict[str, float]]) -> dict[str, float]:
    """The mean of several :func:`audio_stats`, measure by measure."""
    return {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}


def compare(gen: dict[str, float], real: dict[str, float]) -> dict[str, dict]:
    """Per measure: generated, real, ratio and whether the ratio is inside its ``TARGETS`` band."""
    out = {}
    for k, (lo, hi) in TARGETS.items():
        ratio = gen[k] / real[k] if real[k] > 0 else float("inf")
        out[k] = {"generated": gen[k], "real": real[k], "ratio": ratio, "ok": bool(lo <= ratio <= hi)}
    return out


def verdict_lines(cmp: dict[str, dict], pieces: list[dict[str, float]] | None = None) -> list[str]:
    """Plain-words verdict: one line per measure (with the range over ``pieces`` if given), then one overall."""
    lines = []
    for k, c in cmp.items():
        lo, hi = TARGETS[k]
        mark = "ok " if c["ok"] else "not yet"
        spread = f" [{min(p[k] for p in pieces):.3f}-{max(p[k] for p in pieces):.3f}]" if pieces else ""
        lines.append(f"  {mark:7s} {NAMES[k]:22s} generated {c['generated']:.3f}{spread}  riffs {c['real']:.3f}  "
                     f"(ratio {c['ratio']:.2f}, target {lo:g}-{hi:g})")
    if all(c["ok"] for c in cmp.values()):
        lines.append("  verdict: like the riffs on noise, rhythm and rests.")
    else:
        bad = []
        if not cmp["flatness"]["ok"]:
            bad.append("noisier than the riffs" if cmp["flatness"]["ratio"] > 1 else "more tonal than the riffs")
        if not cmp["onset_rate"]["ok"]:
            bad.append("too many onsets" if cmp["onset_rate"]["ratio"] > 1 else "too few onsets")
        if not cmp["energy_cv"]["ok"]:
            bad.append("too steady (few rests)" if cmp["energy_cv"]["ratio"] < 1 else "more uneven than the riffs")
        lines.append(f"  verdict: not there yet ({'; '.join(bad)}). Train longer.")
    return lines
