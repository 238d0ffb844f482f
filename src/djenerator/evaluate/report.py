"""``djenerator evaluate``: the metrics of :mod:`djenerator.evaluate` run on a checkpoint, as one report.

:func:`evaluate` renders ``n`` clips with a fixed seed (the same clips ``generate`` and the web page make),
draws a bounded subset of real clips and measures distribution distance (Frechet, KID) against a
real-vs-real baseline, noise, rhythm, memorisation and diversity; it writes ``report.json`` and PNGs.
:func:`cheap_metrics` is the fast subset training logs at checkpoints. What each number means and how it
is computed: docs/how-it-works.md.
"""
from __future__ import annotations

import csv
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..checkpoint import CheckpointError, list_checkpoints, resolve_checkpoint
from ..config import ConfigError
from ..data.dataset import ClipDataset, DatasetError
from ..dsp.beat import estimate_tempo
from ..generate import generate_clips, load_generator
from ..io import atomic_write_text, read_csv_columns, rows_up_to
from ..models import tempo_cond
from . import metrics, rhythm, verdicts
from .features import as_batch, clip_features
from .memorisation import data_copying_z, max_normalized_xcorr, memorisation_report

__all__ = ["cheap_metrics", "evaluate", "summary_rows", "REPORT_VERSION", "CHEAP_METRIC_KEYS"]

REPORT_VERSION = 1
CHEAP_METRIC_KEYS = ["flatness_fake", "flatness_real", "hf_ratio_fake", "hf_ratio_real", "fd_batch", "kid_batch",
                     "diversity_ratio"]


def hf_cutoff(sr: int) -> float:
    """The 'high frequency' boundary: 4 kHz, or sr/4 for sample rates below 16 kHz."""
    return float(min(4000.0, sr / 4.0))


def _chunked(fn: Callable, x, sr: int, chunk: int = 256, **kw) -> np.ndarray:
    """Run a per-clip metric over (N, T) in chunks so N x STFT never sits in memory at once."""
    return np.concatenate([np.asarray(fn(np.asarray(x[i:i + chunk], dtype=np.float32), sr, **kw))
                           for i in range(0, len(x), chunk)]) if len(x) else np.zeros(0)


def _mean(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if len(a) else float("nan")


# ---------------------------------------------------------------------------------------------------
# the cheap metrics the training loop logs
# ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def cheap_metrics(fake: torch.Tensor, real: torch.Tensor, sr: int) -> dict[str, float]:
    """Fast quality numbers for a generated batch vs a real batch, (B, 1, T) or (B, T) each.

    flatness_* (Welch spectral flatness, noise ~1, tone ~0) and hf_ratio_* (share of energy above
    ``hf_cutoff(sr)``) are batch means; fd_batch and kid_batch compare the two batches' clip features
    (z-scored with the real batch's statistics; with a few clips per batch FD is biased upwards, so
    compare it over training, not with the full report's value); diversity_ratio is the mean pairwise
    feature distance of the fake batch over that of the real batch (<< 1: mode collapse).
    Values that cannot be computed (fewer than 2 clips) are NaN. ~0.1 s for 16 x 16384 on 2 cores.
    """
    f = as_batch(fake.detach().float().cpu())
    r = as_batch(real.detach().float().cpu())
    cut = hf_cutoff(sr)
    out = {
        "flatness_fake": _mean(metrics.spectral_flatness(f, sr, welch=True)),
        "flatness_real": _mean(metrics.spectral_flatness(r, sr, welch=True)),
        "hf_ratio_fake": _mean(metrics.high_freq_energy_ratio(f, sr, cut)),
        "hf_ratio_real": _mean(metrics.high_freq_energy_ratio(r, sr, cut)),
        "fd_batch": float("nan"), "kid_batch": float("nan"), "diversity_ratio": float("nan"),
    }
    if min(len(f), len(r)) >= 2:
        rf, ff = metrics.standardise(clip_features(r, sr), clip_features(f, sr))
        out["fd_batch"] = metrics.frechet_distance(ff, rf, warn=False)  # batch values: trends only
        out["kid_batch"] = metrics.kernel_distance(ff, rf, n_subsets=20, seed=0)[0]
        dr = metrics.diversity(rf)
        out["diversity_ratio"] = metrics.diversity(ff) / dr if dr > 0 else float("nan")
    return {k: float(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------
# the full report
# ---------------------------------------------------------------------------------------------------
def _run_dir_of(target: Path, ckpt: Path) -> Path:
    if target.is_dir():
        return target
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def find_dataset(run_dir: Path, dataset: str | Path | None) -> Path:
    """--dataset, else the dataset recorded in the run's run.json; a clear error when neither works."""
    if dataset is not None:
        return Path(dataset)
    rj = run_dir / "run.json"
    if not rj.is_file():
        raise ConfigError(f"no dataset given and {rj} does not exist; pass --dataset DATASET_FOLDER")
    try:
        path = json.loads(rj.read_text())["dataset"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{rj} does not name a dataset; pass --dataset DATASET_FOLDER") from None
    if not Path(path).exists():
        raise DatasetError(f"the run's dataset {path} (from {rj}) no longer exists; pass --dataset DATASET_FOLDER")
    return Path(path)


def _verdict_ratio(ratio: float, good: float = 2.0, fair: float = 5.0) -> str:
    if not math.isfinite(ratio):
        return "n/a"
    return "close to real" if ratio <= good else ("fair" if ratio <= fair else "far from real")


def _distribution(gen_f: np.ndarray, probe_f: np.ndarray, ref_f: np.ndarray, seed: int) -> dict:
    """FD and KID of generated vs reference and of the real probe vs the same reference."""
    m = min(len(gen_f), len(probe_f))  # FD is biased by N: compare at equal N
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fd_gen = metrics.frechet_distance(gen_f[:m], ref_f)
        fd_base = metrics.frechet_distance(probe_f[:m], ref_f)
    kid_gen = metrics.kernel_distance(gen_f, ref_f, seed=seed)
    kid_base = metrics.kernel_distance(probe_f, ref_f, seed=seed)
    ratio = fd_gen / fd_base if fd_base > 0 else float("nan")
    return {
        "coverage": {"generated": _coverage(ref_f, gen_f[:m]), "real_baseline": _coverage(ref_f, probe_f[:m])},
        "feature": "clip_features: per-mel-band mean/std of log-mel (64 bands) + flux/energy/centroid/flatness "
                   "stats, z-scored with the real clips' mean/std",
        "n_fd": m, "n_generated": len(gen_f), "n_probe": len(probe_f), "n_reference": len(ref_f),
        "frechet": {"generated": fd_gen, "real_baseline": fd_base, "ratio": ratio},
        "kid": {"generated": kid_gen[0], "generated_se": kid_gen[1],
                "real_baseline": kid_base[0], "real_baseline_se": kid_base[1],
                "excess_in_se": (kid_gen[0] - kid_base[0]) / max(kid_gen[1], 1e-12)},
        "baseline": "a held-out set of real clips (probe, from other source files than the reference where "
                    "there are two or more) vs the same real reference set; equal N for FD",
        "verdict": _verdict_ratio(ratio),
    }


def _probe_and_reference(n_real: int, files: list[str], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the real probe (at most n clips) and the reference set for the real-vs-real baseline. The
    two come from different source files where there are at least two (``group_halves``): prepared clips
    overlap, and a probe clip whose neighbour sits in the reference would make the baseline closer than new
    music of the same kind ever is (3x smaller Frechet distance on the built-in riffs)."""
    rng = np.random.default_rng(seed)
    a, b = group_halves(n_real, files, seed)
    if len(set(files)) < 2 or min(len(a), len(b)) < 2:  # one file: a random split, the rest is the reference
        perm = rng.permutation(n_real)
        m = min(n, n_real // 2)
        return perm[:m], perm[m:]
    return rng.permutation(a)[:min(n, len(a))], b


def _coverage(real_f: np.ndarray, fake_f: np.ndarray) -> dict | None:
    """metrics.fidelity_coverage with k = 5, or fewer where there are too few clips for 5 neighbours."""
    k = min(5, len(real_f) - 1, len(fake_f) - 1)
    return metrics.fidelity_coverage(real_f, fake_f, k) if k >= 1 else None


def _noise(gen: np.ndarray, real: np.ndarray, sr: int, seed: int = 0) -> dict:
    cut = hf_cutoff(sr)
    fg, fr = _chunked(metrics.spectral_flatness, gen, sr, welch=True), _chunked(metrics.spectral_flatness, real, sr, welch=True)
    hg = _chunked(metrics.high_freq_energy_ratio, gen, sr, cutoff_hz=cut)
    hr = _chunked(metrics.high_freq_energy_ratio, real, sr, cutoff_hz=cut)
    flat_g, flat_r, hf_g, hf_r = _mean(fg), _mean(fr), _mean(hg), _mean(hr)
    cg = float(np.nanmedian([rhythm.onset_contrast(x, sr) for x in gen]))
    cr = float(np.nanmedian([rhythm.onset_contrast(x, sr) for x in real[:500]]))
    perm = np.random.default_rng(seed).permutation(len(real))
    shape_r = metrics.spectral_shape_db(real, sr)
    shape = metrics.shape_distance_db(metrics.spectral_shape_db(gen, sr), shape_r)
    some_real = real[:: max(1, len(real) // 128)][:128]  # ~0.2 CPU-s a 6-s clip
    (tonal_g, drone_g), (tonal_r, drone_r) = [[_mean(c) for c in _chunked(metrics.harmonic_lines, clips, sr).reshape(-1, 2).T]
                                              for clips in (gen, some_real)]
    shape_base = metrics.shape_distance_db(metrics.spectral_shape_db(real[perm[::2]], sr),
                                           metrics.spectral_shape_db(real[perm[1::2]], sr)) if len(real) >= 2 else float("nan")
    return {
        "flatness": {"generated": flat_g, "real": flat_r,
                     "method": "Welch spectral flatness (geometric/arithmetic mean of the clip's average power "
                               "spectrum): white noise ~1, a tone ~0"},
        "hf_ratio": {"generated": hf_g, "real": hf_r, "cutoff_hz": cut},
        "tonal_share": {"generated": tonal_g, "real": tonal_r,
                        "verdict": verdicts.pitch_verdict(tonal_g, tonal_r, drone_g, drone_r),
                        "method": "share of the energy in harmonic lines (bins held ~0.1 s, 10 dB above the 200 Hz "
                                  "around them): noise ~0, a drone ~1"},
        "drone_share": {"generated": drone_g, "real": drone_r,
                        "method": "share of the line energy in bins that are lines in 80 % of the clip: "
                                  "notes that change ~0, a held tone ~1"},
        "onset_contrast": {"generated": cg, "real": cr,
                           "method": "median over clips of the onset envelope's 95th percentile / median: "
                                     "stationary noise ~1.2, music with attacks > 2"},
        "spectral_shape_db": {"generated": shape, "real_baseline": shape_base,
                              "method": "RMS dB difference of the average mel spectra (loudness removed); "
                                        "baseline: two halves of the real clips"},
        "verdict": verdicts.noise_verdict(flat_g, flat_r, hf_g, hf_r, cg, cr, shape, shape_base),
    }


def _autoencoder(codec, clips: np.ndarray, sr: int) -> dict:
    """Stage 1's reconstructions of real clips: distances, and the harmonic lines they keep (``metrics.tonal_share``)."""
    from ..models.codec import reconstruct, reconstruction_report

    x, y = reconstruct(codec, clips)
    out = reconstruction_report(codec, x, y)
    (tg, dg), (tr, dr) = [[_mean(c) for c in metrics.harmonic_lines(a[:, 0].numpy(), sr).T] for a in (y, x)]
    out["tonal_share"] = {"reconstructed": tg, "real": tr, "verdict": verdicts.pitch_verdict(tg, tr, dg, dr)}
    out["drone_share"] = {"reconstructed": dg, "real": dr}
    own, others = metrics.fine_structure_agreement(y[:, 0].numpy(), x[:, 0].numpy(), sr)
    out["partials"] = {"own_recording": own, "other_recordings": others,
                       "method": "correlation of each reconstruction's fine structure (0.5-5 kHz, less its 9-bin "
                                 "median) with its own recording's and with the others'",
                       "verdict": verdicts.partials_verdict(own, others)}
    out["flatness"] = {"reconstructed": float(np.mean(metrics.spectral_flatness(y[:, 0].numpy(), sr))),
                       "real": float(np.mean(metrics.spectral_flatness(x[:, 0].numpy(), sr))),
                       "contrast": float(codec.contrast)}  # the decoder's contrast (dsp.contrast), fitted or set
    return out


def group_halves(n: int, groups=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of n items for a real-vs-real baseline. With ``groups`` (the source file of each
    clip) whole files go to one half or the other, so overlapping clips of one file never sit on both
    sides (that would make the baseline look closer than new music of the same kind is); otherwise, or
    with a single file, a random split."""
    rng = np.random.default_rng(seed)
    if groups is not None:
        g = np.asarray(groups)
        names = rng.permutation(np.unique(g))
        if len(names) >= 2:
            sides, sizes = {}, [0, 0]
            for name in names:
                k = int(sizes[1] < sizes[0])
                sides[name] = k
                sizes[k] += int((g == name).sum())
            side = np.array([sides[x] for x in g])
            return np.flatnonzero(side == 0), np.flatnonzero(side == 1)
    perm = rng.permutation(n)
    return perm[:n // 2], perm[n // 2:2 * (n // 2)]


def _rhythm(gen: np.ndarray, real: np.ndarray, real_bpm: np.ndarray, sr: int, seed: int,
            real_tempo: np.ndarray | None = None, timbre: str = "like real", real_groups=None) -> dict:
    """Onset rate, IOI histogram and tempo; ``real_tempo``: the real clips' tempi estimated on longer stretches
    of their files (``_context_tempo``), used instead of the per-clip estimate; the tempo column takes the
    manifest's label where a clip has one. ``timbre``: the noise verdict; ``real_groups``: each real clip's
    source file, for the IOI baseline (``group_halves``)."""
    sg, sr_ = metrics.rhythm_stats(gen, sr), metrics.rhythm_stats(real, sr)
    if real_tempo is not None:
        sr_["tempo"] = np.asarray(real_tempo, dtype=np.float64)
    labelled = np.isfinite(real_bpm)
    shown = np.where(labelled, real_bpm, sr_["tempo"])
    fin = shown[np.isfinite(shown)]
    sr_["tempo_median"] = float(np.median(fin)) if len(fin) else float("nan")
    ioi = metrics.ioi_distance(sg["ioi_hist"], sr_["ioi_hist"], sg["ioi_bins"])
    half_a, half_b = group_halves(len(real), real_groups, seed)
    ioi_base = float("nan")
    if min(len(half_a), len(half_b)) >= 2:  # real-vs-real: the IOI distance two halves of the real clips have
        a, b = metrics.rhythm_stats(real[half_a], sr), metrics.rhythm_stats(real[half_b], sr)
        ioi_base = metrics.ioi_distance(a["ioi_hist"], b["ioi_hist"], a["ioi_bins"])
    tg, tr = sg["tempo"], sr_["tempo"]
    out = {
        "onset_rate": {"generated": sg["onset_rate_mean"], "real": sr_["onset_rate_mean"], "unit": "onsets/s"},
        "ioi_distance": {"generated": ioi, "real_baseline": ioi_base,
                         "method": "Wasserstein distance (s) between pooled inter-onset-interval histograms; "
                                   "baseline: real clips of one half of the source files vs the other half"},
        "tempo": {"generated_median": sg["tempo_median"], "real_median": sr_["tempo_median"],
                  "generated_estimable": int(np.isfinite(tg).sum()), "real_estimable": int(np.isfinite(shown).sum()),
                  "n_generated": len(tg), "n_real": len(tr), "clip_seconds": gen.shape[-1] / sr,
                  "real_source": ("the manifest's tempo labels" if labelled.all() else
                                  ("labels, else 8-s stretches of each clip's file" if real_tempo is not None
                                   else "labels, else each clip")),
                  "note": "tempo needs two beats at 60 BPM (2 s): shorter generated clips give none; real clips "
                          "are measured on 8-s stretches of their file rebuilt from the overlapping clips"},
    }
    if labelled.any():
        ok = labelled & np.isfinite(tr)
        err = np.abs(tr[ok] - real_bpm[ok])
        rel = err / real_bpm[ok]
        out["tempo_vs_labels"] = {
            "n_labelled": int(labelled.sum()), "n_estimable": int(ok.sum()),
            "median_abs_error_bpm": float(np.median(err)) if len(err) else float("nan"),
            "within_4pct": float((rel <= 0.04).mean()) if len(err) else float("nan"),
            "note": "real clips' tempo estimated from the audio (8-s stretches of their file where the manifest "
                    "says where each clip starts) vs the manifest's bpm (the synth's metadata on the built-in data)",
        }
    out["onset_contrast"] = {"generated": sg["onset_contrast_median"], "real": sr_["onset_contrast_median"]}
    out["verdict"] = verdicts.rhythm_verdict(out["onset_rate"]["generated"], out["onset_rate"]["real"], ioi, ioi_base,
                                             sg["onset_contrast_median"], sr_["onset_contrast_median"], timbre)
    return out


def _context_tempo(ds: ClipDataset, indices: np.ndarray, sr: int, seconds: float = 8.0) -> np.ndarray | None:
    """Tempo of each clip ``indices`` from the ``seconds``-long stretch of its file it starts in, rebuilt from
    every clip of that stretch (``rhythm.stitch``); None when the manifest lacks file/start."""
    entries = ds.manifest["clips"]
    if not entries or any("file" not in e or "start" not in e for e in entries[:1]):
        return None
    by_seg: dict[tuple, list[int]] = {}
    for j, e in enumerate(entries):
        by_seg.setdefault((e["file"], int(float(e["start"]) // seconds)), []).append(j)
    cache: dict[tuple, float] = {}
    out = np.full(len(indices), np.nan)
    for k, i in enumerate(indices):
        key = (entries[i]["file"], int(float(entries[i]["start"]) // seconds))
        if key not in cache:
            members = np.asarray(by_seg[key])
            x = rhythm.stitch(np.asarray(ds.clips[members], dtype=np.float32),
                              [float(entries[j]["start"]) for j in members], sr)
            cache[key] = estimate_tempo(x, sr)
        out[k] = cache[key]
    return out


def _diversity(gen_f: np.ndarray, real_f: np.ndarray, seed: int) -> dict:
    dg, dr = metrics.diversity(gen_f, seed=seed), metrics.diversity(real_f, seed=seed)
    ratio = dg / dr if dr > 0 else float("nan")
    verdict = "n/a" if not math.isfinite(ratio) else ("mode collapse" if ratio < 0.5 else
                                                       ("low diversity" if ratio < 0.8 else "diverse"))
    return {"generated": dg, "real": dr, "ratio": ratio, "verdict": verdict,
            "method": "mean pairwise Euclidean distance of z-scored clip features"}


def _memorisation(gen, ds: ClipDataset, sr: int, threshold: float, gen_f_raw, train_f_raw, progress: bool,
                  seed: int, step: int) -> dict:
    t0 = time.perf_counter()
    mem = memorisation_report(gen, ds.clips, ds.manifest["clips"], sr, threshold=threshold, gen_feats=gen_f_raw,
                              train_feats=train_f_raw, progress=progress)
    for c in mem["clips"]:
        if "feature_index" in c:
            c["feature_source_file"] = str(ds.source(c["feature_index"]).get("file", ""))
            c["feature_source_time_s"] = float(ds.source(c["feature_index"]).get("start", 0.0))
    ratio = mem.get("feature_min_ratio", float("nan"))
    mem["seed"], mem["step"] = seed, step
    mem["seconds"] = time.perf_counter() - t0
    mem["method"] = ("max |normalised cross-correlation| over all lags with >= 50% overlap, against every training "
                     "clip; flagged when >= threshold. Feature check: nearest training clip in z-scored clip_features; "
                     "feature_ratio = distance / median real nearest-neighbour distance (<< 1 is suspicious)")
    mem["verdict"] = (f"{mem['n_flagged']} of {mem['n_generated']} clips copy training data" if mem["n_flagged"]
                      else ("no copies; some clips unusually close in feature space"
                            if math.isfinite(ratio) and ratio < 0.25 else "no copies found"))
    return mem


def _matching_dataset(path: Path, sr: int, T: int, min_clips: int, what: str, fix: str) -> ClipDataset:
    """The prepared dataset at ``path``, if its clips are the model's (rate, length) and there are enough."""
    ds = ClipDataset(path)
    if ds.sample_rate != sr or ds.clip_samples != T:
        raise DatasetError(f"{path} has {ds.clip_samples}-sample clips at {ds.sample_rate} Hz but the model makes "
                           f"{T}-sample clips at {sr} Hz; {fix}")
    if len(ds) < min_clips:
        raise DatasetError(f"{path} has {len(ds)} clips; {what} needs at least {min_clips}")
    return ds


def _held_back(path: Path, ds: ClipDataset, mem: dict, gen_f_raw, train_f_raw, sr: int, T: int, max_real: int,
               seed: int) -> dict:
    """Distances from the generated clips to music that was not trained on, and the data-copying z."""
    hd = _matching_dataset(path, sr, T, 2, "the held-back comparison", "prepare the held-back files with the same settings")
    h_idx = np.sort(np.random.default_rng(seed + 1).choice(len(hd), min(max_real, len(hd)), replace=False))
    held = np.array(hd.clips[h_idx], dtype=np.float32)
    _, h_corr, _ = max_normalized_xcorr(held, ds.clips)
    g_corr = np.array([c["corr"] for c in mem["clips"]])
    z = data_copying_z(1.0 - g_corr, 1.0 - h_corr)
    t_pick = np.random.default_rng(seed + 2).choice(len(train_f_raw), min(len(train_f_raw), len(gen_f_raw)),
                                                     replace=False)
    h_f, g_f, t_f = metrics.standardise(clip_features(held, sr), gen_f_raw, train_f_raw[t_pick])
    verdict = ("copying: closer to the training clips than new music is" if z < -3 else
               ("unlike the training data" if z > 3 else "as close to the training clips as new music is"))
    return {"dataset": str(path), "n_held": len(held), "copy_z": z, "verdict": verdict,
            "held_max_corr": float(h_corr.max()), "held_mean_corr": float(h_corr.mean()),
            "frechet": metrics.frechet_distance(g_f, h_f), "kid": metrics.kernel_distance(g_f, h_f)[0],
            "coverage": {"generated": _coverage(h_f, g_f), "training_clips": _coverage(h_f, t_f)},
            "method": "data-copying z (Meehan et al. 2020): z-scored Mann-Whitney U of 1 - max corr to the nearest "
                      "training clip, generated vs held-back clips; < -3 copying, > +3 unlike the training data"}


def _bar(it, enabled: bool, desc: str, unit: str):
    """``it`` wrapped in a tqdm bar (a total and an ETA) when ``enabled``."""
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, unit=unit, dynamic_ncols=True)


def _all_features(ds: ClipDataset, sr: int, chunk: int = 1024, progress: bool = False) -> np.ndarray:
    return np.concatenate([clip_features(np.array(ds.clips[s:s + chunk], dtype=np.float32), sr)
                           for s in _bar(range(0, len(ds), chunk), progress, "features", "chunk")])


def evaluate(target: str | Path, dataset: str | Path | None = None, n: int = 64, seed: int = 0,
             out_dir: str | Path | None = None, threshold: float = 0.8, max_real: int = 2000, max_rhythm: int = 500,
             all_checkpoints: bool = False, n_per_checkpoint: int = 16, device: str = "cpu", plots: bool = True,
             progress: bool = False, held: str | Path | None = None,
             log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Evaluate a checkpoint (or a run folder's latest checkpoint); write report.json and PNGs; return the report.

    ``dataset`` defaults to the run's ``run.json``. ``max_real`` bounds the real clips used for the
    distribution metrics (a random subset, ``seed``); memorisation always searches all training clips.
    ``all_checkpoints``: also compute :func:`cheap_metrics` for every checkpoint of the run with
    ``n_per_checkpoint`` clips and plot them over the training steps. ``held``: a prepared dataset of
    music of the same kind that was *not* trained on (e.g. one song held back); adds distances to it and
    the data-copying test (``held_back``).
    """
    t_start = time.perf_counter()
    _check_args(n, threshold)
    target = Path(target)
    ckpt = resolve_checkpoint(target)
    run_dir = _run_dir_of(target, ckpt)
    G, cfg, step = load_generator(ckpt, device)  # first: a target that is no checkpoint is the error to report
    ds_path = find_dataset(run_dir, dataset)
    sr, T = cfg.data.sample_rate, cfg.data.clip_samples
    ds = _matching_dataset(ds_path, sr, T, 4, "evaluation", "pass the dataset it was trained on")
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)

    log(f"generating {n} clips (seed {seed}) from {ckpt.name} (weights of step {step})")
    rng = np.random.default_rng(seed)
    gen = _generated(G, cfg, ds, n, seed, rng)
    n_real = min(max_real, len(ds))
    idx = np.sort(rng.choice(len(ds), n_real, replace=False))
    real = np.array(ds.clips[idx], dtype=np.float32)
    log(f"features of {n} generated and all {len(ds)} training clips")
    gen_f_raw = clip_features(gen, sr)
    train_f_raw = _all_features(ds, sr, progress=progress)  # all training clips: memorisation's feature check needs them anyway
    real_f_raw = train_f_raw[idx]
    real_f, gen_f = metrics.standardise(real_f_raw, gen_f_raw)
    perm = rng.permutation(n_real)
    probe, ref = _probe_and_reference(n_real, [str(ds.source(int(i)).get("file", "")) for i in idx], n, seed)
    probe_f, ref_f = real_f[probe], real_f[ref]

    report: dict[str, Any] = {"version": REPORT_VERSION, "checkpoint": str(ckpt), "step": step,
                              "run_dir": str(run_dir), "dataset": str(ds_path), "seed": seed, "n_generated": n,
                              "n_real": n_real, "n_train": len(ds), "sample_rate": sr, "clip_samples": T,
                              "arch": cfg.model.arch, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    report["distribution"] = _distribution(gen_f, probe_f, ref_f, seed)
    log("noise and rhythm")
    report["noise"] = _noise(gen, real, sr, seed)
    r_idx = np.sort(rng.choice(n_real, min(max_rhythm, n_real), replace=False))
    report["rhythm"] = _rhythm(gen, real[r_idx], ds.bpm[idx[r_idx]].astype(np.float64), sr, seed,
                               _context_tempo(ds, idx[r_idx], sr), report["noise"]["verdict"],
                               [str(ds.source(int(i)).get("file", "")) for i in idx[r_idx]])
    report["diversity"] = _diversity(gen_f, real_f, seed)
    log("structure: bar repetition of 30-s pieces")
    report["structure"] = _structure(G, cfg, ds, seed)
    if hasattr(G, "codec"):  # the two-stage model: does stage 1 (the autoencoder) or stage 2 limit the sound?
        report["autoencoder"] = _autoencoder(G.codec, real[r_idx[:32]], sr)
    log(f"memorisation: {n} generated clips against all {len(ds)} training clips")
    report["memorisation"] = _memorisation(gen, ds, sr, threshold, gen_f_raw, train_f_raw, progress, seed, step)
    if held is not None:
        log(f"held-back clips of {held} against the training clips")
        report["held_back"] = _held_back(Path(held), ds, report["memorisation"], gen_f_raw, train_f_raw, sr, T,
                                          max_real, seed)

    ckpts = list_checkpoints(run_dir)
    if all_checkpoints and ckpts:
        log(f"cheap metrics for {len(ckpts)} checkpoint(s), {n_per_checkpoint} clips each")
        report["over_steps"] = over_steps(ckpts, ds, idx, n_per_checkpoint, seed, device, threshold, progress)
    report["training_metrics_csv"] = str(run_dir / "logs" / "metrics.csv") if (run_dir / "logs" / "metrics.csv").is_file() else None

    if plots:
        report["plots"] = _plots(gen[:6], real[perm[:6]], sr, run_dir, out, report.get("over_steps"))
    report["summary"] = summary_rows(report)
    report["elapsed_s"] = time.perf_counter() - t_start
    atomic_write_text(out / "report.json", json.dumps(_jsonable(report), indent=1, allow_nan=False))
    report["report_path"] = str(out / "report.json")
    return report


def _generated(G: torch.nn.Module, cfg, ds: ClipDataset, n: int, seed: int, rng: np.random.Generator) -> np.ndarray:
    """n clips; a tempo-conditioned model is asked for the tempi (and beat phases) of n random training clips,
    so the generated set is compared like for like with the real one."""
    c_idx = rng.choice(len(ds), n, replace=len(ds) < n)
    cond = tempo_cond(torch.from_numpy(ds.bpm[c_idx]), cfg, torch.from_numpy(ds.beat[c_idx]))
    return np.asarray(generate_clips(G, cfg, n, seed, cond=cond), dtype=np.float32)


def _check_args(n: int, threshold: float) -> None:
    if n < 2:
        raise ConfigError(f"-n must be at least 2, got {n}")
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"--threshold must be in (0, 1], got {threshold}")


def _plots(gen: np.ndarray, real: np.ndarray, sr: int, run_dir: Path, out: Path, over: dict | None) -> dict:
    """The report's PNGs: spectrograms of generated beside real clips, loss curves, metrics over steps."""
    from . import plots as P

    files = {"spectrograms": P.spectrogram_grid(gen, real, sr, out / "report_spectrograms.png")}
    loss_png = P.loss_curves(run_dir / "logs" / "losses.csv", out / "report_losses.png")
    if loss_png is not None:
        files["losses"] = loss_png
    series = over or _read_metrics_csv(run_dir / "logs" / "metrics.csv")
    if series and len(series.get("step", [])) >= 1:
        files["over_steps"] = P.metrics_over_steps(series, out / "report_over_steps.png")
    return {k: str(v) for k, v in files.items()}


@torch.no_grad()
def over_steps(ckpts: list[Path], ds: ClipDataset, real_idx: np.ndarray, n: int, seed: int, device: str = "cpu",
               threshold: float = 0.8, progress: bool = False) -> dict:
    """cheap_metrics of every checkpoint (n clips, seed) against the same n real clips, and how many of the n
    copy a training clip (corr >= threshold, all training clips searched): {"step": [...], key: [...]}."""
    real = torch.from_numpy(np.array(ds.clips[np.sort(real_idx[:max(n, 2)])], dtype=np.float32))
    series: dict[str, list] = {"step": [], "copies": []}
    for p in _bar(ckpts, progress, "checkpoints", "ckpt"):
        try:
            G, cfg, step = load_generator(p, device, best=False)  # each checkpoint's own weights
        except CheckpointError:
            continue
        fake = torch.from_numpy(np.asarray(generate_clips(G, cfg, n, seed), dtype=np.float32))
        vals = cheap_metrics(fake, real, cfg.data.sample_rate)
        mem = memorisation_report(fake.numpy(), ds.clips, ds.manifest["clips"], cfg.data.sample_rate,
                                  threshold=threshold, feature_check=False, device=device)
        series["copies"].append(mem["n_flagged"])
        series["step"].append(step)
        for k, v in vals.items():
            series.setdefault(k, []).append(v)
    return series


def _read_metrics_csv(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return read_csv_columns(path) or None


def _jsonable(x):
    """numpy -> python, NaN/inf -> None (JSON has no NaN; the web page parses this file)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    return x


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.{digits}g}"


def _coverage_row(name: str, gen: dict, base: dict, base_name: str) -> list[str]:
    ratio = gen["coverage"] / max(base["coverage"], 1e-12)
    verdict = "covers them" if ratio >= 0.8 else ("covers part of them" if ratio >= 0.25 else "covers little of them")
    return [name, f"{_fmt(gen['coverage'])} (precision {_fmt(gen['precision'])})",
            f"{_fmt(base['coverage'])} ({base_name})", verdict]


def _copies_over_steps_row(ov: dict) -> list[str]:
    """Which checkpoints copy, and the last that does not: the one to generate from when later ones copy."""
    steps, copies = ov["step"], ov["copies"]
    clean = [s for s, c in zip(steps, copies) if c == 0]
    n_copying = len(steps) - len(clean)
    if not n_copying:
        verdict = "none copy"
    elif not clean:
        verdict = "every checkpoint copies"
    else:
        verdict = f"last without copies: step {clean[-1]}" + (" (the latest)" if clean[-1] == steps[-1] else "")
    return ["checkpoints whose clips copy", f"{n_copying}/{len(steps)}",
            f"at most {max(copies)} copying", verdict]


def _tempo_cell(t: dict, side: str) -> str:
    """The tempo column for 'generated' or 'real' (reports without clip_seconds: assume long enough)."""
    src = {"the manifest's tempo labels": "from the labels"}.get(t.get("real_source", ""), "") if side == "real" else ""
    return verdicts.tempo_text(t[f"{side}_median"] if t[f"{side}_median"] is not None else float("nan"),
                               t[f"{side}_estimable"], t[f"n_{side}"], t.get("clip_seconds", 99.0), src)


def summary_rows(rep: dict) -> list[list[str]]:
    """[metric, generated, real/baseline, verdict] rows for the terminal table."""
    d, no, rh, dv, mem = rep["distribution"], rep["noise"], rep["rhythm"], rep["diversity"], rep["memorisation"]
    tonal = no.get("tonal_share", {})  # reports written before the pitch measure have none
    kid = d["kid"]
    rows = [
        ["Frechet distance (features)", _fmt(d["frechet"]["generated"]),
         f"{_fmt(d['frechet']['real_baseline'])} (ratio {_fmt(d['frechet']['ratio'])})", d["verdict"]],
        ["KID (features, estimate ± se)", verdicts.kid_text(kid["generated"], kid["generated_se"]),
         verdicts.kid_text(kid["real_baseline"], kid["real_baseline_se"]),
         "close to real" if kid["generated"] <= kid["real_baseline"] + 2 * kid["generated_se"] else "far from real"],
        ["spectral flatness (Welch; noise≈1)", _fmt(no["flatness"]["generated"]), _fmt(no["flatness"]["real"]),
         no["verdict"]],
        [f"energy above {no['hf_ratio']['cutoff_hz'] / 1000:g} kHz", _fmt(no["hf_ratio"]["generated"]),
         _fmt(no["hf_ratio"]["real"]), no["verdict"]],
        ["harmonic lines (energy share)", _fmt(tonal.get("generated")), _fmt(tonal.get("real")),
         tonal.get("verdict", "")],
        ["lines held all clip (drone share)", _fmt(no.get("drone_share", {}).get("generated")),
         _fmt(no.get("drone_share", {}).get("real")), ""],  # the pitch verdict above reads it
        ["onset contrast (noise≈1, music>2)", _fmt(no.get("onset_contrast", {}).get("generated")),
         _fmt(no.get("onset_contrast", {}).get("real")), no["verdict"]],
        ["onset rate (/s)", _fmt(rh["onset_rate"]["generated"]), _fmt(rh["onset_rate"]["real"]), rh["verdict"]],
        ["IOI histogram distance (s)", _fmt(rh["ioi_distance"]["generated"]),
         f"{_fmt(rh['ioi_distance']['real_baseline'])} (real vs real)", rh["verdict"]],
        ["tempo median (BPM)", _tempo_cell(rh["tempo"], "generated"), _tempo_cell(rh["tempo"], "real"), ""],
    ]
    if "tempo_vs_labels" in rh:
        tl = rh["tempo_vs_labels"]
        rows.append(["tempo from real audio vs labels: median |error|", "",
                     f"{_fmt(tl['median_abs_error_bpm'])} BPM, {_fmt(100 * tl['within_4pct'], 2)}% within 4% "
                     f"({tl['n_estimable']}/{tl['n_labelled']} estimable)", ""])
    cov = d.get("coverage", {})
    if cov.get("generated") and cov.get("real_baseline"):
        rows.append(_coverage_row("coverage of real clips (Naeem)", cov["generated"], cov["real_baseline"],
                                  "real probe"))
    rows += [
        ["diversity (pairwise feature dist.)", _fmt(dv["generated"]), f"{_fmt(dv['real'])} (ratio {_fmt(dv['ratio'])})",
         dv["verdict"]],
        [f"memorisation: max corr (flag ≥ {mem['threshold']:g})", _fmt(mem["max_corr"]),
         f"{mem['n_flagged']}/{mem['n_generated']} flagged", mem["verdict"]],
    ]
    if "held_back" in rep:
        hb = rep["held_back"]
        rows.append(["data-copying z vs held-back (Meehan)", _fmt(hb["copy_z"]),
                     f"{hb['n_held']} held-back clips, FD {_fmt(hb['frechet'])}", hb["verdict"]])
        hc = hb.get("coverage", {})
        if hc.get("generated") and hc.get("training_clips"):
            rows.append(_coverage_row("coverage of held-back clips", hc["generated"], hc["training_clips"],
                                      "training clips"))
    if rep.get("over_steps", {}).get("copies"):
        rows.append(_copies_over_steps_row(rep["over_steps"]))
    st = rep.get("structure", {})
    rows.append(["bar repetition of 30-s pieces (cycle)",
                 f"{_fmt(st['bar_score']['generated'])} ({_fmt(st['cycle']['generated'])})" if "bar_score" in st else "",
                 f"{_fmt(st['bar_score']['real'])} ({_fmt(st['cycle']['real'])})" if "bar_score" in st else "",
                 st.get("verdict", "")])
    if "autoencoder" in rep:  # two stages: which one limits the sound
        ae = rep["autoencoder"]
        rows.append(["stage 1: reconstruction log-mel distance", _fmt(ae["mel_distance"]),
                     f"{_fmt(ae['mel_distance_other_clip'])} (another real clip)", ""])
        if "tonal_share" in ae:
            rows.append(["stage 1: harmonic lines kept", _fmt(ae["tonal_share"]["reconstructed"]),
                         _fmt(ae["tonal_share"]["real"]), ae["tonal_share"]["verdict"]])
        if "flatness" in ae:
            rows.append([f"stage 1: spectral flatness (decoder contrast {ae['flatness']['contrast']:.2f})",
                         _fmt(ae["flatness"]["reconstructed"]), _fmt(ae["flatness"]["real"]), ""])
        if "partials" in ae:
            rows.append(["stage 1: partials where the recording's are", _fmt(ae["partials"]["own_recording"]),
                         f"{_fmt(ae['partials']['other_recordings'])} (another recording)", ae["partials"]["verdict"]])
    if "feature_min_ratio" in mem:
        rows.append(["nearest train clip (feature ratio, min)", _fmt(mem["feature_min_ratio"]), "1 = real spacing", ""])
    return rows


PIECE_SECONDS = 30.0


def _real_pieces(ds: ClipDataset, sr: int, n_max: int = 4) -> list[tuple[np.ndarray, float | None]]:
    """Up to ``n_max`` stretches of ``PIECE_SECONDS`` rebuilt from the clips of one source file each, with the
    file's tempo label (None when unlabelled)."""
    by_file: dict[str, list[int]] = {}
    for i in range(len(ds)):
        by_file.setdefault(str(ds.source(i).get("file", "")), []).append(i)
    out = []
    for idx in by_file.values():
        starts = np.array([float(ds.source(i).get("start", 0.0)) for i in idx])
        keep = [i for i, t in zip(idx, starts) if t - starts.min() < PIECE_SECONDS]
        x = rhythm.stitch(np.asarray(ds.clips[keep], dtype=np.float64), starts[:len(keep)], sr)
        if len(x) >= PIECE_SECONDS * sr:
            bpm = np.nanmedian(ds.bpm[idx]) if np.isfinite(ds.bpm[idx]).any() else None
            out.append((x[:int(PIECE_SECONDS * sr)], float(bpm) if bpm is not None else None))
        if len(out) == n_max:
            break
    return out


@torch.no_grad()
def _structure(G: torch.nn.Module, cfg, ds: ClipDataset, seed: int, n_pieces: int = 2) -> dict:
    """Bar-level repetition (``structure.bar_repetition``) of generated 30-s pieces beside real ones."""
    from ..generate import generate_long
    from ..stream import is_longform
    from .structure import bar_repetition

    sr = cfg.data.sample_rate
    if not is_longform(G):
        return {"verdict": "n/a: this model makes one window; bar repetition needs pieces of 30 s"}
    real = _real_pieces(ds, sr)
    if not real:
        return {"verdict": f"n/a: no source file gives {PIECE_SECONDS:g} s of contiguous clips"}
    labels = [b for _, b in real if b is not None]
    bpm = float(np.median(labels)) if labels and cfg.model.tempo_conditioning else None
    gen = [bar_repetition(generate_long(G, cfg, PIECE_SECONDS, seed=seed + k, bpm=bpm), sr, bpm=bpm)
           for k in range(n_pieces)]
    ref = [bar_repetition(x, sr, bpm=b) for x, b in real]
    g, r = (float(np.nanmean([d[k] for d in ds_])) for ds_, k in ((gen, "score"), (ref, "score")))
    gc, rc = (float(np.nanmean([d["cycle"] for d in ds_])) for ds_ in (gen, ref))
    return {"bar_score": {"generated": g, "real": r}, "cycle": {"generated": gc, "real": rc},
            "n_generated": len(gen), "n_real": len(ref), "verdict": verdicts.structure_verdict(g, r, gc, rc)}


# ---------------------------------------------------------------------------------------------------
# during training
# ---------------------------------------------------------------------------------------------------
EVAL_BATCH = 16
METRICS_CSV_FIELDS = ["step"] + CHEAP_METRIC_KEYS


@torch.no_grad()
def training_metrics(G: torch.nn.Module, cfg, ds: ClipDataset, step: int, run_dir: Path, writer=None,
                     n: int = EVAL_BATCH) -> dict[str, float]:
    """What the training loop calls every ``train.eval_every`` steps: :func:`cheap_metrics` of ``n`` clips
    from fixed latents against the same ``n`` real clips each time, appended to ``logs/metrics.csv``
    (rows after ``step`` from an earlier, resumed attempt are dropped) and to TensorBoard as ``eval/*``.
    Leaves every global RNG and G's train/eval mode as they were, so exact resume still holds."""
    with torch.random.fork_rng(devices=[]):  # the clips of a fixed seed, in eval mode: see generate.forward
        fake = torch.from_numpy(generate_clips(G, cfg, n, cfg.train.seed + 104729, batch_size=n))
    idx = np.sort(np.random.default_rng([cfg.train.seed, 104729]).choice(len(ds), min(n, len(ds)), replace=False))
    real = ds.batch(idx)[0]
    vals = cheap_metrics(fake, real, cfg.data.sample_rate)
    path = Path(run_dir) / "logs" / "metrics.csv"
    rows = rows_up_to(path, step - 1)
    rows.append({"step": step, **{k: f"{v:.6g}" for k, v in vals.items()}})
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRICS_CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    if writer is not None:
        for k, v in vals.items():
            if math.isfinite(v):
                writer.add_scalar(f"eval/{k}", v, step)
    return vals
