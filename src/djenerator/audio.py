"""Audio I/O and the small DSP every stage shares: load, mono, resample, normalise, write.

Audio inside the program is float32 in [-1, 1]. soundfile reads wav/flac/ogg (and mp3 where the
installed libsndfile supports it); soxr resamples with a high-quality polyphase filter.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .io import atomic_path, printable

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
SOURCE_RATE_LIMITS = (2000, 768000)  # Hz: a header outside this range is damaged or hostile


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the problem (always printable)."""

    def __init__(self, message: str):
        super().__init__(printable(message))


def to_mono(x: np.ndarray) -> np.ndarray:
    """(frames,) or (frames, channels) -> (frames,) by averaging channels."""
    x = np.asarray(x, dtype=np.float32)
    return x if x.ndim == 1 else x.mean(axis=1, dtype=np.float32)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    return soxr.resample(np.asarray(x, dtype=np.float32), sr_in, sr_out, quality="HQ").astype(np.float32)


def peak_normalize(x: np.ndarray, peak: float = 0.95) -> np.ndarray:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return (x * (peak / m)).astype(np.float32) if m > 0 else x.astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20.0 * np.log10(max(r, 1e-12))


def audio_info(path: Path) -> sf._SoundFileInfo:
    try:
        return sf.info(os.fsencode(path))  # bytes: a name that is not UTF-8 opens too
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types for unreadable files
        raise AudioError(f"{path}: not a readable audio file ({_short(e)})") from None


def source_info(path: Path) -> sf._SoundFileInfo:
    """:func:`audio_info` of a file to decode: some audio, at a rate within ``SOURCE_RATE_LIMITS``."""
    info = audio_info(path)
    if info.frames == 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: contains no audio (zero length)")
    lo, hi = SOURCE_RATE_LIMITS
    if not lo <= info.samplerate <= hi:
        raise AudioError(f"{path}: sample rate {info.samplerate} Hz is outside {lo}-{hi} Hz; the header is damaged")
    return info


def wav_declared_bytes(path: Path) -> tuple[int, int] | None:
    """(bytes the RIFF 'data' chunk declares, bytes actually present), or None if not a plain RIFF/WAV.

    libsndfile silently shortens a truncated WAV to what is there; this lets us report it instead.
    """
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                return clen, size - pos - 8
            pos += 8 + clen + (clen & 1)
    return None


def iter_blocks(path: Path, sr_out: int, block_seconds: float = 30.0):
    """Stream a file as mono float32 blocks at ``sr_out`` so a long recording never loads whole.

    Resampling is done with a streaming soxr object so block edges are seamless.
    """
    path = Path(path)
    info = source_info(path)
    if path.suffix.lower() == ".wav" and (sizes := wav_declared_bytes(path)) and sizes[1] < sizes[0] and sizes[0] != 0xFFFFFFFF:
        raise AudioError(f"{path}: truncated (header declares {sizes[0]} bytes of audio, file holds {sizes[1]})")
    block = max(1024, int(block_seconds * info.samplerate))
    rs = None if info.samplerate == sr_out else soxr.ResampleStream(info.samplerate, sr_out, 1, dtype="float32", quality="HQ")
    read = 0
    try:
        with sf.SoundFile(os.fsencode(path)) as f:
            while True:
                data = f.read(block, dtype="float32", always_2d=True)
                read += len(data)
                last = len(data) < block
                if len(data) == 0 and not last:
                    break
                if not np.all(np.isfinite(data)):
                    raise AudioError(f"{path}: contains NaN or infinite samples")
                mono = data.mean(axis=1, dtype=np.float32)
                out = mono if rs is None else rs.resample_chunk(mono, last=last)
                if len(out):
                    yield out
                if last:
                    break
        if read < info.frames:
            raise AudioError(f"{path}: truncated (header promises {info.frames} frames, file holds {read})")
    except AudioError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated/corrupt files fail in many ways inside libsndfile
        raise AudioError(f"{path}: cannot decode audio ({_short(e)})") from None


def load_audio(path: str | Path, sr: int | None = None) -> tuple[np.ndarray, int]:
    """Whole file as mono float32 at ``sr`` (its own rate if None)."""
    path = Path(path)
    info = audio_info(path)
    target = sr or info.samplerate
    blocks = list(iter_blocks(path, target))
    if not blocks:
        raise AudioError(f"{path}: contains no audio (zero length)")
    return np.concatenate(blocks), target


def write_wav(path: str | Path, audio: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    """Write mono (T,) or (C, T) float audio, clipped to [-1, 1], atomically."""
    path = Path(path)
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.T
    a = np.clip(np.nan_to_num(a), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), a, sr, subtype=subtype, format="WAV")
    return path


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:200]
