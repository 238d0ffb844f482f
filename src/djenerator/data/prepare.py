"""Folder of audio -> dataset of fixed-length clips, streamed so a collection larger than RAM never loads whole.

Layout of a dataset folder:
- ``clips.npy``: float32 (N, clip_samples), opened with ``mmap_mode='r'``
- ``manifest.json``: sample rate, clip length, hop, and for every clip its source file, start time, tempo
  (``bpm``) and beat phase (``beat``: where in the beat the clip starts, in [0, 1); 0 = on a beat)

Tempo and beats come from a sidecar ``.json`` next to the audio (``bpm``, optional ``first_beat`` in s; the
built-in synth writes both) or are estimated per 30-s block (:func:`djenerator.dsp.beat.estimate_beats`).

Everything is written under a temporary folder name (``.NAME.partial``, locked while in use) and renamed at
the end, so an interrupted or failed run never leaves a half-written dataset behind; the next prepare into
the same parent folder removes what a killed one left. ``overwrite`` replaces only a dataset folder, never
one that holds the source.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..audio import AUDIO_EXTENSIONS, AudioError, audio_info, iter_blocks, peak_normalize, rms_db, source_info
from ..config import BPM_LIMITS, DataConfig
from ..io import lock_dir, printable

NPY_HEADER_BYTES = 128
MAX_EXPANSION = 512  # a file may become at most this many times its size in decoded float32 audio


class PrepareError(ValueError):
    """The whole preparation cannot go on (no source, no usable audio, output exists)."""

    def __init__(self, message: str):
        super().__init__(printable(message))


@dataclass
class PrepareReport:
    out: Path
    n_clips: int = 0
    files_used: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    silent_clips: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # labels ignored, stale folders removed


def find_audio(src: Path) -> list[Path]:
    return scan_audio(Path(src))[0]


def scan_audio(src: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """(audio files under ``src``, (entry, reason) for what cannot be read): dangling links, link loops,
    links to folders (not followed), FIFOs and other special files, unreadable folders. Nothing is opened."""
    if src.is_file():
        return [src], []
    files, problems = [], []

    def unreadable(e: OSError) -> None:
        problems.append((printable(e.filename), f"{printable(e.filename)}: folder not readable ({e.strerror})"))

    for root, dirs, names in os.walk(src, onerror=unreadable):
        for name in sorted(dirs + names):
            path = Path(root) / name
            why = _not_audio_file(path, name in dirs)
            if why is None:
                files.append(path)
            elif why:
                problems.append((printable(path), f"{printable(path)}: {why}"))
    return sorted(files), problems


def _not_audio_file(path: Path, listed_as_dir: bool) -> str | None:
    """None for an audio file, "" for something to pass over silently, else why it is skipped."""
    audio = path.suffix.lower() in AUDIO_EXTENSIONS
    try:
        st = path.stat()
    except FileNotFoundError:
        return "a symbolic link to nothing (dangling)"
    except OSError as e:
        return "a symbolic link loop" if e.errno == errno.ELOOP else f"cannot be read ({e.strerror})"
    if listed_as_dir:
        return "a symbolic link to a folder, not followed" if path.is_symlink() else ""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, socket or device); not opened" if audio else ""
    return None if audio else ""


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


def _sidecar_beats(path: Path, note: Callable[[str], None]) -> tuple[float | None, float | None]:
    """(bpm, first beat in s) from a sidecar ``.json`` next to the audio; None where absent. A sidecar that
    cannot be used is reported through ``note`` and ignored."""
    meta = path.with_suffix(".json")
    if not meta.is_file():
        return None, None
    try:
        d = json.loads(meta.read_bytes())
        bpm, first = d.get("bpm"), d.get("first_beat")
        bpm, first = (float(bpm) if bpm is not None else None), (float(first) if first is not None else None)
    except (ValueError, OSError, AttributeError, TypeError) as e:
        note(f"{meta}: not a usable tempo label ({type(e).__name__}: {str(e)[:80]}); ignored")
        return None, None
    if bpm is not None and not BPM_LIMITS[0] <= bpm <= BPM_LIMITS[1]:
        note(f"{meta}: bpm {bpm:g} is not a tempo between {BPM_LIMITS[0]:g} and {BPM_LIMITS[1]:g}; ignored")
        return None, None
    if first is not None and not np.isfinite(first):
        first = None
    return bpm, first


def _check_size(path: Path, sr: int) -> None:
    """Refuse a file whose decoded audio would be implausibly larger than the file (a lying header)."""
    info = source_info(path)
    out_bytes = info.frames / max(info.samplerate, 1) * sr * 4
    in_bytes = path.stat().st_size
    if out_bytes > MAX_EXPANSION * in_bytes + (1 << 20):
        raise AudioError(f"{path}: its header promises {out_bytes / 1e6:.0f} MB of audio from a "
                         f"{in_bytes / 1e3:.0f} KB file (over {MAX_EXPANSION} times its size); not trusted")


def _check_output(src: Path, out: Path, overwrite: bool) -> None:
    """``out`` may be replaced only if asked to, if it is a dataset, and if it does not hold the source."""
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise PrepareError(f"output {out} already exists (use --overwrite to replace it)")
    o, s = out.resolve(), src.resolve()
    if o == s or o in s.parents:
        raise PrepareError(f"--overwrite would delete {out}, which holds the source {src}; choose another output")
    if out.is_symlink() or not is_dataset(out):
        raise PrepareError(f"--overwrite replaces only a dataset made by prepare (manifest.json + clips.npy), and "
                           f"{out} is not one; remove it yourself or choose another output")


def is_dataset(path: Path) -> bool:
    try:
        m = json.loads((path / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and {"clip_samples", "sample_rate", "clips"} <= set(m) and (path / "clips.npy").is_file()


def _remove_stale_partials(parent: Path, note: Callable[[str], None]) -> None:
    """Remove the ``.NAME.partial`` folders that killed prepares left in ``parent`` (those in use stay)."""
    for d in sorted(parent.glob(".*.partial")) if parent.is_dir() else []:
        if d.is_symlink() or not d.is_dir():
            continue
        fd = lock_dir(d)
        if fd is None:
            continue  # another prepare is writing it now
        try:
            size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file() and not f.is_symlink())
            shutil.rmtree(d)
            note(f"removed {d} ({size / 1e6:.1f} MB), left by an interrupted prepare")
        finally:
            os.close(fd)


def _beat_at(t: float, bpm: float | None, first_beat: float | None) -> float | None:
    """Beat phase in [0, 1) at time t (s) of a steady beat at ``bpm`` with a beat at ``first_beat``."""
    if bpm is None or first_beat is None or not (np.isfinite(bpm) and np.isfinite(first_beat)):
        return None
    return float(((t - first_beat) * bpm / 60.0) % 1.0)


def prepare(src: str | Path, out: str | Path, cfg: DataConfig | None = None, overwrite: bool = False,
            log: Callable[[str], None] = print, progress: bool = True) -> PrepareReport:
    """Cut every readable audio file under ``src`` into clips; skip and report bad files and entries."""
    cfg = cfg or DataConfig()
    src, out = Path(src), Path(out)
    if not src.exists():
        raise PrepareError(f"source not found: {src}")
    report = PrepareReport(out=out)

    def note(message: str) -> None:
        report.notes.append(printable(message))
        log(f"note: {printable(message)}")

    files, problems = scan_audio(src)
    for entry, why in problems:
        report.skipped.append((entry, why))
        log(f"skipped: {why}")
    if not files:
        raise PrepareError(f"no audio files (wav, flac, ogg, mp3) under {src}")
    _check_output(src, out, overwrite)
    clip, sr = cfg.clip_samples, cfg.sample_rate
    _remove_stale_partials(out.parent, note)
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        raise PrepareError(f"another prepare is writing {out} right now (into {tmp}); wait for it to finish")
    try:
        tmp.mkdir(parents=True)
    except OSError as e:  # name the output the user gave, not the temporary folder
        raise OSError(e.errno, e.strerror, str(out)) from None
    held = lock_dir(tmp)  # tells the prepares that clean stale .partial folders that this one is alive
    entries: list[dict] = []
    try:
        with open(tmp / "clips.npy", "wb") as fh:
            fh.write(_npy_header(0, clip))
            for path in _progress(files, progress):
                rel = printable(path.relative_to(src) if src.is_dir() else path.name)
                n_before = len(entries)
                try:
                    _check_size(path, sr)
                    _cut_file(path, rel, cfg, fh, entries, report, note)
                    report.files_used.append(rel)
                except AudioError as e:
                    fh.seek(NPY_HEADER_BYTES + n_before * clip * 4)
                    fh.truncate()
                    del entries[n_before:]
                    report.skipped.append((printable(path), str(e)))
                    log(f"skipped: {e}")
            fh.seek(0)
            fh.write(_npy_header(len(entries), clip))
        if not entries:
            raise PrepareError(f"no usable clips in {src}: {len(report.skipped)} file(s) skipped, "
                               f"{report.silent_clips} silent clip(s) dropped")
        hop = cfg.hop_samples or clip
        report.n_clips = len(entries)
        report.seconds = len(entries) * hop / sr
        manifest = {"version": 1, "sample_rate": sr, "clip_samples": clip, "hop_samples": hop,
                    "normalize": cfg.normalize, "n_clips": len(entries), "source": printable(src.resolve()),
                    "files": report.files_used, "skipped": [{"file": f, "reason": r} for f, r in report.skipped],
                    "clips": entries}
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except OSError as e:
        if e.filename is None:  # a write without a name (disk full): name the dataset
            raise OSError(e.errno, e.strerror, str(out)) from None
        raise
    finally:
        if held is not None:
            os.close(held)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def _cut_file(path: Path, rel: str, cfg: DataConfig, fh, entries: list[dict], report: PrepareReport,
              note: Callable[[str], None]) -> None:
    """Append the clips of one file to ``fh`` and their manifest entries to ``entries``."""
    clip, sr = cfg.clip_samples, cfg.sample_rate
    hop = cfg.hop_samples or clip
    n_before = len(entries)
    gain = None
    if cfg.normalize == "file":
        peak = _file_peak(path, sr)
        gain = 0.95 / peak if peak > 0 else None
    label, label_first = _sidecar_beats(path, note)
    beats_block = -1  # the block whose (bpm, first beat in s from the file start) is known
    for start, c, bi, block, b0 in _clips_from_stream(iter_blocks(path, sr), clip, hop):
        if rms_db(c) < cfg.silence_db:
            report.silent_clips += 1
            continue
        if cfg.normalize == "peak":
            c = peak_normalize(c)  # a clip that passed the silence check has a peak
        elif gain is not None:
            c = c * gain
        c = np.clip(c, -1.0, 1.0).astype("<f4")
        if bi != beats_block:
            beats_block, bpm, first = bi, label, label_first
            if cfg.estimate_tempo and first is None:
                from ..dsp.beat import estimate_beats  # scipy.signal: only when estimating

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
        note(f"{path}: every clip was near-silent (below {cfg.silence_db} dBFS); nothing kept")


def _progress(files: list[Path], enabled: bool):
    if not enabled:
        return files
    from tqdm import tqdm

    return tqdm(files, desc="prepare", unit="file")
