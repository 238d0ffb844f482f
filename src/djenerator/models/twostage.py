"""Stage 2 of the two-stage model: a GAN over codec latent sequences several bars long (``model.arch = "twostage"``).

The generator makes the codec's latents (~43 frames/s) from slow latents, a style vector, a bar clock and a
per-bar latent (a vector per run of four bars and per sixteenth of its bar, so a riff comes round at the bar),
and the frozen codec decoder (:mod:`.codec`) turns them into audio, so callers get one ``G(z, cond) -> audio``.
The latent critic reads latents, their difference to the bar before, and the clock, so it can tell whether
bars repeat as real ones do; the decoded critic hears a short crop of them through the frozen decoder. Output depends only on latents within ``context_frames``, so :mod:`djenerator.stream`
renders any length in chunks. Design: docs/two-stage.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, ConfigError
from .codec import Codec, codec_hop, latent_channels
from .grid import cond_bpm, tempo_column
from .spectral import SpectralGenerator, _Block

SLOW = 32  # codec frames per slow latent frame
FRAME_DIM = 32
DILATIONS = (1, 2, 4, 8, 16, 32, 1, 1)
KERNEL = 7
COND_DIM = 16
BAR_MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0)  # of the beat: bar (4/4), half bar, beat, eighth, sixteenth
CLOCK_DIM = 2 * len(BAR_MULTIPLES)
BEATS_PER_BAR = 4
RUN_BARS = 4  # bars per per-bar latent: a riff is played four times before the next one
STEPS_PER_BAR = 16  # the riff's grid: sixteenths of a 4/4 bar
RIFF_DIM = 16  # per vector (the input is the run's and the sixteenth's: 2 x RIFF_DIM channels)
RIFF_RUNS = 256  # runs before the table comes round (~34 min at 120 BPM)


def beat_positions(cond: torch.Tensor | None, b: int, n: int, rate: float, bpm_range, t0: float = 0.0):
    """(beats (B, n) float64 since the clip's first beat, known (B,) bool) at n frames 1/rate s apart from t0.
    Without a condition the tempo is the middle of ``bpm_range`` and the phase 0 (known = False)."""
    t = t0 + torch.arange(n, dtype=torch.float64, device=None if cond is None else cond.device) / float(rate)
    if cond is None:
        bpm = torch.full((b,), (float(bpm_range[0]) + float(bpm_range[1])) / 2, dtype=torch.float64)
        return bpm[:, None] / 60.0 * t[None], torch.zeros(b, dtype=torch.bool)
    phase = cond[:, 1].double()
    return torch.nan_to_num(phase)[:, None] + t[None] * cond_bpm(cond, bpm_range)[:, None] / 60.0, torch.isfinite(phase)


def bar_clock(cond: torch.Tensor | None, b: int, n: int, rate: float, bpm_range, t0: float = 0.0) -> torch.Tensor:
    """(B, CLOCK_DIM, n) sin/cos of the bar, beat and sub-beat phases at n frames 1/rate s apart from t0;
    zero where the phase is unknown (NaN) or no condition is given."""
    if cond is None:
        return torch.zeros(b, CLOCK_DIM, n)
    beats, known = beat_positions(cond, b, n, rate, bpm_range, t0)
    m = torch.tensor(BAR_MULTIPLES, dtype=torch.float64, device=cond.device)
    ang = 2 * math.pi * torch.remainder(beats[:, None, :] * m[None, :, None], 1.0)
    return (torch.cat([torch.sin(ang), torch.cos(ang)], 1) * known[:, None, None]).float()


def run_of(beats: torch.Tensor) -> torch.Tensor:
    """The run of RUN_BARS bars that each beat position falls in (the riff latent's and the bar lock's)."""
    return torch.floor(beats / (BEATS_PER_BAR * RUN_BARS)).long()


class RiffLatents(nn.Module):
    """The per-bar latent. Each run of ``RUN_BARS`` bars has a vector, and one for each sixteenth of its bar:
    N(0, 1) entries of a fixed table indexed by the run, so the pattern under a bar comes round in every bar
    of a run and changes with the next run, and a streamed chunk sees what one pass sees."""

    def __init__(self, dim: int = RIFF_DIM, seed: int = 20):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("table", torch.randn(RIFF_RUNS, 1 + STEPS_PER_BAR, dim, generator=g))

    def forward(self, run: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """run, step (B, n) int64 -> (B, 2 dim, n): the run's vector and its sixteenth's."""
        r = torch.remainder(run, RIFF_RUNS)
        return torch.cat([self.table[r, 0], self.table[r, 1 + step]], -1).transpose(1, 2)


def bar_lag_difference(x: torch.Tensor, cond: torch.Tensor | None, rate: float, bpm_range) -> torch.Tensor:
    """(B, C + 1, F): x(t) - x(t - one bar) (linear interpolation between frames) and a mask of where that
    exists; zero where the tempo is unknown. Lets a critic judge whether bars repeat as real ones do."""
    b, c, f = x.shape
    if cond is None:
        return x.new_zeros(b, c + 1, f)
    lag = BEATS_PER_BAR * 60.0 / cond_bpm(cond, bpm_range).to(x) * rate  # frames per bar, (B,)
    src = torch.arange(f, device=x.device, dtype=x.dtype)[None] - lag[:, None]
    i0 = src.floor().clamp(0, f - 1)
    w = (src - src.floor())[:, None]
    i1 = (i0 + 1).clamp(max=f - 1)
    take = lambda i: x.gather(2, i.long()[:, None].expand(-1, c, -1))  # noqa: E731
    valid = ((src >= 0) & torch.isfinite(cond[:, 1:2])).to(x)[:, None]
    diff = (x - (1 - w) * take(i0) - w * take(i1)) * valid
    return torch.cat([diff, valid], 1)


def _keep(h: torch.Tensor, lo: int, window: tuple[int, int] | None, need: int) -> tuple[torch.Tensor, int]:
    """(h cut to ``window`` widened by ``need`` frames each side, the frame of its first column); h starts at
    frame ``lo``. No window: h as it is."""
    if window is None:
        return h, lo
    a = window[0] - need
    return h[..., a - lo:window[0] + window[1] + need - lo], a


class LatentGenerator(nn.Module):
    """slow latents + style + bar clock -> codec latents (B, channels, N * SLOW)."""

    def __init__(self, latent_dim: int, dim: int, tempo_conditioning: bool, bpm_range, rate: float, channels: int):
        super().__init__()
        self.latent_dim, self.rate, self.bpm_range = int(latent_dim), float(rate), tuple(bpm_range)
        self.tempo_conditioning = bool(tempo_conditioning)
        style_dim = self.latent_dim + (COND_DIM if self.tempo_conditioning else 0)
        if self.tempo_conditioning:
            self.cond_embed = nn.Linear(1, COND_DIM)
        ch = 4 * max(int(dim), 4)
        self.riffs = RiffLatents()
        self.inp = nn.Conv1d(FRAME_DIM + style_dim + CLOCK_DIM + 2 * RIFF_DIM, ch, KERNEL, padding=KERNEL // 2)
        self.blocks = nn.ModuleList(_Block(ch, style_dim, d) for d in DILATIONS)
        self.channels = int(channels)
        self.out = nn.Conv1d(ch, self.channels, 1)
        self.block_reach = [sum(d * (KERNEL // 2) for d in DILATIONS[i:]) for i in range(len(DILATIONS))]
        self.reach = KERNEL // 2 + self.block_reach[0]  # codec frames either way

    def style_of(self, z: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if not self.tempo_conditioning:
            return z
        c = z.new_full((z.shape[0], 1), 0.5) if cond is None else tempo_column(cond).to(z.dtype)
        return torch.cat([z, self.cond_embed(c)], dim=1)

    def riff_position(self, cond: torch.Tensor | None, b: int, k: int, t0: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(run of RUN_BARS bars, sixteenth within the bar), each (B, k), of every frame; in training the run is
        shifted by a random offset per item, so no run is learnt by heart (generation starts at run 0)."""
        beats, _ = beat_positions(cond, b, k, self.rate, self.bpm_range, t0)
        run = run_of(beats)
        step = torch.floor(torch.remainder(beats, BEATS_PER_BAR) * (STEPS_PER_BAR / BEATS_PER_BAR)).long()
        if self.training:
            run = run + torch.randint(0, 2**20, (b, 1), device=run.device)
        return run, step.clamp(0, STEPS_PER_BAR - 1)

    def forward(self, z_seq: torch.Tensor, style: torch.Tensor, cond: torch.Tensor | None, t0: float,
                window: tuple[int, int] | None = None) -> torch.Tensor:
        """z_seq (B, FRAME_DIM, N); style (B, latent_dim) or (B, latent_dim, N); t0: time (s) of frame 0.
        ``window`` (start, frames): return only those frames, computing each layer only where later layers
        need it (training: ~half the work); needs ``reach`` frames of input either side of the window."""
        b, _, n = z_seq.shape
        k = n * SLOW
        if style.dim() == 2:  # one style per clip: FiLM is computed once, not per frame
            s = self.style_of(style, cond)[:, :, None]
        else:
            s = F.interpolate(style, size=k, mode="linear", align_corners=False)
            if self.tempo_conditioning:
                c = self.style_of(style[:, :, 0], cond)[:, self.latent_dim:]
                s = torch.cat([s, c[:, :, None].expand(-1, -1, k)], dim=1)
        clock = bar_clock(cond, b, k, self.rate, self.bpm_range, t0).to(s)
        riff = self.riffs(*self.riff_position(cond, b, k, t0)).to(s)
        z = F.interpolate(z_seq, size=k, mode="linear", align_corners=False)
        h = torch.cat([z, s.expand(-1, -1, k), clock, riff], 1)
        if window is not None and not (self.reach <= window[0] and sum(window) + self.reach <= k):
            raise ValueError(f"window {window} needs {self.reach} frames of context within {k}")
        h, lo = _keep(h, 0, window, self.reach)  # lo: the frame of h[..., 0]
        h = self.inp(h)
        for blk, need in zip(self.blocks, self.block_reach):  # keep what this block and the later ones need
            h, lo = _keep(h, lo, window, need)
            h = blk(h, s if s.shape[-1] == 1 else s[..., lo:lo + h.shape[-1]])
        h, _ = _keep(h, lo, window, 0)
        return torch.tanh(self.out(h))


class LatentDiscriminator(nn.Module):
    """D(latents (B, channels, F), cond) -> (patch logits (B, 1, F'), features): dilated convs over latents,
    their difference to the bar before, and the clock."""

    def __init__(self, cfg: Config):
        super().__init__()
        ch = 4 * max(int(cfg.model.dim), 4)
        self.rate = cfg.data.sample_rate / (2 * codec_hop(cfg.data.sample_rate))
        self.bpm_range = tuple(cfg.model.bpm_range)
        cin = 2 * latent_channels(cfg.model.codec_peaks) + 1 + CLOCK_DIM
        self.convs = nn.ModuleList([nn.Conv1d(cin, ch, 5, padding=2)] + [
            nn.Conv1d(ch, ch, 5, stride=2 if i % 2 else 1, padding=2 * d, dilation=d)
            for i, d in enumerate((1, 2, 4, 1, 2, 4))])
        self.out = nn.Conv1d(ch, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        clock = bar_clock(cond, x.shape[0], x.shape[-1], self.rate, self.bpm_range).to(x)
        h = torch.cat([x, bar_lag_difference(x, cond, self.rate, self.bpm_range), clock], 1)
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            feats.append(h)
        return self.out(h), feats


DECODED_FRAMES = 24  # latent frames (~0.56 s) of each sequence the decoded critic hears


class DecodedCritic(nn.Module):
    """D(latents (B, channels, F), cond) -> (patch logits (B, 1, frames, bins'), features): a 2-D critic on the
    log-magnitude that the run's frozen decoder draws from a random ``DECODED_FRAMES`` crop of the latents (the
    middle one in eval mode), so that stage 2 is judged by what its latents sound like (harmonic lines or a wash),
    not only by the codes. Strided over frequency only, as DAC's STFT critic is. ``bind(codec)`` lends it the
    decoder, which stays out of its parameters and state (it is the generator's, frozen)."""

    def __init__(self, cfg: Config, ch: int = 16):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(1, ch, (3, 9), stride=(1, 4), padding=(1, 4))] + [
            nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4)) for _ in range(3)] + [
            nn.Conv2d(ch, ch, 3, padding=1)])
        self.out = nn.Conv2d(ch, 1, 3, padding=1)
        self.codec: Codec | None = None

    def bind(self, codec: Codec) -> None:
        self.__dict__["codec"] = codec  # a plain attribute: not a submodule, so not trained or saved here

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        if self.codec is None:
            raise RuntimeError("DecodedCritic needs the run's decoder: call bind(codec) first")
        c, n = self.codec.decode_context, x.shape[-1]
        if n < DECODED_FRAMES + 2 * c:  # a short sequence: all of it, edges included
            c, keep = 0, n
        else:
            keep = DECODED_FRAMES
        s = c + (int(torch.randint(0, n - 2 * c - keep + 1, ())) if self.training else (n - 2 * c - keep) // 2)
        h = self.codec.log_magnitude(x[:, :, s - c:s + keep + c])[:, 2 * c:2 * (c + keep), None].transpose(1, 2)
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            feats.append(h)
        return self.out(h), feats


def _gan(m, rate: float) -> nn.Module:
    return LatentGenerator(m.latent_dim, m.dim, m.tempo_conditioning, m.bpm_range, rate, latent_channels(m.codec_peaks))


def _flow(m, rate: float) -> nn.Module:
    from .latent_flow import LatentFlow

    return LatentFlow(m.dim, rate, m.bpm_range, m.tempo_conditioning, m.flow_steps, latent_channels(m.codec_peaks),
                      m.flow_clip_share)


@dataclass(frozen=True)
class Stage2:
    """A stage-2 family (``model.stage2``): how to build it from (model config, latent frames/s) and what it is."""

    build: Callable
    adversarial: bool  # trained against a critic (model.discriminators, train.loss, train.r1 and the like apply)
    bar_lock: bool  # pieces can lock a share of their input to the bar (model.bar_repeat, generate --repeat)
    losses: tuple[str, ...]  # what a training step reports (the columns of logs/losses.csv)


STAGE2: dict[str, Stage2] = {
    # slow latents + clock + riff -> latents, against a critic
    "gan": Stage2(_gan, adversarial=True, bar_lock=True, losses=("d_loss", "g_loss")),
    # flow matching: noise -> latents (latent_flow.py)
    "flow": Stage2(_flow, adversarial=False, bar_lock=True, losses=("loss",)),
}


def stage2_of(name: str) -> Stage2:
    if name not in STAGE2:
        raise ConfigError(f"unknown model.stage2 '{name}' (choose from: {', '.join(STAGE2)})")
    return STAGE2[name]


class TwoStageGenerator(nn.Module):
    """``G(z, cond) -> (B, 1, clip_samples)``; ``render(z_seq, style, cond, t0)`` for any length (see stream.py)."""

    longform = True

    def __init__(self, cfg: Config):
        super().__init__()
        m, d = cfg.model, cfg.data
        self.sample_rate, self.clip_samples = int(d.sample_rate), int(d.clip_samples)
        self.codec = Codec.of(cfg)
        rate = self.sample_rate / self.codec.frame_samples
        self.stage2 = stage2_of(m.stage2)
        self.latent = self.stage2.build(m, rate)
        self.latent_dim, self.frame_dim = int(m.latent_dim), FRAME_DIM
        self.frame_samples = SLOW * self.codec.frame_samples
        self.clip_frames = math.ceil(self.clip_samples / self.codec.frame_samples)
        reach = self.latent.reach + self.codec.decode_context + SLOW // 2 + 1
        self.context_frames = math.ceil(reach / SLOW)

    @property
    def bar_lock(self) -> bool:
        return self.stage2.bar_lock

    @property
    def morphs(self) -> bool:
        """Whether the latents between two seeds give the clips between theirs; a flow's latent only seeds its
        noise, so it morphs by its noise instead (:meth:`morph`)."""
        return self.stage2.adversarial

    def morph(self, z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """A flow's clips (B, 1, clip_samples) at places t (B,) on the way from z0's clip to z1's (B, latent_dim)."""
        from .latent_flow import noise_between

        noise = noise_between(z0, z1, t, self.clip_frames, channels=self.latent.channels).to(z0)
        return self.codec.decode(self.latent.sample(noise, cond))[:, :, :self.clip_samples]

    def stream_track(self, seed: int, cond: torch.Tensor | None, t0: float = 0.0, repeat: float = 0.0,
                     to_seed: int | None = None, frames: int = 0):
        """A flow's piece latents (:class:`.latent_flow.LatentTrack`) for seed ``seed`` (morphing to ``to_seed``
        over ``frames`` codec frames); None for the GAN, whose latents come from per-frame inputs. ``t0``: the
        time (s) of the track's first frame on the piece's clock."""
        if self.stage2.adversarial:
            return None
        from ..latents import clip_latent
        from .latent_flow import LatentTrack

        morph = None if to_seed is None else (clip_latent(to_seed, 0, self.latent_dim)[None], int(frames))
        return LatentTrack(self.latent, clip_latent(seed, 0, self.latent_dim)[None], cond, self.clip_frames, t0,
                           repeat, morph)

    def lock_to_bar(self, z_seq: torch.Tensor, seed: int, cond: torch.Tensor | None, t0: float,
                    share: float) -> torch.Tensor:
        """Slow latents (B, FRAME_DIM, N) starting at ``t0`` s, with ``share`` of their variance replaced by a
        pattern that comes round every bar of a run of RUN_BARS bars: (a + b cos 2 pi x + c sin 2 pi x) / sqrt 2,
        x the place in the bar, a, b, c drawn per (seed, run). The rest of the generator's input already comes
        round at the bar (clock, riff), so ``share`` = 1 makes each run repeat bar by bar, 0 leaves the piece as
        drawn. Slow frame j is where the generator's linear upsampling puts it, codec frame (j + 1/2) SLOW - 1/2."""
        from ..latents import run_latents

        b, d, n = z_seq.shape
        t = t0 + (SLOW / 2 - 0.5) / self.latent.rate
        beats, _ = beat_positions(cond, b, n, self.latent.rate / SLOW, self.latent.bpm_range, t)
        run = run_of(beats)
        x = 2 * math.pi * torch.remainder(beats, BEATS_PER_BAR) / BEATS_PER_BAR
        pattern = []
        for i in range(b):
            runs, where = torch.unique(run[i], return_inverse=True)  # a chunk spans a few runs: draw each once
            a, c, s = run_latents(seed, runs.tolist(), d)[..., where]
            pattern.append((a + c * torch.cos(x[i]).float() + s * torch.sin(x[i]).float()) / math.sqrt(2))
        g = torch.stack(pattern).to(z_seq)
        return math.sqrt(1 - share) * z_seq + math.sqrt(share) * g

    def render_latents(self, z_seq, style, cond=None, t0: float = 0.0) -> torch.Tensor:
        return self.latent(z_seq, style, cond, t0)

    def render(self, z_seq: torch.Tensor, style: torch.Tensor, cond: torch.Tensor | None = None,
               t0: float = 0.0) -> torch.Tensor:
        """(B, FRAME_DIM, N) slow latents -> (B, 1, N * frame_samples) audio (crop context_frames per side)."""
        return self.codec.decode(self.latent(z_seq, style, cond, t0))

    @property
    def carries_phase(self) -> bool:
        return self.codec.carries_phase

    def render_carry(self, z_seq: torch.Tensor, style: torch.Tensor, cond: torch.Tensor | None, t0: float,
                     phase: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``render`` for one chunk of a streamed piece when the decoder's phase is a running sum: ``phase``, handed
        on by the previous chunk (None for the first), replaces the sum one window (n_fft) before this chunk's kept
        audio, where both chunks' decoders see their full context; returns the audio and the phase to hand on,
        taken just before the next chunk's hand-over frame."""
        return self.decode_carry(self.latent(z_seq, style, cond, t0), z_seq.shape[-1], phase)

    def decode_carry(self, lat: torch.Tensor, n: int, phase: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``render_carry``'s decoding of the latents of ``n`` slow frames."""
        per = SLOW * self.codec.frame_samples // self.codec.hop  # STFT frames per slow frame
        early = self.codec.n_fft // self.codec.hop
        spec, runs = self.codec.spectrum(lat, phase, start=per * self.context_frames - early, carry=True)
        hand = runs[..., per * (n - self.context_frames) - early - 1]
        return self.codec.istft(spec, lat.shape[-1]), hand

    def _sequence(self, z: torch.Tensor, n: int) -> torch.Tensor:
        return SpectralGenerator._sequence(self, z, n)  # random in training, seeded by z's bytes in eval

    def crop_plan(self, frames: int) -> tuple[int, int]:
        """(slow frames to render, codec-frame offset of the crop) for a window of ``frames`` codec frames."""
        n = math.ceil(frames / SLOW) + 2 * self.context_frames + 1
        offset = int(torch.randint(0, SLOW, ())) if self.training else 0
        return n, self.context_frames * SLOW + offset

    def latents_for(self, z: torch.Tensor, cond: torch.Tensor | None, frames: int) -> torch.Tensor:
        """Stage-2 training: codec latents (B, channels, frames) of a window with full context on both sides
        (a flow: one window from z's noise)."""
        if not self.stage2.adversarial:
            from .latent_flow import noise_of

            return self.latent.sample(noise_of(z, frames, channels=self.latent.channels).to(z), cond)
        n, start = self.crop_plan(frames)
        t0 = -start * self.codec.frame_samples / self.sample_rate
        return self.latent(self._sequence(z, n), z, cond, t0, window=(start, frames))

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if not self.stage2.adversarial:  # a flow makes the clip's window as it was trained on
            return self.codec.decode(self.latents_for(z, cond, self.clip_frames))[:, :, :self.clip_samples]
        fs = self.codec.frame_samples
        frames = math.ceil(self.clip_samples / fs)
        n, start = self.crop_plan(frames)
        t0 = -start * fs / self.sample_rate
        lat = self.latent(self._sequence(z, n), z, cond, t0)
        # decode the window plus the decoder's context, then crop: equals the interior of a long piece
        c = self.codec.decode_context
        audio = self.codec.decode(lat[:, :, start - c:start + frames + c])
        return audio[:, :, c * fs:c * fs + self.clip_samples]
