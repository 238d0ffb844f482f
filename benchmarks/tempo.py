"""Tempo over long pieces: is the tempo held, and is it the one asked for? Prints a table; not run by the tests.

    .venv/bin/python benchmarks/tempo.py RUN_OR_CHECKPOINT [MORE ...] [--seconds 30] [--seeds 2] [--tempos 6]

For each model, pieces of ``--seconds`` are generated (``generate_long``, as ``djenerator generate --seconds``
does) at ``--tempos`` requested tempos spread over the model's ``bpm_range`` (tempo-conditioned models) or
with no tempo (others), ``--seeds`` seeds each. Every 5-s stretch gets a tempo from
``dsp.beat.estimate_tempo`` (onset autocorrelation). Columns:

- held: share of stretches within 5 % of their piece's median tempo (the long-range measure of issue 8);
- |median - asked|: median over pieces of the distance between the piece's median tempo and the request;
- on tempo: share of stretches within 5 % of the requested tempo (issue 9's tempo control measure);
- up to octave: the same, counting half and double the request as right (MIREX "accuracy 2": the
  autocorrelation estimate often locks onto eighths or half notes, more so at low sample rates).

The first row is the built-in synth rendered at the same tempos and resampled to the model's rate: the
estimator's own error on music that holds its tempo exactly.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from djenerator.audio import resample
from djenerator.dsp.beat import estimate_tempo
from djenerator.generate import generate_long, load_generator
from djenerator.synth.djent import render_riff

STRETCH = 5.0


def stretch_tempi(x: np.ndarray, sr: int) -> np.ndarray:
    k = int(STRETCH * sr)
    return np.array([estimate_tempo(x[i:i + k], sr) for i in range(0, len(x) - k + 1, k)])


def summarise(pieces: list[tuple[float | None, np.ndarray]]) -> dict:
    held, dist, on, octave = [], [], [], []
    for asked, t in pieces:
        med = np.nanmedian(t) if np.isfinite(t).any() else np.nan
        held.extend(np.abs(t / med - 1) <= 0.05 if np.isfinite(med) else [False] * len(t))
        if asked is not None:
            dist.append(abs(med - asked) if np.isfinite(med) else np.inf)
            on.extend(np.abs(t / asked - 1) <= 0.05)
            octave.extend(np.min([np.abs(t / (asked * m) - 1) for m in (0.5, 1.0, 2.0)], axis=0) <= 0.05)
    return {"held": float(np.mean(held)), "dist": float(np.median(dist)) if dist else np.nan,
            "on": float(np.mean(on)) if on else np.nan, "octave": float(np.mean(octave)) if octave else np.nan,
            "n": len(pieces)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--tempos", type=int, default=6)
    a = ap.parse_args()
    torch.set_num_threads(2)
    models = [(r, *load_generator(r)[:2]) for r in a.runs]
    rows = []
    sr0 = models[0][2].data.sample_rate
    lo, hi = models[0][2].model.bpm_range
    targets = np.linspace(lo + 5, hi - 5, a.tempos)
    ref, per = [], []
    for i, bpm in enumerate(targets):
        riff = render_riff(100 + i, sr=16000, seconds=a.seconds, bpm=float(bpm))[0]
        ref.append((float(bpm), stretch_tempi(resample(riff, 16000, sr0), sr0)))
        per.append(f"{bpm:.0f}->{np.nanmedian(ref[-1][1]):.0f}")
    rows.append((f"built-in synth at the asked tempos ({sr0} Hz)", summarise(ref), " ".join(per)))
    for run, G, cfg in models:
        sr = cfg.data.sample_rate
        asks = [float(b) for b in targets] if cfg.model.tempo_conditioning else [None]
        pieces, per = [], []
        for bpm in asks:
            meds = []
            for seed in range(a.seeds):
                t = stretch_tempi(generate_long(G, cfg, a.seconds, seed=seed, bpm=bpm), sr)
                pieces.append((bpm, t))
                meds.append(np.nanmedian(t) if np.isfinite(t).any() else np.nan)
            per.append(f"{bpm:.0f}->{np.nanmedian(meds):.0f}" if bpm is not None else f"{np.nanmedian(meds):.0f}")
        grid = "grid" if cfg.model.beat_grid else ("tempo" if cfg.model.tempo_conditioning else "none")
        rows.append((f"{run} ({cfg.preset}, conditioning: {grid})", summarise(pieces), " ".join(per)))
    print(f"## Tempo over {a.seconds:g}-s pieces, {STRETCH:g}-s stretches ({a.seeds} seeds per tempo)")
    print("| model | pieces | held (within 5 % of piece median) | median abs(piece median - asked) BPM | "
          "stretches within 5 % of asked | up to octave | asked->piece median |")
    print("|---|---|---|---|---|---|---|")
    for name, s, per in rows:
        on, octave = ("-" if np.isnan(s[k]) else f"{s[k]:.0%}" for k in ("on", "octave"))
        print(f"| {name} | {s['n']} | {s['held']:.0%} | {s['dist']:.1f} | {on} | {octave} | {per} |")


if __name__ == "__main__":
    main()
