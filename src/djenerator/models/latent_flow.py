"""Stage 2 as a flow over codec latent sequences (``model.stage2 = "flow"``): no critic, a regression.

Rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023): with x_t = (1 - t) noise + t data, a net
learns the velocity data - noise by least squares, and sampling integrates dx/dt = v(x, t) from noise at t = 0
to t = 1 (two-step Adams-Bashforth, ``model.flow_steps`` steps). Nothing is adversarial, so a short CPU run
learns the latents' distribution steadily where the latent GAN swings from step to step (docs/two-stage.md,
round 17).

The net is the latent GAN's body (ConvNeXt blocks with dilations reaching 4.5 s, FiLM) reading x_t, the bar clock
and known frames with their mask; FiLM carries t and the tempo. Latents are standardised per channel by the
training set's mean and spread (buffers: a checkpoint carries them). In training a random prefix of some windows
is given as known, so the net learns to continue a sequence: pieces of any length are made window by window, each
continuing the second half of the one before (:class:`LatentTrack`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..latents import noise_of_latents, slerp
from .codec import LATENT_CH
from .grid import tempo_column
from .spectral import _Block
from .twostage import BEATS_PER_BAR, CLOCK_DIM, COND_DIM, DILATIONS, KERNEL, bar_clock, beat_positions, run_of

FLOW_STEPS = 5  # sampler steps from noise to latents, one net pass each and one more to start (model.flow_steps)
SCHEDULE_POWER = 1.5  # the sampler's times are u^1.5 for u evenly spaced: denser near the noise
T_DIM = 64  # FiLM width of the time embedding
PREFIX_SHARE = 0.5  # training windows with a known prefix (of up to half the window)
MAX_CLIP_SHARE = 0.9  # of a channel's variance that a clip source puts in the time mean


def time_features(t: torch.Tensor, dim: int = 32) -> torch.Tensor:
    """(B,) in [0, 1] -> (B, dim) sin/cos at frequencies 1 to 1000 (geometric)."""
    f = torch.exp(torch.linspace(0, math.log(1000.0), dim // 2, device=t.device))
    a = 2 * math.pi / 10 * t.float()[:, None] * f[None]
    return torch.cat([torch.sin(a), torch.cos(a)], 1)


def time_grid(start: float, steps: int) -> torch.Tensor:
    """Flow times from ``start`` to 1 for a sampler of ``steps`` steps over the whole way (fewer from a later
    start; none from 1), closer together near the noise, where the velocity turns most: t = u^1.5."""
    m = math.ceil(steps * (1.0 - start) - 1e-6)
    return start + (1.0 - start) * torch.linspace(0.0, 1.0, m + 1, dtype=torch.float64) ** SCHEDULE_POWER


class LatentFlow(nn.Module):
    """v(x_t, t, known, mask, cond) over codec latents (B, channels, F) at ``rate`` frames/s."""

    def __init__(self, dim: int, rate: float, bpm_range, tempo_conditioning: bool, steps: int = FLOW_STEPS,
                 channels: int = LATENT_CH, clip_share: float = 0.0):
        super().__init__()
        self.channels, self.clip_scale = int(channels), float(clip_share)  # model.flow_clip_share
        self.rate, self.bpm_range, self.tempo_conditioning = float(rate), tuple(bpm_range), bool(tempo_conditioning)
        self.steps = int(steps)  # sampler steps of sample() (model.flow_steps)
        self.reach = 0  # no per-frame inputs beyond the piece's own latents (LatentTrack): no context to render
        ch = 4 * max(int(dim), 4)
        style = T_DIM + (COND_DIM if self.tempo_conditioning else 0)
        self.t_mlp = nn.Sequential(nn.Linear(32, T_DIM), nn.GELU(), nn.Linear(T_DIM, T_DIM))
        if self.tempo_conditioning:
            self.cond_embed = nn.Linear(1, COND_DIM)
        self.inp = nn.Conv1d(2 * self.channels + 1 + CLOCK_DIM, ch, KERNEL, padding=KERNEL // 2)
        self.blocks = nn.ModuleList(_Block(ch, style, d) for d in DILATIONS)
        self.out = nn.Conv1d(ch, self.channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("mu", torch.zeros(self.channels))
        self.register_buffer("sd", torch.ones(self.channels))
        self.register_buffer("clip_share", torch.zeros(self.channels))  # see source(); 0: white noise

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # files from before round 24 have no clip share: they sample from white noise, as they always did
        state_dict.setdefault(prefix + "clip_share", torch.zeros(self.channels))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_scale(self, lat: torch.Tensor) -> None:
        """Standardise by the per-channel mean and spread of the training latents (B, channels, F); with a clip
        source, ``clip_share`` is each channel's share of variance that lies between clips (their time means),
        times model.flow_clip_share."""
        self.mu.copy_(lat.mean((0, 2)))
        self.sd.copy_(lat.std((0, 2)).clamp_min(1e-3))
        if self.clip_scale:
            share = self.clip_scale * self.standardise(lat).mean(2).var(0)
            self.clip_share.copy_(share.clamp(0.0, MAX_CLIP_SHARE))

    def source(self, noise: torch.Tensor) -> torch.Tensor:
        """The state the flow starts from, made from white noise (B, channels, n). Each channel's time mean is
        stretched to carry ``clip_share`` of the variance, as the data's clip means do, and the variation around it
        is scaled to the rest, so the source keeps unit variance: a clip's overall character then has a source of
        its own, where white noise gives it only 1/n of the variance and the flow draws every clip near the average
        (docs/two-stage.md, round 24). A function of the noise alone, so a seed still names a clip and
        interpolation still morphs."""
        if not self.clip_scale:
            return noise
        mean, share = noise.mean(-1, keepdim=True), self.clip_share[:, None]
        return (1 - share).sqrt() * (noise - mean) + share.sqrt() * mean * math.sqrt(noise.shape[-1])

    def velocity(self, x, t, known, mask, cond, t0: float = 0.0) -> torch.Tensor:
        b, _, n = x.shape
        style = self.t_mlp(time_features(t))
        if self.tempo_conditioning:
            c = x.new_full((b, 1), 0.5) if cond is None else tempo_column(cond).to(x.dtype)
            style = torch.cat([style, self.cond_embed(c)], 1)
        clock = bar_clock(cond, b, n, self.rate, self.bpm_range, t0).to(x)
        h = self.inp(torch.cat([x, known * mask, mask, clock], 1))
        for blk in self.blocks:
            h = blk(h, style[:, :, None])
        return self.out(h)

    def loss(self, lat: torch.Tensor, cond, gen: torch.Generator) -> torch.Tensor:
        """Flow-matching loss of real latents (B, channels, F); every random draw from ``gen``."""
        b, _, n = lat.shape
        x1 = self.standardise(lat)
        x0 = self.source(torch.randn(x1.shape, generator=gen).to(x1))
        t = torch.sigmoid(torch.randn(b, generator=gen)).to(x1)  # logit-normal (Esser et al. 2024)
        prefix = torch.randint(1, n // 2 + 1, (b,), generator=gen) * (torch.rand(b, generator=gen) < PREFIX_SHARE)
        mask = (torch.arange(n)[None] < prefix[:, None]).to(x1)[:, None]
        xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * x1
        err = (self.velocity(xt, t, x1, mask, cond) - (x1 - x0)) ** 2 * (1 - mask)
        return err.sum() / ((1 - mask).sum() * self.channels).clamp_min(1)

    def sample(self, noise: torch.Tensor, cond, t0: float = 0.0, known: torch.Tensor | None = None,
               n_known: int = 0, steps: int | None = None, start: float = 0.0,
               guess: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, channels, F) from white ``noise`` (B, channels, F) through the flow's ``source``; with
        ``start`` above 0 from the state part of the way to ``guess`` (latents as the codec has them), a guess to
        refine, as SDEdit does; the first ``n_known`` frames are ``known``'s (latents as the codec has them).
        ``steps`` (``model.flow_steps``) steps of :func:`time_grid` from ``start`` to 1, by the two-step
        Adams-Bashforth rule: ``steps`` + 1 passes of the net (docs/two-stage.md, round 18)."""
        b, _, n = noise.shape
        mask = (torch.arange(n, device=noise.device) < n_known).to(noise)[None, None].expand(b, 1, n)
        k = noise.new_zeros(noise.shape)
        if n_known:
            k[..., :n_known] = self.standardise(known[..., :n_known])
        x, prev, h_prev = self.source(noise), None, 1.0
        if start > 0:
            x = (1 - start) * x + start * self.standardise(guess)
        ts = time_grid(start, steps or self.steps).tolist()
        for t, t_next in zip(ts[:-1], ts[1:]):  # Adams-Bashforth 2: error O(h^2)
            h = t_next - t
            v = self.velocity(x, torch.full((b,), t, device=noise.device), k, mask, cond, t0)
            if prev is None:  # a midpoint step to start (it needs no earlier velocity)
                half = torch.full((b,), t + h / 2, device=noise.device)
                x = x + h * self.velocity(x + v * h / 2, half, k, mask, cond, t0)
            else:
                r = h / h_prev
                x = x + h * ((1 + r / 2) * v - (r / 2) * prev)
            prev, h_prev = v, h
        x = x * (1 - mask) + k * mask
        return (x * self.sd[:, None] + self.mu[:, None]).clamp(-1, 1)

    def standardise(self, lat: torch.Tensor) -> torch.Tensor:
        """Codec latents (..., channels, F) -> the flow's standardised space."""
        return (lat - self.mu[:, None]) / self.sd[:, None]


def noise_of(z: torch.Tensor, n: int, salt: int = 0, channels: int = LATENT_CH) -> torch.Tensor:
    """(B, channels, n) N(0, 1) noise, a function of each row of z and ``salt``: the same z gives the same clip,
    and window ``salt`` of a piece its own noise."""
    return noise_of_latents(z, (channels, n), salt.to_bytes(8, "little"))


def noise_between(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, n: int, salt: int = 0,
                  channels: int = LATENT_CH) -> torch.Tensor:
    """(B, channels, n): the slerp at weights t (B,) from the noise of z0 (B, D) to that of z1: a flow's sampler
    maps noise to latents smoothly, so clips made from it morph from z0's clip to z1's (t = 0 and 1 give them)."""
    a, b = noise_of(z0, n, salt, channels), noise_of(z1, n, salt, channels)
    return slerp(a.flatten(1).T, b.flatten(1).T, t.to(a.dtype)).T.reshape(a.shape)


def bar_before(lat: torch.Tensor, n_new: int, per_bar: float) -> torch.Tensor:
    """(..., n_new) frames that continue ``lat`` (..., F) by playing it again one bar (``per_bar`` frames, any
    real number: linear interpolation between frames) later: frame a reads frame a - per_bar, which may itself be
    one of the new frames."""
    if per_bar < 1:
        raise ValueError(f"a bar must span at least one frame; got {per_bar}")
    out = lat
    while out.shape[-1] < lat.shape[-1] + n_new:
        a = torch.arange(out.shape[-1], min(out.shape[-1] + int(per_bar), lat.shape[-1] + n_new), dtype=torch.float64)
        src = (a - per_bar).clamp_min(0)
        lo = src.floor().long()
        w = (src - lo).to(lat.dtype)
        hi = (lo + 1).clamp_max(out.shape[-1] - 1)
        out = torch.cat([out, out[..., lo] * (1 - w) + out[..., hi] * w], -1)
    return out[..., lat.shape[-1]:]


class LatentTrack:
    """A piece's latents, made lazily window by window: window k covers frames [k hop, k hop + window) and keeps
    the first ``window - hop`` of them from window k - 1. ``frames(a, b)`` makes what it needs and returns
    (1, channels, b - a); any split into calls gives the same latents, so streamed pieces equal one pass.

    With ``repeat`` s > 0 a window's new frames start at flow time s from the bar before played again (SDEdit:
    s = 1 plays it again as it was, 0.7 a variation of it), so a riff comes round bar after bar; the window in
    which a new run of RUN_BARS bars begins starts afresh, so the piece moves on (docs/two-stage.md, round 18).
    With ``morph`` = (z1, frames) the noise of window k is :func:`noise_between` z and z1 at the window's place
    in a piece of that many frames, so the piece morphs from z's to z1's."""

    def __init__(self, flow: LatentFlow, z: torch.Tensor, cond, window: int, t0: float = 0.0, repeat: float = 0.0,
                 morph: tuple[torch.Tensor, int] | None = None):
        self.flow, self.z, self.cond, self.window, self.t0 = flow, z, cond, int(window), float(t0)
        self.repeat, self.morph = float(repeat), morph
        self.hop = self.window - self.window // 2
        self.lat = torch.zeros(1, flow.channels, 0)

    @torch.no_grad()
    def _next(self) -> None:
        have = self.lat.shape[-1]
        k = 0 if have == 0 else 1 + (have - self.window) // self.hop
        start = k * self.hop
        keep, t0 = have - start, self.t0 + start / self.flow.rate
        dev = self.flow.mu.device
        noise = self._noise(k, start).to(dev)
        known = self.lat[..., start:].to(dev) if keep else None
        cond = None if self.cond is None else self.cond.to(dev)
        s = self.repeat if keep and self._run_at(have - 1) == self._run_at(have + self.hop - 1) else 0.0
        if s > 0:  # start the new frames part of the way from noise to the bar before (SDEdit): a variation of it
            per_bar = self.bar_frames(t0)
            last = self.lat[..., max(0, have - math.ceil(per_bar) - 1):].to(dev)
            guess = torch.cat([known, bar_before(last, self.window - keep, per_bar)], -1)
        new = self.flow.sample(noise, cond, t0=t0, known=known, n_known=keep, start=s, guess=guess if s > 0 else None)
        self.lat = torch.cat([self.lat, new[..., keep:].cpu()], -1)

    def _noise(self, k: int, start: int) -> torch.Tensor:
        if self.morph is None:
            return noise_of(self.z, self.window, salt=k, channels=self.flow.channels)
        z1, frames = self.morph
        t = torch.tensor([min(1.0, start / max(frames - self.window, 1))])
        return noise_between(self.z, z1, t, self.window, salt=k, channels=self.flow.channels)

    def _beats(self, t: float, n: int = 1) -> torch.Tensor:
        return beat_positions(self.cond, 1, n, self.flow.rate, self.flow.bpm_range, t)[0][0].cpu()

    def bar_frames(self, t: float) -> float:
        """Frames per bar at the piece's tempo at time ``t``."""
        beats = self._beats(t, 2)
        return BEATS_PER_BAR / float(beats[1] - beats[0])

    def _run_at(self, frame: int) -> int:
        """The run of RUN_BARS bars that frame ``frame`` of the piece falls in."""
        return int(run_of(self._beats(self.t0 + frame / self.flow.rate))[0])

    def frames(self, a: int, b: int) -> torch.Tensor:
        while self.lat.shape[-1] < b:
            self._next()
        return self.lat[..., a:b]
