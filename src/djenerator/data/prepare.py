"""Folder of audio -> dataset of fixed-length clips, streamed so a collection larger than RAM never loads whole.

Layout of a dataset folder:
- ``clips.npy``: float32 (N, clip_samples), opened with ``mmap_mode='r'``
- ``manifest.json``: sample rate, clip length, hop, and for every clip its source file, start time, tempo
  (``bpm``) and beat phase (``beat``: where in the beat the clip starts, in [0, 1); 0 = on a beat)

Tempo and beats come from a sidecar ``.json`` next to the audio (``bpm``, optional ``first_beat`` in s; the
built-in synth writes both) or are estimated per 30-s block (:func:`djenerator.evaluate.rhythm.estimate_beats`).

Everything is written under a temporary folder name and renamed at the end, so an interrupted or failed
run never leaves a half-written dataset behind.
"""
from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..audio import AUDIO_EXTENSIONS, AudioError, audio_info, iter_blocks, rms_db
from ..config import DataConfig

NPY_HEADER_BYTES = 128


class PrepareError(ValueError):
    """The whole preparation cannot go on (no source, no usable audio, output exists)."""


@dataclass
class PrepareReport:
    out: Path
    n_clips: int = 0
    files_used: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    silent_clips: int = 0
    seconds: float = 0.0


def find_audio(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _npy_header(n: int, t: int) -> bytes:
    """A .npy v1 header padded to a fixed size, so it can be written first and fixed up at the end."""
    d = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, t)
    pad = NPY_HEADER_BYTES - 10 - len(d) - 1
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d) + pad + 1) + (d + " " * pad + "\n").encode("latin1")


def _clips_from_stream(blocks: Iterable[np.ndarray], clip: int, hop: int) -> Iterable[tuple[int, np.ndarray, int, np.ndarray, int]]:
    """Yield (start_sample, clip, block_index, block, block_start_sample) from a stream of blocks (the block
    gives tempo context)."""
    buf = np.zeros(0, dtype=np.float32)
    offset = 0  # absolute sample index of buf[0]
    block_start = 0
    for bi, block in enumerate(blocks):
        buf = np.concatenate([buf, block])
        pos = 0
        while pos + clip <= len(buf):
            yield offset + pos, buf[pos:pos + clip], bi, block, block_start
            pos += hop
        block_start += len(block)
        buf = buf[pos:]
        offset += pos


def _file_peak(path: Path, sr: int) -> float:
    return max((float(np.max(np.abs(b))) for b in iter_blocks(path, sr)), default=0.0)


def _sidecar_beats(path: Path) -> tuple[float | None, float | None]:
    """(bpm, first beat in s) from a sidecar ``.json`` next to the audio; None where absent."""
    meta = path.with_suffix(".json")
    if meta.is_file():
        try:
            d = json.loads(meta.read_text())
            bpm, first = d.get("bpm"), d.get("first_beat")
            return (float(bpm) if bpm is not None else None), (float(first) if first is not None else None)
        except (ValueError, OSError, AttributeError, TypeError):
            return None, None
    return None, None


def _beat_at(t: float, bpm: float | None, first_beat: float | None) -> float | None:
    """Beat phase in [0, 1) at time t (s) of a steady beat at ``bpm`` with a beat at ``first_beat``."""
    if bpm is None or first_beat is None or not (np.isfinite(bpm) and np.isfinite(first_beat)):
        return None
    return float(((t - first_beat) * bpm / 60.0) % 1.0)


def prepare(src: str | Path, out: str | Path, cfg: DataConfig | None = None, overwrite: bool = False,
            log: Callable[[str], None] = print, progress: bool = True) -> PrepareReport:
    """Cut every readable audio file under ``src`` into clips; skip and report bad files."""
    cfg = cfg or DataConfig()
    src, out = Path(src), Path(out)
    if not src.exists():
        raise PrepareError(f"source not found: {src}")
    files = find_audio(src)
    if not files:
        raise PrepareError(f"no audio files (wav, flac, ogg, mp3) under {src}")
    if out.exists() and not overwrite:
        raise PrepareError(f"output {out} already exists (use --overwrite to replace it)")
    clip, sr = cfg.clip_samples, cfg.sample_rate
    hop = cfg.hop_samples or clip
    if cfg.estimate_tempo:
        from ..evaluate.rhythm import estimate_beats

    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    report = PrepareReport(out=out)
    entries: list[dict] = []
    try:
        with open(tmp / "clips.npy", "wb") as fh:
            fh.write(_npy_header(0, clip))
            bar = _progress(files, progress)
            for path in bar:
                rel = str(path.relative_to(src)) if src.is_dir() else path.name
                try:
                    n_before = len(entries)
                    gain = None
                    if cfg.normalize == "file":
                        peak = _file_peak(path, sr)
                        gain = 0.95 / peak if peak > 0 else None
                    label, label_first = _sidecar_beats(path)
                    beats_block = -1  # the block whose (bpm, first beat in s from the file start) is known
                    for start, c, bi, block, b0 in _clips_from_stream(iter_blocks(path, sr), clip, hop):
                        if rms_db(c) < cfg.silence_db:
                            report.silent_clips += 1
                            continue
                        if cfg.normalize == "peak":
                            c = c * (0.95 / max(float(np.max(np.abs(c))), 1e-9))
                        elif gain is not None:
                            c = c * gain
                        c = np.clip(c, -1.0, 1.0).astype("<f4")
                        if bi != beats_block:
                            beats_block, bpm, first = bi, label, label_first
                            if cfg.estimate_tempo and first is None:
                                bpm, first = estimate_beats(block, sr, bpm=label)
                                first = b0 / sr + first
                        beat = _beat_at(start / sr, bpm, first)
                        fh.write(c.tobytes())
                        entries.append({"file": rel, "start": round(start / sr, 6),
                                        "bpm": None if bpm is None or not np.isfinite(bpm) else round(bpm, 2),
                                        "beat": None if beat is None else round(beat, 4)})
                    if len(entries) == n_before:
                        info = audio_info(path)
                        if info.frames / max(info.samplerate, 1) * sr < clip:
                            raise AudioError(f"{path}: shorter than one clip ({clip} samples at {sr} Hz)")
                        log(f"note: {path}: every clip was near-silent (below {cfg.silence_db} dBFS); nothing kept")
                    report.files_used.append(rel)
                except AudioError as e:
                    fh.seek(NPY_HEADER_BYTES + n_before * clip * 4)
                    fh.truncate()
                    del entries[n_before:]
                    report.skipped.append((str(path), str(e)))
                    log(f"skipped: {e}")
            fh.seek(0)
            fh.write(_npy_header(len(entries), clip))
        if not entries:
            raise PrepareError(f"no usable clips in {src}: {len(report.skipped)} file(s) skipped, "
                               f"{report.silent_clips} silent clip(s) dropped")
        report.n_clips = len(entries)
        report.seconds = len(entries) * hop / sr
        manifest = {"version": 1, "sample_rate": sr, "clip_samples": clip, "hop_samples": hop,
                    "normalize": cfg.normalize, "n_clips": len(entries), "source": str(src.resolve()),
                    "files": report.files_used, "skipped": [{"file": f, "reason": r} for f, r in report.skipped],
                    "clips": entries}
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def _progress(files: list[Path], enabled: bool):
    if not enabled:
        return files
    from tqdm import tqdm

    return tqdm(files, desc="prepare", unit="file")
