"""A procedural Djent riff renderer: the built-in dataset, pure numpy/scipy and deterministic per seed.

One riff is an odd-grouped pattern of palm-muted low chugs, ghost notes and rests repeated across 4/4 bars
against a straight 4/4 kit, so it rolls over the bar line; guitars are Karplus-Strong strings through
distortion and a cabinet, drums are synthesised. Everything random comes from
``np.random.default_rng(seed)``, so a seed renders bit-identical audio. The signal chain: docs/how-it-works.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import signal

from ..audio import write_wav
from ..io import atomic_write_text

GROUPINGS = (5, 7, 9, 11, 13)
BPM_RANGE = (90.0, 160.0)
MIN_SR, MAX_SR = 16000, 48000

# ----------------------------------------------------------------------------------------------
# small DSP helpers
# ----------------------------------------------------------------------------------------------


def _butter(kind: str, freq, sr: int, order: int = 2):
    nyq = 0.5 * sr
    f = np.clip(np.asarray(freq, dtype=np.float64) / nyq, 1e-4, 0.98)
    return signal.butter(order, f, btype=kind, output="sos")


def _filt(x: np.ndarray, kind: str, freq, sr: int, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_butter(kind, freq, sr, order), x)


def _peaking(x: np.ndarray, f0: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    """RBJ cookbook peaking-EQ biquad."""
    a_lin = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * min(f0, 0.45 * sr) / sr
    alpha = np.sin(w0) / (2.0 * q)
    b = np.array([1 + alpha * a_lin, -2 * np.cos(w0), 1 - alpha * a_lin])
    a = np.array([1 + alpha / a_lin, -2 * np.cos(w0), 1 - alpha / a_lin])
    return signal.lfilter(b / a[0], a / a[0], x)


def _one_pole_lp(x: np.ndarray, fc: float, sr: int) -> np.ndarray:
    p = np.exp(-2.0 * np.pi * fc / sr)
    return signal.lfilter([1.0 - p], [1.0, -p], x)


def _karplus_strong(f0: float, n: int, sr: int, rng: np.random.Generator, t60: float,
                    bright: float, exc_lp_hz: float) -> np.ndarray:
    """Plucked string of ``n`` samples: y[i] = g*(a*y[i-N] + (1-a)*y[i-N-1]), noise-filled delay line.

    Vectorised one period at a time: every sample of a period depends only on the previous two
    periods, so the loop runs ~f0*duration times instead of once per sample.
    ``t60`` is the time (s) to decay by 60 dB; ``bright`` in [0.5, 1) is the loop low-pass
    (0.5 = darkest two-point average); ``exc_lp_hz`` darkens the pick noise.
    """
    period = max(2, int(round(sr / f0 - (1.0 - bright))))
    g = 10.0 ** (-3.0 * period / (sr * t60))
    exc = rng.uniform(-1.0, 1.0, period)
    exc = _one_pole_lp(np.concatenate([exc, exc]), exc_lp_hz, sr)[period:]  # periodic warm-up
    exc -= exc.mean()
    buf = np.zeros(n + 2 * period + 1)
    buf[1:1 + period] = exc
    k = 1
    a, b = g * bright, g * (1.0 - bright)
    while 1 + k * period < n + 1:
        s = 1 + k * period
        buf[s:s + period] = a * buf[s - period:s] + b * buf[s - period - 1:s - 1]
        k += 1
    return buf[1:1 + n]


def _place(track: np.ndarray, sound: np.ndarray, start: int, gain: float = 1.0) -> None:
    if start >= len(track) or start < 0:
        return
    m = min(len(sound), len(track) - start)
    track[start:start + m] += gain * sound[:m]


def _env(n: int, sr: int, tau: float, attack: float = 0.002) -> np.ndarray:
    t = np.arange(n) / sr
    return np.minimum(1.0, t / attack) * np.exp(-t / tau) if attack > 0 else np.exp(-t / tau)


# ----------------------------------------------------------------------------------------------
# drums
# ----------------------------------------------------------------------------------------------


def _kick(sr: int, rng: np.random.Generator, f_hi: float = 150.0, f_lo: float = 50.0, decay: float = 0.16) -> np.ndarray:
    n = int(0.45 * sr)
    t = np.arange(n) / sr
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / 0.035)
    body = np.sin(2.0 * np.pi * np.cumsum(freq) / sr) * _env(n, sr, decay, 0.001)
    nc = int(0.006 * sr)
    click = np.zeros(n)
    click[:nc] = _filt(rng.standard_normal(nc), "bandpass", [1500.0, min(6000.0, 0.45 * sr)], sr) * np.exp(-np.arange(nc) / (0.0015 * sr))
    k = body + 0.6 * click / (np.abs(click).max() + 1e-9)
    return k / np.abs(k).max()


def _snare(sr: int, rng: np.random.Generator, tone_hz: float = 190.0) -> np.ndarray:
    n = int(0.35 * sr)
    t = np.arange(n) / sr
    tone = (np.sin(2 * np.pi * tone_hz * t) + 0.5 * np.sin(2 * np.pi * 1.6 * tone_hz * t)) * _env(n, sr, 0.06, 0.001)
    noise = _filt(rng.standard_normal(n), "bandpass", [1200.0, min(9000.0, 0.45 * sr)], sr) * _env(n, sr, 0.11, 0.0005)
    s = 0.8 * tone + 1.2 * noise / (np.abs(noise).max() + 1e-9)
    return s / np.abs(s).max()


def _cymbal(sr: int, rng: np.random.Generator, seconds: float, decay: float, hp_hz: float) -> np.ndarray:
    n = int(seconds * sr)
    t = np.arange(n) / sr
    noise = rng.standard_normal(n)
    # a few inharmonic square-ish partials make it metallic rather than pure hiss
    for f in (2.3e3, 3.1e3, 4.7e3, 5.9e3):
        if f < 0.45 * sr:
            noise += 0.4 * np.sign(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)))
    c = _filt(noise, "highpass", min(hp_hz, 0.35 * sr), sr, 4) * _env(n, sr, decay, 0.0005)
    return c / (np.abs(c).max() + 1e-9)


# ----------------------------------------------------------------------------------------------
# the riff
# ----------------------------------------------------------------------------------------------


def _make_pattern(rng: np.random.Generator, grouping: int) -> list[str]:
    """One cycle: 'X' palm-muted chug (kick doubles it), 'O' open/pitched chord (kick too),
    'g' ghost chug, '.' rest."""
    while True:
        p = rng.choice(["X", "g", "."], size=grouping, p=[0.5, 0.2, 0.3]).tolist()
        p[0] = "O" if rng.random() < 0.35 else "X"
        if grouping >= 7 and rng.random() < 0.5:  # a mid-cycle accent chord
            p[int(rng.integers(3, grouping - 1))] = "O"
        if sum(c in "XO" for c in p) >= max(2, grouping // 3) and p.count(".") >= 1:
            return p


def render_riff(seed: int, sr: int = 16000, seconds: float = 8.0, bpm: float | None = None,
                grouping: int | None = None) -> tuple[np.ndarray, dict]:
    """Render one Djent riff. Returns (mono float32 audio in [-1, 1], metadata).

    Metadata keys: bpm, grouping, onsets (every note/drum onset, sorted, seconds), guitar_onsets,
    kick_onsets, sr, seconds, seed; plus ghost_onsets (quiet guitar chugs, a subset of
    guitar_onsets), snare_onsets, hat_onsets, cymbal_onsets, ping_onsets, root_hz, pattern
    (one cycle, 'X' chug, 'O' open chord, 'g' ghost, '.' rest) and mix (gains).
    """
    if not (MIN_SR <= int(sr) <= MAX_SR):
        raise ValueError(f"sample rate must be between {MIN_SR} and {MAX_SR} Hz, got {sr}")
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if grouping is not None and int(grouping) < 2:
        raise ValueError(f"grouping must be >= 2 sixteenths, got {grouping}")
    sr = int(sr)
    rng = np.random.default_rng(int(seed))  # every stage below draws from it in this order: the riff is the seed's
    r = _draw_riff(rng, sr, seconds, bpm, grouping)
    events = _guitar_events(rng, r)
    guitar, on = _render_guitar(rng, r, events)
    guitar = _amp(rng, guitar, r)
    drums, drum_on = _drums(rng, r, on["kick"])
    ping, ping_on = _pings(rng, r)
    mix = r["mix"]
    mixdown = (mix["guitar"] * guitar + mix["kick"] * drums["kick"] + mix["snare"] * drums["snare"]
               + mix["hat"] * drums["hat"] + mix["cymbal"] * drums["cymbal"] + mix["ping"] * ping)
    mixdown = np.tanh(1.2 * mixdown)  # gentle bus saturation, glues drums and guitar
    peak = np.abs(mixdown).max()
    audio = (0.9 * mixdown / peak if peak > 0 else mixdown).astype(np.float32)
    return audio, _riff_meta(r, seed, {**on, **drum_on, "ping": ping_on})


def _draw_riff(rng: np.random.Generator, sr: int, seconds: float, bpm: float | None, grouping: int | None) -> dict:
    """The riff's random choices: tempo, grouping, root, pattern, voicings, mix, amp and ping settings."""
    bpm = float(rng.uniform(*BPM_RANGE)) if bpm is None else float(bpm)
    g_draw = int(rng.choice(GROUPINGS))  # drawn either way: rng consumption does not depend on the arguments
    grouping = g_draw if grouping is None else int(grouping)
    s16 = 60.0 / bpm / 4.0
    r = {"sr": sr, "seconds": seconds, "bpm": bpm, "grouping": grouping, "n": int(round(seconds * sr)), "s16": s16,
         "n_steps": int(np.ceil(seconds / s16))}
    r["root"] = 55.0 * 2.0 ** ((rng.uniform(0.0, 2.0)) / 12.0)  # drop A .. drop B
    r["pattern"] = _make_pattern(rng, grouping)
    r["open_pitches"] = rng.choice([0, 1, 3, 5, 6, 7, 8], size=4, p=[0.3, 0.2, 0.15, 0.1, 0.1, 0.1, 0.05])
    r["mute_tau"] = rng.uniform(0.03, 0.06)
    r["hat_mode"] = rng.choice(["8ths", "quarters", "8ths"])
    r["mix"] = {
        "guitar": float(rng.uniform(0.45, 0.6)), "kick": float(rng.uniform(0.8, 1.0)),
        "snare": float(rng.uniform(0.7, 0.9)), "hat": float(rng.uniform(0.18, 0.3)),
        "cymbal": float(rng.uniform(0.15, 0.25)), "ping": float(rng.uniform(0.15, 0.25)),
    }
    r["gain"], r["bias"] = rng.uniform(8.0, 20.0), rng.uniform(0.2, 0.45)
    r["has_ping"] = rng.random() < 0.6
    r["ping_step"] = int(rng.integers(1, grouping))
    ping_hz = r["root"] * 2.0 ** np.round(np.log2(1400.0 / r["root"]))  # a high harmonic of the root
    ping_hz *= float(rng.choice([1.0, 1.5, 2 ** (3 / 12), 2 ** (7 / 12)]))
    while ping_hz > 2000.0:
        ping_hz /= 2.0
    r["ping_hz"] = max(ping_hz, 1000.0)
    return r


def _t_of(rng: np.random.Generator, step: int, s16: float, jitter_ms: float = 2.0) -> float:
    """The played time of sixteenth ``step``: on the grid, with a human timing jitter (none on the first)."""
    return max(0.0, step * s16 + (rng.normal(0.0, jitter_ms * 1e-3) if step > 0 else 0.0))


def _guitar_events(rng: np.random.Generator, r: dict) -> list[tuple[float, str, int, float]]:
    """(time, kind, pitch in semitones, velocity) of every sixteenth: the pattern cycled over the riff."""
    events, s16, grouping, pattern = [], r["s16"], r["grouping"], r["pattern"]
    for step in range(r["n_steps"]):
        c = pattern[step % grouping]
        cycle = step // grouping
        if c == "." or (c == "g" and rng.random() < 0.25):  # ghost notes come and go
            events.append((step * s16, "rest", 0, 0.0))
            continue
        t = _t_of(rng, step, s16)
        if c == "X":
            events.append((t, "chug", 0, float(rng.uniform(0.85, 1.0))))
        elif c == "O":
            k = cycle if step % grouping == 0 else cycle + 2
            events.append((t, "open", int(r["open_pitches"][k % len(r["open_pitches"])]), float(rng.uniform(0.9, 1.0))))
        else:
            events.append((t, "ghost", 0, float(rng.uniform(0.08, 0.16))))
    return events


def _guitar_note(rng: np.random.Generator, r: dict, kind: str, f: float, ln: int) -> np.ndarray:
    """One plucked note of ``ln`` samples: a ringing open chord or a palm-muted chug, choked at its end."""
    sr = r["sr"]
    if kind == "open":
        note = _karplus_strong(f, ln, sr, rng, 3.0, 0.97, 3000.0)
        note += 0.9 * _karplus_strong(1.5 * f, ln, sr, rng, 2.5, 0.97, 3000.0)
        note += 0.5 * _karplus_strong(2.0 * f, ln, sr, rng, 2.0, 0.97, 3000.0)
        env = np.ones(ln)
    else:
        note = _karplus_strong(f, ln, sr, rng, 0.4, 0.6, 900.0)
        note += 0.8 * _karplus_strong(1.5 * f, ln, sr, rng, 0.35, 0.6, 900.0)
        note = _one_pole_lp(note, 700.0, sr)
        env = _env(ln, sr, r["mute_tau"], 0.0015)
    rel = min(ln, int(0.01 * sr))  # choke at the next event (hand mute), 10 ms release
    env[ln - rel:] *= np.linspace(1.0, 0.0, rel)
    note = note * env
    return note / (np.abs(note).max() + 1e-9)


def _render_guitar(rng: np.random.Generator, r: dict, events: list) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Two takes of the guitar part (double tracking: slightly different strings and timing), and the onsets
    of the first take: every note, the ghost notes, and the others (where the kick doubles the guitar)."""
    sr, n, seconds = r["sr"], r["n"], r["seconds"]
    guitar = np.zeros(n)
    on: dict[str, list[float]] = {"guitar": [], "ghost": [], "kick": []}
    for take in range(2):
        trk = np.zeros(n)
        detune = 1.0 + (0.0 if take == 0 else 0.003)
        for i, (t, kind, pitch, vel) in enumerate(events):
            if kind == "rest":
                continue
            nxt = next((e[0] for e in events[i + 1:]), seconds)
            start = int(round((t + (take * rng.uniform(0.0, 0.004))) * sr))
            ln = min(int((max(0.03, nxt - t) + 0.01) * sr), n - start)
            if ln <= 8:
                continue
            _place(trk, _guitar_note(rng, r, kind, r["root"] * 2.0 ** (pitch / 12.0) * detune, ln), start, vel)
            if take == 0:
                on["guitar"].append(start / sr)
                on["ghost" if kind == "ghost" else "kick"].append(start / sr)
        guitar += trk
    return guitar, on


def _amp(rng: np.random.Generator, guitar: np.ndarray, r: dict) -> np.ndarray:
    """Tight pre-boost, pre-gain, asymmetric soft clip, DC block, cabinet."""
    sr = r["sr"]
    x = _filt(guitar, "highpass", 110.0, sr, 1) + 0.3 * guitar
    x = np.tanh(r["gain"] * x + r["bias"]) - np.tanh(r["bias"])
    x = _filt(x, "highpass", 80.0, sr, 2)
    x = _filt(x, "lowpass", min(rng.uniform(4000.0, 5000.0), 0.45 * sr), sr, 4)
    x = _peaking(x, rng.uniform(2000.0, 3200.0), rng.uniform(3.0, 6.0), 1.2, sr)
    x = _peaking(x, 450.0, -4.0, 1.0, sr)  # a little mid scoop
    return x / (np.abs(x).max() + 1e-9)


def _drums(rng: np.random.Generator, r: dict, kick_onsets: list[float]) -> tuple[dict[str, np.ndarray], dict]:
    """Kick locked to the guitar, snare on 2 and 4, hats (8ths or quarters), a crash every 4 bars."""
    sr, n, s16 = r["sr"], r["n"], r["s16"]
    kick_s = _kick(sr, rng, rng.uniform(140.0, 165.0), rng.uniform(45.0, 55.0))
    snare_s = _snare(sr, rng, rng.uniform(170.0, 220.0))
    hat_s = _cymbal(sr, rng, 0.12, rng.uniform(0.02, 0.04), 7000.0)
    crash_s = _cymbal(sr, rng, 2.0, rng.uniform(0.5, 0.9), 4000.0)
    tracks = {k: np.zeros(n) for k in ("kick", "snare", "hat", "cymbal")}
    for t in kick_onsets:
        _place(tracks["kick"], kick_s, int(round(t * sr)), float(rng.uniform(0.9, 1.0)))
    on: dict[str, list[float]] = {"snare": [], "hat": [], "cymbal": []}
    for step in range(r["n_steps"]):
        pos = step % 16
        if pos in (4, 12):
            t = _t_of(rng, step, s16, 1.5)
            _place(tracks["snare"], snare_s, int(round(t * sr)), float(rng.uniform(0.9, 1.0)))
            on["snare"].append(round(t * sr) / sr)
        if pos == 0 and (step // 16) % 4 == 0:
            t = _t_of(rng, step, s16, 1.0)
            _place(tracks["cymbal"], crash_s, int(round(t * sr)), 1.0)
            on["cymbal"].append(round(t * sr) / sr)
        elif (r["hat_mode"] == "8ths" and pos % 2 == 0) or (pos % 4 == 0):
            t = _t_of(rng, step, s16, 2.0)
            _place(tracks["hat"], hat_s, int(round(t * sr)), 1.0 if pos % 4 == 0 else 0.55)
            on["hat"].append(round(t * sr) / sr)
    return tracks, on


def _pings(rng: np.random.Generator, r: dict) -> tuple[np.ndarray, list[float]]:
    """A high harmonic ping every other cycle of the riff (in 60 % of riffs)."""
    sr, n, ping_hz = r["sr"], r["n"], r["ping_hz"]
    ping, onsets = np.zeros(n), []
    if not r["has_ping"]:
        return ping, onsets
    ln = int(1.2 * sr)
    for step in range(r["ping_step"], r["n_steps"], r["grouping"] * 2):
        t = _t_of(rng, step, r["s16"])
        p = _karplus_strong(ping_hz, ln, sr, rng, 1.2, 0.995, 6000.0)
        p += 0.3 * np.sin(2 * np.pi * ping_hz * np.arange(ln) / sr) * _env(ln, sr, 0.4, 0.002)
        p = np.tanh(2.0 * p / (np.abs(p).max() + 1e-9))
        _place(ping, p / np.abs(p).max(), int(round(t * sr)), 1.0)
        onsets.append(round(t * sr) / sr)
    return ping, onsets


def _riff_meta(r: dict, seed: int, on: dict[str, list[float]]) -> dict:
    seconds = r["seconds"]

    def clean(v):
        return sorted(float(round(t, 6)) for t in v if t < seconds)

    keys = ("guitar", "kick", "snare", "hat", "cymbal", "ping")
    return {
        "bpm": r["bpm"], "first_beat": 0.0, "grouping": r["grouping"],
        "onsets": sorted(set(sum((clean(on[k]) for k in keys), []))),
        **{f"{k}_onsets": clean(on[k]) for k in ("guitar", "kick", "ghost", "snare", "hat", "cymbal", "ping")},
        "sr": r["sr"], "seconds": float(seconds), "seed": int(seed),
        "root_hz": float(r["root"]), "pattern": "".join(r["pattern"]), "mix": r["mix"],
    }


def synth_dataset(out_dir: Path, n_files: int = 16, seconds: float = 8.0, sr: int = 16000, seed: int = 0,
                  progress: bool = True) -> list[Path]:
    """Write ``n_files`` riffs as out_dir/djent_000.wav (+ .json metadata each) and out_dir/metadata.json.

    File i uses seed ``seed + i``. Each file is written atomically, so an interrupted run leaves only
    complete files; metadata.json lists every file with its metadata.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    it = range(int(n_files))
    if progress:
        try:
            from tqdm import tqdm
            it = tqdm(it, desc="synth", unit="riff")
        except ImportError:  # pragma: no cover
            pass
    paths, metas = [], []
    for i in it:
        audio, meta = render_riff(seed + i, sr=sr, seconds=seconds)
        wav = out_dir / f"djent_{i:03d}.wav"
        write_wav(wav, audio, sr)
        meta = {"file": wav.name, **meta}
        atomic_write_text(out_dir / f"djent_{i:03d}.json", json.dumps(meta, indent=1))
        paths.append(wav)
        metas.append(meta)
    atomic_write_text(out_dir / "metadata.json", json.dumps(metas, indent=1))
    return paths
