"""Few recordings: does augmentation + ADA cut copying and the distance to held-back data?

    .venv/bin/python benchmarks/few_files.py [--preset few] [--sr 16000] [--clip N] [--hop N] [--steps 1500]
        [--run-seconds 70] [--sets djent plucks real] [--real data/real/nexuiz] [--device auto] [--out DIR]
        [--ckpt-every N --select] [--rescore]

Sets of 8 training files, each with 8 held-back files made the same way (never trained on; ``--held-seconds``
long, 4x the training files by default, so that the distances rest on more clips than there are to train on):
- ``djent``: the built-in procedural Djent riffs (``djenerator.synth.synth_dataset``), ``--seconds`` each;
- ``plucks``: a differently made set built here: clean plucked-string arpeggios over a soft kick/hat
  pulse (additive partials with per-partial decay, major/minor chords, random key and tempo);
- ``real``: recorded music (``--real``, e.g. the Nexuiz soundtrack from ``benchmarks/fetch_real_music.sh``):
  a ``--seconds`` excerpt from the middle of each of the first 8 files to train on, of the next 8 to hold back.
For each set the preset is trained twice for the same number of steps and seed, with and without
augmentation (the run with augmentation goes first, it is slower; the other run gets exactly the steps it
reached; ``--run-seconds 0`` means no time cap). With augmentation the ``few`` preset's ops and ADA are used
whatever the preset. Then 64 clips are generated and compared: copies flagged by ``memorisation_report``
(normalised xcorr >= 0.8), highest corr with any training clip, the data-copying z (Meehan et al. 2020:
generated vs held-back clips' distance 1 - corr to their nearest training clip; << 0 = copying, ~0 = as
new as real music of the kind, >> 0 = unlike it), KID and Frechet distance on ``clip_features`` to the
held-back clips, coverage and precision of the held-back clips (Naeem et al. 2020; k = 5), and diversity
(mean pairwise feature distance; the held-back clips' own value for reference). A first row scores
real music the same way, for scale: the held-back clips' correlation with the training clips (what an
original clip of the same style reaches), the training clips' KID/FD to the held-back ones and their diversity.
With ``--select`` every kept checkpoint (``--ckpt-every``) is scored, and each run also gets the checkpoint
a user heeding the copy warning would keep: of those with no copies, the one nearest (KID) the clips of every
other held-back file; its distance is reported to the remaining files, which the choice never saw. That is
the fair comparison when the plain run replays: a replay is as near the held-back music as the training clip
itself, which nothing new can beat, so its raw distance rewards the copying. ``--rescore`` scores the data and
runs already in ``--out``.
Results stream to stdout and ``--out/results.jsonl``. Tempo control is measured by ``benchmarks/tempo.py``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from djenerator.audio import write_wav
from djenerator.checkpoint import list_checkpoints, load_checkpoint
from djenerator.config import ConfigError, build_config
from djenerator.data.dataset import ClipDataset
from djenerator.data.prepare import prepare
from djenerator.evaluate.features import clip_features
from djenerator.evaluate.memorisation import data_copying_z, memorisation_report
from djenerator.evaluate.metrics import diversity, fidelity_coverage, frechet_distance, kernel_distance, standardise
from djenerator.generate import generate_clips, generator_of
from djenerator.models import build_generator
from djenerator.synth import synth_dataset
from djenerator.train import train

SR = 16000


# --- the second, differently made set ---------------------------------------------------------------
def render_plucks(seed: int, sr: int = SR, seconds: float = 8.0) -> tuple[np.ndarray, dict]:
    rng = np.random.default_rng(10_000 + seed)
    bpm = float(rng.uniform(90.0, 160.0))
    beat = 60.0 / bpm
    n = int(seconds * sr)
    out = np.zeros(n)
    root = 196.0 * 2 ** (rng.integers(0, 12) / 12)
    scale = [0, 2, 4, 5, 7, 9, 11] if rng.random() < 0.5 else [0, 2, 3, 5, 7, 8, 10]
    degrees = rng.choice([0, 3, 4, 5], size=4)
    step = rng.choice([2, 3, 4])  # notes per beat
    t_note = np.arange(int(0.7 * sr)) / sr
    k = np.arange(1, 7)[:, None]
    for bar in range(int(seconds / (4 * beat)) + 1):
        deg = int(degrees[bar % 4])
        chord = [scale[(deg + i) % 7] + 12 * ((deg + i) // 7) for i in (0, 2, 4, 7)]
        pattern = rng.permutation(chord) if bar % 2 == 0 else chord
        for i in range(4 * step):
            start = int(((bar * 4) + i / step) * beat * sr)
            if start >= n:
                break
            f = root * 2 ** (pattern[i % len(pattern)] / 12)
            partials = np.sin(2 * np.pi * f * k * (1 + 0.0005 * k ** 2) * t_note) / k ** 1.3
            note = (partials * np.exp(-t_note * (3.0 + 2.5 * k))).sum(0) * (0.6 + 0.4 * rng.random())
            m = min(len(note), n - start)
            out[start:start + m] += note[:m]
    for b in range(int(seconds / beat) + 1):  # soft pulse: kick on 1 and 3, a hat on every beat
        s = int(b * beat * sr)
        if s >= n:
            break
        tt = np.arange(min(int(0.15 * sr), n - s)) / sr
        if b % 2 == 0:
            out[s:s + len(tt)] += 0.8 * np.sin(2 * np.pi * (55 + 60 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 18)
        hat = rng.standard_normal(len(tt))
        hat = np.diff(hat, prepend=0.0) * np.exp(-tt * 60)
        out[s:s + len(tt)] += 0.25 * hat
    out = out / max(np.abs(out).max(), 1e-9) * 0.9
    return out.astype(np.float32), {"bpm": bpm, "seed": seed}


def plucks_dataset(out_dir: Path, n_files: int, seconds: float, seed: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        a, meta = render_plucks(seed + i, SR, seconds)
        write_wav(out_dir / f"plucks_{i:03d}.wav", a, SR)
        (out_dir / f"plucks_{i:03d}.json").write_text(json.dumps(meta))


def real_excerpts(src: Path, out_dir: Path, files: list[Path], seconds: float) -> None:
    """An excerpt of ``seconds`` from the middle of each file, as 16-kHz mono wav."""
    from djenerator.audio import load_audio

    out_dir.mkdir(parents=True, exist_ok=True)
    for f in files:
        x = load_audio(f, SR)[0]
        mid = max(0, len(x) // 2 - int(seconds * SR) // 2)
        write_wav(out_dir / f"{f.stem}.wav", x[mid:mid + int(seconds * SR)], SR)


def make_set(name: str, root: Path, seconds: float, held_seconds: float, real: Path | None = None) -> tuple[Path, Path]:
    tr, held = root / f"{name}_train_wav", root / f"{name}_held_wav"
    if name == "real":
        from djenerator.data.prepare import find_audio

        if real is None or len(files := find_audio(real)) < 16:
            raise SystemExit(f"--real must name a folder with at least 16 audio files (got {real})")
        real_excerpts(real, tr, files[:8], seconds)
        real_excerpts(real, held, files[8:16], held_seconds)
    elif name == "djent":
        synth_dataset(tr, n_files=8, seconds=seconds, sr=SR, seed=0, progress=False)
        synth_dataset(held, n_files=8, seconds=held_seconds, sr=SR, seed=1000, progress=False)
    else:
        plucks_dataset(tr, 8, seconds, 0)
        plucks_dataset(held, 8, held_seconds, 1000)
    return tr, held


def prepared(src: Path, out: Path, cfg) -> ClipDataset:
    prepare(src, out, cfg.data, log=lambda m: None, progress=False, overwrite=True)
    return ClipDataset(out)


def few_cfg(args, steps: int, *extra: str):
    data = [f"data.sample_rate={args.sr}"] + [f"data.{k}_samples={v}" for k, v in (("clip", args.clip), ("hop", args.hop)) if v]
    return build_config(args.preset, [], [*data, f"train.device={args.device}", f"train.steps={steps}",
                                    f"train.seed={args.seed}", "train.log_every=50", f"train.ckpt_every={args.ckpt_every}",
                                    "train.keep_checkpoints=1000",
                                    f"train.sample_every={args.sample_every}",
                                    "train.n_samples=2", *extra])


def score(checkpoint: Path, ds: ClipDataset, f_held: np.ndarray, n_gen: int = 64, device: str = "cpu",
          held_corr: np.ndarray | None = None, sel: np.ndarray | None = None) -> dict:
    """Copies of and max correlation with the training clips, KID/FD to held-back features, diversity;
    with ``held_corr`` (each held-back clip's max corr with the training clips) the data-copying z; with
    ``sel`` (a mask over the held-back clips) KID to the selection half and KID/FD to the other, test half."""
    sr = ds.sample_rate
    ck = load_checkpoint(checkpoint, map_location=device)
    G, gcfg, _ = generator_of(ck, device)
    gen = generate_clips(G, gcfg, n=n_gen, seed=123)
    rep = memorisation_report(gen, np.array(ds.clips), ds.manifest["clips"], sr, feature_check=False, device=device)
    f_gen = clip_features(gen, sr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s_held, s_gen = standardise(f_held, f_gen)
        kid, kid_se = kernel_distance(s_gen, s_held)
        corr = np.array([c["corr"] for c in rep["clips"]])
        z = data_copying_z(1 - corr, 1 - held_corr) if held_corr is not None else float("nan")
        pc = fidelity_coverage(s_held, s_gen)
        halves = {}
        if sel is not None:
            s_sel, g_sel = standardise(f_held[sel], f_gen)
            s_test, g_test = standardise(f_held[~sel], f_gen)
            kid_test, kid_test_se = kernel_distance(g_test, s_test)
            halves = {"kid_sel": kernel_distance(g_sel, s_sel)[0], "kid_test": kid_test, "kid_test_se": kid_test_se,
                      "fd_test": frechet_distance(g_test, s_test)}
        return {**halves, "step": ck["step"], "final_p": ck.get("augment", {}).get("p", 0.0), "copies": rep["n_flagged"], "copy_z": z,
                "max_corr": rep["max_corr"], "mean_corr": rep["mean_corr"],
                "kid": kid, "kid_se": kid_se, "fd": frechet_distance(s_gen, s_held),
                "coverage": pc["coverage"], "precision": pc["precision"],
                "diversity": diversity(s_gen), "held_diversity": diversity(s_held)}


def train_coverage(s_held: np.ndarray, s_train: np.ndarray, n: int, seed: int = 0) -> dict:
    """Coverage of the held-back clips by ``n`` random training clips: the generated rows' counterpart
    (coverage grows with the number of clips, so it is compared at the same count)."""
    pick = np.random.default_rng(seed).choice(len(s_train), min(n, len(s_train)), replace=False)
    return fidelity_coverage(s_held, s_train[pick])


def held_halves(held: ClipDataset) -> np.ndarray:
    """A mask of the clips of every other held-back file: that half picks a checkpoint, the other half scores
    it, so the chosen checkpoint's distance is not flattered by the choice."""
    files = sorted({c["file"] for c in held.manifest["clips"]})
    pick = set(files[::2])
    return np.array([c["file"] in pick for c in held.manifest["clips"]])


def best_clean(rows: list[dict]) -> dict | None:
    """The checkpoint a user heeding the copy warning would keep: of those with no copies, the one nearest
    the selection half. None when every checkpoint copies."""
    clean = [r for r in rows if r["copies"] == 0]
    return min(clean, key=lambda r: r["kid_sel"]) if clean else None


def compare(name: str, root: Path, args, emit) -> None:
    cfg0 = few_cfg(args, args.steps)
    sr = cfg0.data.sample_rate
    if args.rescore:
        ds, held = ClipDataset(root / f"{name}_train"), ClipDataset(root / f"{name}_held")
    else:
        tr_wav, held_wav = make_set(name, root, args.seconds, args.held_seconds or 4 * args.seconds, args.real)
        ds = prepared(tr_wav, root / f"{name}_train", cfg0)
        held = prepared(held_wav, root / f"{name}_held", cfg0)
    train_clips, held_clips = np.array(ds.clips), np.array(held.clips)
    f_train, f_held = clip_features(train_clips, sr), clip_features(held_clips, sr)
    sel = held_halves(held) if args.select else None
    base = {"set": name, "n_train_clips": len(ds), "n_held_clips": len(held)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s_held, s_train = standardise(f_held, f_train)
        ref = memorisation_report(held_clips, train_clips, ds.manifest["clips"], sr, feature_check=False,
                                  device=args.device)
        held_corr = np.array([c["corr"] for c in ref["clips"]])
        pc = train_coverage(s_held, s_train, args.n_gen)
        emit({**base, "run": "real: training vs held-back", "copies": ref["n_flagged"], "max_corr": ref["max_corr"],
              "mean_corr": ref["mean_corr"], "kid": kernel_distance(s_train, s_held)[0],
              "fd": frechet_distance(s_train, s_held), "coverage": pc["coverage"], "precision": pc["precision"],
              "diversity": diversity(s_train), "held_diversity": diversity(s_held)})
    steps = args.steps
    best, rows_last = {}, {}
    for aug in (True, False):
        extra = ["augment.enabled=true", "augment.ada=true", "augment.ops=[polarity,gain,shift,eq,noise,cutout]"] \
            if aug else ["augment.enabled=false"]
        label = "augment+ADA" if aug else "no augment"
        run_dir = root / "runs" / f"{name}_{'aug' if aug else 'noaug'}"
        info = {}
        if not args.rescore:
            cfg = few_cfg(args, steps, *extra)
            shutil.rmtree(run_dir, ignore_errors=True)
            t0 = time.perf_counter()
            res = train(cfg, root / f"{name}_train", run_dir, progress=False,
                        log=lambda m: None, max_seconds=args.run_seconds or None)
            info = {"seconds": round(time.perf_counter() - t0, 1)}
            if aug:
                steps = res.step  # the plain run gets exactly as many steps
        ckpts = list_checkpoints(run_dir)
        if not ckpts:
            raise SystemExit(f"few_files: no checkpoints in {run_dir}")
        rows = []
        for ck in ckpts if args.select else ckpts[-1:]:
            row = score(ck, ds, f_held, args.n_gen, args.device, held_corr, sel)
            row.update({**base, "run": label, "steps": row.pop("step")})
            emit(row)
            rows.append(row)
        rows[-1].update(info)
        rows_last[label] = rows[-1]
        if args.select:
            pick = best_clean(rows)
            best[label] = pick
            if pick is not None:
                emit({**pick, "run": f"{label}: best clean"})
    if args.select:
        a, p = best["augment+ADA"], best["no augment"]
        emit({**base, "run": "verdict", "aug_best_step": a and a["steps"], "plain_best_step": p and p["steps"],
              "aug_kid_test": a and a["kid_test"], "plain_kid_test": p and p["kid_test"],
              "aug_kid_test_se": a and a["kid_test_se"], "plain_kid_test_se": p and p["kid_test_se"],
              "aug_copies": rows_last["augment+ADA"]["copies"], "plain_copies": rows_last["no augment"]["copies"],
              "kid_test_cut": (1 - a["kid_test"] / p["kid_test"]) if a and p else None})


def _num(v) -> str:
    return "" if v is None else f"{v:.4g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="few")
    ap.add_argument("--sr", type=int, default=SR)
    ap.add_argument("--clip", type=int, default=0, help="clip samples (0: the preset's)")
    ap.add_argument("--hop", type=int, default=0, help="hop samples (0: the preset's)")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each file (excerpt for 'real')")
    ap.add_argument("--held-seconds", type=float, default=0.0,
                    help="length of each held-back file (0: 4x --seconds, so the distances rest on more clips)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--run-seconds", type=float, default=70.0, help="wall-clock cap of each training run (0: none)")
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0, help="training seed (the data stay the same)")
    ap.add_argument("--ckpt-every", type=int, default=100000,
                    help="keep checkpoints this often (with --out, to score later)")
    ap.add_argument("--sample-every", type=int, default=100000,
                    help="training's sample step: its copy check, which lifts ADA's floor on copies (default: off)")
    ap.add_argument("--select", action="store_true",
                    help="score every kept checkpoint (--ckpt-every) and each run's best clean one: no copies, "
                         "nearest one half of the held-back files; its distance is taken to the other half")
    ap.add_argument("--rescore", action="store_true",
                    help="score the datasets and runs already in --out instead of making and training them")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sets", nargs="*", default=["djent", "plucks"], choices=["djent", "plucks", "real"])
    ap.add_argument("--real", type=Path, default=None, help="folder of recorded music for the 'real' set")
    ap.add_argument("--out", type=Path, default=None,
                    help="keep results.jsonl, the datasets and the runs (checkpoints) here; default: a temporary folder")
    args = ap.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    try:  # a clip length the architecture cannot make fails here, before any data are made
        build_generator(few_cfg(args, args.steps))
    except ConfigError as e:
        raise SystemExit(f"few_files: {e}") from None
    out = args.out
    if args.rescore and out is None:
        raise SystemExit("few_files: --rescore needs --out (the folder of an earlier run)")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rows = []

    def emit(row: dict) -> None:
        row = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if out is not None:
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    print(f"torch {torch.__version__}, device {args.device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if args.device.startswith('cuda') else ''}, preset {args.preset}, "
          f"{args.sr} Hz, steps {args.steps}",
          flush=True)
    root = out / "work" if out is not None else Path(tempfile.mkdtemp(prefix="few_files_"))
    try:
        for name in args.sets:
            compare(name, root, args, emit)
    finally:
        if out is None:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"{'set':<8} {'run':<28} {'steps':>5} {'p':>5} {'copies':>6} {'max corr':>8} {'copy z':>7} {'KID held':>9} {'FD held':>8} "
          f"{'cover.':>6} {'prec.':>5} {'divers.':>7} {'held div':>8} {'KID sel':>8} {'KID test':>8}")
    for r in rows:
        if "kid" in r:
            print(f"{r['set']:<8} {r['run']:<28} {r.get('steps', ''):>5} {r.get('final_p', ''):>5} {r.get('copies', ''):>6} "
                  f"{r.get('max_corr', ''):>8} {r.get('copy_z', ''):>7} {r['kid']:>9.4f} {r['fd']:>8.2f} "
                  f"{r['coverage']:>6.2f} {r['precision']:>5.2f} {r['diversity']:>7.2f} {r['held_diversity']:>8.2f} "
                  f"{_num(r.get('kid_sel')):>8} {_num(r.get('kid_test')):>8}")
    for r in rows:
        if r.get("run") == "verdict":
            line = (f"{r['set']}: copies at the last step {r['aug_copies']} (augment+ADA) / {r['plain_copies']} "
                    "(no augment); ")
            if r["plain_best_step"] is None or r["aug_best_step"] is None:
                line += (f"clean checkpoints: augment+ADA step {r['aug_best_step']}, no augment step "
                         f"{r['plain_best_step']} (None: every checkpoint copies)")
            else:
                line += (f"best clean checkpoint, step {r['aug_best_step']} / {r['plain_best_step']}: KID to the test "
                         f"half {_num(r['aug_kid_test'])} +- {_num(r['aug_kid_test_se'])} / {_num(r['plain_kid_test'])} "
                         f"+- {_num(r['plain_kid_test_se'])}, cut {100 * r['kid_test_cut']:.0f} %")
            print(line)


if __name__ == "__main__":
    main()
