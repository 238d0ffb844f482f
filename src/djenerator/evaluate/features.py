"""Audio features for evaluation: a log-mel spectrogram and a fixed-size clip embedding.

Everything is batched over clips and runs on CPU with torch.stft; the mel filterbank is
:func:`djenerator.dsp.mel.mel_filterbank` (no torchaudio/librosa needed). The clip embedding (``clip_features``) is what the
distribution distances (Frechet, KID), diversity and the feature-space nearest-neighbour check
measure, so its layout is documented and stable (see ``FEATURE_NAMES``).
"""
from __future__ import annotations

import numpy as np
import torch

from ..dsp.mel import mel_filterbank

__all__ = [
    "as_batch",
    "power_spectrogram",
    "log_mel",
    "clip_features",
    "feature_names",
]

LOG_FLOOR = 1e-6  # added to power before the log so silence is finite (about -60 dB re. full scale)


def as_batch(x) -> torch.Tensor:
    """Any of (T,), (N, T) or (N, C, T), numpy or torch -> float32 tensor (N, T) (channels averaged)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    t = t.detach().to(torch.float32)
    if t.ndim == 1:
        t = t[None]
    elif t.ndim == 3:
        t = t.mean(dim=1)
    elif t.ndim != 2:
        raise ValueError(f"expected audio of shape (T,), (N, T) or (N, C, T), got {tuple(t.shape)}")
    return t


def power_spectrogram(x, n_fft: int = 1024, hop: int = 256) -> torch.Tensor:
    """|STFT|^2 with a periodic Hann window, centred frames (reflect padding): (N, n_fft//2+1, frames)."""
    t = as_batch(x)
    if t.shape[-1] <= n_fft // 2:  # reflect padding needs T > n_fft/2
        t = torch.nn.functional.pad(t, (0, n_fft // 2 + 1 - t.shape[-1]))
    win = torch.hann_window(n_fft, periodic=True, dtype=torch.float32)
    spec = torch.stft(t, n_fft=n_fft, hop_length=hop, window=win, center=True, pad_mode="reflect",
                      return_complex=True)
    return spec.real.square() + spec.imag.square()


def log_mel(x, sr: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 64, fmin: float = 0.0,
            fmax: float | None = None, chunk: int = 256) -> torch.Tensor:
    """Natural-log mel power spectrogram (N, n_mels, frames), log(mel power + 1e-6).

    Processed ``chunk`` clips at a time so 10,000 clips never hold all STFTs in memory at once.
    """
    t = as_batch(x)
    fb = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    out = []
    for i in range(0, t.shape[0], chunk):
        p = power_spectrogram(t[i:i + chunk], n_fft, hop)
        out.append(torch.log(torch.matmul(fb, p) + LOG_FLOOR))
    if not out:
        return torch.zeros(0, n_mels, 0)
    return torch.cat(out, dim=0)


def feature_names(n_mels: int = 64) -> list[str]:
    """Names of the ``clip_features`` columns, in order."""
    return ([f"logmel_mean_{i}" for i in range(n_mels)] + [f"logmel_std_{i}" for i in range(n_mels)]
            + ["flux_mean", "flux_std", "log_energy_mean", "log_energy_std",
               "centroid_mean", "centroid_std", "flatness_mean", "flatness_std"])


def clip_features(x, sr: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 64, chunk: int = 256) -> np.ndarray:
    """One embedding per clip, (N, 2*n_mels + 8) float64, from frame statistics of the log-mel spectrogram.

    Columns (``feature_names``): per mel band the mean and the std over frames of the log power
    (timbre and its movement); then mean/std over frames of
      - spectral flux: mean over bands of the positive log-mel increase between frames (onsets, rhythm),
      - log frame energy: log of the summed mel power (loudness and dynamics),
      - spectral centroid in mel-band units / n_mels, in [0, 1] (brightness),
      - spectral flatness of the mel power: geometric / arithmetic mean (noisiness).
    The std of a one-frame clip is 0. The features are in their natural units; standardise them
    with the real data's statistics before distances where no band should dominate
    (``metrics.standardise``). Frechet distance and KID use these unchanged by default, like
    FAD uses raw VGGish embeddings.
    """
    t = as_batch(x)
    out = []
    for i in range(0, t.shape[0], chunk):
        lm = log_mel(t[i:i + chunk], sr, n_fft, hop, n_mels, chunk=chunk).double()  # (n, M, F)
        n, m, f = lm.shape
        mean = lm.mean(-1)
        std = lm.std(-1, unbiased=False)
        if f > 1:
            flux = torch.relu(lm[..., 1:] - lm[..., :-1]).mean(1)  # (n, F-1)
        else:
            flux = torch.zeros(n, 1, dtype=lm.dtype)
        power = torch.exp(lm) - LOG_FLOOR
        power = power.clamp_min(0.0)
        total = power.sum(1)  # (n, F)
        log_energy = torch.log(total + LOG_FLOOR)
        bands = torch.arange(m, dtype=lm.dtype)[None, :, None]
        centroid = (power * bands).sum(1) / (total + 1e-12) / m
        flat = torch.exp(lm.mean(1)) / (torch.exp(lm).mean(1))  # log already floored: silence -> 1/1
        stats = []
        for s in (flux, log_energy, centroid, flat):
            stats += [s.mean(-1, keepdim=True), s.std(-1, unbiased=False, keepdim=True)]
        out.append(torch.cat([mean, std] + stats, dim=1).numpy())
    if not out:
        return np.zeros((0, 2 * n_mels + 8))
    return np.concatenate(out, axis=0)
