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
from .config import BPM_LIMITS, Config, ConfigError
from .models import build_generator, tempo_cond


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Config, int]:
    """(generator in eval mode, its config, the step it was saved at)."""
    device = check_device(device)
    return generator_of(load_checkpoint(path, map_location=device), device)


def check_device(name: str | torch.device) -> torch.device:
    """``name`` as a device this machine has, else a ConfigError that says what to use instead."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--device {name}: not a device name; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: this machine has no CUDA GPU that torch can use; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return dev


def check_request(n: int | None = None, batch_size: int | None = None, bpm: float | None = None) -> None:
    """A clear ConfigError for a clip count or batch size below 1, or a tempo outside ``BPM_LIMITS``."""
    for flag, value in (("-n", n), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if bpm is not None and not BPM_LIMITS[0] <= bpm <= BPM_LIMITS[1]:  # NaN fails too
        raise ConfigError(f"--bpm must be between {BPM_LIMITS[0]:g} and {BPM_LIMITS[1]:g}, got {bpm:g}")


def generator_of(ck: dict, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Config, int]:
    """``load_generator`` for a checkpoint already read, for callers that need its other entries too."""
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


def interpolation_latents(cfg: Config, seed: int, to_seed: int, steps: int) -> torch.Tensor:
    """The latents of a ``steps``-clip slerp from clip 0 of ``seed`` to clip 0 of ``to_seed``."""
    z0, z1 = latents(1, cfg.model.latent_dim, seed)[0], latents(1, cfg.model.latent_dim, to_seed)[0]
    return interpolate(z0, z1, steps)


def bpm_cond(cfg: Config, bpm: float | None, n: int) -> torch.Tensor | None:
    """One requested tempo (None: the middle of the trained range) as the condition of n clips, each
    starting on a beat."""
    if bpm is None:
        bpm = sum(cfg.model.bpm_range) / 2
    return tempo_cond(torch.full((n,), float(bpm)), cfg, torch.zeros(n))


@torch.no_grad()
def generate_clips(G: torch.nn.Module, cfg: Config, n: int = 8, seed: int = 0, batch_size: int = 16,
                   bpm: float | None = None, z: torch.Tensor | None = None,
                   cond: torch.Tensor | None = None) -> np.ndarray:
    """(n, T) float32 in [-1, 1]; pass ``z`` to render given latents (interpolation), ``cond`` (n, 2) to give
    each clip its own condition (tempo-conditioned models; see models.tempo_cond) instead of ``bpm``."""
    device = next(G.parameters()).device
    z = latents(n, cfg.model.latent_dim, seed) if z is None else z
    out = []
    for i in range(0, len(z), batch_size):
        zb = z[i:i + batch_size].to(device)
        cond_b = bpm_cond(cfg, bpm, len(zb)) if cond is None else cond[i:i + batch_size]
        out.append(G(zb, cond_b.to(device) if cond_b is not None else None).float().cpu()[:, 0])
    return torch.cat(out).clamp(-1, 1).numpy()


def generate_to_files(checkpoint: str | Path, out_dir: str | Path, n: int = 8, seed: int = 0, batch_size: int = 16,
                      bpm: float | None = None, interpolate_to: int | None = None, device: str = "cpu",
                      prefix: str = "clip", log=lambda m: None) -> list[Path]:
    """Write n clips (or an n-step interpolation from seed to ``interpolate_to``) as wav files."""
    check_request(n=n, batch_size=batch_size, bpm=bpm)
    G, cfg, step = load_generator(checkpoint, device)
    if bpm is not None and not cfg.model.tempo_conditioning:
        log(BPM_IGNORED)
    z = None if interpolate_to is None else interpolation_latents(cfg, seed, interpolate_to, max(n, 2))
    audio = generate_clips(G, cfg, n, seed, batch_size, bpm, z)
    out_dir = Path(out_dir)
    tag = f"seed{seed}" if interpolate_to is None else f"seed{seed}-to-{interpolate_to}"
    return [write_wav(out_dir / f"{prefix}_{tag}_{i:03d}.wav", a, cfg.data.sample_rate) for i, a in enumerate(audio)]


BPM_IGNORED = ("note: this model was trained without tempo conditioning, so --bpm is ignored "
               "(train with --set model.tempo_conditioning=true to ask for a tempo)")


# --- pieces of any length --------------------------------------------------------------------------
LONGFORM_HINT = ("train with --preset spectral (model.arch=spectral), whose generator is fully convolutional "
                 "along time and renders any length")


def _check_seconds(seconds: float) -> None:
    if not (seconds > 0 and np.isfinite(seconds)):
        raise ConfigError(f"--seconds must be a positive number, got {seconds}")


def _fixed_window_piece(G: torch.nn.Module, cfg: Config, n_samples: int, seed: int, bpm: float | None,
                        interpolate_to: int | None) -> np.ndarray:
    """Fixed-window generators (dense, wavegan) make at most one window; refuse anything longer."""
    T = cfg.data.clip_samples
    if n_samples > T:
        raise ConfigError(
            f"a '{cfg.model.arch}' generator makes fixed windows of {T / cfg.data.sample_rate:.2f} s and cannot make "
            f"a {n_samples / cfg.data.sample_rate:.2f}-s piece without audible joins; {LONGFORM_HINT}")
    z = None
    if interpolate_to is not None:  # a single window: the midpoint of the path
        z = interpolate(latents(1, cfg.model.latent_dim, seed)[0], latents(1, cfg.model.latent_dim, interpolate_to)[0], 3)[1:2]
    return generate_clips(G, cfg, 1, seed, 1, bpm, z)[0, :n_samples]


def generate_long(G: torch.nn.Module, cfg: Config, seconds: float, seed: int = 0, bpm: float | None = None,
                  interpolate_to: int | None = None, chunk_seconds: float = 8.0) -> np.ndarray:
    """One piece of ``seconds`` as float32 (samples,), in memory (the HTTP API's call).

    Same (model, seconds, seed) -> same audio. With ``interpolate_to`` the piece morphs along time from
    seed's latents to that seed's. Rendered chunk by chunk (see :mod:`djenerator.stream`), so the peak
    memory is that of one chunk plus the output array.
    """
    from .stream import PiecePlan, is_longform, iter_piece

    _check_seconds(seconds)
    n = max(1, int(round(seconds * cfg.data.sample_rate)))
    if not is_longform(G):
        return _fixed_window_piece(G, cfg, n, seed, bpm, interpolate_to)
    plan = PiecePlan.for_generator(G, n, seed, interpolate_to)
    out = np.empty(n, dtype=np.float32)
    pos = 0
    for block in iter_piece(G, plan, bpm_cond(cfg, bpm, 1), _chunk_frames(G, chunk_seconds, cfg)):
        out[pos:pos + len(block)] = block
        pos += len(block)
    return out


def _chunk_frames(G: torch.nn.Module, chunk_seconds: float, cfg: Config) -> int:
    return max(1, int(round(chunk_seconds * cfg.data.sample_rate / G.frame_samples)))


def generate_long_to_file(checkpoint_or_G, path: str | Path, seconds: float, seed: int = 0, bpm: float | None = None,
                          interpolate_to: int | None = None, cfg: Config | None = None, device: str = "cpu",
                          progress: bool = True, chunk_seconds: float = 8.0, subtype: str = "PCM_16") -> Path:
    """Stream one piece of ``seconds`` to a wav file at ``path``, chunk by chunk, in bounded memory.

    ``checkpoint_or_G`` is a checkpoint file, a run folder, or a generator (then pass its ``cfg``).
    The file appears (atomically) only when the piece is complete; Ctrl-C leaves nothing behind.
    A progress bar shows on pieces of 20 s and longer when ``progress`` is set.
    """
    import soundfile as sf

    from .io import atomic_path
    from .stream import PiecePlan, is_longform, iter_piece

    _check_seconds(seconds)
    if isinstance(checkpoint_or_G, torch.nn.Module):
        if cfg is None:
            raise ConfigError("generate_long_to_file needs cfg when given a generator")
        G = checkpoint_or_G
    else:
        G, cfg, _ = load_generator(checkpoint_or_G, device)
    sr = cfg.data.sample_rate
    n = max(1, int(round(seconds * sr)))
    path = Path(path)
    if is_longform(G):
        plan = PiecePlan.for_generator(G, n, seed, interpolate_to)
        blocks = iter_piece(G, plan, bpm_cond(cfg, bpm, 1), _chunk_frames(G, chunk_seconds, cfg))
    else:
        blocks = iter([_fixed_window_piece(G, cfg, n, seed, bpm, interpolate_to)])
    bar = None
    if progress and seconds >= 20:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"generate {path.name}", unit="s", unit_scale=1.0 / sr, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s of audio [{elapsed}<{remaining}]")
    try:
        with atomic_path(path) as tmp:
            with sf.SoundFile(tmp, "w", samplerate=sr, channels=1, subtype=subtype, format="WAV") as f:
                for block in blocks:
                    f.write(block)
                    if bar is not None:
                        bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    return path
