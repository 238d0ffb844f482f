"""Atomic file writes: a crash never leaves a half-written checkpoint, dataset or report behind."""
from __future__ import annotations

import csv
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # not POSIX: no run lock
    fcntl = None

TMP_GLOB = ".*.tmp"  # what atomic_path leaves behind when its process is killed


class LockError(ValueError):
    """Another process holds the lock (the message names its PID)."""


def printable(name: object) -> str:
    """A file name as text that can always be printed and stored as JSON: bytes that are not UTF-8
    (kept by Python as surrogates) shown as ``\\xNN``, e.g. ``caf\\xe9.wav``."""
    return str(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def lock_dir(path: Path) -> int | None:
    """A descriptor that holds an exclusive OS lock on folder ``path`` until closed (also when the process
    dies), or None if another process holds it."""
    fd = os.open(path, os.O_RDONLY)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
    return fd


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # name the file the caller asked for, not a random temporary name
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as e:
            if e.filename is None:  # a write that failed without a name (disk full): name the file
                raise OSError(e.errno, e.strerror, str(path)) from None
            raise
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a result file gets the usual mode
        try:
            os.replace(tmp_path, path)
        except OSError as e:  # e.g. a folder of that name is in the way
            raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def folder_lock(folder: Path, what: str = "folder") -> Iterator[None]:
    """Hold an OS lock on ``folder/.lock`` (released when the block ends or the process dies).

    Raises :class:`LockError` naming the holder's PID if another process holds it. Creates ``folder`` if
    needed and removes it again if it was created here and holds nothing but the lock file at the end.
    """
    folder = Path(folder)
    created = not folder.exists()
    lock = folder / ".lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(folder)) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise LockError(f"{what} {folder} is in use by another process (PID {pid}); wait for it to "
                                f"finish or choose another folder") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(folder)) from None
        yield
    finally:
        os.close(fd)
        if created and [p.name for p in folder.iterdir()] == [".lock"]:
            lock.unlink(missing_ok=True)
            folder.rmdir()


def remove_stale_tmp(folder: Path, min_age_s: float = 0.0, recursive: bool = True) -> list[Path]:
    """Delete the temporary files (``.NAME.*.tmp``) an interrupted atomic write left under ``folder``."""
    now, gone = time.time(), []
    folder = Path(folder)
    for p in sorted(folder.rglob(TMP_GLOB) if recursive else folder.glob(TMP_GLOB)):
        try:
            if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime >= min_age_s:
                p.unlink()
                gone.append(p)
        except FileNotFoundError:
            continue
    return gone


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def rows_up_to(path: Path, step: int) -> list[dict]:
    """The rows of a step log whose ``step`` is at most ``step`` (a resumed run writes the later ones again;
    a torn last line after a crash has no integer step and is dropped)."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= step]


class StepLog:
    """A CSV log of training steps that a resumed run continues from ``start``; floats are written with 6
    significant digits and every row is flushed."""

    def __init__(self, path: Path, fields: list[str], start: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = rows_up_to(path, start)
        self.f = open(path, "w", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=fields, extrasaction="ignore")
        self.w.writeheader()
        self.w.writerows(rows)
        self.f.flush()

    def write(self, row: dict) -> None:
        self.w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def read_csv_columns(path: Path) -> dict[str, list[float]]:
    """A numeric log (losses.csv, metrics.csv) as columns; blank or non-numeric cells become NaN.

    Rows without an integer ``step`` (a torn last line after a crash) are skipped.
    """
    cols: dict[str, list[float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not (row.get("step") or "").strip().isdigit():
                continue
            for k, v in row.items():
                if k is None:
                    continue
                try:
                    cols.setdefault(k, []).append(float(v))
                except (TypeError, ValueError):
                    cols.setdefault(k, []).append(float("nan"))
    return cols
