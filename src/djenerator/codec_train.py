"""Training of the two-stage model (``model.arch = "twostage"``): stage 1, then stage 2, in one run folder.

- Stage 1, the autoencoder (:mod:`.models.codec`): ``train.codec_steps`` steps of multi-resolution STFT
  + log-mel reconstruction on random ``train.codec_seconds`` crops, from the base autoencoder
  ``train.codec_base`` names ("auto": the one shipped in :mod:`djenerator.base` for the rate, if any; a
  file; "none": from scratch); checkpoints in ``RUN/codec/checkpoints``,
  reconstructions in ``RUN/samples/codec_step_*`` (real_XX.wav beside recon_XX.wav), losses in
  ``RUN/logs/codec.csv`` and TensorBoard (``RUN/logs/tb/stage1``; stage 2's in ``RUN/logs/tb/stage2``).
- Between the stages the frozen encoder turns every clip into latents once (``RUN/codec/latents.pt``).
- Stage 2, the latent model (``model.stage2``): the latent GAN (:mod:`.models.twostage`, hinge + feature matching
  in latent space) or the latent flow (:mod:`.models.latent_flow`, flow matching), ``train.steps`` steps;
  checkpoints in ``RUN/checkpoints`` hold the whole generator (latent model + codec),
  so generate, evaluate and serve need nothing else. With ``train.ema`` or ``train.ema_power`` > 0 their ``G``
  is the moving average of the generator's weights (the trained weights are ``G_train``), and samples use it too.

Each stage has its own progress bar; ``--resume`` continues whichever stage was interrupted. Batches
and crops come from RNGs keyed by (seed, step), every other random draw from the global RNGs saved in
the checkpoints, so a resumed run repeats the uninterrupted one.
"""
from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import torch

from . import losses
from .audio import write_wav
from .budget import Budget
from .checkpoint import fit_weights, latest_checkpoint, load_checkpoint, load_data, save_checkpoint, save_data, set_rng_state
from .config import Config, ConfigError
from .data.dataset import ClipDataset
from .dsp.contrast import fit_amount, parse_setting
from .ema import Ema
from .io import StepLog
from .models import DISCRIMINATORS, build_discriminator, build_generator, tempo_cond
from .models.codec import (PHASE_HEADS, TUNED_PARTS, Codec, consistency_distance, mel_distance, reconstruction_loss,
                           stft_distance)
from .models.grid import shift_phase
from .optim import lr_scale, make_optimizer, set_lrs
from .train_report import RunLog, progress_bar


def crops(ds: ClipDataset, seed: int, step: int, batch: int, length: int) -> torch.Tensor:
    """(batch, 1, length) random crops of random clips: a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step, 101])
    idx = rng.integers(0, len(ds), size=batch)
    off = rng.integers(0, ds.clip_samples - length + 1, size=batch)
    return torch.from_numpy(np.stack([np.asarray(ds.clips[i, o:o + length], dtype=np.float32)
                                      for i, o in zip(idx, off)]))[:, None]


def crop_length(cfg: Config, codec: Codec, ds: ClipDataset) -> int:
    fs = codec.frame_samples
    n = max(4, round(cfg.train.codec_seconds * cfg.data.sample_rate / fs)) * fs
    return min(n, ds.clip_samples // fs * fs)


FIT_CLIPS, FIT_SECONDS = 32, 3.0  # training crops the decoder's contrast is fitted on


@torch.no_grad()
def fit_contrast(codec: Codec, ds: ClipDataset, seed: int) -> tuple[float, float, float]:
    """The contrast at which the codec's reconstructions of FIT_CLIPS training crops are as flat as the crops
    (``dsp.contrast.fit_amount``): (amount, flatness over the crops' before, and at that amount)."""
    from .evaluate.metrics import spectral_flatness

    fs, sr, was = codec.frame_samples, codec.sample_rate, codec.training
    length = min(round(FIT_SECONDS * sr / fs) * fs, ds.clip_samples // fs * fs)
    real = crops(ds, seed, 10**12 + 1, FIT_CLIPS, length).to(codec.contrast.device)
    flat_real = float(np.mean(spectral_flatness(real[:, 0].cpu(), sr)))
    if flat_real <= 0:  # silent crops: nothing to fit to
        return 1.0, 1.0, 1.0
    seen: dict[float, float] = {}

    def ratio(amount: float) -> float:
        if amount not in seen:
            codec.contrast.fill_(amount)
            rec = torch.cat([codec.decode(c) for c in z.split(8)])
            seen[amount] = float(np.mean(spectral_flatness(rec[:, 0].cpu(), sr))) / flat_real
        return seen[amount]

    codec.eval()  # the contrast is drawn out of training only
    try:
        z = torch.cat([codec.encode(c) for c in real.split(8)])
        amount = fit_amount(ratio)
        return amount, seen[1.0], ratio(amount)
    finally:
        codec.train(was)


def set_contrast(codec: Codec, ds: ClipDataset, cfg: Config, log=print) -> None:
    """Once stage 1 is done: the decoder's contrast that ``train.codec_contrast`` names, fitted for "fit"."""
    amount = parse_setting(cfg.train.codec_contrast)
    if amount is None:
        amount, before, after = fit_contrast(codec, ds, cfg.train.seed)
        log(f"stage 1: decoder contrast {amount:.2f} fitted, its reconstructions {before:.2f}x as flat as the "
            f"clips before and {after:.2f}x after")
    codec.contrast.fill_(amount)


def _resume_state(run_dir: Path, resume: bool, what: str) -> dict | None:
    ck = latest_checkpoint(run_dir) if resume else None
    if ck is None and not resume and any((run_dir / "checkpoints").glob("step_*.pt")):
        raise ConfigError(f"run folder {run_dir.parent if what == 'codec' else run_dir} already holds "
                          "checkpoints: pass --resume to continue it, or choose another --run")
    return load_checkpoint(ck) if ck is not None else None


def resolve_codec_base(codec_base: str, sample_rate: int) -> Path | None:
    """The base autoencoder file ``train.codec_base`` names: "none" -> None, "auto" -> the shipped one for the
    rate (None when there is none), else the path, which must exist."""
    from .base import codec_base_path

    if codec_base == "none":
        return None
    if codec_base == "auto":
        return codec_base_path(sample_rate)
    path = Path(codec_base).expanduser()
    if not path.is_file():
        raise ConfigError(f"train.codec_base: base autoencoder not found: {path}")
    return path


def start_from_base(codec: Codec, codec_base: str, log=print, critic: "Critic | None" = None) -> Path | None:
    """Load the base autoencoder into ``codec`` (stage 1 then fine-tunes it), and its critic into ``critic``
    when both exist; returns its path, or None when stage 1 starts from scratch ("none", nothing shipped,
    or an "auto" base of another shape)."""
    from .base import load_codec_base
    from .checkpoint import CheckpointError

    path = resolve_codec_base(codec_base, codec.sample_rate)
    if path is None:
        return None
    base = load_codec_base(path)
    made = Config.from_dict(base["config"])  # what the base was trained as: same shapes can mean another head or input
    state = codec.adopt(base["G"], made.model.decoder_phase, made.model.codec_envelope)  # fitted where it can be
    fits = {k: tuple(v.shape) for k, v in codec.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}
    heads = {codec.phase, PHASE_HEADS[codec.phase].grows_from}
    if not fits or made.model.decoder_phase not in heads or made.model.codec_peaks not in (0, codec.peaks) or (
            (made.data.sample_rate, made.model.codec_input) != (codec.sample_rate, codec.reads)):
        if codec_base == "auto":
            log(f"stage 1: the shipped base autoencoder ({path.name}) is for another rate, model.dim, model.decoder_phase, "
                "model.codec_input or model.codec_peaks; training the autoencoder from scratch")
            return None
        raise CheckpointError(f"train.codec_base: {path} is an autoencoder of another rate, model.dim, "
                              "model.decoder_phase, model.codec_input or model.codec_peaks than this run's")
    codec.load_state_dict(state)
    if critic is not None and "D" in base:
        critic.start_from(base["D"], log)
    log(f"stage 1: starting from the base autoencoder {path} ({int(base['step'])} steps; "
        f"{base.get('provenance', {}).get('command', 'no provenance')})")
    return path


@torch.no_grad()
def write_reconstructions(codec: Codec, real: torch.Tensor, out: Path, sr: int) -> None:
    was = codec.training
    codec.eval()
    rec = codec(real)
    codec.train(was)
    for i, (a, b) in enumerate(zip(real[:, 0].numpy(), rec[:, 0].numpy())):
        write_wav(out / f"real_{i:02d}.wav", a, sr)
        write_wav(out / f"recon_{i:02d}.wav", b, sr)


class Critic:
    """Stage 1's optional critic (``train.codec_adversarial`` > 0): a multi-resolution STFT discriminator
    with hinge loss and feature matching, as Vocos and HiFi-GAN sharpen their decoders; its own AdamW."""

    def __init__(self, D: torch.nn.Module, lr: float, hinge: float = 1.0):
        self.D, self.hinge = D, hinge  # hinge: the weight of the hinge term beside feature matching (train.codec_hinge)
        self.opt = torch.optim.AdamW(D.parameters(), lr=lr, betas=(0.8, 0.99))

    @classmethod
    def build(cls, cfg: Config) -> "Critic":
        from dataclasses import replace

        from .models.discriminators import MultiResolutionSTFTDiscriminator

        plain = replace(cfg, model=replace(cfg.model, tempo_conditioning=False))  # crops carry no tempo labels
        return cls(MultiResolutionSTFTDiscriminator(plain), cfg.train.lr_codec, cfg.train.codec_hinge)

    def judge(self, x: torch.Tensor) -> list:
        return [self.D(x)]

    def step(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        loss = losses.d_loss("hinge", self.judge(real), self.judge(fake.detach()))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def g_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return losses.g_objective("hinge", self.D, self.judge, fake, real, FM_WEIGHT, self.hinge)[0]

    def start_from(self, weights: dict, log=print) -> None:
        """The base autoencoder's critic, when it has the shape of this one (else a fresh critic, said)."""
        if {k: tuple(v.shape) for k, v in weights.items()} != {k: tuple(v.shape) for k, v in self.D.state_dict().items()}:
            log("stage 1: the base's critic is of another shape; the adversarial term starts with a fresh one")
            return
        self.D.load_state_dict(weights)

    def load(self, ck: dict, log=print) -> None:
        if "D" in ck:
            fit_weights(self.D, ck["D"], ck, "stage-1 critic")
            self.opt.load_state_dict(ck["opt_d"])
        else:
            log("stage 1: the checkpoint has no critic; the adversarial term starts with a fresh one")


FM_WEIGHT = 2.0  # feature matching beside the hinge term, as in HiFi-GAN


def codec_state(codec: Codec, opt, critic: Critic | None) -> dict:
    state = {"G": codec.state_dict(), "opt": opt.state_dict()}
    if critic is not None:
        state.update(D=critic.D.state_dict(), opt_d=critic.opt.state_dict())
    return state


def codec_step(codec: Codec, opt, critic: Critic | None, real: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
    """One stage-1 update: reconstruction loss (``t.codec_recon``), + ``t.codec_phase`` x ``phase_distance``,
    + ``t.codec_consistency`` x ``consistency_distance``, + ``t.codec_adversarial`` x the critic's (after the
    critic's own step)."""
    fake, spec = codec.draw(real)
    loss = reconstruction_loss(codec, fake, real, t.codec_recon, phase_weight=t.codec_phase)
    if t.codec_consistency > 0:
        loss = loss + t.codec_consistency * consistency_distance(codec, spec, fake)
    if critic is not None:
        critic.step(fake, real)
        loss = loss + t.codec_adversarial * critic.g_loss(fake, real)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(codec.parameters(), 10.0)
    opt.step()
    return loss, fake


def train_codec(cfg: Config, ds: ClipDataset, run_dir: Path, resume: bool, budget: Budget,
                progress: bool = True, log=print) -> tuple[Codec, int, str]:
    """Stage 1. Returns (codec in eval mode, steps done, "done" | why it stopped)."""
    t, cdir = cfg.train, run_dir / "codec"
    torch.manual_seed(t.seed)  # the latent noise and a critic draw from the global RNG (a resume restores its state)
    codec = Codec.of(cfg)
    tuned = [p for n, p in codec.named_parameters() if n.startswith(TUNED_PARTS[t.codec_tune])]
    opt = torch.optim.AdamW(tuned, lr=t.lr_codec, betas=(0.8, 0.99))
    critic = Critic.build(cfg) if t.codec_adversarial > 0 else None
    ck, start = _resume_state(cdir, resume, "codec"), 0
    if ck is not None:
        fit_weights(codec, ck["G"], ck, "autoencoder")
        opt.load_state_dict(ck["opt"])
        if critic is not None:
            critic.load(ck, log)
        set_rng_state(ck["rng"])
        start = int(ck["step"])
    elif start_from_base(codec, t.codec_base, log, critic) is None and t.codec_steps == 0:
        raise ConfigError(f"train.codec_steps=0 needs a base autoencoder, and {t.codec_base!r} gave none "
                          "for this rate, model.dim, model.decoder_phase and model.codec_input")
    if start >= t.codec_steps:
        if ck is None:  # the base as it is (codec_steps 0): no stage-1 checkpoint holds its contrast
            set_contrast(codec, ds, cfg, log)
        return codec.eval(), start, "done"
    if start:
        log(f"stage 1: resumed the autoencoder at step {start}")
    length = crop_length(cfg, codec, ds)
    fixed = crops(ds, t.seed, 10**12, min(4, t.n_samples), length)
    log_csv = RunLog(run_dir / "logs" / "codec.csv", ["step", "loss", "stft", "mel", "cpu_s"], start,
                     run_dir / "logs" / "tb" / "stage1", "stage1")
    bar, step, stopped = progress_bar(start, t.codec_steps, progress, desc="stage 1: autoencoder"), start, "done"
    codec.train()
    try:
        while step < t.codec_steps:
            if (stopped := budget.halt() or "done") != "done":
                break
            real = crops(ds, t.seed, step, t.codec_batch, length)
            loss, fake = codec_step(codec, opt, critic, real, t)
            step += 1
            if step % t.log_every == 0 or step == t.codec_steps:
                with torch.no_grad():
                    row = {"step": step, "loss": float(loss), "stft": float(stft_distance(fake, real)),
                           "mel": float(mel_distance(codec, fake, real)), "cpu_s": time.process_time()}
                log_csv.write(row)
                if bar is not None:
                    bar.set_postfix_str(f"spectral distance {row['stft']:.3f}, mel distance {row['mel']:.3f}")
            if bar is not None:
                bar.update(1)
            if step == t.codec_steps:
                set_contrast(codec, ds, cfg, log)
            if step % t.sample_every == 0 or step == t.codec_steps:
                write_reconstructions(codec, fixed, run_dir / "samples" / f"codec_step_{step:07d}", cfg.data.sample_rate)
            if step % t.ckpt_every == 0 or step == t.codec_steps:
                save_checkpoint(cdir, step, cfg, codec_state(codec, opt, critic), t.keep_checkpoints)
    finally:
        log_csv.close()
        if bar is not None:
            bar.close()
    if stopped != "done":
        save_checkpoint(cdir, step, cfg, codec_state(codec, opt, critic), t.keep_checkpoints)
    return codec.eval(), step, stopped


@torch.no_grad()
def encode_dataset(codec: Codec, ds: ClipDataset, batch: int = 16) -> torch.Tensor:
    """Every clip through the frozen encoder: (N, latent channels, clip_samples // frame_samples)."""
    n = ds.clip_samples // codec.frame_samples * codec.frame_samples
    out = [codec.encode(ds.batch(np.arange(i, min(i + batch, len(ds))))[0][:, :, :n]) for i in range(0, len(ds), batch)]
    return torch.cat(out)


def cached_latents(codec: Codec, ds: ClipDataset, run_dir: Path, codec_step: int) -> torch.Tensor:
    """The dataset's latents, encoded once per autoencoder checkpoint and kept in RUN/codec/latents.pt."""
    path = run_dir / "codec" / "latents.pt"
    saved = load_data(path)
    if isinstance(saved, dict) and saved.get("codec_step") == codec_step and len(saved.get("latents", ())) == len(ds):
        return saved["latents"].float()
    lat = encode_dataset(codec, ds)
    save_data(path, {"codec_step": codec_step, "latents": lat.half()})
    return lat.half().float()  # the same values whether cached or fresh


def critic_frames(cfg: Config, frames: int, rate: float) -> int:
    """Latent frames of each real window stage 2's critic sees: ``train.critic_seconds`` of a clip's ``frames``."""
    w = round(cfg.train.critic_seconds * rate)
    return w if 0 < w < frames else frames


def latent_batch(lat: torch.Tensor, ds: ClipDataset, cfg: Config, step: int, rate: float, k: int = 0):
    """(real latents (B, C, F), cond, z) of step ``step``: pure functions of (seed, step, k). With
    ``train.critic_seconds`` each real window starts at a random frame of its clip (``rate`` frames/s), and its
    beat phase moves with it: a clip gives the critic tens of windows, not one, so a small set is not learnt."""
    t = cfg.train
    rng = np.random.default_rng([t.seed, step, k, 202])
    idx = rng.integers(0, len(lat), size=t.batch_size)
    cond = tempo_cond(torch.from_numpy(ds.bpm[idx]), cfg, torch.from_numpy(ds.beat[idx]))
    z = torch.randn(t.batch_size, cfg.model.latent_dim, generator=torch.Generator().manual_seed(t.seed * 7919 + step))
    real, frames = lat[torch.from_numpy(idx)], lat.shape[-1]
    w = critic_frames(cfg, frames, rate)
    if w < frames:
        off = rng.integers(0, frames - w + 1, size=t.batch_size)
        real = torch.stack([x[:, o:o + w] for x, o in zip(real, off)])
        if cond is not None:
            cond = shift_phase(cond, torch.from_numpy(off / rate), cfg.model.bpm_range)
    return real, cond, z


class LatentWatch:
    """Stage 2's latent-frame FD (:mod:`.evaluate.latent`) of the output generator against the run's real latents,
    at each sample step and every ``train.best_every`` steps: appended to ``logs/latent_fd.csv``, and the best so
    far kept, so a user sees a run drift (the value rises) without decoding audio. With ``keep`` it also keeps the
    best weights, which checkpoints carry as ``G_best`` and generate uses: a run that goes on too long keeps what
    it was at its best (docs/two-stage.md, round 19). Fixed latents and tempos; leaves every global RNG as it was."""

    def __init__(self, lat: torch.Tensor, ds: ClipDataset, cfg: Config, run_dir: Path, start: int, writer=None,
                 n: int = 128, keep: bool = False):
        from .evaluate.latent import real_frames
        from .io import read_csv_columns

        t, self.frames = cfg.train, lat.shape[-1]
        self.real = real_frames(lat, t.seed)
        idx = np.random.default_rng([t.seed, 1734]).integers(0, len(ds), size=n)
        self.cond = tempo_cond(torch.from_numpy(ds.bpm[idx]), cfg, torch.from_numpy(ds.beat[idx]))
        self.z = torch.randn(n, cfg.model.latent_dim, generator=torch.Generator().manual_seed(t.seed + 1734))
        path = run_dir / "logs" / "latent_fd.csv"
        old = read_csv_columns(path) if start > 0 and path.is_file() else {}
        self.best = min(((v, int(s)) for s, v in zip(old.get("step", []), old.get("latent_fd", []))
                         if s <= start and np.isfinite(v)), default=(float("inf"), 0))
        self.csv, self.writer = StepLog(path, ["step", "latent_fd"], start), writer  # writer: stage 2's TensorBoard
        self.keep, self.weights, self.last = keep, None, None  # weights: G's state at self.best (with keep)

    def load(self, ck: dict) -> None:
        """A resumed run's best weights and their distance, as its checkpoint holds them."""
        if self.keep:  # from a checkpoint without best weights, the next measure starts them
            self.weights = ck.get("G_best")
            self.best = (float(ck["best"][0]), int(ck["best"][1])) if "G_best" in ck else (float("inf"), 0)

    def state(self) -> dict:
        """What a checkpoint carries of the watch: the best weights and (latent FD, step), with keep."""
        return {} if self.weights is None else {"G_best": self.weights, "best": list(self.best)}

    def __call__(self, G, step: int) -> float:
        from .evaluate.latent import latent_fd

        was = G.training
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            G.eval()
            fake = G.latents_for(self.z, self.cond, self.frames)
        G.train(was)
        fd = latent_fd(fake, real_feats=self.real)
        self.csv.write({"step": step, "latent_fd": fd})
        if self.writer is not None:
            self.writer.add_scalar("stage2/latent_fd", fd, step)
        if (fd, step) < self.best and self.keep:
            self.weights = {k: v.detach().clone() for k, v in G.state_dict().items()}
        self.best, self.last = min(self.best, (fd, step)), step
        return fd

    def describe(self, fd: float) -> str:
        return f"latent FD {fd:.2f} (best {self.best[0]:.2f} at step {self.best[1]})"

    def report(self, watched: str, step: int, log) -> None:
        """The closing lines of stage 2: the last measure, and which weights generate uses."""
        if watched:
            log(f"stage 2: {watched[2:]} (logs/latent_fd.csv: the distance of the output's latent frames to the "
                "real ones; a rise means the run drifts)")
        if self.weights is not None and self.best[1] != step:
            log(f"stage 2: generate uses the weights of step {self.best[1]}, whose latent FD was the lowest "
                "(train.best_every; the checkpoint's G_best)")

    def close(self) -> None:
        self.csv.close()


R1_EVERY = 4  # lazy R1 (Karras et al. 2020): the penalty on every 4th critic step, weighted 4x


def gan_step(G, D, opt_g, opt_d, real, cond, z, cfg: Config, step: int = 0) -> tuple[float, float]:
    """One critic and one generator update in latent space (hinge/any named loss + feature matching)."""
    t = cfg.train
    fake = G.latents_for(z, cond, real.shape[-1])
    r_out, f_out = D(real, cond), D(fake.detach(), cond)
    loss_d = losses.d_loss(t.loss, r_out, f_out, t.label_smoothing)
    if t.r1 > 0 and step % R1_EVERY == 0:
        loss_d = loss_d + t.r1 / 2 * R1_EVERY * losses.r1_penalty(D, real, cond)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    loss_g, _ = losses.g_objective(t.loss, D, lambda x: D(x, cond), fake, real, t.feature_matching)
    if t.modulation > 0:  # G.latent.rate: its latent frames per second
        loss_g = loss_g + t.modulation * losses.modulation_distance(fake, real, G.latent.rate)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return float(loss_d.detach()), float(loss_g.detach())


def flow_step(G, opt_g, real, cond, cfg: Config, step: int) -> float:
    """One flow-matching update of the latent flow (``model.stage2=flow``); its draws are keyed by (seed, step)."""
    loss = G.latent.loss(real, cond, torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + step))
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    return float(loss.detach())


LOSS_LABELS = {"d_loss": "D loss", "g_loss": "G loss", "loss": "loss"}  # stage 2's progress bar


def stage2_step(G, D, opt_g, opt_d, batch, cfg: Config, step: int) -> dict:
    """One stage-2 update of either family: its losses by name (the columns of logs/losses.csv)."""
    if D is None:
        return {"loss": flow_step(G, opt_g, batch[0], batch[1], cfg, step)}
    d_l, g_l = gan_step(G, D, opt_g, opt_d, *batch, cfg, step)
    return {"d_loss": d_l, "g_loss": g_l}


def _stage2_models(cfg: Config, codec: Codec):
    """(G with the frozen codec, critic, G's optimiser, the critic's); a flow has no critic (None, None)."""
    G = build_generator(cfg)
    G.codec.load_state_dict(codec.state_dict())
    G.codec.requires_grad_(False)
    opt_g = make_optimizer(G.latent.parameters(), cfg, cfg.train.lr_g)
    if not G.stage2.adversarial:
        return G, None, opt_g, None
    D = build_discriminator(cfg)
    for name, d in D.discs.items():
        if DISCRIMINATORS[name].decodes:
            d.bind(G.codec)
    return G, D, opt_g, make_optimizer(D.parameters(), cfg, cfg.train.lr_d)


def _resume_stage2(ck: dict, codec_step: int, run_dir: Path, G, D, opt_g, opt_d, ema: Ema, log) -> int:
    """Load a stage-2 checkpoint into the models, optimisers, average and RNGs; returns its step."""
    if int(ck.get("codec_step", -1)) != codec_step:
        raise ConfigError(f"{run_dir}: stage 2 was trained on the autoencoder of step {ck.get('codec_step')}, "
                          f"which is now at step {codec_step}; start a new --run to train stage 2 on it")
    ema.load(G, ck)
    if D is not None:
        fit_weights(D, ck["D"], ck, "discriminator")
        opt_d.load_state_dict(ck["opt_d"])
    opt_g.load_state_dict(ck["opt_g"])
    set_rng_state(ck["rng"])
    log(f"stage 2: resumed the latent {'GAN' if D is not None else 'flow'} at step {int(ck['step'])}")
    return int(ck["step"])


def train_stage2(cfg: Config, ds: ClipDataset, run_dir: Path, resume: bool, codec: Codec, codec_step: int,
                     budget: Budget, progress: bool = True, log=print):
    """Stage 2, the latent GAN or flow (``model.stage2``) -> (steps done, last checkpoint, "done" | why it stopped)."""
    from .train import sample_latents, write_samples

    t = cfg.train
    G, D, opt_g, opt_d = _stage2_models(cfg, codec)
    ema = Ema.of(G, t, part="latent")  # the codec is frozen: only the latent generator moves
    ck = _resume_state(run_dir, resume, "run")
    start = 0 if ck is None else _resume_stage2(ck, codec_step, run_dir, G, D, opt_g, opt_d, ema, log)
    if ema.G is not None:
        log(f"stage 2: samples and checkpoints use the moving average of the generator's weights ({ema.describe()})")
    lat = cached_latents(G.codec, ds, run_dir, codec_step)
    if D is None and ck is None:  # a flow standardises the latents it learns (its buffers; a checkpoint has them)
        G.latent.set_scale(lat)
        ema.output(G).latent.set_scale(lat)
    rate = G.sample_rate / G.codec.frame_samples  # latent frames/s
    z_fixed, bpm_fixed = sample_latents(cfg)
    log_csv = RunLog(run_dir / "logs" / "losses.csv", ["step", *G.stage2.losses, "cpu_s"], start,
                     run_dir / "logs" / "tb" / "stage2", "stage2")
    # with a time budget (--minutes, --cpu-minutes) the bar counts its seconds, so its total and ETA are the budget's
    what = "latent GAN" if D is not None else "latent flow"
    bar = progress_bar(start, t.steps, progress, budget, f"stage 2: {what}")
    watch, watched = LatentWatch(lat, ds, cfg, run_dir, start, log_csv.writer, keep=t.best_every > 0), ""
    if ck is not None:
        watch.load(ck)
    step, stopped = start, "done"
    last = Path(ck["path"]) if ck is not None else None

    def snapshot() -> Path:
        critic = {} if D is None else {"D": D.state_dict(), "opt_d": opt_d.state_dict()}
        state = {**ema.state(G), **critic, **watch.state(), "opt_g": opt_g.state_dict(), "codec_step": codec_step}
        return save_checkpoint(run_dir, step, cfg, state, t.keep_checkpoints)

    G.train()
    if D is not None:
        D.train()
    G.codec.eval()
    try:
        while step < t.steps:
            if (stopped := budget.halt() or "done") != "done":
                break
            if t.lr_fall > 0:  # one process: the share of steps or time at every step
                opts = ((opt_g, t.lr_g),) + (() if opt_d is None else ((opt_d, t.lr_d),))
                set_lrs(opts, lr_scale(max(step / t.steps, budget.share()), t.lr_fall))
            got = stage2_step(G, D, opt_g, opt_d, latent_batch(lat, ds, cfg, step, rate), cfg, step)
            step += 1
            ema.update(G, step)
            if step % t.log_every == 0 or step == t.steps:
                log_csv.write({"step": step, **got, "cpu_s": round(time.process_time(), 1)})
                if bar is not None:
                    where = f"step {step}, " if budget.limited else ""
                    shown = ", ".join(f"{LOSS_LABELS[k]} {v:.3f}" for k, v in got.items())
                    bar.set_postfix_str(f"{where}{shown}{watched}")
            if bar is not None:
                bar.update(1)
            sample = step % t.sample_every == 0 or step == t.steps
            if sample:
                write_samples(ema.output(G), z_fixed, bpm_fixed, cfg, run_dir / "samples" / f"step_{step:07d}")
            if sample or (t.best_every and step % t.best_every == 0):
                watched = ", " + watch.describe(watch(ema.output(G), step))
                G.codec.eval()  # the frozen codec stays in eval mode whatever G's mode (both above set it)
            if step % t.ckpt_every == 0 or step == t.steps:
                last = snapshot()
        if watch.keep and stopped == "time budget" and step > start and watch.last != step:  # a candidate too
            watched = ", " + watch.describe(watch(ema.output(G), step))
    finally:
        log_csv.close()
        watch.close()
        if bar is not None:
            bar.close()
    if step > start and (last is None or not last.name.endswith(f"{step:07d}.pt")):
        last = snapshot()
    watch.report(watched, step, log)
    return step, last, stopped


def train_twostage(cfg: Config, ds: ClipDataset, run_dir, resume: bool = False, progress: bool = True, log=print,
                   budget: Budget | None = None):
    """Stage 1 then stage 2 into ``run_dir`` within ``budget`` (none: the steps alone); returns train.TrainResult
    (its step is stage 2's)."""
    from .io import atomic_write_text
    from .train import TrainResult

    run_dir = Path(run_dir)
    torch.manual_seed(cfg.train.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    atomic_write_text(run_dir / "run.json", '{"dataset": "%s"}' % str(Path(ds.path).resolve()))
    budget = budget or Budget()
    old = signal.signal(signal.SIGINT, lambda *_: budget.stop.append(True)) if _main_thread() else None
    try:
        codec, c_step, stopped = train_codec(cfg, ds, run_dir, resume, budget, progress, log)
        if stopped != "done":
            log(f"{stopped} in stage 1 at step {c_step}; continue with --resume")
            return TrainResult(run_dir, 0, latest_checkpoint(run_dir / "codec"), stopped, [])
        step, last, stopped = train_stage2(cfg, ds, run_dir, resume, codec, c_step, budget, progress, log)
        if stopped != "done":
            log(f"{stopped}: saved {last} at step {step}; continue with --resume")
        return TrainResult(run_dir, step, last, stopped, [])
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
