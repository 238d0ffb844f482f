"""Self-describing checkpoints: config + weights + optimisers + step + every RNG state.

A run folder holds ``checkpoints/step_0001000.pt`` files and a ``checkpoints/latest`` pointer; every
write is atomic, so a crash at any moment leaves the previous checkpoint usable. Only the newest
``keep`` are kept, and those named in ``checkpoints/pinned`` (e.g. the last one before the model began to
copy its training clips).
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config
from .io import atomic_path, atomic_write_text

CKPT_RE = re.compile(r"step_(\d+)\.pt$")


class CheckpointError(ValueError):
    pass


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, cfg: Config, state: dict[str, Any], keep: int = 5) -> Path:
    ckpt_dir = Path(run_dir) / "checkpoints"
    path = ckpt_dir / f"step_{step:07d}.pt"
    payload = {"version": 1, "step": step, "config": cfg.to_dict(), "rng": rng_state(), **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    atomic_write_text(ckpt_dir / "latest", path.name + "\n")
    if keep > 0:
        pinned = pinned_checkpoints(run_dir)
        for old in list_checkpoints(run_dir)[:-keep]:
            if old.name not in pinned:
                old.unlink(missing_ok=True)
    return path


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
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"no checkpoint in run folder {path}")
        return found
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "G" not in ckpt:
        raise CheckpointError(f"{path}: not a djenerator checkpoint")
    ckpt["path"] = str(path)
    return ckpt


def config_of(ckpt: dict[str, Any]) -> Config:
    return Config.from_dict(ckpt["config"])
