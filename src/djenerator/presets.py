"""Named, complete configurations. Each entry is a nested dict applied on top of the defaults."""
from __future__ import annotations

# the preset of `train` without --preset, of the HTTP API's jobs and of config.Config(): its dataclass defaults are
# this preset (tests/test_config.py holds them together); `auto` picks per machine and must be asked for
DEFAULT_PRESET = "recommended"

# hinge + feature matching with Adam (2e-4, betas 0.5/0.9): the GAN-vocoder recipe the conv presets share
HINGE_ADAM = {"loss": "hinge", "optimizer": "adam", "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.9], "eps": 1e-8,
              "d_steps": 1, "feature_matching": 2.0}

# what bars and bars-gan share (docs/two-stage.md): 6-s clips at 22.05 kHz; the pghi phase head (round 8); stage 1
# fine-tunes the shipped base for 300 steps (round 2); a power average of stage 2's weights (round 15)
BARS_DATA = {"sample_rate": 22050, "clip_samples": 131072, "hop_samples": 65536}
BARS_MODEL = {"arch": "twostage", "discriminators": ["latent"], "dim": 24, "latent_dim": 64, "tempo_conditioning": True,
              "decoder_phase": "pghi"}
BARS_TRAIN = {**HINGE_ADAM, "codec_steps": 300, "codec_base": "auto", "steps": 4000, "sample_every": 500,
              "ema_power": 1.0}

PRESETS: dict[str, dict] = {
    "original": {
        "summary": "The seed's dense GAN: dense G/D, LeakyReLU, dropout+batch-norm, BCE, instance noise 0.2, "
        "label smoothing 0.9, RMSprop (lr 1e-3, alpha 0.7, eps 1e-4).",
        "config": {
            "model": {"arch": "dense", "discriminators": ["dense"], "dense_hidden": [256, 512], "dropout": 0.3},
            "train": {
                "loss": "bce", "optimizer": "rmsprop", "lr_g": 1e-3, "lr_d": 1e-3, "rms_alpha": 0.7, "eps": 1e-4,
                "betas": [0.5, 0.999],
                "instance_noise": 0.2, "label_smoothing": 0.9, "batch_size": 32, "feature_matching": 0.0,
            },
        },
    },
    "wavegan": {
        "summary": "WaveGAN as published (Donahue et al. 2019): d=64, phase shuffle 2, WGAN-GP (lambda 10, "
        "5 critic steps, Adam 1e-4, betas 0.5/0.9).",
        "config": {
            "model": {"arch": "wavegan", "discriminators": ["wave"], "dim": 64, "phase_shuffle": 2},
            "train": {
                "loss": "wgan-gp", "optimizer": "adam", "lr_g": 1e-4, "lr_d": 1e-4, "betas": [0.5, 0.9],
                "eps": 1e-8, "d_steps": 5, "gp_lambda": 10.0, "batch_size": 64, "feature_matching": 0.0,
            },
        },
    },
    "recommended": {
        "summary": "This tool's default: WaveGAN generator (d=32) judged by a waveform and a multi-resolution "
        "STFT discriminator, hinge loss with feature matching, Adam 2e-4/0.5/0.9.",
        "config": {
            "model": {"arch": "wavegan", "discriminators": ["wave", "stft"], "dim": 32, "spectral_norm": False},
            "train": {**HINGE_ADAM, "batch_size": 16},
        },
    },
    "spectral": {
        "summary": "Pieces of any length: the length-agnostic spectral generator (latent frame sequence + style, "
        "ConvNeXt at STFT frame rate, ISTFT output; trained on windows spanning several latent frames) judged by "
        "multi-scale and multi-resolution STFT discriminators, hinge + feature matching, Adam 2e-4/0.5/0.9. Any "
        "sample rate (16-44.1 kHz) and clip length; `generate --seconds N` streams pieces of any length.",
        "config": {
            "model": {"arch": "spectral", "discriminators": ["msd", "stft"], "dim": 32, "latent_dim": 128},
            "train": {**HINGE_ADAM, "batch_size": 16},
        },
    },
    "laptop": {
        "summary": "Trainable on a CPU: the spectral generator (d=16; pieces of any length) against a multi-"
        "resolution STFT discriminator, at 8 kHz with 1-s clips, hinge + feature matching, batch 8, tempo "
        "conditioning with the beat grid (generate --bpm; the tempo holds over long pieces); outputs use a moving "
        "average of the generator (train.ema). ~6 steps/s on 2 cores: rhythmic chug bursts appear within minutes "
        "(prepare with --preset laptop).",
        "config": {
            "data": {"sample_rate": 8000, "clip_samples": 8192, "hop_samples": 2048},
            "model": {"arch": "spectral", "discriminators": ["stft"], "dim": 16, "latent_dim": 128,
                      "stft_ffts": [256, 512, 1024], "tempo_conditioning": True, "beat_grid": True},
            "train": {**HINGE_ADAM, "batch_size": 8, "ema": 0.999},
        },
    },
    "bars": {
        "summary": "Music by the bar, at 22.05 kHz (two stages, after Musika): an autoencoder (log-mel encoder -> "
        "16 latent channels at 43 frames/s -> ConvNeXt decoder of the STFT magnitude, its phase from the magnitude "
        "by phase-gradient integration, ISTFT; multi-resolution STFT + mel loss; train.codec_steps steps, from the "
        "shipped base autoencoder), then a flow over 6-s latent sequences (flow matching: a ConvNeXt net with "
        "dilations reaching 4.5 s and a bar clock learns the velocity from noise to latents by least squares; "
        "no critic; its noise's time mean carries the data's between-clip share of variance), its weights "
        "averaged over the last third or so of the run (train.ema_power), and the "
        "average whose latents read nearest the data's (every 400 steps) kept for generate (train.best_every). "
        "Prepare with --preset bars (6-s clips); pieces of any length, each 3 s continuing the 3 s before, "
        "each new bar a variation of the one before within a run of four bars (generate --repeat).",
        "config": {
            "data": BARS_DATA,
            "model": {**BARS_MODEL, "stage2": "flow", "bar_repeat": 0.7,  # docs/two-stage.md, rounds 17 and 18
                      "flow_clip_share": 1.0},  # round 24: a clip's character has a source of its own
            "train": {**BARS_TRAIN, "lr_g": 5e-4, "betas": [0.9, 0.99], "batch_size": 16,
                      "best_every": 400},  # round 19: keep the weights whose latent FD is lowest
        },
    },
    "bars-gan": {
        "summary": "bars with a GAN as its second stage (rounds 1-16 of docs/two-stage.md): slow latents, a bar "
        "clock and a riff input that comes round every bar -> latents, judged in latent space with each frame's "
        "difference from the bar before (hinge + feature matching); three quarters of a piece's slow latents "
        "locked to the bar (generate --repeat). Prepare with --preset bars.",
        "config": {
            "data": BARS_DATA,
            "model": {**BARS_MODEL, "stage2": "gan", "bar_repeat": 0.75},  # round 10
            "train": {**BARS_TRAIN, "batch_size": 8},
        },
    },
    "few": {
        "summary": "For 1 to 10 recordings: a small WaveGAN generator (d=16) judged by a waveform and a "
        "multi-resolution STFT discriminator, hinge + feature matching, Adam 2e-4/0.5/0.9, clips cut with "
        "75% overlap (prepare --hop 4096), and differentiable augmentation of every discriminator input "
        "(polarity, gain, shift, EQ tilt, low noise, cut-out) with its probability tuned by ADA (target 0.6).",
        "config": {
            "data": {"hop_samples": 4096},
            "model": {"arch": "wavegan", "discriminators": ["wave", "stft"], "dim": 16, "phase_shuffle": 2},
            "train": {**HINGE_ADAM, "batch_size": 16},
            "augment": {
                "enabled": True, "ada": True, "p": 0.0, "ada_target": 0.6, "ada_interval": 4, "ada_kimg": 100.0,
                "ops": ["polarity", "gain", "shift", "eq", "noise", "cutout"],
            },
        },
    },
}


def describe() -> list[tuple[str, str]]:
    return [(name, p["summary"]) for name, p in PRESETS.items()]


def resolve_preset(name: str) -> str:
    """``auto``: the preset for this machine, ``recommended`` where a GPU makes it affordable and the CPU-sized
    ``laptop`` elsewhere (on 2 CPU cores ``recommended`` runs ~0.8 steps/s idle and 0.14 loaded, so a few
    CPU minutes of it are noise; ``laptop`` runs ~6.9). Any other name is returned as it is."""
    if name != "auto":
        return name
    import torch

    return "recommended" if torch.cuda.is_available() else "laptop"
