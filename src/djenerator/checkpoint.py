"""Self-describing checkpoints: config + weights + optimisers + step + every RNG state.

A run folder holds ``checkpoints/step_0001000.pt`` files and a ``checkpoints/latest`` pointer; every
write is atomic, so a crash at any moment leaves the previous checkpoint usable. Only the newest
``keep`` are kept, and those named in ``checkpoints/pinned`` (e.g. the last one before the model began to
copy its training clips).

Checkpoints hold only tensors, numbers, strings and plain containers, and load with
``torch.load(weights_only=True)``: a file in a runs folder can never run code. Checkpoints of older versions
(numpy RNG state pickled as objects) load only when the caller trusts them (``--trust-checkpoint``).
"""
from __future__ import annotations

import contextvars
import errno
import pickle
import random
import re
import shutil
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .config import Config
from .io import atomic_path, atomic_write_text

CKPT_RE = re.compile(r"step_(\d+)\.pt$")


VERSION = 2  # 2: RNG states as tensors and numbers, loadable with weights_only=True
TRUST_HINT = "--trust-checkpoint"
_TRUST = contextvars.ContextVar("djenerator_trust_checkpoints", default=False)


class CheckpointError(ValueError):
    pass


def fit_weights(module: torch.nn.Module, state: dict, ck: dict, what: str = "generator") -> None:
    """``module.load_state_dict(state)``, or a CheckpointError naming the file when the weights are of another
    shape (a checkpoint of an older version of the model): never a traceback."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
        arch = (ck.get("config") or {}).get("model", {}).get("arch", "?")
        raise CheckpointError(f"{ck.get('path', 'the checkpoint')}: its {what} weights do not fit this version's "
                              f"model.arch={arch} ({lines[-1].strip()}); it was probably saved by an older "
                              "djenerator: train a new run") from None


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled Python objects that could run code; it was not loaded."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, permission); the previous one is intact."""


@contextmanager
def trusting_checkpoints(trust: bool = True) -> Iterator[None]:
    """Within the block, load_checkpoint also unpickles old (pre-version-2) checkpoints: only for trusted files."""
    token = _TRUST.set(trust)
    try:
        yield
    finally:
        _TRUST.reset(token)


def rng_state() -> dict[str, Any]:
    """Every global RNG state as tensors and numbers (plain data, safe to load)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                        "gauss": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (also the raw tuples of version-1 checkpoints)."""
    torch.set_rng_state(state["torch"])
    n, p = state["numpy"], state["python"]
    if isinstance(n, dict):
        n = (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    if isinstance(p, dict):
        p = (p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"])
    np.random.set_state(n)
    random.setstate(p)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, cfg: Config, state: dict[str, Any], keep: int = 5) -> Path:
    ckpt_dir = Path(run_dir) / "checkpoints"
    path = ckpt_dir / f"step_{step:07d}.pt"
    payload = {"version": VERSION, "step": step, "config": cfg.to_dict(), "rng": rng_state(), **state}
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        atomic_write_text(ckpt_dir / "latest", path.name + "\n")
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a full disk as RuntimeError
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {_write_failure(e, ckpt_dir)}") from None
    if keep > 0:
        pinned = pinned_checkpoints(run_dir)
        for old in list_checkpoints(run_dir)[:-keep]:
            if old.name not in pinned:
                old.unlink(missing_ok=True)
    return path


def _write_failure(e: Exception, folder: Path) -> str:
    code = getattr(e, "errno", None)
    try:
        full = shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        full = False
    if code in (errno.ENOSPC, errno.EDQUOT) or full:
        return "disk full"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if code == errno.EROFS:
        return "read-only file system"
    return _first_line(e)


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return textwrap.shorten(text, 160, placeholder=" ...")


def pinned_checkpoints(run_dir: Path) -> set[str]:
    f = Path(run_dir) / "checkpoints" / "pinned"
    return set(f.read_text().split()) if f.is_file() else set()


def pin_checkpoint(path: Path) -> None:
    """Keep ``path`` out of the rotation of old checkpoints."""
    path = Path(path)
    names = pinned_checkpoints(path.parent.parent) | {path.name}
    atomic_write_text(path.parent / "pinned", "".join(f"{n}\n" for n in sorted(names)))


def list_checkpoints(run_dir: Path) -> list[Path]:
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := CKPT_RE.search(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    run_dir = Path(run_dir)
    pointer = run_dir / "checkpoints" / "latest"
    if pointer.is_file():
        p = run_dir / "checkpoints" / pointer.read_text().strip()
        if p.is_file():
            return p
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (its latest checkpoint)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "checkpoints").is_dir():
            raise CheckpointError(f"{path} is not a run folder (it has no checkpoints/ folder)")
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"no checkpoint in run folder {path}")
        return found
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", trust: bool | None = None) -> dict[str, Any]:
    """A checkpoint file (or a run folder's latest) as a dict, loaded with ``weights_only=True``.

    ``trust`` (default: inside :func:`trusting_checkpoints`) also unpickles old checkpoints, which can run code.
    """
    path = resolve_checkpoint(path)
    trust = _TRUST.get() if trust is None else trust
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(e)})") from None
        raise UnsafeCheckpointError(
            f"{path} holds Python objects besides tensors and numbers, which could run code, so it was not "
            f"loaded; if it is a checkpoint of an older djenerator from a source you trust, pass {TRUST_HINT}") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(e)})") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "G" not in ckpt:
        raise CheckpointError(f"{path}: not a djenerator checkpoint")
    ckpt["path"] = str(path)
    return ckpt


def load_latest_good(run_dir: Path, map_location: str | torch.device = "cpu", log: Callable[[str], None] = print,
                     set_aside: bool = True) -> tuple[Path, dict[str, Any]] | None:
    """(path, checkpoint) of the newest checkpoint of ``run_dir`` that loads, or None if there is none.

    Damaged newer ones are named in the log and, with ``set_aside``, renamed ``*.pt.damaged`` (out of the
    rotation, not deleted); an unsafe one (see :class:`UnsafeCheckpointError`) stops the search.
    """
    first = latest_checkpoint(run_dir)
    candidates = ([first] if first else []) + [p for p in reversed(list_checkpoints(run_dir)) if p != first]
    damaged = []
    for path in candidates:
        try:
            ck = load_checkpoint(path, map_location)
        except UnsafeCheckpointError:
            raise
        except CheckpointError as e:
            damaged.append(path)
            log(f"warning: {e}")
            continue
        for bad in damaged if set_aside else []:
            bad.rename(bad.with_name(bad.name + ".damaged"))
        if damaged:
            kept = " (kept as *.damaged)" if set_aside else ""
            log(f"warning: {', '.join(p.name for p in damaged)} damaged{kept}; using {path}")
        return path, ck
    if damaged:
        raise CheckpointError(f"no checkpoint of {run_dir} loads: {', '.join(p.name for p in damaged)} all damaged")
    return None


def load_data(path: str | Path) -> Any | None:
    """A plain data file (tensors, numbers, strings, containers; e.g. a cache of encoded latents), loaded with
    ``weights_only=True``; None when it is missing or unreadable, so the caller rebuilds it."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises many types for damaged files
        return None


def save_data(path: str | Path, data: Any) -> None:
    """Write ``data`` for :func:`load_data`, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def config_of(ckpt: dict[str, Any]) -> Config:
    return Config.from_dict(ckpt["config"])
