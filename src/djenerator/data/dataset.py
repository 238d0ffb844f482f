"""A prepared dataset, memory-mapped: clips stream from disk, however large the collection."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

if TYPE_CHECKING:
    from ..config import Config


class DatasetError(ValueError):
    pass


class ClipDataset(torch.utils.data.Dataset):
    """``clips.npy`` (N, T) float32 opened read-only with mmap, plus its ``manifest.json``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mpath, cpath = self.path / "manifest.json", self.path / "clips.npy"
        if not mpath.is_file() or not cpath.is_file():
            raise DatasetError(f"{self.path} is not a prepared dataset (run `djenerator prepare` first; "
                               "expected clips.npy and manifest.json)")
        try:
            self.manifest = json.loads(mpath.read_text())
            self.clips = np.load(cpath, mmap_mode="r")
        except (ValueError, OSError) as e:
            raise DatasetError(f"{self.path}: dataset is damaged ({e})") from None
        if self.clips.ndim != 2 or len(self.clips) != len(self.manifest["clips"]):
            raise DatasetError(f"{self.path}: clips.npy and manifest.json disagree; prepare the dataset again")
        self.sample_rate = int(self.manifest["sample_rate"])
        self.clip_samples = int(self.manifest["clip_samples"])
        bpm = [c.get("bpm") for c in self.manifest["clips"]]
        self.bpm = np.array([np.nan if b is None else float(b) for b in bpm], dtype=np.float32)
        beat = [c.get("beat") for c in self.manifest["clips"]]  # datasets prepared before beats: all NaN
        self.beat = np.array([np.nan if b is None else float(b) for b in beat], dtype=np.float32)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.clips[i], dtype=np.float32)).unsqueeze(0)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read clips ``idx`` (sorted reads are sequential on disk) -> ((B, 1, T), bpm (B,), beat phase (B,))."""
        order = np.argsort(idx)
        out = np.empty((len(idx), self.clip_samples), dtype=np.float32)
        out[order] = self.clips[np.asarray(idx)[order]]
        return torch.from_numpy(out).unsqueeze(1), torch.from_numpy(self.bpm[idx]), torch.from_numpy(self.beat[idx])

    def source(self, i: int) -> dict:
        return self.manifest["clips"][i]


def adopt_dataset_shape(cfg: Config, ds: ClipDataset, say: Callable[[str], None]) -> None:
    """The prepared dataset's manifest owns the sample rate and clip length: ``cfg.data`` takes them, and where the
    config asked for others, ``say`` hears it once, in one line naming both and which wins."""
    d = cfg.data
    if (d.sample_rate, d.clip_samples) != (ds.sample_rate, ds.clip_samples):
        say(f"{ds.path} holds {ds.sample_rate} Hz clips of {ds.clip_samples} samples and the config ({cfg.preset}) "
            f"asks for {d.sample_rate} Hz and {d.clip_samples}: the dataset wins, so training runs at "
            f"{ds.sample_rate} Hz (prepare with --sr {d.sample_rate} --clip {d.clip_samples} to train at the config's)")
    d.sample_rate, d.clip_samples = ds.sample_rate, ds.clip_samples
