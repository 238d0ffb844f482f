"""Everything the server reads or writes on disk, behind validated ids.

Nothing outside the runs folder (and the clip cache) is ever opened: every id is checked against a
strict pattern, joined to its root, resolved (following symlinks) and required to stay under the
resolved root. Run folders, checkpoints and reports that are symlinks pointing elsewhere are invisible.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import yaml

from ..io import read_csv_columns

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CKPT_ID_RE = re.compile(r"^step_\d{1,12}\.pt$")
CLIP_ID_RE = re.compile(r"^([0-9a-f]{24})-(\d{2,3})$")
MAX_REPORT_BYTES = 20 * 1024 * 1024


class NotFound(LookupError):
    """An id that is malformed, unknown, or points outside its root (all answer 404 alike)."""


class BrokenRun(RuntimeError):
    """A run whose own files are inconsistent (e.g. ``checkpoints/latest`` naming a file outside the run): 409."""


class CacheFull(RuntimeError):
    """The clip cache cannot take a new result without dropping one still promised to a client (503)."""

    def __init__(self, retry_after: float):
        super().__init__("the clip cache is full of results that are still promised to clients; try again shortly")
        self.retry_after = max(1, int(retry_after + 0.999))


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages name a value without echoing a long input."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + "...'"


def inside(root: Path, candidate: Path) -> Path | None:
    """``candidate`` resolved, if it exists and lies under the resolved ``root``; else None."""
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    root = root.resolve()
    if real != root and root not in real.parents:
        return None
    return real


class RunStore:
    """Read-only view of the run folders directly under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # ---- ids -> paths ------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id) or ".." in run_id:
            raise NotFound(f"no run named {shown(run_id)}")
        real = inside(self.root, self.root / run_id)
        if real is None or not real.is_dir() or real.parent != self.root.resolve():
            raise NotFound(f"no run named {shown(run_id)}")
        return real

    def file_in_run(self, run_dir: Path, rel: str) -> Path | None:
        """A regular file inside the run folder (after symlinks), or None."""
        p = inside(run_dir, run_dir / rel)
        return p if p is not None and p.is_file() else None

    def checkpoints(self, run_dir: Path) -> list[Path]:
        from ..checkpoint import list_checkpoints

        return [p for p in list_checkpoints(run_dir) if self.file_in_run(run_dir, f"checkpoints/{p.name}")]

    def checkpoint(self, run_dir: Path, ckpt_id: str | None) -> Path:
        if ckpt_id in (None, "", "latest"):
            p = self.latest_pointer(run_dir)
            if p is not None:
                return p
            ckpts = self.checkpoints(run_dir)
            if not ckpts:
                raise NotFound(f"run {run_dir.name!r} has no checkpoint yet")
            return ckpts[-1].resolve()
        if not isinstance(ckpt_id, str) or not CKPT_ID_RE.match(ckpt_id):
            raise NotFound(f"no checkpoint named {shown(ckpt_id)} (expected 'latest' or step_NNNNNNN.pt)")
        p = self.file_in_run(run_dir, f"checkpoints/{ckpt_id}")
        if p is None:
            raise NotFound(f"run {run_dir.name!r} has no checkpoint {ckpt_id!r}")
        return p

    def latest_pointer(self, run_dir: Path) -> Path | None:
        """The checkpoint ``checkpoints/latest`` names; None without a pointer; BrokenRun if it leaves the run."""
        ptr = self.file_in_run(run_dir, "checkpoints/latest")
        if ptr is None or ptr.stat().st_size > 4096:
            return None
        try:
            name = ptr.read_text(encoding="utf-8").strip()
        except (OSError, ValueError):
            return None
        if not name:
            return None
        if not CKPT_ID_RE.match(name) or self.file_in_run(run_dir, f"checkpoints/{name}") is None:
            target = run_dir / "checkpoints" / name if "\0" not in name else None
            if target is not None and inside(run_dir, target) is None and _exists(target):
                raise BrokenRun(f"run {run_dir.name!r}: checkpoints/latest points outside the run; "
                                "ask for a checkpoint by name (step_NNNNNNN.pt) or fix the pointer")
            return None  # a stale pointer: fall back to the newest checkpoint
        return self.file_in_run(run_dir, f"checkpoints/{name}")

    # ---- contents ----------------------------------------------------------------------------------
    def list_runs(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        out = []
        for p in sorted(self.root.iterdir(), key=lambda q: q.name):
            try:
                run_dir = self.run_dir(p.name)
            except NotFound:
                continue
            ckpts = self.checkpoints(run_dir)
            if not ckpts and self.file_in_run(run_dir, "config.yaml") is None:
                continue
            cfg = self.config(run_dir)
            out.append({
                "id": p.name,
                "step": _step_of(ckpts[-1]) if ckpts else 0,
                "n_checkpoints": len(ckpts),
                "preset": cfg.get("preset"),
                "arch": (cfg.get("model") or {}).get("arch"),
                "sample_rate": (cfg.get("data") or {}).get("sample_rate"),
                "has_report": self.file_in_run(run_dir, "report.json") is not None,
                "modified": max((c.stat().st_mtime for c in ckpts), default=run_dir.stat().st_mtime),
            })
        return out

    def config(self, run_dir: Path) -> dict[str, Any]:
        p = self.file_in_run(run_dir, "config.yaml")
        if p is None:
            return {}
        try:
            data = yaml.safe_load(p.read_text())
        except Exception:  # noqa: BLE001 - a damaged config is shown as empty, not a 500
            return {}
        return data if isinstance(data, dict) else {}

    def losses(self, run_dir: Path, max_points: int = 2000) -> dict[str, list]:
        p = self.file_in_run(run_dir, "logs/losses.csv")
        if p is None:
            return {}
        cols = {k: [None if not math.isfinite(v) else int(v) if k == "step" else v for v in vs]
                for k, vs in read_csv_columns(p).items()}  # JSON has no NaN
        n = len(cols.get("step", []))
        if n > max_points:  # keep an even spread, always the last row
            idx = sorted({round(i * (n - 1) / (max_points - 1)) for i in range(max_points)})
            cols = {k: [v[i] for i in idx] for k, v in cols.items()}
        return cols

    def health_lines(self, run_dir: Path, last: int = 20) -> list[str]:
        p = self.file_in_run(run_dir, "health.log")
        if p is None:
            return []
        with open(p, "rb") as f:
            f.seek(max(0, p.stat().st_size - 64 * 1024))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return lines[-last:]

    def report(self, run_dir: Path) -> dict[str, Any] | None:
        p = self.file_in_run(run_dir, "report.json")
        if p is None or p.stat().st_size > MAX_REPORT_BYTES:
            return None
        try:
            data = json.loads(p.read_text())
        except Exception:  # noqa: BLE001
            return None
        return data if isinstance(data, dict) else None

    def memorisation(self, run_dir: Path) -> dict[str, Any] | None:
        """The report's memorisation section, reduced to what the page shows; None without one."""
        rep = self.report(run_dir)
        mem = rep.get("memorisation") if rep else None
        if not isinstance(mem, dict) or not isinstance(mem.get("clips"), list):
            return None
        clips = []
        for c in mem["clips"]:
            c = c if isinstance(c, dict) else {}
            clips.append({k: c.get(k) for k in ("flagged", "corr", "source_file", "source_time_s")})
        seed = mem.get("seed", rep.get("seed"))
        step = mem.get("step", rep.get("step"))
        return {
            "seed": seed if isinstance(seed, int) else None,
            "step": step if isinstance(step, int) else None,
            "threshold": mem.get("threshold"),
            "n_flagged": sum(bool(c["flagged"]) for c in clips),
            "clips": clips,
        }


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):
        return False


def _step_of(p: Path) -> int:
    m = re.search(r"step_(\d+)\.pt$", p.name)
    return int(m.group(1)) if m else 0




def request_hash(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:24]


class ClipCache:
    """Generated clips on disk: ``root/<hash>/clip_XX.wav`` + ``meta.json``, bounded in bytes and entries.

    An entry is written into a temporary folder and renamed into place, so readers only ever see
    complete entries. The least recently used entries are removed when a bound is exceeded, except
    those promised to a client in the last ``ttl`` seconds: a result stays fetchable for ``ttl``
    seconds after a response names it. When the bounds cannot hold a new result without breaking a
    promise, ``put`` drops the new result and raises CacheFull (the server answers 503 + Retry-After).
    """

    def __init__(self, root: Path, max_bytes: int = 256 * 1024 * 1024, max_entries: int = 200, ttl: float = 600.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_entries, self.ttl = max_bytes, max_entries, float(ttl)
        self._lock = threading.Lock()
        self._promised: dict[str, float] = {}  # key -> time until which it must stay
        for tmp in self.root.glob(".tmp-*"):  # leftovers from a crash
            shutil.rmtree(tmp, ignore_errors=True)

    def entry(self, key: str) -> Path | None:
        if not re.fullmatch(r"[0-9a-f]{24}", key):
            return None
        d = self.root / key
        if not (d / "meta.json").is_file():
            return None
        try:
            os.utime(d)  # mark as recently used
        except OSError:
            return None
        return d

    def meta(self, key: str) -> dict[str, Any] | None:
        d = self.entry(key)
        if d is None:
            return None
        try:
            return json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            return None

    def promised_meta(self, key: str) -> tuple[dict[str, Any], float] | None:
        """A cached entry's meta, promised for another ``ttl`` seconds (None if absent)."""
        with self._lock:
            meta = self.meta(key)
            return None if meta is None else (meta, self._promise(key))

    def _promise(self, key: str) -> float:
        until = time.time() + self.ttl
        self._promised[key] = max(until, self._promised.get(key, 0.0))
        return self._promised[key]

    def _protected(self, now: float) -> dict[str, float]:
        self._promised = {k: t for k, t in self._promised.items() if t > now}
        return self._promised

    def check_room(self) -> None:
        """Raise CacheFull before any work when every slot holds a promised result."""
        with self._lock:
            now = time.time()
            prot = self._protected(now)
            if len(prot) >= self.max_entries > 0:
                raise CacheFull(min(prot.values()) - now)

    def clip_path(self, clip_id: str) -> tuple[Path, dict[str, Any], int]:
        m = CLIP_ID_RE.match(clip_id) if isinstance(clip_id, str) else None
        if not m:
            raise NotFound(f"no clip {shown(clip_id)}")
        key, idx = m.group(1), int(m.group(2))
        meta = self.meta(key)
        if meta is None or idx >= len(meta.get("clips", [])):
            raise NotFound(f"no clip {clip_id!r} (it may have been evicted from the cache; generate it again)")
        p = inside(self.root, self.root / key / f"clip_{idx:03d}.wav")
        if p is None:
            raise NotFound(f"no clip {clip_id!r}")
        return p, meta, idx

    def put(self, key: str, write: Callable[[Path], dict[str, Any]]) -> tuple[dict[str, Any], float]:
        """Run ``write(tmp_dir) -> meta``, publish the folder as entry ``key``; returns (meta, promised until)."""
        tmp = self.root / f".tmp-{key}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            meta = write(tmp)
            (tmp / "meta.json").write_text(json.dumps(meta))
            final = self.root / key
            with self._lock:
                if final.exists():
                    shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
                until = self._promise(key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.cleanup(keep=key)
        return meta, until

    def stats(self) -> dict[str, Any]:
        entries = [d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")]
        with self._lock:
            protected = len(self._protected(time.time()))
        return {"entries": len(entries), "bytes": sum(_dir_bytes(d) for d in entries),
                "max_entries": self.max_entries, "max_bytes": self.max_bytes,
                "ttl_seconds": self.ttl, "protected": protected}

    def cleanup(self, keep: str | None = None) -> int:
        """Remove least recently used, unpromised entries until both bounds hold; returns how many went.

        If the bounds still do not hold and other promised entries are in the way, ``keep`` (the new
        result) is removed instead and CacheFull is raised.
        """
        with self._lock:
            now = time.time()
            prot = self._protected(now)
            entries = []
            for d in self.root.iterdir():
                if d.is_dir() and not d.name.startswith("."):
                    try:
                        entries.append((d.stat().st_mtime, d, _dir_bytes(d)))
                    except OSError:
                        continue
            entries.sort(key=lambda e: e[0])
            total, count, removed = sum(e[2] for e in entries), len(entries), 0
            over = lambda: total > self.max_bytes or count > self.max_entries  # noqa: E731
            for _, d, size in entries:
                if not over():
                    break
                if d.name == keep or d.name in prot:
                    continue
                shutil.rmtree(d, ignore_errors=True)
                total, count, removed = total - size, count - 1, removed + 1
            others = [t for k, t in prot.items() if k != keep]
            if over() and keep is not None and others:
                shutil.rmtree(self.root / keep, ignore_errors=True)
                prot.pop(keep, None)
                raise CacheFull(min(others) - now)
            return removed


def _dir_bytes(d: Path) -> int:
    total = 0
    for f in d.iterdir():
        try:
            total += f.stat().st_size
        except OSError:
            pass
    return total


class ModelCache:
    """A bounded LRU of loaded generators keyed by (checkpoint path, mtime, size)."""

    def __init__(self, max_models: int = 4, device: str = "cpu"):
        self.max_models, self.device = max_models, device
        self._models: OrderedDict[tuple, tuple] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}
        self.loads = 0

    def get(self, path: Path):
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:  # one load per checkpoint, however many requests want it
            with self._lock:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key]
            from ..generate import load_generator

            model = load_generator(path, self.device)
            with self._lock:
                self.loads += 1
                self._models[key] = model
                self._models.move_to_end(key)
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
                self._loading.pop(key, None)
            return model

    def __len__(self) -> int:
        return len(self._models)


def now() -> float:
    return time.time()
