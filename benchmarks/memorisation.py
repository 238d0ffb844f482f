"""Time the memorisation search: 64 generated clips against N training clips (default 10,000 x 16384).

    .venv/bin/python benchmarks/memorisation.py [--n-train 10000] [--n-gen 64] [--samples 16384]

Training clips are random-phase noise written to a np.memmap in a temp dir (read chunk by chunk,
as a prepared dataset is); a few generated clips are planted shifted/rescaled copies so the table
also shows they are found. Prints one row per training-set size: clips, seconds, clips/s.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from djenerator.evaluate.memorisation import max_normalized_xcorr


def make_train(path: Path, n: int, T: int, seed: int = 0) -> np.memmap:
    rng = np.random.default_rng(seed)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, T))
    for s in range(0, n, 1000):
        k = min(1000, n - s)
        mm[s:s + k] = (0.1 * rng.standard_normal((k, T))).astype(np.float32)
    mm.flush()
    del mm
    return np.load(path, mmap_mode="r")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--samples", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=8, help="training clips per FFT chunk")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", type=int, nargs="*", help="training-set sizes to time (default: 500 and --n-train)")
    args = ap.parse_args()
    sizes = args.sizes or sorted({min(500, args.n_train), args.n_train})
    T = args.samples
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as d:
        train = make_train(Path(d) / "clips.npy", max(sizes), T)
        gen = (0.1 * rng.standard_normal((args.n_gen, T))).astype(np.float32)
        planted = [(0, 7, 1234), (1, max(sizes) - 1, -2000)]  # (gen row, train row, lag)
        for row, src, lag in planted:
            x = np.asarray(train[src])
            gen[row] = 0.3 * np.roll(x, -lag) + 0.001 * rng.standard_normal(T)
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
              f"{args.n_gen} generated x {T} samples, batch {args.batch}")
        print(f"{'train clips':>12} {'seconds':>9} {'clips/s':>9}  planted copies found")
        for n in sizes:
            t0 = time.perf_counter()
            idx, corr, lag = max_normalized_xcorr(gen, train[:n], batch=args.batch, device=args.device)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            found = [bool(idx[r] == s and lag[r] == l and corr[r] > 0.95) for r, s, l in planted if s < n]
            print(f"{n:>12} {dt:>9.1f} {n / dt:>9.0f}  {sum(found)}/{len(found)}; "
                  f"max corr of the rest {np.delete(corr, [p[0] for p in planted]).max():.3f}")


if __name__ == "__main__":
    main()
