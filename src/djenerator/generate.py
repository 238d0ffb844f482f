"""Checkpoint -> audio. Needs nothing but the checkpoint: it carries its config.

Same (checkpoint, seed, options) -> same audio: latents come from a private ``torch.Generator``
seeded per clip, never from the global RNG.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .audio import write_wav
from .checkpoint import config_of, load_checkpoint
from .config import Config
from .models import build_generator


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Config, int]:
    """(generator in eval mode, its config, the step it was saved at)."""
    ck = load_checkpoint(path, map_location=device)
    cfg = config_of(ck)
    G = build_generator(cfg).to(device)
    G.load_state_dict(ck["G"])
    G.eval()
    return G, cfg, int(ck["step"])


def latents(n: int, dim: int, seed: int) -> torch.Tensor:
    """Clip i of seed s always gets the same latent, whatever n and the batch size."""
    return torch.stack([torch.randn(dim, generator=torch.Generator().manual_seed(seed * 1_000_003 + i)) for i in range(n)])


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """Spherical interpolation (slerp): Gaussian latents keep their norm along the path (White 2016)."""
    a, b = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.arccos((a * b).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    ts = torch.linspace(0, 1, steps)
    if omega.abs() < 1e-4:
        return torch.stack([(1 - t) * z0 + t * z1 for t in ts])
    return torch.stack([(torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega) for t in ts])


def bpm_cond(cfg: Config, bpm: float | None, n: int) -> torch.Tensor | None:
    if not cfg.model.tempo_conditioning:
        return None
    lo, hi = cfg.model.bpm_range
    value = 0.5 if bpm is None else min(max((bpm - lo) / (hi - lo), 0.0), 1.0)
    return torch.full((n,), float(value))


@torch.no_grad()
def generate_clips(G: torch.nn.Module, cfg: Config, n: int = 8, seed: int = 0, batch_size: int = 16,
                   bpm: float | None = None, z: torch.Tensor | None = None) -> np.ndarray:
    """(n, T) float32 in [-1, 1]; pass ``z`` to render given latents (interpolation)."""
    device = next(G.parameters()).device
    z = latents(n, cfg.model.latent_dim, seed) if z is None else z
    out = []
    for i in range(0, len(z), batch_size):
        zb = z[i:i + batch_size].to(device)
        cond = bpm_cond(cfg, bpm, len(zb))
        out.append(G(zb, cond.to(device) if cond is not None else None).float().cpu()[:, 0])
    return torch.cat(out).clamp(-1, 1).numpy()


def generate_to_files(checkpoint: str | Path, out_dir: str | Path, n: int = 8, seed: int = 0, batch_size: int = 16,
                      bpm: float | None = None, interpolate_to: int | None = None, device: str = "cpu",
                      prefix: str = "clip") -> list[Path]:
    """Write n clips (or an n-step interpolation from seed to ``interpolate_to``) as wav files."""
    G, cfg, step = load_generator(checkpoint, device)
    z = None
    if interpolate_to is not None:
        z0 = latents(1, cfg.model.latent_dim, seed)[0]
        z1 = latents(1, cfg.model.latent_dim, interpolate_to)[0]
        z = interpolate(z0, z1, max(n, 2))
    audio = generate_clips(G, cfg, n, seed, batch_size, bpm, z)
    out_dir = Path(out_dir)
    tag = f"seed{seed}" if interpolate_to is None else f"seed{seed}-to-{interpolate_to}"
    return [write_wav(out_dir / f"{prefix}_{tag}_{i:03d}.wav", a, cfg.data.sample_rate) for i, a in enumerate(audio)]
