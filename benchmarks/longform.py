"""Pieces of any length: seams, long-range tempo, speed and memory. Prints tables; not run by the tests.

    .venv/bin/python benchmarks/longform.py [--checkpoint RUN_OR_CKPT] [--quick]

Without --checkpoint the models are untrained (random weights): the speed and memory numbers hold as
they are; the seam numbers then measure the *mechanism* (do chunk joins and latent-frame joins leave a
trace?), not what a trained model has learnt; tempo stability needs a trained model to mean anything.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from djenerator.config import build_config
from djenerator.generate import latents, load_generator
from djenerator.models import build_generator, count_parameters
from djenerator.stream import PiecePlan, iter_piece, seam_statistics

SR = 16000


def _time(fn, min_seconds: float) -> float:
    """Best-of wall time per call (at least 3 calls, for at least ``min_seconds``): the machine may be shared."""
    fn()  # warm-up
    best, n, t_all = float("inf"), 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t_all < min_seconds:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        n += 1
    return best


@torch.no_grad()
def speed(min_seconds: float) -> list[tuple]:
    rows = []
    gens = [("dense (original)", "original", []), ("wavegan d=32 (recommended)", "recommended", []),
            ("wavegan d=64 (paper)", "wavegan", []), ("spectral d=32 (spectral)", "spectral", [])]
    for name, preset, extra in gens:
        torch.manual_seed(0)
        cfg = build_config(preset, [], extra)
        G = build_generator(cfg).eval()
        T = cfg.data.clip_samples
        row = [name, f"{count_parameters(G) / 1e6:.2f}M"]
        for b in (1, 16):
            z = torch.randn(b, cfg.model.latent_dim)
            row.append(b * T / SR / _time(lambda: G(z), min_seconds))
        if getattr(G, "longform", False):  # long pieces: no per-window context overhead
            for b in (1, 16):
                n = 40 if b == 1 else 10  # 10 s / 2.5 s per piece
                zs, st = torch.randn(b, G.frame_dim, n + 2 * G.context_frames), torch.randn(b, cfg.model.latent_dim)
                row.append(b * n * G.frame_samples / SR / _time(lambda: G.render(zs, st), min_seconds))
        else:
            row += [float("nan"), float("nan")]
        rows.append(row)
    return rows


def _spectral(checkpoint):
    if checkpoint:
        G, cfg, step = load_generator(checkpoint)
        return G, cfg, f"trained, step {step}"
    torch.manual_seed(0)
    cfg = build_config("spectral")
    return build_generator(cfg).eval(), cfg, "untrained"


def seams(checkpoint, seconds: float) -> list[tuple]:
    G, cfg, what = _spectral(checkpoint)
    sr = cfg.data.sample_rate
    n = int(seconds * sr)
    plan = PiecePlan.for_generator(G, n, seed=1)
    chunk_frames = 8
    x = np.concatenate(list(iter_piece(G, plan, chunk_frames=chunk_frames)))
    frame_joins = plan.joins
    chunk_joins = frame_joins[chunk_frames - 1::chunk_frames]
    rows = []
    rng = np.random.default_rng(0)
    control = np.sort(rng.choice(np.arange(sr // 10, n - sr // 10), len(frame_joins), replace=False))
    for label, j in [("spectral: latent-frame joins", frame_joins), ("spectral: stream chunk joins", chunk_joins),
                     ("spectral: random positions (control)", control)]:
        rows.append((f"{label} [{what}]", seam_statistics(x, sr, j)))
    # contrast: what concatenating independent fixed windows does (untrained WaveGAN, 16384-sample windows)
    torch.manual_seed(0)
    wcfg = build_config("recommended")
    W = build_generator(wcfg).eval()
    T = wcfg.data.clip_samples
    with torch.no_grad():
        clips = W(latents(int(np.ceil(n / T)), wcfg.model.latent_dim, 1)).numpy()[:, 0]
    y = clips.reshape(-1)[:n]
    rows.append(("wavegan windows concatenated [untrained]", seam_statistics(y, sr, np.arange(1, len(clips)) * T)))
    riff = _riff(seconds, sr)
    rows.append(("built-in riff, same grid as spectral joins", seam_statistics(riff, sr, frame_joins)))
    return rows, x, sr


def _riff(seconds: float, sr: int) -> np.ndarray:
    """A built-in riff at ``sr`` (the synth renders 16-48 kHz; lower rates are resampled)."""
    from djenerator.audio import resample
    from djenerator.synth.djent import render_riff

    riff, _ = render_riff(0, sr=max(sr, 16000), seconds=seconds)
    return resample(riff, max(sr, 16000), sr)


def tempo(x: np.ndarray, sr: int, seconds_each: float = 5.0):
    try:
        from djenerator.dsp.beat import estimate_tempo
    except ImportError:
        return None
    def stretches(sig):
        k = int(seconds_each * sr)
        t = np.array([estimate_tempo(sig[i:i + k], sr) for i in range(0, len(sig) - k + 1, k)])
        med = np.nanmedian(t) if np.isfinite(t).any() else float("nan")
        within = np.mean(np.abs(t / med - 1) <= 0.05) if np.isfinite(med) else 0.0
        return t, med, within

    riff = _riff(len(x) / sr, sr)
    return {"generated": stretches(x), "built-in riff": stretches(riff)}


def memory(checkpoint, minutes_list) -> list[tuple]:
    rows = []
    for minutes in minutes_list:
        code = f"""
import resource, time, torch, sys
torch.set_num_threads(2)
from djenerator.config import build_config
from djenerator.models import build_generator
from djenerator.generate import generate_long_to_file, load_generator
ck = {checkpoint!r}
if ck:
    G, cfg, _ = load_generator(ck)
else:
    torch.manual_seed(0); cfg = build_config('spectral'); G = build_generator(cfg).eval()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
generate_long_to_file(G, sys.argv[1], {minutes * 60}, seed=0, cfg=cfg, progress=False)
dt = time.perf_counter() - t
print(base / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, dt)
"""
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run([sys.executable, "-c", code, str(Path(d) / "p.wav")], capture_output=True, text=True, check=True)
            base, peak, dt = map(float, out.stdout.split())
            size = (Path(d) / "p.wav").stat().st_size / 2**20
        rows.append((minutes, base, peak, dt, size))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default=None, help="a trained spectral run or checkpoint (default: untrained)")
    ap.add_argument("--quick", action="store_true", help="shorter timings, 1-minute memory check only")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the seam/tempo piece")
    a = ap.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU\n")

    print("## Speed: seconds of audio per wall second (16 kHz; eval mode, no grad; best of several calls)")
    print("| generator | params | clips b=1 | clips b=16 | long piece b=1 | long pieces b=16 |")
    print("|---|---|---|---|---|---|")
    for name, p, *v in speed(0.5 if a.quick else 2.0):
        print(f"| {name} | {p} | " + " | ".join("-" if np.isnan(x) else f"{x:.1f}" for x in v) + " |")
    print("(clips: G(z) for 16384-sample windows; the spectral forward renders 3 context frames each side plus "
          "one for the random training offset, so a 1-s clip costs 4 + 2*3 + 1 = 11 latent frames; long pieces: G.render on 10 s.)\n")

    rows, x, sr = seams(a.checkpoint, a.seconds)
    print(f"## Seams in a {a.seconds:g}-s piece (percentile of each join among all positions; KS p vs uniform)")
    print("| where | joins | jump ratio | jump KS p | flux ratio | flux KS p | flagged (p<0.005) |")
    print("|---|---|---|---|---|---|---|")
    for label, s in rows:
        print(f"| {label} | {s['n_joins']} | {s['jump_ratio']:.2f} | {s['jump_p']:.3g} | {s['flux_ratio']:.2f} | "
              f"{s['flux_p']:.3g} | {s['flagged']} |")
    print()

    t = tempo(x, sr)
    if t is None:
        print("## Tempo: djenerator.evaluate.rhythm not available\n")
    else:
        print("## Long-range tempo: estimate_tempo per 5-s stretch")
        print("| signal | tempi (BPM) | median | share within 5% of median |")
        print("|---|---|---|---|")
        for k, (ts, med, within) in t.items():
            print(f"| {k} | {' '.join(f'{v:.0f}' for v in ts)} | {med:.1f} | {within:.0%} |")
        print()

    print("## Memory: streamed piece to a wav file (subprocess; ru_maxrss)")
    print("| minutes | RSS after loading (MiB) | peak RSS (MiB) | wall (s) | x real time | file (MiB) |")
    print("|---|---|---|---|---|---|")
    for minutes, base, peak, dt, size in memory(a.checkpoint, [1] if a.quick else [1, 10]):
        print(f"| {minutes} | {base:.0f} | {peak:.0f} | {dt:.1f} | {minutes * 60 / dt:.1f} | {size:.1f} |")


if __name__ == "__main__":
    main()
