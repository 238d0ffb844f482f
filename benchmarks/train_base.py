"""Train the shipped base model (src/djenerator/base/<preset>.pt) on the built-in riffs only, and pick its checkpoint.

    OMP_NUM_THREADS=1 python benchmarks/train_base.py --steps 8000   # writes src/djenerator/base/laptop.pt

1. ``djenerator synth`` (64 riffs, seed 0: the demo's 32 riffs and 32 more), ``prepare`` at the preset's rate;
2. ``train`` the preset (resumable: run it again with more --steps to go on);
3. score checkpoints from ``--from-step`` on: 30-s pieces of several seeds (never one clip) against the riffs on
   spectral flatness, onset rate and energy CV (djenerator.evaluate.piece); the checkpoint whose worst measure is
   closest to its target band wins (ties: the later one);
4. export it with ``djenerator.base.export_base`` (weights_only-loadable, a few MB) and print the table.
Use one thread (OMP_NUM_THREADS=1) beside other work.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from djenerator.base import export_base
from djenerator.checkpoint import list_checkpoints, load_checkpoint
from djenerator.config import build_config
from djenerator.evaluate.piece import TARGETS, audio_stats, compare, folder_stats
from djenerator.generate import generate_long, generator_of


def score(cmp: dict) -> float:
    """How far the worst measure is outside its band, in units of the band's log-width (<= 1: all inside)."""
    worst = 0.0
    for k, c in cmp.items():
        lo, hi = TARGETS[k]
        r = max(c["ratio"], 1e-9)
        worst = max(worst, math.log(r) / math.log(hi) if r >= 1 else math.log(r) / math.log(lo))
    return worst


def piece_stats(ckpt: Path, seeds: list[int], seconds: float) -> dict[str, float]:
    """Mean piece statistics over ``seeds``."""
    G, cfg, _ = generator_of(load_checkpoint(ckpt))
    stats = [audio_stats(generate_long(G, cfg, seconds, seed=s), cfg.data.sample_rate) for s in seeds]
    return {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}


def prepare_data(work: Path, preset: str, files: int, seed: int) -> tuple[Path, Path]:
    from djenerator.data.prepare import prepare
    from djenerator.synth import synth_dataset

    raw, data = work / "riffs", work / "dataset"
    if not (raw / "metadata.json").is_file():
        synth_dataset(raw, n_files=files, seconds=8.0, sr=16000, seed=seed)
    if not (data / "manifest.json").is_file():
        prepare(raw, data, build_config(preset).data)
    return raw, data


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("base_work"))
    ap.add_argument("--preset", default="laptop")
    ap.add_argument("--steps", type=int, default=16000)
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=500, help="checkpoint every N steps (all kept)")
    ap.add_argument("--from-step", type=int, default=4000, help="score checkpoints from this step on")
    ap.add_argument("--pieces", type=int, default=5, help="30-s pieces per checkpoint")
    ap.add_argument("--no-train", action="store_true", help="only score and export")
    ap.add_argument("--out", type=Path, default=None, help="default: src/djenerator/base/<preset>.pt")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    raw, data = prepare_data(a.work, a.preset, a.files, a.seed)
    run = a.work / "run"
    if not a.no_train:
        from djenerator.train import train

        cfg = build_config(a.preset, overrides=[f"train.steps={a.steps}", f"train.ckpt_every={a.every}",
                                                f"train.sample_every={a.every * 4}", "train.keep_checkpoints=1000",
                                                "train.copy_check_clips=0"])
        train(cfg, data, run, resume=True)
    sr = build_config(a.preset).data.sample_rate
    real = folder_stats(raw, sr)
    print(f"riffs: " + "  ".join(f"{k} {v:.3f}" for k, v in real.items()), flush=True)
    rows = []
    for ck in list_checkpoints(run):
        step = int(ck.stem.split("_")[1])
        if step < a.from_step:
            continue
        t0 = time.perf_counter()
        cmp = compare(piece_stats(ck, list(range(a.pieces)), 30.0), real)
        rows.append((score(cmp), step, ck, cmp))
        print(f"step {step:6d}  score {rows[-1][0]:.2f}  " + "  ".join(
            f"{k} {c['generated']:.3f} (x{c['ratio']:.2f}{'' if c['ok'] else ' !'})" for k, c in cmp.items())
            + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
    if not rows:
        sys.exit(f"no checkpoint at or after step {a.from_step} in {run}")
    best = min(rows, key=lambda r: (round(r[0], 2), -r[1]))
    out = a.out or Path(__file__).resolve().parents[1] / "src" / "djenerator" / "base" / f"{a.preset}.pt"
    last = int(list_checkpoints(run)[-1].stem.split("_")[1])  # --steps that retrains this run exactly
    cmd = (f"python benchmarks/train_base.py --preset {a.preset} --steps {last} --files {a.files} --seed {a.seed} "
           f"--every {a.every} --from-step {a.from_step} --pieces {a.pieces}")
    prov = {"command": cmd, "step": best[1], "trained_steps": last,
            "data": f"djenerator synth -n {a.files} --seed {a.seed} (built-in riffs only), prepared with preset {a.preset}",
            "picked_by": f"piece flatness / onset rate / energy CV vs the riffs, {a.pieces} 30-s pieces per checkpoint",
            "metrics": {k: {kk: (vv if isinstance(vv, bool) else float(vv)) for kk, vv in c.items()} for k, c in best[3].items()}}
    export_base(best[2], out, a.preset, prov)
    print(f"picked step {best[1]} (score {best[0]:.2f}) -> {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
