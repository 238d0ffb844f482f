"""What `evaluate` says about white noise, pink noise, a click track and new riffs, against the built-in riffs.

    python benchmarks/verdicts.py            # 8 kHz, 8192-sample clips: the laptop preset's
    python benchmarks/verdicts.py --sr 16000 --clip 16384

The real clips are 16 built-in riffs cut as `prepare` cuts them (hop = clip / 4); each candidate set is judged
by the same functions `evaluate` uses (report._noise, report._rhythm, with the IOI baseline split by file).
tests/test_verdicts.py asserts these verdicts.
"""
from __future__ import annotations

import argparse

import numpy as np
from rich.console import Console
from rich.table import Table

from djenerator.audio import resample
from djenerator.evaluate import report as R
from djenerator.synth import render_riff


def riffs(seeds, sr: int, clip: int):
    clips, files = [], []
    for s in seeds:
        a, _ = render_riff(s, sr=max(16000, sr), seconds=8.0)
        a = resample(a, max(16000, sr), sr) if sr < 16000 else a
        cut = [a[p:p + clip] for p in range(0, len(a) - clip + 1, clip // 4)]
        clips += cut
        files += [f"riff_{s}"] * len(cut)
    return np.stack(clips).astype(np.float32), files


def candidates(sr: int, clip: int, n: int = 96, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    white = 0.3 * rng.standard_normal((n, clip))
    f = np.fft.rfftfreq(clip, 1 / sr)
    f[0] = f[1]
    pink = np.fft.irfft((rng.standard_normal((n, len(f))) + 1j * rng.standard_normal((n, len(f)))) / np.sqrt(f), clip)
    pink = 0.3 * pink / pink.std(1, keepdims=True)
    click = np.zeros((n, clip))
    period = sr * 60 // 120 // 2  # eighth notes at 120 BPM, 1-ms Hann clicks
    for i in range(n):
        for p in range(int(rng.integers(0, period)), clip - 8, period):
            click[i, p:p + 8] = 0.8 * np.hanning(8)
    return {"white noise": white, "pink noise": pink, "click track (120 BPM 8ths)": click,
            "new riffs (other seeds)": riffs(range(100, 112), sr, clip)[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sr", type=int, default=8000)
    ap.add_argument("--clip", type=int, default=8192)
    a = ap.parse_args()
    real, files = riffs(range(16), a.sr, a.clip)
    table = Table(title=f"evaluate's verdicts against {len(real)} built-in riff clips ({a.clip} samples at {a.sr} Hz)")
    for col in ("set", "flatness", "onset contrast", "shape (dB)", "onsets/s", "IOI dist. (s)", "timbre verdict",
                "rhythm verdict"):
        table.add_column(col)
    for name, gen in candidates(a.sr, a.clip).items():
        gen = np.asarray(gen, dtype=np.float32)
        no = R._noise(gen, real, a.sr)
        rh = R._rhythm(gen, real, np.full(len(real), np.nan), a.sr, 0, timbre=no["verdict"], real_groups=files)
        table.add_row(name, f"{no['flatness']['generated']:.3f} / {no['flatness']['real']:.3f}",
                      f"{no['onset_contrast']['generated']:.3g} / {no['onset_contrast']['real']:.3g}",
                      f"{no['spectral_shape_db']['generated']:.2f} / {no['spectral_shape_db']['real_baseline']:.2f}",
                      f"{rh['onset_rate']['generated']:.2f} / {rh['onset_rate']['real']:.2f}",
                      f"{rh['ioi_distance']['generated']:.3f} / {rh['ioi_distance']['real_baseline']:.3f}",
                      no["verdict"], rh["verdict"])
    Console(width=200).print(table)
    print("each cell: candidate / real (shape and IOI: real-vs-real baseline)")


if __name__ == "__main__":
    main()
