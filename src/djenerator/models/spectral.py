"""A length-agnostic, frame-rate generator with an ISTFT output (``model.arch = "spectral"``).

Pieces of any length come from a sequence of latent frames (one per ``frame_samples``, ~0.25 s) plus a
style vector held for the whole piece. The network is fully convolutional along time, runs at the STFT
frame rate and ends in ``torch.istft`` (the Vocos recipe), so it costs far less per second of audio than
transposed convolutions, and output sample t depends only on latents within ``context_frames``: chunked
rendering equals one pass (:mod:`djenerator.stream`). Training renders clips with full context on both
sides, as in the interior of a long piece. Layout and training details: docs/how-it-works.md.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..latents import noise_of_latents
from .grid import GRID_DIM, beat_grid, tempo_column

FRAME_SECONDS = 0.25  # latent frame length target
FRAME_DIM = 32  # width of one latent frame
DILATIONS = (1, 2, 4, 1)
KERNEL = 7
COND_DIM = 16
INIT_LEVEL = 0.1  # output RMS at initialisation


def choose_hop(sample_rate: int) -> int:
    """The power of two nearest (in log scale) to sample_rate / 62.5: 256 at 16-22.05 kHz, 512 at 24-44.1 kHz."""
    target = sample_rate / 62.5
    return int(2 ** round(math.log2(target)))


class _Block(nn.Module):
    """ConvNeXt block (Liu et al. 2022, as in Vocos) with FiLM from the style: per-frame ops only, plus
    one dilated depthwise conv along time."""

    def __init__(self, ch: int, style_dim: int, dilation: int):
        super().__init__()
        self.dw = nn.Conv1d(ch, ch, KERNEL, padding=dilation * (KERNEL - 1) // 2, dilation=dilation, groups=ch)
        self.norm = nn.LayerNorm(ch, elementwise_affine=False)
        self.film = nn.Linear(style_dim, 2 * ch)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.pw1 = nn.Linear(ch, 2 * ch)
        self.pw2 = nn.Linear(2 * ch, ch)
        self.gamma = nn.Parameter(torch.full((ch,), 0.1))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # x (B, C, T); style (B, S, T) already at this rate
        h = self.dw(x).transpose(1, 2)  # (B, T, C)
        scale, shift = self.film(style.transpose(1, 2)).chunk(2, dim=-1)
        h = self.norm(h) * (1 + scale) + shift
        h = self.pw2(F.gelu(self.pw1(h))) * self.gamma
        return x + h.transpose(1, 2)


class SpectralGenerator(nn.Module):
    """``G(z, cond=None) -> (B, 1, clip_samples)`` for training, ``G.render(z_seq, style, cond)`` for any length."""

    longform = True

    def __init__(self, cfg: Config):
        super().__init__()
        m, d = cfg.model, cfg.data
        self.sample_rate = int(d.sample_rate)
        self.clip_samples = int(d.clip_samples)
        self.latent_dim = int(m.latent_dim)  # the style vector
        self.frame_dim = FRAME_DIM
        self.hop = choose_hop(self.sample_rate)
        self.n_fft = 4 * self.hop
        self.upsample = max(1, round(FRAME_SECONDS * self.sample_rate / self.hop))  # STFT frames per latent frame
        self.frame_samples = self.upsample * self.hop
        ch = 4 * max(int(m.dim), 4)
        self.tempo_conditioning = bool(m.tempo_conditioning)
        style_dim = self.latent_dim + (COND_DIM if self.tempo_conditioning else 0)
        if self.tempo_conditioning:
            self.cond_embed = nn.Linear(1, COND_DIM)
        self.style_dim = style_dim
        self.beat_grid = bool(m.beat_grid)
        self.bpm_range = tuple(m.bpm_range)
        # the grid enters the input layer only: fed to every block's FiLM as well, it took over the output
        # (steady drones, no rests; Frechet distance 531 vs 343 on the built-in data at ~4.5k steps)
        self.inp = nn.Conv1d(FRAME_DIM + style_dim + (GRID_DIM if self.beat_grid else 0), ch, KERNEL, padding=KERNEL // 2)
        self.blocks = nn.ModuleList(_Block(ch, style_dim, dl) for dl in DILATIONS)
        if self.beat_grid:  # the grid starts switched off: learnt as far as the discriminators ask for it
            with torch.no_grad():
                self.inp.weight[:, FRAME_DIM + style_dim:].zero_()
        self.norm = nn.LayerNorm(ch)
        self.bins = self.n_fft // 2 + 1
        self.head = nn.Conv1d(ch, 2 * self.bins, 1)
        with torch.no_grad():
            self.head.weight[: self.bins].mul_(0.1)  # magnitudes start flat; phases start spread
            self.head.weight[self.bins:].mul_(10.0)
            self.head.bias.zero_()
            self.head.bias[: self.bins].fill_(math.log(INIT_LEVEL * self.n_fft / math.sqrt(1.5 * self.bins)))
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        # receptive-field radius in STFT frames: input conv + dilated depthwise convs + ISTFT overlap,
        # plus half a latent frame for the linear interpolation of the latents
        radius = KERNEL // 2 + sum(dl * (KERNEL // 2) for dl in DILATIONS) + self.n_fft // (2 * self.hop)
        self.context_frames = math.ceil((radius + self.upsample / 2 + 1) / self.upsample)

    # --- any length ------------------------------------------------------------------------------
    def frames_for(self, samples: int) -> int:
        """Latent frames that cover ``samples`` output samples, context on both sides included."""
        return math.ceil(samples / self.frame_samples) + 2 * self.context_frames

    def style_of(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Global latent (B, latent_dim) [+ tempo] -> style (B, style_dim)."""
        if not self.tempo_conditioning:
            return z
        c = z.new_full((z.shape[0], 1), 0.5) if cond is None else tempo_column(cond).to(z.dtype)
        return torch.cat([z, self.cond_embed(c)], dim=1)

    def render(self, z_seq: torch.Tensor, style: torch.Tensor, cond: torch.Tensor | None = None,
               t0: float = 0.0) -> torch.Tensor:
        """(B, frame_dim, N) latent frames + style (B, latent_dim) or, varying along time, (B, latent_dim, N)
        -> (B, 1, N * frame_samples). Edges are computed with zero padding: crop ``context_frames`` frames
        on each side for audio that equals any longer rendering (what :mod:`djenerator.stream` does).
        ``t0``: the time (s) of output sample 0 on the beat grid's clock (where ``cond``'s phase holds)."""
        b, _, n = z_seq.shape
        if style.dim() == 2:
            style = self.style_of(style, cond)[:, :, None].expand(-1, -1, n)
        else:
            if self.tempo_conditioning:
                c = self.style_of(style[:, :, 0], cond)[:, self.latent_dim:]
                style = torch.cat([style, c[:, :, None].expand(-1, -1, n)], dim=1)
        # latent frames -> STFT frame rate by linear interpolation (no steps at frame joins)
        k = n * self.upsample
        s = F.interpolate(style, size=k, mode="linear", align_corners=False)
        inp = [F.interpolate(z_seq, size=k, mode="linear", align_corners=False), s]
        if self.beat_grid:
            c = cond if cond is not None and cond.dim() == 2 else z_seq.new_tensor([[0.5, 0.0]]).expand(b, -1)
            inp.append(beat_grid(c, k, self.sample_rate / self.hop, self.bpm_range, t0).to(s))
        h = self.inp(torch.cat(inp, dim=1))
        for blk in self.blocks:
            h = blk(h, s)
        h = self.head(self.norm(h.transpose(1, 2)).transpose(1, 2))
        logmag, phase = h.float().chunk(2, dim=1)
        spec = torch.polar(torch.exp(logmag.clamp(max=6.0)), phase)  # (B, bins, frames)
        audio = torch.istft(spec, self.n_fft, self.hop, window=self.window.float(), center=True,
                            length=n * self.frame_samples)
        return torch.tanh(audio).unsqueeze(1).to(z_seq.dtype)

    # --- training interface ----------------------------------------------------------------------
    def _sequence(self, z: torch.Tensor, n: int) -> torch.Tensor:
        if self.training:
            return torch.randn(z.shape[0], self.frame_dim, n, device=z.device, dtype=z.dtype)
        return noise_of_latents(z, (self.frame_dim, n)).to(dtype=z.dtype)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        T, fs, c = self.clip_samples, self.frame_samples, self.context_frames
        n = math.ceil(T / fs) + 2 * c + 1
        offset = int(torch.randint(0, fs, ())) if self.training else 0
        start = c * fs + offset
        audio = self.render(self._sequence(z, n), z, cond, t0=-start / self.sample_rate)
        return audio[:, :, start:start + T]
