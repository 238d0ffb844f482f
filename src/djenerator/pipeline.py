"""The whole pipeline in one call, for `djenerator demo` and `make demo`."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .config import apply_dict, build_config


def demo_preset(preset: str) -> str:
    """'auto': the recommended preset where a GPU makes it affordable, the CPU-sized 'laptop' preset elsewhere.

    Measured on 2 CPU cores: 'recommended' (WaveGAN + waveform and STFT critics at 16 kHz) runs ~0.8 steps/s
    idle, 0.14 loaded, so a few CPU minutes are noise; 'laptop' runs ~6.9 steps/s and makes rhythmic bursts
    by step 1000, where the dense 'original' (also ~6.9 steps/s) still makes white noise.
    """
    if preset != "auto":
        return preset
    import torch

    return "recommended" if torch.cuda.is_available() else "laptop"


def run_demo(out_dir: str | Path, preset: str = "auto", minutes: float = 3.0, n_files: int = 32,
             seconds: float = 8.0, log: Callable[[str], None] = print, overrides: dict | None = None,
             piece_seconds: float = 30.0) -> dict:
    """Synthesise the built-in Djent data, prepare it, train for ``minutes``, generate clips (and a piece)."""
    preset = demo_preset(preset)
    from .data.prepare import prepare
    from .generate import generate_to_files
    from .synth import synth_dataset
    from .train import train

    out_dir = Path(out_dir)
    cfg = build_config(preset)
    if overrides:
        apply_dict(cfg, overrides)
    d = cfg.data
    raw, run_dir = out_dir / "builtin_audio", out_dir / "runs" / preset
    data = out_dir / f"dataset_{d.sample_rate}hz_{d.clip_samples}"
    if not (raw / "metadata.json").is_file():
        log(f"[1/4] synthesising {n_files} Djent riffs -> {raw}")
        synth_dataset(raw, n_files=n_files, seconds=seconds, sr=max(16000, cfg.data.sample_rate), seed=0)
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
    if cfg.model.arch in ("spectral", "twostage"):  # a length-agnostic generator: also one piece of music, not only clips
        from .generate import generate_long_to_file

        paths.append(generate_long_to_file(res.checkpoint, gen_dir / f"piece_seed0_{piece_seconds:g}s.wav",
                                           piece_seconds, seed=0, progress=False))
    return {"run_dir": run_dir, "checkpoint": res.checkpoint, "generated_dir": gen_dir, "generated": paths}
