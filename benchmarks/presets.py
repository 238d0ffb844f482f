"""Train every preset for the same wall-clock budget and compare what comes out.

    python benchmarks/presets.py                      # built-in Djent data, 3 minutes per preset
    python benchmarks/presets.py --minutes 10 --data /path/to/wavs --presets recommended,spectral

Prints one row per preset: steps done, steps/s, spectral flatness and energy above sr/4 of generated vs
real audio (the white-noise measures), Frechet distance as a ratio to the real-vs-real baseline,
diversity ratio and the highest correlation of any generated clip with a training clip (copying).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from djenerator.config import build_config
from djenerator.data.prepare import prepare
from djenerator.evaluate.report import evaluate
from djenerator.presets import PRESETS
from djenerator.synth import synth_dataset
from djenerator.train import train


def dataset_for(data: str | None, work: Path, cfg) -> Path:
    raw = Path(data) if data else work / "builtin_audio"
    if data is None and not raw.exists():
        synth_dataset(raw, n_files=16, seconds=8.0, sr=cfg.data.sample_rate, seed=0, progress=False)
    ds = work / f"ds_{cfg.data.sample_rate}_{cfg.data.clip_samples}"
    if not (ds / "manifest.json").exists():
        cfg.data.hop_samples = cfg.data.clip_samples // 2
        prepare(raw, ds, cfg.data, progress=False, log=lambda m: None)
    return ds


def run_preset(name: str, data: str | None, work: Path, minutes: float, n_eval: int, sets: list[str]) -> dict:
    cfg = build_config(name, [], ["train.steps=1000000", "train.ckpt_every=1000000", "train.sample_every=1000000",
                                  "train.log_every=10", *sets])
    ds = dataset_for(data, work, cfg)
    run = work / "runs" / name
    t0 = time.perf_counter()
    res = train(cfg, ds, run, progress=False, log=lambda m: None, max_seconds=minutes * 60)
    wall = time.perf_counter() - t0
    rep = evaluate(run, ds, n=n_eval, plots=False, max_real=1000)
    return {
        "preset": name, "steps": res.step, "steps_per_s": res.step / wall, "stopped": res.stopped,
        "flat_gen": rep["noise"]["flatness"]["generated"], "flat_real": rep["noise"]["flatness"]["real"],
        "hf_gen": rep["noise"]["hf_ratio"]["generated"], "hf_real": rep["noise"]["hf_ratio"]["real"],
        "fd_ratio": rep["distribution"]["frechet"]["ratio"],
        "diversity": rep["diversity"]["ratio"],
        "max_corr": rep["memorisation"]["max_corr"], "flagged": rep["memorisation"]["n_flagged"],
        "warnings": len(res.warnings),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget per preset")
    ap.add_argument("--presets", default=",".join(p for p in PRESETS), help="comma-separated preset names")
    ap.add_argument("--data", default=None, help="folder of audio (default: the built-in Djent data)")
    ap.add_argument("--work", default=None, help="folder for datasets and runs (default: a temporary one)")
    ap.add_argument("-n", type=int, default=32, help="generated clips to evaluate")
    ap.add_argument("--set", action="append", default=[], help="extra override for every preset, e.g. train.device=cuda")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="djen-presets-"))
    console = Console(width=200)
    rows = []
    for name in [p.strip() for p in args.presets.split(",") if p.strip()]:
        console.print(f"training {name} for {args.minutes:g} min ...")
        rows.append(run_preset(name, args.data, work, args.minutes, args.n, args.set))
    table = Table(title=f"presets, {args.minutes:g} min each on {args.data or 'built-in Djent data'}")
    for col in ("preset", "steps", "steps/s", "flatness gen / real", "HF share gen / real", "FD / baseline",
                "diversity ratio", "max corr (copies)", "health warnings"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["preset"], str(r["steps"]), f"{r['steps_per_s']:.2f}", f"{r['flat_gen']:.3f} / {r['flat_real']:.3f}",
                      f"{r['hf_gen']:.3f} / {r['hf_real']:.3f}", f"{r['fd_ratio']:.1f}", f"{r['diversity']:.2f}",
                      f"{r['max_corr']:.2f} ({r['flagged']})", str(r["warnings"]))
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
