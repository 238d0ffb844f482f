"""Waveform peaks and a uint8 spectrogram of a clip, for the page to draw."""
from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np


def analyse(audio: np.ndarray, sr: int, n_peaks: int = 800, max_frames: int = 400) -> dict[str, Any]:
    x = np.asarray(audio, dtype=np.float32)
    T = len(x)
    n = max(1, min(n_peaks, T))
    edges = np.linspace(0, T, n + 1).astype(int)
    mins = [float(x[a:b].min()) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])]
    maxs = [float(x[a:b].max()) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])]
    n_fft = 512 if sr >= 16000 else 256
    n_fft = min(n_fft, 1 << max(4, int(math.log2(max(T, 16)))))
    hop = max(n_fft // 4, math.ceil(max(T - n_fft, 1) / max_frames))
    pad = np.pad(x, (n_fft // 2, n_fft // 2))
    starts = np.arange(0, max(len(pad) - n_fft, 0) + 1, hop)
    frames = np.stack([pad[s:s + n_fft] for s in starts]) * np.hanning(n_fft).astype(np.float32)
    mag = np.abs(np.fft.rfft(frames, axis=1))
    db = 20 * np.log10(mag + 1e-7)
    top = float(db.max()) if db.size else 0.0
    lo = top - 80.0
    q = np.clip((db - lo) / 80.0 * 255.0, 0, 255).astype(np.uint8)
    return {
        "sample_rate": sr, "samples": T, "seconds": T / sr,
        "peaks": {"min": [round(v, 4) for v in mins], "max": [round(v, 4) for v in maxs]},
        "spectrogram": {"frames": int(q.shape[0]), "bins": int(q.shape[1]), "hop": int(hop), "n_fft": int(n_fft),
                        "db_max": round(top, 2), "db_range": 80.0, "max_hz": sr / 2,
                        "data": base64.b64encode(q.tobytes()).decode()},
    }
