"""Seeded latents and spherical interpolation: the one scheme every generation path draws from.

- Clip i of seed s always gets the same latent (:func:`clip_latent`), whatever the batch or the count.
- A long piece's style is clip 0's latent; its latent frame k depends only on (s, k) (:func:`frame_latents`).
- :func:`slerp` interpolates between latents, for clips (:func:`interpolate`) and along time alike.

Each draw uses a private generator, never the global RNG, so generating leaves training's RNG alone.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch


def noise_of_latents(z: torch.Tensor, shape: tuple[int, ...], salt: bytes = b"") -> torch.Tensor:
    """(B, *shape) float32 N(0, 1) noise on z's device, row b a function of z[b]'s bytes (and ``salt``) only:
    the same latent always gets the same noise, whatever the batch."""
    out = []
    for row in z.detach().float().cpu().numpy():
        seed = int.from_bytes(hashlib.blake2b(row.tobytes() + salt, digest_size=8).digest(), "little")
        out.append(torch.from_numpy(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)))
    return torch.stack(out).to(z.device)


def clip_latent(seed: int, i: int, dim: int) -> torch.Tensor:
    """The standard normal latent (dim,) of clip i of seed ``seed``."""
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed * 1_000_003 + i))


def run_latents(seed: int, runs, dim: int) -> torch.Tensor:
    """(3, dim, K) standard normal vectors of runs[0..K-1] of seed ``seed``; run r's depend only on (seed, r)."""
    s = int(seed) % (2**63)
    cols = [np.random.default_rng([s, int(r) % (2**63), 9157]).standard_normal((3, dim), dtype=np.float32)
            for r in runs]
    return torch.from_numpy(np.stack(cols, axis=2)) if cols else torch.zeros(3, dim, 0)


def latents(n: int, dim: int, seed: int) -> torch.Tensor:
    """(n, dim): clips 0..n-1 of seed ``seed``."""
    return torch.stack([clip_latent(seed, i, dim) for i in range(n)])


def frame_latents(seed: int, start: int, stop: int, dim: int) -> torch.Tensor:
    """(dim, stop - start) standard normal latents of frames start..stop-1; frame k depends only on (seed, k)."""
    s = int(seed) % (2**63)
    cols = [np.random.default_rng([s, k, 7321]).standard_normal(dim, dtype=np.float32) for k in range(start, stop)]
    return torch.from_numpy(np.stack(cols, axis=1)) if cols else torch.zeros(dim, 0)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation along dim 0 of (D, K) tensors at weights t (K,); lerp where nearly parallel.
    Gaussian latents keep their norm along the path (White 2016)."""
    an, bn = a / a.norm(dim=0, keepdim=True).clamp_min(1e-12), b / b.norm(dim=0, keepdim=True).clamp_min(1e-12)
    omega = torch.arccos((an * bn).sum(0).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    near = omega.abs() < 1e-4
    wa = torch.where(near, 1 - t, torch.sin((1 - t) * omega) / torch.where(near, torch.ones_like(so), so))
    wb = torch.where(near, t, torch.sin(t * omega) / torch.where(near, torch.ones_like(so), so))
    return wa * a + wb * b


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """(steps, D): the slerp path from z0 (D,) to z1 (D,), both ends included."""
    return slerp(z0[:, None].expand(-1, steps), z1[:, None].expand(-1, steps), torch.linspace(0, 1, steps)).T
