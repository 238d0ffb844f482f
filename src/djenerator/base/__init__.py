"""Base models shipped with djenerator, so that the demo's first sound is music, not noise.

``laptop.pt`` is the ``laptop`` preset trained here on the built-in synthetic Djent riffs only
(``djenerator synth``), by ``benchmarks/train_base.py``. A base file holds only data that
``torch.load(weights_only=True)`` reads: the step, the config as a dict, the state dicts of both
networks and their optimisers, and a ``provenance`` dict (training command, data, metrics).

``codec_bars.pt`` is a base *autoencoder* (stage 1 of the two-stage ``bars`` preset), trained by
``benchmarks/train_base_codec.py`` on the built-in riffs and two redistributable game soundtracks that are in
neither evaluation set; a ``bars`` run starts stage 1 from it (``train.codec_base = "auto"``). Its file holds
``kind = "codec"``, the step, the config, the codec's state dict as ``G`` and the provenance.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CheckpointError, load_checkpoint, load_data, save_checkpoint, save_data
from ..config import Config, build_config

BASE_DIR = Path(__file__).parent
BASE_KEYS = ("version", "step", "config", "G", "D")


def base_path(preset: str) -> Path | None:
    """The shipped base model of ``preset``, or None when there is none."""
    p = BASE_DIR / f"{preset}.pt"
    return p if p.is_file() else None


def load_base(path: str | Path) -> dict[str, Any]:
    """Read a base file with ``weights_only=True`` (data, never code)."""
    base = load_data(path)
    if base is None:
        raise CheckpointError(f"{path}: not a readable base model (damaged, or it holds more than tensors and numbers)")
    if not isinstance(base, dict) or any(k not in base for k in BASE_KEYS):
        raise CheckpointError(f"{path}: not a djenerator base model")
    return base


def export_base(checkpoint: str | Path, out: str | Path, preset: str, provenance: dict | None = None) -> Path:
    """Write a training checkpoint as a base file: no RNG states, and the preset's own training settings
    (the run's step count, checkpoint rotation and the like are not the base's)."""
    ck = load_checkpoint(checkpoint)
    cfg = Config.from_dict(ck["config"])
    cfg.train = build_config(preset).train
    cfg.preset = preset
    payload = {"version": 1, "step": int(ck["step"]), "config": cfg.to_dict(), "G": ck["G"], "D": ck["D"],
               "opt_g": ck["opt_g"], "opt_d": ck["opt_d"], "provenance": dict(provenance or {})}
    if "G_train" in ck:  # G is the moving average; the trained weights go on from G_train
        payload["G_train"] = ck["G_train"]
    out = Path(out)
    save_data(out, payload)
    load_base(out)  # what we ship must load weights_only
    return out


CODEC_KEYS = ("version", "kind", "step", "config", "G")


def codec_base_path(sample_rate: int) -> Path | None:
    """The shipped base autoencoder for ``sample_rate``, or None (only 22.05 kHz, the ``bars`` rate, is shipped)."""
    p = BASE_DIR / "codec_bars.pt"
    if not p.is_file():
        return None
    return p if int(load_codec_base(p)["config"]["data"]["sample_rate"]) == int(sample_rate) else None


def load_codec_base(path: str | Path) -> dict[str, Any]:
    """Read a base autoencoder file with ``weights_only=True``."""
    base = load_data(path)
    if base is None:
        raise CheckpointError(f"{path}: not a readable base autoencoder (missing, damaged, or it holds more than "
                              "tensors and numbers)")
    if not isinstance(base, dict) or any(k not in base for k in CODEC_KEYS) or base["kind"] != "codec":
        raise CheckpointError(f"{path}: not a djenerator base autoencoder")
    return base


def export_codec_base(checkpoint: str | Path, out: str | Path, provenance: dict | None = None) -> Path:
    """Write a stage-1 checkpoint (``RUN/codec/checkpoints/step_*.pt``) as a base autoencoder: the codec's
    weights (fp32), its critic's when it was trained with one (so fine-tuning goes on against it), its
    config and step, no optimiser or RNG state."""
    ck = load_checkpoint(checkpoint)
    payload = {"version": 1, "kind": "codec", "step": int(ck["step"]), "config": ck["config"],
               "G": {k: v.float().contiguous() for k, v in ck["G"].items()}, "provenance": dict(provenance or {})}
    if "D" in ck:
        payload["D"] = {k: v.float().contiguous() for k, v in ck["D"].items()}
    out = Path(out)
    save_data(out, payload)
    load_codec_base(out)  # what we ship must load weights_only
    return out


def base_config(base: dict[str, Any]) -> Config:
    """The base's data and model sections with its preset's training settings as they are today (a base
    exported before a setting existed, such as train.ema, gets the preset's value)."""
    cfg = Config.from_dict(base["config"])
    cfg.train = build_config(cfg.preset).train
    return cfg


def seed_run(base: dict[str, Any], run_dir: str | Path, cfg: Config | None = None) -> Path:
    """Start ``run_dir`` from ``base``: write it as the run's checkpoint at the base's step, so that
    ``train(..., resume=True)`` continues from it. Optimiser states are the base's, or fresh ones."""
    from ..models import build_discriminator, build_generator
    from ..optim import make_optimizer

    cfg = cfg or base_config(base)
    G, D = build_generator(cfg), build_discriminator(cfg)
    G.load_state_dict(base.get("G_train", base["G"]))  # the weights training goes on from
    D.load_state_dict(base["D"])
    opt_g, opt_d = make_optimizer(G.parameters(), cfg, cfg.train.lr_g), make_optimizer(D.parameters(), cfg, cfg.train.lr_d)
    if "opt_g" in base and "opt_d" in base:
        opt_g.load_state_dict(base["opt_g"])
        opt_d.load_state_dict(base["opt_d"])
    state = {"G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()}
    if "G_train" in base:  # the base's moving average stays the run's output until training moves it
        state["G"], state["G_train"] = base["G"], G.state_dict()
    _seed_all(cfg.train.seed + int(base["step"]))  # the checkpoint's RNG states: the same continuation every time
    return save_checkpoint(Path(run_dir), int(base["step"]), cfg, state, keep=cfg.train.keep_checkpoints)


def _seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
