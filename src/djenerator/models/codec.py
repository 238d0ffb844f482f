"""Stage 1 of the two-stage model: an audio autoencoder (Musika's idea, Vocos's decoder).

    audio (B, 1, T) --STFT(n_fft 4h, hop h)--> log-mel (B, 80, T/h)
      -> Conv1d k7 -> ConvNeXt x n -> Conv1d k4 stride 2 -> Conv1d k1 -> tanh  = latents (B, 16, T/2h)
    latents --Conv1d k7 -> x2 upsample (nearest + Conv1d k3) -> ConvNeXt x m -> LayerNorm -> Linear
      -> (log|S|, phase) per bin -> torch.istft(n_fft 4h, hop h) -> (B, 1, T)

h = 256 at 22.05 kHz, so the latents run at ~43 frames/s (one per 2h = 512 samples). They are bounded by
tanh, and during training a little Gaussian noise is added before the decoder, so that stage 2's
imperfect latents still decode to clean audio. With the free phase head nothing mixes time steps but
convolutions with a finite reach, so decoding a long latent sequence in overlapping chunks equals one pass
(``decode_context`` latent frames of overlap on each side).

The phase head is a choice (``PHASE_HEADS``, ``model.decoder_phase``). "free" draws a phase per frame and
bin, as Vocos does: nothing ties a partial's phase from frame to frame, and the decoder draws a wash.
"integrated" draws each bin's phase step (its instantaneous frequency: the bin's own rotation per hop plus
pi x tanh(out)) and sums the steps over frames, as GANSynth's representation does, so a held partial stays one
line. The price is attacks: a running sum cannot align the bins' phases at a click. Nor does it relate
neighbouring bins, so the bins of one partial's lobe are phased at random (``lobe_coherence`` ~0, real
music ~0.8; docs/two-stage.md, round 7). "pghi" draws only the magnitude and takes the phase that the
magnitude's own gradients imply (``dsp.pghi``, as TiF-GAN does): the bins of a partial turn together and an
attack lines them up, so a magnitude with lines decodes to lines (``bars`` uses it; round 8). Training takes
that phase as given and shapes the magnitude for it. "pghi_residual" adds a correction, pi x tanh(out), to
that phase in each frame and bin, drawn by the decoder and trained through the audio (the phase-gradient phase
gets no gradient), so training can mend where that phase is wrong; at zero it is "pghi", so a "pghi" base
starts it (``Codec.adopt``; round 13). The reach of the phase of the last three heads is unbounded, so
streamed decoding hands the running phase from chunk to chunk (``spectrum(z, phase, start, carry=True)``).

Losses (pure functions below): multi-resolution STFT (spectral convergence + log-magnitude L1) and
log-mel L1, as in Parallel WaveGAN / Vocos.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..dsp.contrast import sharpen
from ..dsp.mel import mel_filterbank
from ..dsp.peaks import band_edges, band_peaks, mel_interp, peak_latents, peaks_of_latents, render_lobes
from ..dsp.pghi import pghi_frames

LATENT_CH = 16  # learned channels of the latent sequence stage 2 learns (model.codec_peaks adds two per band)
N_MELS = 80
KERNEL = 7
MAX_PEAK_BANDS = 24  # model.codec_peaks: at most this many bands (two latent channels each)
MIN_ENVELOPE = 16  # model.codec_envelope: at least this many points, when not 0
LATENT_NOISE = 0.05  # std of the noise on latents during training (decoder robustness)
STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))


@dataclass(frozen=True)
class PhaseHead:
    carries_phase: bool  # the phase runs on from frame to frame (unbounded reach: streaming hands it on)
    outputs: int  # numbers the decoder draws per bin: log-magnitude, and a phase, a phase step or a correction if 2
    grows_from: str | None = None  # a base of this head starts this one (its extra outputs at zero: decodes the same)


PHASE_HEADS = {"free": PhaseHead(False, 2), "integrated": PhaseHead(True, 2), "pghi": PhaseHead(True, 1),
               "pghi_residual": PhaseHead(True, 2, grows_from="pghi")}
# what the encoder reads (model.codec_input): "mel", 80 log-mel bands as Vocos's vocoder does (above ~1 kHz a band
# is wider than the spacing of a low note's partials, so the decoder must guess them); "stft", the log power of
# every STFT bin as Musika's encoder does (partials stay apart at every pitch, at ~6x the input convolution's cost)
ENCODER_INPUTS = ("mel", "stft")
# what stage 1 trains (train.codec_tune): parameter-name prefixes; "encoder" keeps a base's decoder as it is
TUNED_PARTS = {"all": ("",), "encoder": ("enc",)}


def latent_channels(peaks: int) -> int:
    """Channels of a codec's latents: the learned ones, and a place and a level per peak band."""
    return LATENT_CH + 2 * int(peaks)


def codec_hop(sample_rate: int) -> int:
    """STFT hop of the decoder: the power of two nearest sample_rate / 86 (256 at 22.05 kHz)."""
    return int(2 ** round(math.log2(sample_rate / 86.0)))


class ConvNeXt(nn.Module):
    """ConvNeXt block as in Vocos: depthwise conv along time, LayerNorm, MLP, layer scale, residual."""

    def __init__(self, ch: int, dilation: int = 1):
        super().__init__()
        self.dw = nn.Conv1d(ch, ch, KERNEL, padding=dilation * (KERNEL // 2), dilation=dilation, groups=ch)
        self.norm = nn.LayerNorm(ch)
        self.pw1, self.pw2 = nn.Linear(ch, 3 * ch), nn.Linear(3 * ch, ch)
        self.gamma = nn.Parameter(torch.full((ch,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dw(x).transpose(1, 2))
        return x + (self.pw2(F.gelu(self.pw1(h))) * self.gamma).transpose(1, 2)


class Codec(nn.Module):
    """``encode(audio) -> latents``, ``decode(latents) -> audio``; ``forward`` = reconstruct (with latent noise in training)."""

    def __init__(self, sample_rate: int, dim: int = 32, enc_blocks: int = 3, dec_blocks: int = 6,
                 phase: str = "free", reads: str = "mel", peaks: int = 0, envelope: int = 0):
        super().__init__()
        if phase not in PHASE_HEADS:
            raise ValueError(f"phase head must be one of {', '.join(PHASE_HEADS)}, got {phase!r}")
        if reads not in ENCODER_INPUTS:
            raise ValueError(f"encoder input must be one of {', '.join(ENCODER_INPUTS)}, got {reads!r}")
        self.phase, self.carries_phase, self.reads = phase, PHASE_HEADS[phase].carries_phase, reads
        self.sample_rate = int(sample_rate)
        self.hop = codec_hop(self.sample_rate)
        self.n_fft = 4 * self.hop
        self.frame_samples = 2 * self.hop  # audio samples per latent frame
        ch = 4 * max(int(dim), 4)
        self.register_buffer("mel", mel_filterbank(self.sample_rate, self.n_fft, N_MELS), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.bins = self.n_fft // 2 + 1
        self.enc_in = nn.Conv1d(N_MELS if reads == "mel" else self.bins, ch, KERNEL, padding=KERNEL // 2)
        self.enc = nn.Sequential(*[ConvNeXt(ch) for _ in range(enc_blocks)])
        self.enc_down = nn.Conv1d(ch, ch, 4, stride=2, padding=1)
        self.enc_out = nn.Conv1d(ch, LATENT_CH, 1)
        self.peaks, self.envelope, self.latent_ch = int(peaks), int(envelope), latent_channels(peaks)
        self.register_buffer("edges", band_edges(self.sample_rate, self.n_fft, self.peaks), persistent=False)
        if self.envelope:  # the head draws the log-magnitude at mel-spaced points; bins in between are interpolated
            self.register_buffer("env_basis", mel_interp(self.sample_rate, self.bins, self.envelope), persistent=False)
        self.dec_in = nn.Conv1d(self.latent_ch, ch, KERNEL, padding=KERNEL // 2)
        self.dec_up = nn.Conv1d(ch, ch, 3, padding=1)
        self.dec = nn.Sequential(*[ConvNeXt(ch) for _ in range(dec_blocks)])
        self.dec_norm = nn.LayerNorm(ch)
        self.drawn = self.envelope or self.bins  # log-magnitude values the head draws per frame
        self.head = nn.Linear(ch, self.drawn + (PHASE_HEADS[phase].outputs - 1) * self.bins)
        with torch.no_grad():
            self.head.bias[: self.drawn].fill_(math.log(0.1 * self.n_fft / math.sqrt(1.5 * self.bins)))
            if PHASE_HEADS[phase].grows_from:  # its extra outputs start at zero: it decodes as the head it grows from
                self.head.weight[self.drawn:].zero_()
                self.head.bias[self.drawn:].zero_()
        # each bin's own phase turn per hop (the running sum's centre)
        turn = torch.remainder(2 * math.pi * self.hop * torch.arange(self.bins, dtype=torch.float64) / self.n_fft, 2 * math.pi)
        self.register_buffer("turn", turn.float(), persistent=False)
        # decoder reach in latent frames: dec_in + (up conv + blocks + ISTFT overlap) at twice the rate
        fine = 1 + dec_blocks * (KERNEL // 2) + self.n_fft // (2 * self.hop)
        self.decode_context = KERNEL // 2 + math.ceil(fine / 2) + 1
        # the spectral contrast that decoding adds (dsp.contrast; 1 = none): fitted to the data after stage 1 and
        # carried in the state dict, so a checkpoint decodes as it was fitted; training draws without it
        self.register_buffer("contrast", torch.ones(()))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # files from before round 24 carry no contrast: they decode as they always did (as BatchNorm fills in
        # num_batches_tracked for old files)
        state_dict.setdefault(prefix + "contrast", torch.ones(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def of(cls, cfg: "Config | dict") -> "Codec":
        """The autoencoder a config names (its rate, ``model.dim``, phase head and encoder input); ``cfg`` may be
        a config as a checkpoint or a base autoencoder stores it (a dict, missing keys at their defaults)."""
        if isinstance(cfg, dict):
            cfg = Config.from_dict(cfg)
        m = cfg.model
        return cls(cfg.data.sample_rate, m.dim, phase=m.decoder_phase, reads=m.codec_input, peaks=m.codec_peaks,
                   envelope=m.codec_envelope)

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> (B, bins, T / hop) complex STFT at the decoder's resolution, centred frames (the last one
        dropped): the frames the decoder draws."""
        return torch.stft(audio[:, 0].float(), self.n_fft, self.hop, window=self.window, center=True,
                          return_complex=True)[..., : audio.shape[-1] // self.hop]

    def power(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> (B, bins, T / hop) STFT power (``stft``)."""
        return self.stft(audio).abs().square()

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> (B, N_MELS, T / hop) log-mel, centred frames (the last frame dropped)."""
        return torch.log(torch.matmul(self.mel, self.power(audio)) + 1e-5)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """What the encoder reads: (B, 1, T) -> log-mel (B, N_MELS, T / hop) or log power (B, bins, T / hop)."""
        return self._features(self.power(audio))

    def _features(self, power: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.matmul(self.mel, power) + 1e-5) if self.reads == "mel" else torch.log(power + 1e-5)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) with T a multiple of frame_samples -> latents (B, latent_ch, T / frame_samples) in [-1, 1]: the
        learned channels, then the peak bands' places and levels (``dsp.peaks``) at the latents' own rate."""
        mag = self.stft(audio).abs()
        h = self.enc(self.enc_in(self._features(mag.square()) / 4.0))
        z = torch.tanh(self.enc_out(F.gelu(self.enc_down(h))))
        if not self.peaks:
            return z
        with torch.no_grad():  # the frames centred on the latent frames: every other one
            zp = peak_latents(*band_peaks(mag.detach()[..., ::2][..., : z.shape[-1]], self.edges), self.edges)
        return torch.cat([z, zp], 1)

    def head_out(self, z: torch.Tensor) -> torch.Tensor:
        """latents (B, LATENT_CH, N) -> what the decoder's head draws, (B, 2N frames, outputs x bins): the
        log-magnitude's bins first."""
        h = self.dec_in(z)
        h = self.dec_up(F.interpolate(h, scale_factor=2, mode="nearest"))
        out = self.head(self.dec_norm(self.dec(h).transpose(1, 2))).float()
        if self.envelope:
            out = torch.cat([out[..., : self.envelope] @ self.env_basis.T, out[..., self.envelope:]], -1)
        return out

    def _log_magnitude(self, z: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        """The head's log-magnitude (B, 2N, bins), with the peak bands' lobes added to its magnitude (each latent
        frame's peaks held for its two STFT frames); out of training, with the fitted contrast."""
        logmag = head[..., : self.bins].clamp(max=7.0)
        if self.peaks:
            freq, amp = (v.repeat_interleave(2, 1)[:, : logmag.shape[1]] for v in peaks_of_latents(z[:, LATENT_CH:], self.edges))
            logmag = torch.log(torch.exp(logmag) + render_lobes(freq, amp, self.bins))
        return logmag if self.training else sharpen(logmag, float(self.contrast))

    def log_magnitude(self, z: torch.Tensor) -> torch.Tensor:
        """latents (B, latent_ch, N) -> the natural-log STFT magnitude the decoder draws, (B, 2N frames, bins)."""
        return self._log_magnitude(z, self.head_out(z))

    def spectrum(self, z: torch.Tensor, phase: torch.Tensor | None = None, start: int = 0,
                 carry: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """latents (B, LATENT_CH, N) -> the complex STFT the decoder draws (B, n_fft / 2 + 1, 2N). For a head that
        carries its phase, ``phase`` (B, bins) in radians is the running phase of frame ``start - 1``: a streamed
        chunk continues from where the previous one handed over. ``carry``: also return the running phase (B,
        bins, 2N), the one to hand on (for "pghi_residual" the phase-gradient phase, without the correction)."""
        head = self.head_out(z)
        logmag, out = self._log_magnitude(z, head), head[..., self.bins:]
        if self.phase == "free":
            runs = out
        elif self.phase == "integrated":
            runs = self._integrated(out, phase, start)
        else:  # the phase follows from the magnitude; training shapes the magnitude (and a correction) for it
            runs = pghi_frames(logmag.detach(), self.n_fft, self.hop, phase, start)
        ph = runs + math.pi * torch.tanh(out) if self.phase == "pghi_residual" else runs
        spec = torch.polar(torch.exp(logmag), ph).transpose(1, 2)
        return (spec, runs.transpose(1, 2)) if carry else spec

    def _integrated(self, out: torch.Tensor, phase: torch.Tensor | None, start: int) -> torch.Tensor:
        """The integrated head's phase (B, frames, bins): each frame's step summed over frames (float64, so a long
        sum stays precise), restarting from ``phase`` just before frame ``start`` when one is handed over."""
        step = (self.turn + math.pi * torch.tanh(out)).double()
        if phase is None:
            total = torch.cumsum(step, 1)
        else:
            total = torch.cat([torch.cumsum(step[:, :start], 1),
                               phase.double()[:, None] + torch.cumsum(step[:, start:], 1)], 1)
        return torch.remainder(total, 2 * math.pi).float()

    def adopt(self, state: dict, phase: str, envelope: int = 0) -> dict:
        """A state dict of a codec with phase head ``phase`` and head ``envelope`` (0: every bin), fitted to this
        one: latent channels it lacks (peak bands) start ignored (zero input weights), a contrast it lacks is 1; a
        head drawing every bin, for an envelope head, is projected onto the envelope (least squares: it keeps the
        base's envelope and drops the fine structure); a head this one grows from gets zero rows for the outputs
        it lacks. A state that needs none of these is returned as it is, so this codec decodes as the base did
        where it can."""
        own, out = self.state_dict(), dict(state)
        w = out["dec_in.weight"]
        if w.shape[1] < self.latent_ch:
            out["dec_in.weight"] = torch.cat([w, w.new_zeros(w.shape[0], self.latent_ch - w.shape[1], w.shape[2])], 1)
        if self.envelope and not envelope:
            pinv = torch.linalg.pinv(self.env_basis.double()).float()
            for k in ("head.weight", "head.bias"):
                out[k] = torch.cat([pinv @ out[k][: self.bins], out[k][self.bins:]])
        if PHASE_HEADS[self.phase].grows_from == phase:
            for k in ("head.weight", "head.bias"):
                grown = torch.zeros_like(own[k])
                grown[: out[k].shape[0]] = out[k]
                out[k] = grown
        if "contrast" not in out:  # a base from before round 24: it decodes without one
            out["contrast"] = torch.ones(())
        return out if any(k not in state or out[k] is not state[k] for k in out) else state

    def istft(self, spec: torch.Tensor, frames: int) -> torch.Tensor:
        """A (B, bins, 2 frames) STFT at the decoder's resolution -> audio (B, 1, frames * frame_samples) in [-1, 1]."""
        audio = torch.istft(spec, self.n_fft, self.hop, window=self.window, center=True,
                            length=frames * self.frame_samples)
        return audio.clamp(-1, 1).unsqueeze(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """latents (B, LATENT_CH, N) -> audio (B, 1, N * frame_samples) (a carried phase starts afresh)."""
        return self.istft(self.spectrum(z), z.shape[-1])

    def draw(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, T) -> (its reconstruction (B, 1, T), the complex STFT the decoder drew for it (B, bins, 2 T /
        frame_samples)); with latent noise in training."""
        z = self.encode(audio)
        if self.training and LATENT_NOISE > 0:  # on the learned channels: the peaks' are measured, not learned
            z = torch.cat([z[:, :LATENT_CH] + LATENT_NOISE * torch.randn_like(z[:, :LATENT_CH]), z[:, LATENT_CH:]], 1)
        spec = self.spectrum(z)
        return self.istft(spec, z.shape[-1]), spec

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.draw(audio)[0]


# --- reconstruction losses (pure functions) --------------------------------------------------------
def _stft(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Complex STFT of audio (B, 1, T) with a Hann window, centred frames: (B, n_fft / 2 + 1, frames)."""
    win = torch.hann_window(n_fft, device=x.device)
    return torch.stft(x[:, 0].float(), n_fft, hop, window=win, center=True, return_complex=True)


def magnitude_distance(f: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1 of STFT magnitudes (B, bins, frames) ``f`` against ``r``."""
    sc = (f - r).norm(dim=(1, 2)) / r.norm(dim=(1, 2)).clamp_min(1e-7)
    return sc.mean() + (torch.log(f + 1e-5) - torch.log(r + 1e-5)).abs().mean()


def stft_distance(fake: torch.Tensor, real: torch.Tensor, resolutions=STFT_RESOLUTIONS) -> torch.Tensor:
    """Multi-resolution STFT loss: mean over resolutions of spectral convergence + log-magnitude L1."""
    total = fake.new_zeros(())
    for n_fft, hop in resolutions:
        total = total + magnitude_distance(_stft(fake, n_fft, hop).abs(), _stft(real, n_fft, hop).abs())
    return total / len(resolutions)


def consistency_distance(codec: Codec, spec: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """How far the magnitude a decoder drew (``spec``, from ``Codec.draw``) is from the STFT magnitude of the audio it
    decodes to (``magnitude_distance``, at the decoder's own resolution). An STFT whose magnitude and phase do not
    belong together loses its peaks in the overlap-add: 0 only for a drawn STFT that some signal has."""
    return magnitude_distance(spec.abs(), codec.stft(audio)[..., : spec.shape[-1]].abs())


def mel_distance(codec: Codec, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of natural-log mel spectrograms (the codec's own analysis)."""
    return (codec.log_mel(fake) - codec.log_mel(real)).abs().mean()


def _unit_products(z: torch.Tensor, dim: int) -> torch.Tensor:
    """z[k] * conj(z[k-1]) along ``dim``, scaled to unit length: the phase step between neighbours."""
    a, b = z.narrow(dim, 1, z.shape[dim] - 1), z.narrow(dim, 0, z.shape[dim] - 1)
    p = a * b.conj()
    return p / (p.abs() + 1e-6)


def phase_distance(fake: torch.Tensor, real: torch.Tensor, n_fft: int = 1024, hop: int = 256) -> torch.Tensor:
    """How far the STFT phase's steps from frame to frame (instantaneous frequency) and bin to bin (group delay)
    are from the real ones: 1 - cos of each difference (so 2 pi wraps cost nothing), weighted by the real
    magnitude. The absolute phase is free, as a log-mel encoder cannot know it; its steps are what keep a
    partial one line instead of a smear. 0 for equal signals, ~1 for unrelated phases."""
    f, r = _stft(fake, n_fft, hop), _stft(real, n_fft, hop)
    mag = r.abs()
    total = fake.new_zeros(())
    for dim in (-1, -2):  # time, frequency
        w = torch.sqrt(mag.narrow(dim, 1, mag.shape[dim] - 1) * mag.narrow(dim, 0, mag.shape[dim] - 1))
        cos = (_unit_products(f, dim) * _unit_products(r, dim).conj()).real
        total = total + (w * (1.0 - cos)).sum() / w.sum().clamp_min(1e-7)
    return total / 2


def lobe_coherence(spec: torch.Tensor) -> torch.Tensor:
    """How the neighbouring bins of a complex STFT (B, bins, frames) are phased at magnitude peaks: the
    magnitude-weighted mean of -cos(phase of bin k+1 - phase of bin k) over peaks k. A held partial under a Hann
    window with centred frames spreads over bins a half turn apart (~1); phases drawn per bin with no relation to
    each other read ~0."""
    m = spec.abs()
    peak = (m[:, 1:-1] > m[:, :-2]) & (m[:, 1:-1] > m[:, 2:])
    w = m[:, 1:-1] * peak
    cos = _unit_products(spec, -2)[:, 1:].real  # bin k+1 against bin k, for k = 1 .. bins - 2
    return (w * -cos).sum() / w.sum().clamp_min(1e-12)


@dataclass(frozen=True)
class Reconstruction:
    stft: float  # weight of stft_distance: every bin's log-magnitude at three resolutions, fine structure included
    mel: float  # weight of mel_distance: the log-mel envelope, 80 bands


# what stage 1 fits to the real clip (train.codec_recon). "stft+mel" (bars, and every base): its 2048-point term
# smears the decoder's fine structure into a wash in fine-tuning. "mel" fits the envelope alone, as HiFi-GAN's
# reconstruction term does; without a bin-level fit the decoder's own fine structure (nearly the same for every
# clip) grows into steady lines, so bars keeps "stft+mel" (round 22 of docs/two-stage.md)
RECONSTRUCTIONS = {"stft+mel": Reconstruction(1.0, 1.0), "mel": Reconstruction(0.0, 1.0)}


def reconstruction_loss(codec: Codec, fake: torch.Tensor, real: torch.Tensor, kind: str = "stft+mel",
                        phase_weight: float = 0.0) -> torch.Tensor:
    """Stage 1's fit of ``fake`` to ``real``: the ``RECONSTRUCTIONS`` entry ``kind``, + ``phase_weight`` x
    ``phase_distance``."""
    r = RECONSTRUCTIONS[kind]
    loss = r.mel * mel_distance(codec, fake, real)
    if r.stft > 0:
        loss = r.stft * stft_distance(fake, real) + loss
    if phase_weight > 0:
        loss = loss + phase_weight * phase_distance(fake, real, codec.n_fft, codec.hop)
    return loss


@torch.no_grad()
def reconstruct(codec: Codec, clips: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Real clips (N, T) cut to whole latent frames, and the codec's reconstructions of them: both (N, 1, T')."""
    fs = codec.frame_samples
    x = torch.from_numpy(np.asarray(clips, dtype=np.float32)[:, : clips.shape[1] // fs * fs])[:, None]
    return x, torch.cat([codec.eval()(x[i:i + 8]) for i in range(0, len(x), 8)])


@torch.no_grad()
def reconstruction_report(codec: Codec, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Stage 1's quality on real clips ``x`` reconstructed as ``y`` (``reconstruct``): multi-resolution STFT distance
    (spectral convergence + log-magnitude L1) and mean |log-mel difference|, each beside the same distance between
    two halves of the real clips swapped (what an unrelated real clip scores)."""
    other = torch.roll(x, 1, dims=0)
    return {"n_clips": len(x), "stft_distance": float(stft_distance(y, x)), "mel_distance": float(mel_distance(codec, y, x)),
            "stft_distance_other_clip": float(stft_distance(other, x)),
            "mel_distance_other_clip": float(mel_distance(codec, other, x))}
