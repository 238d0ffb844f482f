"""The mel scale and triangular mel filters, as librosa and torchaudio build them (neither is needed).

Below both ``models/`` (the codec's mel loss) and ``evaluate/`` (log-mel features).
"""
from __future__ import annotations

import numpy as np
import torch


def hz_to_mel(f, htk: bool = False):
    """Hz -> mel. htk=True: 2595*log10(1+f/700). htk=False (Slaney, librosa's default): linear below
    1 kHz (3 mel per 200 Hz), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp = 200.0 / 3.0
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m, htk: bool = False):
    """Inverse of ``hz_to_mel``."""
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp = 200.0 / 3.0
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sr: int, n_fft: int = 1024, n_mels: int = 64, fmin: float = 0.0, fmax: float | None = None,
                   htk: bool = False, norm: str | None = "slaney") -> torch.Tensor:
    """Triangular mel filters (n_mels, n_fft//2 + 1), float32.

    Filter m rises linearly from mel point m to m+1 and falls to m+2 (n_mels+2 points evenly spaced
    in mel between fmin and fmax), evaluated at the FFT bin frequencies, as in librosa/torchaudio.
    norm="slaney" divides each triangle by its width in Hz (2/(f[m+2]-f[m])) so every band has equal
    area, i.e. measures power density; norm=None leaves peaks at 1.
    """
    fmax = sr / 2.0 if fmax is None else float(fmax)
    if not 0 <= fmin < fmax <= sr / 2.0 + 1e-9:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    fft_freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    hz_pts = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    lower = hz_pts[:-2, None]
    center = hz_pts[1:-1, None]
    upper = hz_pts[2:, None]
    up = (fft_freqs[None] - lower) / np.maximum(center - lower, 1e-10)
    down = (upper - fft_freqs[None]) / np.maximum(upper - center, 1e-10)
    fb = np.maximum(0.0, np.minimum(up, down))
    if norm == "slaney":
        fb *= (2.0 / (upper - lower))
    elif norm is not None:
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    return torch.from_numpy(fb.astype(np.float32))
