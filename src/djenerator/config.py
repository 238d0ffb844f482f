"""One typed configuration shared by the CLI, training, checkpoints and the HTTP API.

A run is fully described by a :class:`Config`; it is saved next to the run and inside every
checkpoint, so later stages (generate, evaluate, serve) need nothing else.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .presets import DEFAULT_PRESET


class ConfigError(ValueError):
    """A user-facing configuration problem (bad key, bad value, bad file)."""


BPM_LIMITS = (20.0, 400.0)  # the tempi a user may ask for, in the CLI and the HTTP API alike


@dataclass
class DataConfig:
    sample_rate: int = 16000
    clip_samples: int = 16384
    hop_samples: int = 0  # 0 means hop = clip_samples (no overlap)
    silence_db: float = -45.0  # clips whose RMS is below this (dBFS) are dropped
    normalize: str = "peak"  # "peak": each clip scaled to peak 0.95; "file": one gain per file; "none"
    estimate_tempo: bool = True  # store an estimated tempo and beat phase per clip in the manifest (no sidecar)


@dataclass
class ModelConfig:
    arch: str = "wavegan"  # generator family: a name in models.ARCHS (dense wavegan spectral twostage)
    latent_dim: int = 100
    dim: int = 32  # size knob: width of the conv nets (WaveGAN paper: 64)
    dense_hidden: list[int] = field(default_factory=lambda: [256, 512])
    dropout: float = 0.3
    batchnorm: bool = True
    discriminators: list[str] = field(default_factory=lambda: ["wave", "stft"])  # names in models.DISCRIMINATORS
    phase_shuffle: int = 2
    spectral_norm: bool = False
    stft_ffts: list[int] = field(default_factory=lambda: [512, 1024, 2048])
    tempo_conditioning: bool = False
    beat_grid: bool = False  # spectral G + stft/msd D also read a beat clock (needs tempo_conditioning)
    bpm_range: list[float] = field(default_factory=lambda: [80.0, 160.0])  # one octave: any tempo folds into it
    decoder_phase: str = "free"  # twostage: stage 1's phase head, a name in models.codec.PHASE_HEADS (free integrated pghi pghi_residual)
    codec_input: str = "mel"  # twostage: what stage 1's encoder reads, a name in models.codec.ENCODER_INPUTS (mel stft)
    codec_peaks: int = 0  # twostage: bands (100 Hz-5 kHz, log-spaced) whose strongest partial the latents carry as
    #   measured (place, level), drawn by the decoder as a Hann lobe (dsp.peaks); 0: none, the head draws them all
    codec_envelope: int = 0  # twostage: the decoder's head draws the log-magnitude at this many mel-spaced points,
    #   interpolated to every bin (no fine structure of its own); 0: every bin
    bar_repeat: float = 0.0  # twostage: how much pieces repeat by the bar (GAN: share of slow latents locked to it;
    #   flow: how close each new bar starts to the bar before), unless generate --repeat says
    stage2: str = "gan"  # twostage: the latent model, a name in models.twostage.STAGE2 (gan flow)
    flow_steps: int = 5  # twostage with stage2=flow: sampler steps (1 net pass each, +1) from noise to latents; fewer: faster
    flow_clip_share: float = 0.0  # twostage with stage2=flow: the source noise's time mean carries this much of the data's between-clip share of each channel's variance, 0 (white noise) to 1 (models.latent_flow.LatentFlow.source)


@dataclass
class TrainConfig:
    loss: str = "hinge"  # a name in losses.LOSSES (bce kl wgan wgan-gp hinge)
    optimizer: str = "adam"  # adam | rmsprop
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    rms_alpha: float = 0.7
    eps: float = 1e-8
    batch_size: int = 16
    steps: int = 2000
    d_steps: int = 1  # discriminator (critic) updates per generator update
    gp_lambda: float = 10.0
    clip_value: float = 0.01  # WGAN weight clipping
    label_smoothing: float = 1.0  # target for real labels; 0.9 = one-sided smoothing
    instance_noise: float = 0.0  # std of Gaussian noise added to D inputs (real and fake)
    instance_noise_anneal_steps: int = 0  # linearly anneal the std to 0 over this many steps; 0 = constant
    feature_matching: float = 2.0  # weight of the L1 feature-matching loss for G
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    ckpt_every: int = 500
    sample_every: int = 500
    log_every: int = 10
    n_samples: int = 4  # fixed-latent samples written at each sample step
    copy_check_clips: int = 10000  # samples are checked for copies of the training clips when the dataset has at most this many clips (0 = never)
    copy_check_n: int = 16  # latents checked (the written samples and more), fewer on big datasets: at most 4 * copy_check_clips pairs
    keep_checkpoints: int = 5
    num_workers: int = 0
    eval_every: int = 0  # run cheap metrics at checkpoints (0 = off)
    amp: bool = False  # bf16 autocast on CUDA
    compile: bool = False
    codec_steps: int = 2000  # twostage: stage-1 (autoencoder) steps before the latent GAN's train.steps; 0 = the base as it is
    codec_batch: int = 8  # twostage: stage-1 batch of codec_seconds crops
    codec_seconds: float = 1.0
    lr_codec: float = 1e-3
    codec_tune: str = "all"  # twostage: what stage 1 trains, a name in models.codec.TUNED_PARTS (all encoder)
    codec_recon: str = "stft+mel"  # twostage: what stage 1 fits, a name in models.codec.RECONSTRUCTIONS (stft+mel mel)
    codec_adversarial: float = 0.0  # twostage: weight of a multi-resolution STFT critic (hinge + feature matching) in stage 1; 0 = reconstruction only
    codec_hinge: float = 1.0  # twostage: the critic's hinge term within codec_adversarial, beside 2 x feature matching; 0 = feature matching alone
    codec_phase: float = 0.0  # twostage: weight of the phase-step loss (models.codec.phase_distance) in stage 1; 0 = off
    codec_consistency: float = 0.0  # twostage: weight of models.codec.consistency_distance (drawn magnitude vs its audio's) in stage 1; 0 = off
    codec_contrast: str = "none"  # twostage: spectral contrast the decoder adds (dsp.contrast): "none", "fit" (after stage 1, reconstructions as flat as the clips) or an amount from 1 to 4
    r1: float = 0.0  # twostage: gamma of the R1 penalty, gamma/2 E||grad D(real)||^2 in stage 2's critic loss (0 = off)
    modulation: float = 0.0  # twostage: weight of losses.modulation_distance (how fast latents change, fake vs real) in stage 2's generator loss
    critic_seconds: float = 0.0  # twostage: stage 2's critic sees this much of each real clip, at a random offset (0 = all of it)
    codec_base: str = "none"  # twostage: start stage 1 from a base autoencoder: "auto" (the shipped one for the rate), a file, "none"
    ema: float = 0.0  # decay of the moving average of the generator's weights that outputs use (0 = off; e.g. 0.999)
    ema_power: float = 0.0  # > 0: that average weighs step s as s**ema_power instead (a window that grows with the run; see ema.py)
    lr_fall: float = 0.0  # the learning rates fall in a line to 0 over this last share of the run (train.steps or --minutes/--cpu-minutes, whichever ends first; 0 = constant; not in bars: rounds 16 and 19)
    best_every: int = 0  # twostage: every this many stage-2 steps the output's latent FD is measured, and checkpoints carry the best weights so far (G_best), which generate uses (0 = off: the last)


@dataclass
class AugmentConfig:
    enabled: bool = False
    p: float = 0.0  # initial probability of each augmentation
    ada: bool = False
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 100.0  # how fast p can move (thousands of real clips to go 0 -> 1)
    ops: list[str] = field(default_factory=lambda: ["shift", "gain", "polarity", "eq", "cutout"])
    # names in augment.OPS (polarity gain shift pitch eq bandpass noise cutout), applied in its order
    leaky_p_max: float = 0.8  # cap on p for ops whose leak would be audible (pitch eq bandpass noise cutout)
    ada_copy_step: float = 0.1  # with ADA: each sample step whose copy check finds copies raises a floor under p by this


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    preset: str = DEFAULT_PRESET  # the defaults above are this preset's (tested)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        cfg = cls()
        apply_dict(cfg, d)
        return cfg

    def save(self, path: str | Path) -> None:
        from .io import atomic_write_text

        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    def copy(self) -> "Config":
        return copy.deepcopy(self)


def _coerce(value: Any, current: Any, key: str) -> Any:
    if isinstance(value, str) and isinstance(current, (int, float)) and not isinstance(current, bool):
        try:  # YAML 1.1 reads '3e-4' as a string
            value = float(value)
        except ValueError:
            pass
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if isinstance(current, list):
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value] if not isinstance(value, str) else [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        if current:
            return [_coerce(v, current[0], key) for v in value]
        return list(value)
    if isinstance(current, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. train.codec_contrast=1.5: a text field that may hold a number; validation reads it
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def apply_dict(cfg: Any, d: dict[str, Any], prefix: str = "") -> None:
    """Recursively set fields of a dataclass from a nested dict, checking names and types."""
    names = {f.name for f in dataclasses.fields(cfg)}
    for k, v in d.items():
        k = k.replace("-", "_")
        key = f"{prefix}{k}"
        if k not in names:
            raise ConfigError(f"unknown config key '{key}' (known: {', '.join(sorted(names))})")
        current = getattr(cfg, k)
        if dataclasses.is_dataclass(current):
            if not isinstance(v, dict):
                raise ConfigError(f"'{key}' is a section; give it as a table/mapping")
            apply_dict(current, v, prefix=f"{key}.")
        else:
            setattr(cfg, k, _coerce(v, current, key))


def parse_override(text: str) -> dict[str, Any]:
    """'train.lr_g=2e-4' -> {'train': {'lr_g': 0.0002}}; values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if path.suffix == ".json":
            return json.loads(text)
        data = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parser error is a user error here
        raise ConfigError(f"cannot parse config file {path}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def build_config(preset: str | None = None, files: list[str | Path] = (), overrides: list[str] = ()) -> Config:
    """Preset first, then config files in order, then KEY=VALUE overrides (last wins)."""
    from .presets import PRESETS, resolve_preset

    name = resolve_preset(preset or DEFAULT_PRESET)
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}' (choose from: auto, {', '.join(PRESETS)})")
    cfg = Config.from_dict(PRESETS[name]["config"])
    cfg.preset = name
    return apply_overrides(cfg, files, overrides)


def apply_overrides(cfg: Config, files: list[str | Path] = (), overrides: list[str] = ()) -> Config:
    """Config files in order, then KEY=VALUE overrides (last wins), then validate: how every config the user
    shapes is finished, a preset's (``build_config``) or a resumed checkpoint's alike. Changes ``cfg``."""
    for f in files:
        apply_dict(cfg, load_file(f))
    for o in overrides:
        apply_dict(cfg, parse_override(o))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Every value in range and every name in its family's table (losses.LOSSES, models.ARCHS,
    models.discriminators.DISCRIMINATORS, augment.OPS); imports them, and so torch, on first use."""
    from .augment import OPS
    from .losses import LOSSES

    t, d = cfg.train, cfg.data
    if t.loss not in LOSSES:
        raise ConfigError(f"train.loss must be one of {', '.join(LOSSES)}, got '{t.loss}'")
    if t.optimizer not in ("adam", "rmsprop"):
        raise ConfigError(f"train.optimizer must be adam or rmsprop, got '{t.optimizer}'")
    _validate_model(cfg)
    _validate_stage2(cfg)
    if d.sample_rate < 4000 or d.sample_rate > 192000:
        raise ConfigError(f"data.sample_rate must be between 4000 and 192000, got {d.sample_rate}")
    if d.clip_samples < 256:
        raise ConfigError(f"data.clip_samples must be at least 256, got {d.clip_samples}")
    if t.batch_size < 1 or t.steps < 0 or t.d_steps < 1:
        raise ConfigError("train.batch_size and train.d_steps must be >= 1 and train.steps >= 0")
    if not 0.0 < t.label_smoothing <= 1.0:
        raise ConfigError(f"train.label_smoothing must be in (0, 1], got {t.label_smoothing}")
    if t.lr_g <= 0 or t.lr_d <= 0:
        raise ConfigError("train.lr_g and train.lr_d must be positive")
    if not t.codec_base.strip():
        raise ConfigError('train.codec_base must be "auto", "none" or the path of a base autoencoder file')
    if not 0.0 <= t.ema < 1.0:
        raise ConfigError(f"train.ema must be in [0, 1) (0 = off; e.g. 0.999), got {t.ema}")
    if t.ema_power < 0 or (t.ema_power > 0 and t.ema > 0):
        raise ConfigError(f"train.ema_power must be >= 0, and 0 when train.ema is set: they are two kinds of "
                          f"average, use one (got train.ema={t.ema}, train.ema_power={t.ema_power})")
    if not 0.0 <= t.lr_fall <= 1.0:
        raise ConfigError(f"train.lr_fall must be in [0, 1] (the last share of the run over which the learning "
                          f"rates fall to 0; 0 = constant), got {t.lr_fall}")
    a = cfg.augment
    bad_ops = [o for o in a.ops if o not in OPS]
    if bad_ops:
        raise ConfigError(f"augment.ops: unknown {', '.join(bad_ops)} (choose from: {', '.join(OPS)})")
    if not 0.0 <= a.p < 1.0 or not 0.0 <= a.leaky_p_max < 1.0:
        raise ConfigError(f"augment.p and augment.leaky_p_max must be in [0, 1), got {a.p} and {a.leaky_p_max}")
    if a.ada_interval < 1 or a.ada_kimg <= 0:
        raise ConfigError("augment.ada_interval must be >= 1 and augment.ada_kimg positive")
    if not 0.0 <= a.ada_copy_step < 1.0:
        raise ConfigError(f"augment.ada_copy_step must be in [0, 1), got {a.ada_copy_step}")
    if t.copy_check_n < 0 or t.copy_check_clips < 0:
        raise ConfigError("train.copy_check_n and train.copy_check_clips must be >= 0")


def _validate_stage2(cfg: Config) -> None:
    """The two-stage model's latent model exists, and the switches set are ones it reads."""
    from .models import ARCHS
    from .models.twostage import STAGE2

    m, t = cfg.model, cfg.train
    if m.stage2 not in STAGE2:
        raise ConfigError(f"model.stage2 must be one of {', '.join(STAGE2)}, got '{m.stage2}'")
    if m.stage2 != "gan" and not ARCHS[m.arch].two_stage:
        raise ConfigError(f"model.stage2={m.stage2} is the latent model of model.arch=twostage only")
    if not 0.0 <= m.flow_clip_share <= 1.0:
        raise ConfigError(f"model.flow_clip_share is a share from 0 (white noise) to 1, got {m.flow_clip_share}")
    if m.flow_steps < 1:
        raise ConfigError(f"model.flow_steps must be 1 or more, got {m.flow_steps}")
    s2 = STAGE2[m.stage2]
    if not s2.bar_lock and m.bar_repeat > 0:
        raise ConfigError(f"model.stage2={m.stage2} cannot lock latents to the bar: set model.bar_repeat=0")
    if not s2.adversarial:
        set_gan = [k for k, v in (("train.r1", t.r1), ("train.modulation", t.modulation),
                                  ("train.critic_seconds", t.critic_seconds)) if v]
        if set_gan:
            raise ConfigError(f"{', '.join(set_gan)} shape(s) the latent GAN's critic, and model.stage2={m.stage2} "
                              "has none: leave them at 0")


def _validate_model(cfg: Config) -> None:
    """The generator family and discriminators exist and fit together."""
    from .models import ARCHS, DISCRIMINATORS

    m, t = cfg.model, cfg.train
    if m.arch not in ARCHS:
        raise ConfigError(f"model.arch must be one of {', '.join(ARCHS)}, got '{m.arch}'")
    bad = [x for x in m.discriminators if x not in DISCRIMINATORS]
    if bad or not m.discriminators:
        raise ConfigError(f"model.discriminators must be a non-empty list of {', '.join(DISCRIMINATORS)}, "
                          f"got {m.discriminators}")
    arch = ARCHS[m.arch]
    from .dsp.contrast import parse_setting as parse_contrast
    from .models.codec import (ENCODER_INPUTS, MAX_PEAK_BANDS, MIN_ENVELOPE, N_MELS, PHASE_HEADS, RECONSTRUCTIONS,
                               TUNED_PARTS)

    if not 0.0 <= m.bar_repeat <= 1.0 or (m.bar_repeat > 0 and not arch.two_stage):
        raise ConfigError(f"model.bar_repeat is a share from 0 to 1 read by model.arch=twostage only, got {m.bar_repeat}")
    if t.codec_tune not in TUNED_PARTS:
        raise ConfigError(f"train.codec_tune must be one of {', '.join(TUNED_PARTS)}, got '{t.codec_tune}'")
    if t.codec_recon not in RECONSTRUCTIONS:
        raise ConfigError(f"train.codec_recon must be one of {', '.join(RECONSTRUCTIONS)}, got '{t.codec_recon}'")
    if RECONSTRUCTIONS[t.codec_recon].stft == 0 and t.codec_base == "none" and t.codec_adversarial == 0:
        raise ConfigError(f"train.codec_recon={t.codec_recon} leaves the fine structure to a base autoencoder or a "
                          "critic: give train.codec_base or train.codec_adversarial")
    if t.codec_tune != "all" and t.codec_base == "none":
        raise ConfigError(f"train.codec_tune={t.codec_tune} keeps part of a base autoencoder: give train.codec_base")
    if m.decoder_phase not in PHASE_HEADS:
        raise ConfigError(f"model.decoder_phase must be one of {', '.join(PHASE_HEADS)}, got '{m.decoder_phase}'")
    if m.codec_input not in ENCODER_INPUTS:
        raise ConfigError(f"model.codec_input must be one of {', '.join(ENCODER_INPUTS)}, got '{m.codec_input}'")
    if not 0 <= m.codec_peaks <= MAX_PEAK_BANDS:
        raise ConfigError(f"model.codec_peaks must be from 0 to {MAX_PEAK_BANDS} bands, got {m.codec_peaks}")
    if m.codec_envelope and not MIN_ENVELOPE <= m.codec_envelope <= N_MELS * 4:
        raise ConfigError(f"model.codec_envelope must be 0 (every bin) or {MIN_ENVELOPE} to {N_MELS * 4} points, "
                          f"got {m.codec_envelope}")
    if m.beat_grid and (not arch.beat_grid or not m.tempo_conditioning):
        grid = ", ".join(f"model.arch={n}" for n, a in ARCHS.items() if a.beat_grid)
        raise ConfigError(f"model.beat_grid needs {grid} and model.tempo_conditioning=true")
    if any(DISCRIMINATORS[x].latent != arch.two_stage for x in m.discriminators):
        latent = ", ".join(n for n, x in DISCRIMINATORS.items() if x.latent)
        why = "must all be" if arch.two_stage else "cannot include"
        raise ConfigError(f"model.discriminators {why} the latent-space ones ({latent}) with model.arch={m.arch}: "
                          "a two-stage model's GAN is judged in latent space, every other model's in audio")
    if arch.two_stage and (t.codec_steps < 0 or t.codec_batch < 1 or t.codec_seconds <= 0 or t.lr_codec <= 0):
        raise ConfigError("train.codec_batch, codec_seconds and lr_codec must be positive, and train.codec_steps "
                          "0 (the base autoencoder as it is) or more")
    if arch.two_stage and t.codec_steps == 0 and t.codec_base == "none":
        raise ConfigError("train.codec_steps=0 uses the base autoencoder as it is, so train.codec_base cannot be 'none'")
    if t.r1 < 0:
        raise ConfigError(f"train.r1 must be 0 (off) or a positive gamma, got {t.r1}")
    if t.r1 > 0 and not arch.two_stage:
        raise ConfigError("train.r1 is read by the latent GAN of the two-stage model (model.arch=twostage) only")
    if t.best_every < 0 or (t.best_every > 0 and not arch.two_stage):
        raise ConfigError(f"train.best_every must be 0 (off) or a step count, and is read by the two-stage model "
                          f"(model.arch=twostage) only; got {t.best_every} with model.arch={m.arch}")
    if t.modulation < 0:
        raise ConfigError(f"train.modulation must be 0 (off) or a positive weight, got {t.modulation}")
    if t.critic_seconds < 0:
        raise ConfigError(f"train.critic_seconds must be 0 (the whole clip) or a length in seconds, got {t.critic_seconds}")
    if t.codec_phase < 0:
        raise ConfigError(f"train.codec_phase must be 0 (off) or a positive weight, got {t.codec_phase}")
    try:
        parse_contrast(t.codec_contrast)
    except ValueError as e:
        raise ConfigError(f"train.codec_contrast {e}") from None
    if t.codec_consistency < 0:
        raise ConfigError(f"train.codec_consistency must be 0 (off) or a positive weight, got {t.codec_consistency}")
    if t.codec_adversarial < 0:
        raise ConfigError(f"train.codec_adversarial must be 0 (off) or a positive weight, got {t.codec_adversarial}")
    if t.codec_hinge < 0:
        raise ConfigError(f"train.codec_hinge must be 0 (feature matching alone) or a positive weight, got {t.codec_hinge}")
