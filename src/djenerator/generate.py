"""The one generation path: (checkpoint or generator, seed, tempo, length, interpolation) -> audio.

The CLI, the server, training samples, evaluation and streaming all come through here: :func:`forward` is
the one generator call, :func:`generate_clips` makes clips, :func:`piece_blocks` makes pieces of any length,
and a :class:`Request` says which of them a user asked for (:func:`render` in memory, :func:`write_files`
to wav files). A checkpoint carries its config, so nothing else is needed.

Same (checkpoint, seed, options) -> same audio: latents come from :mod:`djenerator.latents`, seeded per
clip (and per latent frame), never from the global RNG.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .audio import write_wav
from .checkpoint import config_of, fit_weights, load_checkpoint
from .config import BPM_LIMITS, Config, ConfigError
from .latents import interpolate, latents
from .models import build_generator, tempo_cond

BPM_IGNORED = ("note: this model was trained without tempo conditioning, so --bpm is ignored "
               "(train with --set model.tempo_conditioning=true to ask for a tempo)")
LONGFORM_HINT = ("train with --preset spectral (model.arch=spectral), whose generator is fully convolutional "
                 "along time and renders any length")


# --- the generator ---------------------------------------------------------------------------------
def load_generator(path: str | Path, device: str | torch.device = "cpu",
                   best: bool = True) -> tuple[torch.nn.Module, Config, int]:
    """(generator in eval mode, its config, the step its weights are from); see :func:`generator_of`."""
    device = check_device(device)
    return generator_of(load_checkpoint(path, map_location=device), device, best)


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


def generator_of(ck: dict, device: str | torch.device = "cpu",
                 best: bool = True) -> tuple[torch.nn.Module, Config, int]:
    """``load_generator`` for a checkpoint already read, for callers that need its other entries too.

    A two-stage run that keeps its best weights (``train.best_every``) carries them as ``G_best``; they are
    what the run makes, and the step returned is theirs, so that what a user is told matches what they hear.
    ``best=False`` takes the checkpoint's own weights (``G``) and step instead, as a curve over steps needs.
    """
    cfg = config_of(ck)
    G = build_generator(cfg).to(device)
    use_best = best and "G_best" in ck
    fit_weights(G, ck["G_best"] if use_best else ck["G"], ck)
    G.eval()
    return G, cfg, int(ck["best"][1]) if use_best else int(ck["step"])


@contextmanager
def evaluating(G: torch.nn.Module) -> Iterator[torch.device]:
    """G in eval mode and without gradients (its mode restored after); yields G's device."""
    was_training = G.training
    G.eval()
    try:
        with torch.no_grad():
            yield next(G.parameters()).device
    finally:
        G.train(was_training)


def forward(G: torch.nn.Module, z: torch.Tensor, cond: torch.Tensor | None = None, style: torch.Tensor | None = None,
            t0: float = 0.0) -> torch.Tensor:
    """The one generator call: ``G(z, cond)``, or with ``style`` ``G.render(z, style, cond, t0)`` (a latent frame
    sequence, see stream.py), on G's device and in eval mode; -> (B, T) float32 on the CPU, not clamped (every
    generator ends in tanh or a clamp)."""
    with evaluating(G) as device:
        c = cond.to(device) if cond is not None else None
        x = G(z.to(device), c) if style is None else G.render(z.to(device), style.to(device), c, t0=t0)
    return x.float().cpu()[:, 0]


# --- clips -----------------------------------------------------------------------------------------
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


def generate_clips(G: torch.nn.Module, cfg: Config, n: int = 8, seed: int = 0, batch_size: int = 16,
                   bpm: float | None = None, z: torch.Tensor | None = None,
                   cond: torch.Tensor | None = None) -> np.ndarray:
    """(n, T) float32 in [-1, 1]; pass ``z`` to render given latents (interpolation), ``cond`` (n, 2) to give
    each clip its own condition (tempo-conditioned models; see models.tempo_cond) instead of ``bpm``."""
    z = latents(n, cfg.model.latent_dim, seed) if z is None else z
    out = []
    for i in range(0, max(len(z), 1), batch_size):  # no latents: one empty batch, (0, T) out
        zb = z[i:i + batch_size]
        out.append(forward(G, zb, bpm_cond(cfg, bpm, len(zb)) if cond is None else cond[i:i + batch_size]))
    return torch.cat(out).clamp(-1, 1).numpy()


def morph_clips(G: torch.nn.Module, cfg: Config, seed: int, to_seed: int, steps: int, batch_size: int = 16,
                bpm: float | None = None) -> np.ndarray:
    """(steps, T): the clips from clip 0 of ``seed`` to clip 0 of ``to_seed`` of a generator that morphs by its
    noise (``G.morph``: a flow), not by its latents."""
    z0, z1 = latents(1, cfg.model.latent_dim, seed), latents(1, cfg.model.latent_dim, to_seed)
    t, out = torch.linspace(0, 1, steps), []
    for i in range(0, steps, batch_size):
        tb = t[i:i + batch_size]
        cond = bpm_cond(cfg, bpm, len(tb))
        with evaluating(G) as device:
            x = G.morph(z0.expand(len(tb), -1).to(device), z1.expand(len(tb), -1).to(device), tb.to(device),
                        None if cond is None else cond.to(device))
        out.append(x.float().cpu()[:, 0])
    return torch.cat(out).clamp(-1, 1).numpy()


# --- pieces of any length --------------------------------------------------------------------------
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
    z = None if interpolate_to is None else interpolation_latents(cfg, seed, interpolate_to, 3)[1:2]  # the midpoint
    return generate_clips(G, cfg, 1, seed, 1, bpm, z)[0, :n_samples]


def check_repeat(G: torch.nn.Module | None, repeat: float | None) -> None:
    """``repeat`` is None (the model's ``bar_repeat``) or a value in [0, 1], and above 0 needs a generator that
    can repeat by the bar."""
    if repeat is None:
        return
    if not (0.0 <= repeat <= 1.0):
        raise ConfigError(f"--repeat is how much each bar repeats the bar before, 0 to 1; got {repeat}")
    if repeat > 0 and G is not None and not getattr(G, "bar_lock", hasattr(G, "lock_to_bar")):
        raise ConfigError("--repeat needs a model that repeats by a bar clock (model.arch=twostage, as in "
                          "--preset bars or bars-gan)")


def piece_blocks(G: torch.nn.Module, cfg: Config, seconds: float, seed: int = 0, bpm: float | None = None,
                 interpolate_to: int | None = None, chunk_seconds: float = 8.0,
                 repeat: float | None = None) -> tuple[int, Iterator[np.ndarray]]:
    """(samples, the piece as consecutive float32 blocks) of one piece of ``seconds``.

    A length-agnostic generator renders it chunk by chunk (see :mod:`djenerator.stream`), so memory stays that
    of one chunk; a fixed-window one makes one block, and refuses more than one window. With
    ``interpolate_to`` the piece morphs along time from seed's latents to that seed's; ``repeat`` (0 to 1) is
    how much each bar repeats the bar before (two-stage models: ``lock_to_bar``, ``LatentTrack``), by default
    the model's ``model.bar_repeat``.
    """
    from .stream import PiecePlan, is_longform, iter_piece

    _check_seconds(seconds)
    check_repeat(G, repeat)
    repeat = cfg.model.bar_repeat if repeat is None else repeat
    n = max(1, int(round(seconds * cfg.data.sample_rate)))
    if not is_longform(G):
        return n, iter([_fixed_window_piece(G, cfg, n, seed, bpm, interpolate_to)])
    chunk_frames = max(1, int(round(chunk_seconds * cfg.data.sample_rate / G.frame_samples)))
    plan = PiecePlan.for_generator(G, n, seed, interpolate_to, repeat)
    return n, iter_piece(G, plan, bpm_cond(cfg, bpm, 1), chunk_frames)


def generate_long(G: torch.nn.Module, cfg: Config, seconds: float, seed: int = 0, bpm: float | None = None,
                  interpolate_to: int | None = None, chunk_seconds: float = 8.0,
                  repeat: float | None = None) -> np.ndarray:
    """One piece of ``seconds`` as float32 (samples,), in memory (the HTTP API's call); see :func:`piece_blocks`.
    Same (model, seconds, seed) -> same audio."""
    n, blocks = piece_blocks(G, cfg, seconds, seed, bpm, interpolate_to, chunk_seconds, repeat)
    out = np.empty(n, dtype=np.float32)
    pos = 0
    for block in blocks:
        out[pos:pos + len(block)] = block
        pos += len(block)
    return out


def generate_long_to_file(checkpoint_or_G, path: str | Path, seconds: float, seed: int = 0, bpm: float | None = None,
                          interpolate_to: int | None = None, cfg: Config | None = None, device: str = "cpu",
                          progress: bool = True, chunk_seconds: float = 8.0, subtype: str = "PCM_16",
                          repeat: float | None = None) -> Path:
    """Stream one piece of ``seconds`` to a wav file at ``path``, chunk by chunk, in bounded memory.

    ``checkpoint_or_G`` is a checkpoint file, a run folder, or a generator (then pass its ``cfg``).
    The file appears (atomically) only when the piece is complete; Ctrl-C leaves nothing behind.
    A progress bar shows on pieces of 20 s and longer when ``progress`` is set.
    """
    import soundfile as sf

    from .io import atomic_path

    _check_seconds(seconds)
    if isinstance(checkpoint_or_G, torch.nn.Module):
        if cfg is None:
            raise ConfigError("generate_long_to_file needs cfg when given a generator")
        G = checkpoint_or_G
    else:
        G, cfg, _ = load_generator(checkpoint_or_G, device)
    sr, path = cfg.data.sample_rate, Path(path)
    n, blocks = piece_blocks(G, cfg, seconds, seed, bpm, interpolate_to, chunk_seconds, repeat)
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


# --- what a user asks for ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """``n`` clips of ``seed`` (clip i has latent i), or with ``seconds`` ``n`` pieces of seeds seed, seed+1, ...
    With ``interpolate_to``: clips are an n-step slerp (at least 2) from seed's clip 0 to that seed's, and
    each piece morphs along time from its seed to that seed."""

    n: int = 8
    seed: int = 0
    bpm: float | None = None
    seconds: float | None = None
    interpolate_to: int | None = None
    batch_size: int = 16
    repeat: float | None = None  # pieces: how much each bar repeats the bar before (None: the model's)

    def seeds(self) -> list[int]:
        """The seed of each output, in order."""
        if self.seconds is not None:
            return [self.seed + i for i in range(self.n)]
        return [self.seed] * (self.n if self.interpolate_to is None else max(self.n, 2))


def file_tag(seed: int, interpolate_to: int | None = None) -> str:
    """The part of a file name that says what made it: ``seed3``, or ``seed3-to-9`` for an interpolation."""
    return f"seed{seed}" + (f"-to-{interpolate_to}" if interpolate_to is not None else "")


def request_clips(G: torch.nn.Module, cfg: Config, req: Request) -> np.ndarray:
    """The clips of a request without ``seconds``: n clips of its seed, or its interpolation."""
    steps = len(req.seeds())
    if req.interpolate_to is not None and not getattr(G, "morphs", True):
        return morph_clips(G, cfg, req.seed, req.interpolate_to, steps, req.batch_size, req.bpm)
    z = None if req.interpolate_to is None else interpolation_latents(cfg, req.seed, req.interpolate_to, steps)
    return generate_clips(G, cfg, steps, req.seed, req.batch_size, req.bpm, z)


def render(G: torch.nn.Module, cfg: Config, req: Request) -> list[np.ndarray]:
    """Every clip or piece of ``req``, in memory and in the order of ``req.seeds()`` (the server's call)."""
    if req.seconds is None:
        return list(request_clips(G, cfg, req))
    # interpolate_to only when set: a stand-in for generate_long (the server's tests use one) need not take it
    extra = {"interpolate_to": req.interpolate_to} if req.interpolate_to is not None else {}
    if req.repeat is not None:
        extra["repeat"] = req.repeat
    return [generate_long(G, cfg, float(req.seconds), s, bpm=req.bpm, **extra) for s in req.seeds()]


def write_files(G: torch.nn.Module, cfg: Config, req: Request, out: str | Path, prefix: str = "clip",
                progress: bool = True) -> list[Path]:
    """Every clip or piece of ``req`` as a wav file in the folder ``out`` (the CLI's call); pieces are
    streamed to disk, and a single piece may be named by ``out`` itself (``*.wav``)."""
    out = Path(out)
    if req.seconds is None:
        tag = file_tag(req.seed, req.interpolate_to)
        clips = request_clips(G, cfg, req)
        return [write_wav(out / f"{prefix}_{tag}_{i:03d}.wav", a, cfg.data.sample_rate) for i, a in enumerate(clips)]
    one_file = out.suffix.lower() == ".wav"
    paths = [out if one_file else out / f"piece_{file_tag(s, req.interpolate_to)}_{req.seconds:g}s.wav"
             for s in req.seeds()]
    return [generate_long_to_file(G, p, req.seconds, seed=s, bpm=req.bpm, interpolate_to=req.interpolate_to, cfg=cfg,
                                  progress=progress, repeat=req.repeat) for p, s in zip(paths, req.seeds())]


def generate_to_files(checkpoint: str | Path, out_dir: str | Path, n: int = 8, seed: int = 0, batch_size: int = 16,
                      bpm: float | None = None, interpolate_to: int | None = None, device: str = "cpu",
                      prefix: str = "clip", log=lambda m: None, seconds: float | None = None,
                      progress: bool = True, repeat: float | None = None) -> list[Path]:
    """Load a checkpoint and write n clips (an n-step interpolation from seed to ``interpolate_to``), or with
    ``seconds`` n pieces, as wav files; see :class:`Request`."""
    check_request(n=n, batch_size=batch_size, bpm=bpm)
    check_repeat(None, repeat)
    if repeat is not None and seconds is None:
        raise ConfigError("--repeat shapes pieces: give --seconds as well")
    if seconds is not None and Path(out_dir).suffix.lower() == ".wav" and n > 1:
        raise ConfigError(f"-o {out_dir} names one file but -n asks for {n} pieces; give a folder")
    G, cfg, _ = load_generator(checkpoint, device)
    if bpm is not None and not cfg.model.tempo_conditioning:
        log(BPM_IGNORED)
    req = Request(n, seed, bpm, seconds, interpolate_to, batch_size, repeat)  # piece_blocks checks G's bar clock
    return write_files(G, cfg, req, out_dir, prefix, progress)
