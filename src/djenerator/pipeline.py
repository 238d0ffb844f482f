"""The whole pipeline in one call, for `djenerator demo` and `make demo`."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .config import apply_dict, build_config


def demo_preset(preset: str) -> str:
    """'auto': the recommended preset where a GPU makes it affordable, the original dense GAN on a CPU.

    Measured on 2 CPU cores: the dense GAN runs ~7.6 steps/s, the recommended WaveGAN + STFT critic ~0.14,
    so a few CPU minutes of the latter are ~30 steps: not enough to hear anything but noise.
    """
    if preset != "auto":
        return preset
    import torch

    return "recommended" if torch.cuda.is_available() else "original"


def run_demo(out_dir: str | Path, preset: str = "auto", minutes: float = 3.0, n_files: int = 16,
             seconds: float = 8.0, log: Callable[[str], None] = print, overrides: dict | None = None) -> dict:
    """Synthesise the built-in Djent data, prepare it, train for ``minutes``, generate clips."""
    preset = demo_preset(preset)
    from .data.prepare import prepare
    from .generate import generate_to_files
    from .synth import synth_dataset
    from .train import train

    out_dir = Path(out_dir)
    cfg = build_config(preset)
    if overrides:
        apply_dict(cfg, overrides)
    raw, data, run_dir = out_dir / "builtin_audio", out_dir / "dataset", out_dir / "runs" / preset
    if not (raw / "metadata.json").is_file():
        log(f"[1/4] synthesising {n_files} Djent riffs -> {raw}")
        synth_dataset(raw, n_files=n_files, seconds=seconds, sr=cfg.data.sample_rate, seed=0)
    if not (data / "manifest.json").is_file():
        log(f"[2/4] preparing clips -> {data}")
        cfg.data.hop_samples = cfg.data.hop_samples or cfg.data.clip_samples // 4
        prepare(raw, data, cfg.data, log=log)
    log(f"[3/4] training preset '{preset}' for up to {minutes:g} min -> {run_dir}")
    cfg.train.steps = max(cfg.train.steps, 100_000)
    cfg.train.sample_every = cfg.train.ckpt_every = 200
    res = train(cfg, data, run_dir, resume=True, log=log, max_seconds=minutes * 60)
    gen_dir = out_dir / "generated"
    log(f"[4/4] generating clips from {res.checkpoint} -> {gen_dir}")
    paths = generate_to_files(res.checkpoint, gen_dir, n=8, seed=0)
    return {"run_dir": run_dir, "checkpoint": res.checkpoint, "generated_dir": gen_dir, "generated": paths}
