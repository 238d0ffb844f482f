"""The moving average against the trained weights of one two-stage run, judged like benchmarks/quality.py.

    python benchmarks/ema_ab.py RUN REAL_FOLDER --work QUALITY_WORK [-n 64] [--eval-sr 22050]

Generates ``-n`` clips from the run's latest checkpoint twice: with ``G`` (the moving average, what every output
uses when ``train.ema`` > 0) and with ``G_train`` (the weights the optimiser trained), and prints FD / KID /
flatness / onset rate of each against the real 1-s segments (``quality.real_reference``, reusing QUALITY_WORK).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402

from djenerator.checkpoint import resolve_checkpoint, load_checkpoint  # noqa: E402
from djenerator.generate import generate_clips, generator_of  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("real", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--eval-sr", type=int, default=22050)
    a = ap.parse_args()
    torch.set_num_threads(1)
    ck = load_checkpoint(resolve_checkpoint(a.run))
    if "G_train" not in ck:
        sys.exit(f"{a.run}: no G_train in its checkpoint (trained with train.ema = 0)")
    ref = quality.real_reference(a.real, a.work, a.eval_sr, 1000, 0)
    print(f"| {Path(a.run).name} step {ck['step']} | FD / floor | KID | flatness gen / real | onsets/s gen / real |")
    print("|---|---|---|---|---|")
    for name, key in (("moving average (G)", "G"), ("trained weights (G_train)", "G_train")):
        G, cfg, _ = generator_of({**ck, "G": ck[key]}, best=False)
        with torch.no_grad():
            clips = np.asarray(generate_clips(G, cfg, a.n, seed=0))
        j = quality.judge(quality.segments(clips, cfg.data.sample_rate, a.eval_sr), a.eval_sr, ref)
        print(f"| {name} | {j['fd']:.1f} / {j['fd_floor']:.1f} = {j['fd'] / j['fd_floor']:.1f}x | {j['kid']:.3g} | "
              f"{j['flat_gen']:.3f} / {j['flat_real']:.3f} | {j['onsets_gen']:.2f} / {j['onsets_real']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
