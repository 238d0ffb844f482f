"""Train presets side by side for the same process CPU time, then judge what they make on one table.

    python benchmarks/quality.py --real data/real/nexuiz --cpu-minutes 30                 # + the built-in data
    python benchmarks/quality.py --real data/real/nexuiz --presets laptop,wavegan --cpu-minutes 5 --jobs 2

Each (set, preset) is prepared at the preset's own rate and clip length and trained in its own process,
stopped (Ctrl-C, so it saves a checkpoint) once that process has used ``--cpu-minutes`` of CPU time: machine
load changes the steps a run gets per wall-clock second, not per CPU second, so the comparison holds on a
busy machine. Each model's output is resampled to every ``--eval-sr`` and cut into 1-s segments, each scaled to
peak 0.95 like the real clips (so a model is not judged on its segments' loudness), and the table gives per set,
rate and preset:

- FD and KID of log-mel clip statistics against the real segments, with the real-vs-real floor (two halves);
- spectral flatness, onset rate and the inter-onset-interval distance (generated vs real; IOI beside its floor);
- tonal: the share of energy in harmonic lines (``metrics.tonal_share``; noise ~0, a drone ~1), generated vs real;
- drone: the share of that line energy held all segment long (``metrics.drone_share``; changing notes ~0, a drone
  ~1), generated and real (a difference: real is often ~0);
- pattern: how alike the segments' fine structure is from one to the next (``metrics.fine_structure_similarity``;
  recordings ~0.1-0.2, a decoder that draws one texture for every clip, steady lines or a fixed wash, ~0.6-0.9),
  generated and real;
- bar: bar-level repetition of 30-s pieces (``evaluate.structure``; models that make any length), beside the real
  one of the middle 30 s of up to 32 of the set's files (``REAL_PIECES``; it ranges ~0 to ~0.6 from track to track);
- copies: generated clips whose normalised cross-correlation with a training clip reaches 0.8;
- steps done (and the step of the weights a run kept, ``train.best_every``) and CPU seconds used.

A GAN's score after a short run moves a lot with its seed (several-fold in FD at a few hundred steps), so one run
per arm cannot rank two variants: ``--seeds 0,1,2`` trains every (set, preset) once per ``train.seed`` and adds a
table of the median and range over seeds of each score against its reference.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from djenerator.audio import AudioError, load_audio, peak_normalize, resample, rms_db
from djenerator.config import DataConfig, build_config
from djenerator.data.dataset import ClipDataset
from djenerator.data.prepare import find_audio, prepare
from djenerator.io import atomic_write_text
from djenerator.evaluate import metrics
from djenerator.evaluate.features import clip_features
from djenerator.evaluate.memorisation import max_normalized_xcorr
from djenerator.evaluate.structure import bar_repetition
from djenerator.checkpoint import load_checkpoint
from djenerator.generate import generate_clips, generate_long, generator_of
from djenerator.stream import is_longform
from djenerator.synth import synth_dataset

PIECE_SECONDS = 30.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


GRACE_S = 10.0  # CPU seconds a child may run past its budget (its imports; its closing checkpoint) before Ctrl-C


def train_for_cpu(data: Path, preset: str, run: Path, cpu_budget: float, threads: int, extra: list[str]) -> dict:
    """Train ``preset`` in a child process for ``cpu_budget`` CPU seconds: it stops itself at its budget (counted
    from its start of training) and ends as a user's run does; Ctrl-C only if it runs 10 s past it."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "DJENERATOR_THREADS": str(threads)}
    sets = ["train.steps=100000000", "train.sample_every=100000000", "train.ckpt_every=100000000", *extra]
    cmd = [sys.executable, "-m", "djenerator", "train", str(data), "--preset", preset, "--run", str(run),
           "--cpu-minutes", f"{cpu_budget / 60:g}"]  # the trainer knows its budget (train.lr_fall reads it)
    cmd += [a for s in sets for a in ("--set", s)]
    t0, used = time.perf_counter(), 0.0
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(run.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None and used < cpu_budget + GRACE_S:
            time.sleep(1.0)
            try:
                used = cpu_seconds(proc.pid)
            except (FileNotFoundError, ProcessLookupError):
                break
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"training {preset} on {data} failed; see {run.with_suffix('.log')}")
    return {"cpu_s": used, "wall_s": time.perf_counter() - t0}


def prepared(raw: Path, work: Path, sr: int, clip: int, hop: int) -> Path:
    out = work / f"ds_{raw.name}_{sr}_{clip}_{hop}"
    if not (out / "manifest.json").is_file():
        prepare(raw, out, DataConfig(sample_rate=sr, clip_samples=clip, hop_samples=hop), progress=False,
                log=lambda m: None)
    return out


def dataset_for(raw: Path, preset: str, work: Path) -> Path:
    """``raw`` prepared at ``preset``'s rate and clip length (once; later calls find it)."""
    d = build_config(preset).data
    return prepared(raw, work, d.sample_rate, d.clip_samples, d.hop_samples or d.clip_samples // 2)


def segments(clips: np.ndarray, sr_in: int, sr_out: int, seconds: float = 1.0) -> np.ndarray:
    """Every clip resampled to ``sr_out`` and cut into whole segments of ``seconds``, each scaled to peak 0.95 as
    ``prepare`` scales the real segments (data.normalize "peak"): (n, seconds * sr_out). Without that a model whose
    clips are longer than 1 s is judged on the loudness of its segments (the quiet seconds of a peak-normalised
    6-s clip) more than on their sound. Segments that prepare would drop as silent (data.silence_db) stay as they are."""
    seg, silence_db = int(round(seconds * sr_out)), DataConfig().silence_db
    out = []
    for c in clips:
        r = resample(np.asarray(c, dtype=np.float32), sr_in, sr_out) if sr_in != sr_out else np.asarray(c, np.float32)
        out += [r[i:i + seg] for i in range(0, len(r) - seg + 1, seg)]
    out = [peak_normalize(x) if rms_db(x) >= silence_db else x for x in out]
    return np.stack(out) if out else np.zeros((0, seg), np.float32)


REAL_PIECES = 32  # source files (at most) whose middle 30 s give the real bar repetition: it varies a lot by track


def real_reference(raw: Path, work: Path, sr: int, n_max: int, n_pieces: int = REAL_PIECES) -> dict:
    """Real 1-s segments at ``sr`` and the bar repetition of the middle 30 s of up to ``n_pieces`` source files."""
    ds = ClipDataset(prepared(raw, work, sr, sr, sr))
    idx = np.random.default_rng(0).permutation(len(ds))[:n_max]
    segs = np.asarray(ds.clips[np.sort(idx)], dtype=np.float32)
    bars = []
    for path in find_audio(raw)[:n_pieces]:
        try:
            x, _ = load_audio(path, sr)
        except AudioError:  # prepare skipped it too
            continue
        mid = max(0, (len(x) - int(PIECE_SECONDS * sr)) // 2)
        if len(x) >= PIECE_SECONDS * sr:
            bars.append(bar_repetition(x[mid:mid + int(PIECE_SECONDS * sr)], sr))
    return {"segments": segs, "features": clip_features(segs, sr), "bars": bars}


def judge(gen: np.ndarray, sr: int, ref: dict) -> dict:
    """Distances, noise and rhythm of generated segments against the real ones, all at ``sr``."""
    real, rf = ref["segments"], ref["features"]
    gf = clip_features(gen, sr)
    kid, kid_se = metrics.kernel_distance(gf, rf)
    rs_gen, rs_real = metrics.rhythm_stats(gen, sr), metrics.rhythm_stats(real, sr)
    half = len(real) // 2
    rs_a, rs_b = metrics.rhythm_stats(real[:half], sr), metrics.rhythm_stats(real[half:], sr)
    return {
        "fd": metrics.frechet_distance(gf, rf, warn=False),
        "fd_floor": metrics.real_baseline(rf, metrics.frechet_distance, warn=False),
        "kid": kid, "kid_se": kid_se, "kid_floor": metrics.real_baseline(rf, metrics.kernel_distance)[0],
        "flat_gen": float(np.mean(metrics.spectral_flatness(gen, sr))),
        "flat_real": float(np.mean(metrics.spectral_flatness(real, sr))),
        **{f"{k}_{side}": float(v) for side, clips in (("gen", gen), ("real", real))
           for k, v in zip(("tonal", "drone"), metrics.harmonic_lines(clips, sr).mean(0))},
        "pattern_gen": metrics.fine_structure_similarity(gen, sr)[0],
        "pattern_real": metrics.fine_structure_similarity(real, sr)[0],
        "onsets_gen": rs_gen["onset_rate_mean"], "onsets_real": rs_real["onset_rate_mean"],
        "ioi": metrics.ioi_distance(rs_gen["ioi_hist"], rs_real["ioi_hist"]),
        "ioi_floor": metrics.ioi_distance(rs_a["ioi_hist"], rs_b["ioi_hist"]),
    }


def model_output(run: Path, n: int, n_pieces: int, repeat: float | None = None) -> dict:
    """n clips and, for models that make any length, ``n_pieces`` 30-s pieces, at the model's own rate (with
    ``repeat`` of their latents locked to the bar where the model has a bar clock; None: the model's default)."""
    ck = load_checkpoint(run)  # a run folder: its latest checkpoint
    G, cfg, kept = generator_of(ck)  # a run that keeps its best weights plays those (kept: their step)
    step = int(ck["step"])  # the steps the run did
    extra = {"repeat": repeat} if repeat is not None and hasattr(G, "lock_to_bar") else {}
    with torch.no_grad():
        clips = generate_clips(G, cfg, n, seed=0)
        pieces = [generate_long(G, cfg, PIECE_SECONDS, seed=s, **extra) for s in range(n_pieces)] if is_longform(G) else []
    return {"clips": np.asarray(clips), "pieces": pieces, "sr": cfg.data.sample_rate, "step": step,
            "kept_step": kept, "train_data": cfg.data}


def copies(clips: np.ndarray, train_ds: Path, n_check: int = 16) -> int:
    ds = ClipDataset(train_ds)
    _, corr, _ = max_normalized_xcorr(clips[:n_check], ds.clips)
    return int((corr >= 0.8).sum())


def bar_score(pieces: list[np.ndarray], sr: int) -> float:
    scores = [bar_repetition(p, sr)["score"] for p in pieces]
    finite = [s for s in scores if np.isfinite(s)]
    return float(np.mean(finite)) if finite else float("nan")


def run_one(set_name: str, raw: Path, preset: str, seed: int | None, args, work: Path) -> dict:
    """Train one (set, preset, seed) for the CPU budget and sample it; ``seed`` None keeps the config's."""
    data = dataset_for(raw, preset, work)
    run = work / "runs" / (f"{set_name}_{preset}" + ("" if seed is None else f"_seed{seed}"))
    extra = (args.set or []) + ([] if seed is None else [f"train.seed={seed}"])
    done = run / "benchmark.json"
    if args.reuse and done.is_file():  # trained by an earlier, interrupted call: judge it again
        used = json.loads(done.read_text())
    else:
        used = train_for_cpu(data, preset, run, args.cpu_minutes * 60, args.threads, extra)
        atomic_write_text(done, json.dumps(used))
    out = model_output(run, args.n, args.pieces, args.repeat)
    return {"set": set_name, "preset": preset, "seed": seed, **used, "step": out["step"], "out": out, "data": data}


def ratios(r: dict) -> dict:
    """Each score of one row against its reference: FD and IOI over their real-vs-real floors, the rest over real."""
    j = r["judge"]
    return {"FD / floor": j["fd"] / j["fd_floor"], "flatness gen/real": j["flat_gen"] / j["flat_real"],
            "tonal gen/real": j["tonal_gen"] / j["tonal_real"],
            "drone gen-real": j.get("drone_gen", np.nan) - j.get("drone_real", np.nan),  # judged before: nan
            "pattern gen-real": j.get("pattern_gen", np.nan) - j.get("pattern_real", np.nan),
            "onsets gen/real": j["onsets_gen"] / j["onsets_real"],
            "IOI / floor": j["ioi"] / j["ioi_floor"],
            "bar gen/real": r["bar_gen"] / r["bar_real"]}


def spread_table(rows: list[dict]) -> Table:
    """Median [min - max] over seeds of every ratio, per set, rate and preset."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["eval_sr"], r["preset"]), []).append(ratios(r))
    t = Table(title=r"over seeds: median \[min - max]")  # "\[" escapes rich markup
    for col in ("set", "eval sr", "preset", "seeds", *ratios(rows[0])):
        t.add_column(col, justify="left" if col in ("set", "preset") else "right")
    for (set_name, sr, preset), rs in groups.items():
        cells = [np.array([x[k] for x in rs]) for k in rs[0]]
        t.add_row(set_name, str(sr), preset, str(len(rs)),
                  *[f"{np.nanmedian(c):.2f} [{np.nanmin(c):.2f} - {np.nanmax(c):.2f}]" for c in cells])
    return t


def _steps(r: dict) -> str:
    """Steps the run did, and the step of the weights it kept where they are earlier (train.best_every)."""
    kept = r.get("kept_step", r["step"])
    return str(r["step"]) + (f" (kept {kept})" if kept != r["step"] else "")


def table(rows: list[dict], title: str) -> Table:
    t = Table(title=title)
    for col in ("set", "eval sr", "preset", "seed", "model sr", "steps", "CPU s", "FD / floor", "KID (floor)",
                "flatness gen/real", "tonal gen/real", "drone gen/real", "pattern gen/real", "onsets/s gen/real", "IOI (floor)", "bar gen/real", "copies"):
        t.add_column(col, justify="right" if col not in ("set", "preset") else "left")
    for r in rows:
        j = r["judge"]
        seed = "-" if r["seed"] is None else str(r["seed"])
        t.add_row(r["set"], str(r["eval_sr"]), r["preset"], seed, str(r["model_sr"]), _steps(r), f"{r['cpu_s']:.0f}",
                  f"{j['fd']:.1f} / {j['fd_floor']:.1f} = {j['fd'] / j['fd_floor']:.1f}x",
                  f"{j['kid']:.3g} +- {j['kid_se']:.2g} ({j['kid_floor']:.2g})",
                  f"{j['flat_gen']:.3f} / {j['flat_real']:.3f}", f"{j['tonal_gen']:.2f} / {j['tonal_real']:.2f}",
                  f"{j.get('drone_gen', np.nan):.2f} / {j.get('drone_real', np.nan):.2f}",
                  f"{j.get('pattern_gen', np.nan):.2f} / {j.get('pattern_real', np.nan):.2f}",
                  f"{j['onsets_gen']:.2f} / {j['onsets_real']:.2f}",
                  f"{j['ioi']:.3f} ({j['ioi_floor']:.3f})", f"{r['bar_gen']:.2f} / {r['bar_real']:.2f}",
                  str(r["copies"]))
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", action="append", default=[], help="folder of recorded music (repeatable)")
    ap.add_argument("--no-builtin", action="store_true", help="skip the built-in synth set")
    ap.add_argument("--presets", default="laptop,wavegan", help="comma-separated preset names")
    ap.add_argument("--cpu-minutes", type=float, default=30.0, help="process CPU minutes per training run")
    ap.add_argument("--threads", type=int, default=1, help="threads per training run")
    ap.add_argument("--jobs", type=int, default=1, help="training runs at a time")
    ap.add_argument("--eval-sr", default="22050,16000", help="rates the output is judged at")
    ap.add_argument("-n", type=int, default=64, help="generated clips per model")
    ap.add_argument("--pieces", type=int, default=4, help="30-s pieces per model (bar repetition)")
    ap.add_argument("--repeat", type=float, default=None, help="pieces: the share of the latents locked to the bar "
                    "(generate --repeat), for models with a bar clock (default: each model's model.bar_repeat)")
    ap.add_argument("--seeds", default=None, help="comma-separated train.seed values: each preset trains once per seed")
    ap.add_argument("--set", action="append", help="a config override for every run, e.g. train.batch_size=8")
    ap.add_argument("--work", type=Path, default=None, help="keep data and runs here (default: a temp folder)")
    ap.add_argument("--reuse", action="store_true", help="judge runs that an earlier call in --work finished, "
                    "without training them again")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="djenerator_quality_"))
    work.mkdir(parents=True, exist_ok=True)
    sets = [(Path(p).name, Path(p)) for p in args.real]
    if not args.no_builtin:
        raw = work / "builtin"
        if not (raw / "metadata.json").is_file():
            synth_dataset(raw, n_files=24, seconds=PIECE_SECONDS, sr=22050, seed=0, progress=False)
        sets.append(("builtin", raw))
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [None]
    jobs = [(s, raw, p, seed) for s, raw in sets for p in args.presets.split(",") for seed in seeds]
    for _, raw, preset, _ in jobs:  # before the pool: two runs of one set must not prepare it at once
        dataset_for(raw, preset, work)
    with ThreadPoolExecutor(args.jobs) as pool:
        trained = list(pool.map(lambda j: run_one(*j, args, work), jobs))
    console, rows = Console(width=240), []
    n_copies = [copies(tr["out"]["clips"], tr["data"]) for tr in trained]  # at the model's own rate, once
    for sr in [int(s) for s in args.eval_sr.split(",")]:
        refs = {s: real_reference(raw, work, sr, 1000) for s, raw in sets}
        for tr, n_copy in zip(trained, n_copies):
            out, ref = tr["out"], refs[tr["set"]]
            gen = segments(out["clips"], out["sr"], sr)
            bar_real = float(np.nanmean([b["score"] for b in ref["bars"]])) if ref["bars"] else float("nan")
            pieces = [resample(p, out["sr"], sr) for p in out["pieces"]]
            rows.append({"set": tr["set"], "eval_sr": sr, "preset": tr["preset"], "seed": tr["seed"],
                         "model_sr": out["sr"], "step": tr["step"], "kept_step": out["kept_step"],
                         "cpu_s": tr["cpu_s"], "judge": judge(gen, sr, ref),
                         "bar_gen": bar_score(pieces, sr), "bar_real": bar_real,
                         "copies": n_copy})
    console.print(table(rows, f"{args.cpu_minutes:g} CPU-minutes per run, {args.threads} thread(s)"))
    if len(seeds) > 1:
        console.print(spread_table(rows))
    out = work / ("quality.json" if args.repeat is None else f"quality_repeat{args.repeat:g}.json")
    out.write_text(json.dumps([{k: v for k, v in r.items()} for r in rows], indent=1, default=float))
    console.print(f"rows in {out}")


if __name__ == "__main__":
    main()
