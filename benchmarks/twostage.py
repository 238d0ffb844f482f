"""Two-stage model (preset ``bars``) against ``laptop`` at equal process-CPU budget, one thread.

    python benchmarks/twostage.py bars   DATA22 RUN --cpu-minutes 10 [--codec-share 0.4]
    python benchmarks/twostage.py laptop DATA8  RUN --cpu-minutes 10
    python benchmarks/twostage.py judge  SRC_AUDIO RUN[@REPEAT] [RUN ...] [--pieces 8] [--png OUT.png]
    python benchmarks/twostage.py recon  DATA22 RUN --base FILE|none --steps 2000 --probe-every 250
    python benchmarks/twostage.py recon-png DATA22 OUT.png LABEL=CODEC_FILE [...] [--crop 0]
    python benchmarks/twostage.py lines DATA22 LABEL=CODEC_FILE [...]
    python benchmarks/twostage.py checkpoints SRC_AUDIO WORK RUN [-n 64]

``bars`` trains stage 1 for codec-share of the budget (and logs its reconstruction on fixed dataset
crops against CPU seconds to RUN/codec_curve.csv), then stage 2 for the rest. ``laptop`` runs the
ordinary training loop with its clock replaced by process CPU time. ``judge`` renders 30-s pieces of
every run, cuts them into 2-s segments and compares them at 16 kHz with 2-s segments of the source
recordings: log-mel Frechet distance (and the real-vs-real floor), Welch spectral flatness, onset
rate, and bar repetition of the 30-s pieces against 30-s excerpts of the recordings. ``checkpoints`` judges
every stage-2 checkpoint of a run along the way (its average ``G``, trained weights ``G_train`` and kept best
``G_best``): clip FD over the floor and flatness as ``quality.py`` reads them (its real clips in WORK), and the
latent FD that ``train.best_every`` reads, so a user sees whether a longer run helped and what the latent FD chose.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

EVAL_SR = 16000


def _codec_curve(cfg, ds, run: Path, budget_s: float, every_s: float, cpu_done: float = 0.0) -> int:
    """Stage 1 in slices of ``every_s`` CPU seconds, measuring reconstruction after each; continues the run's
    last stage-1 checkpoint if there is one (``cpu_done``: the CPU seconds already spent on it)."""
    from djenerator import codec_train as ct
    from djenerator.checkpoint import latest_checkpoint, load_checkpoint
    from djenerator.models.codec import mel_distance, stft_distance

    probe = ct.crops(ds, 99, 0, 16, 2 * cfg.data.sample_rate // 1024 * 1024)
    last = latest_checkpoint(run / "codec")
    steps = int(load_checkpoint(last)["step"]) if last is not None else 0
    cpu0, rows = time.process_time() - cpu_done, []
    run.mkdir(parents=True, exist_ok=True)
    while time.process_time() - cpu0 < budget_s:
        cfg.train.codec_steps = 10**9
        codec, steps, _ = ct.train_codec(cfg, ds, run, steps > 0, ct.Budget(max_cpu_seconds=every_s), False, lambda m: None)
        with torch.no_grad():
            rec = codec(probe)
            rows.append({"cpu_s": round(time.process_time() - cpu0, 1), "step": steps,
                         "stft": float(stft_distance(rec, probe)), "mel": float(mel_distance(codec, rec, probe))})
        print(rows[-1], flush=True)
    with open(run / "codec_curve.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return steps


def cmd_bars(a) -> None:
    from djenerator import codec_train as ct
    from djenerator.config import build_config
    from djenerator.data.dataset import ClipDataset

    cfg = build_config("bars", overrides=[f"train.seed={a.seed}", "train.steps=1000000", "train.sample_every=1000000",
                                          "train.ckpt_every=1000000"])
    ds, run = ClipDataset(a.data), Path(a.run)
    budget = a.cpu_minutes * 60
    cpu0 = time.process_time()
    if a.more:  # continue stage 2 of a finished run for another --cpu-minutes
        from djenerator.config import Config

        cfg = Config.from_dict(__import__("yaml").safe_load((run / "config.yaml").read_text()))
        codec, c_step, _ = ct.train_codec(cfg, ds, run, True, ct.Budget(), False)
        step, last, _ = ct.train_stage2(cfg, ds, run, True, codec, c_step, ct.Budget(max_cpu_seconds=budget), False)
        print(f"bars: stage 2 continued to {step} steps (+{time.process_time() - cpu0:.0f} CPU-s) -> {last}")
        return
    steps = _codec_curve(cfg, ds, run, a.codec_share * budget, a.every, a.cpu_done)
    cpu0 -= a.cpu_done
    cfg.train.codec_steps = steps
    cfg.save(run / "config.yaml")
    codec, _, _ = ct.train_codec(cfg, ds, run, True, ct.Budget(), False)
    left = budget - (time.process_time() - cpu0)
    step, last, _ = ct.train_stage2(cfg, ds, run, False, codec, steps, ct.Budget(max_cpu_seconds=left), False)
    print(f"bars: stage 1 {steps} steps, stage 2 {step} steps, {time.process_time() - cpu0:.0f} CPU-s -> {last}")


def cmd_recon(a) -> None:
    """Stage 1 alone on DATA from ``--base`` (a base autoencoder file, or none), measuring the reconstruction of
    16 fixed 2-s crops of dataset clips (seed 99, as ``bars``' probes) at step 0 and every ``--probe-every`` steps."""
    from djenerator import codec_train as ct
    from djenerator.config import build_config
    from djenerator.data.dataset import ClipDataset
    from djenerator.models.codec import mel_distance, stft_distance

    ds, run = ClipDataset(a.data), Path(a.run)
    cfg = build_config("bars", overrides=[f"train.seed={a.seed}", f"train.codec_base={a.base}",
                                          "train.sample_every=1000000", "train.ckpt_every=1000000", *a.set])
    probe = ct.crops(ds, 99, 0, 16, 2 * cfg.data.sample_rate // 1024 * 1024)
    sr = cfg.data.sample_rate
    rows, step, cpu = [], 0, 0.0
    for target in [0] + list(range(a.probe_every, a.steps + 1, a.probe_every)):
        if target:
            cfg.train.codec_steps = target
            c0 = time.process_time()
            codec, step, _ = ct.train_codec(cfg, ds, run, step > 0, ct.Budget(), False, lambda m: None)
            cpu += time.process_time() - c0
        else:
            from djenerator.models.codec import Codec

            codec = Codec.of(cfg)
            ct.start_from_base(codec, a.base, lambda m: None)
        with torch.no_grad():
            rec = codec.eval()(probe)
            rows.append({"step": target, "cpu_s": round(cpu, 1), "stft": round(float(stft_distance(rec, probe)), 3),
                         "mel": round(float(mel_distance(codec, rec, probe)), 3),
                         **_texture_ratios(rec[:, 0].numpy(), probe[:, 0].numpy(), sr)})
        print(rows[-1], flush=True)
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "recon_curve.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _texture_ratios(rec: np.ndarray, real: np.ndarray, sr: int) -> dict:
    """Spectral flatness, onset rate and harmonic lines of reconstructions over the real crops' (1 = as noisy, busy,
    pitched); and how each reconstruction's fine structure correlates with its own crop's and with the others'."""
    from djenerator.evaluate.metrics import fine_structure_agreement, spectral_flatness, tonal_share
    from djenerator.evaluate.rhythm import onset_rate

    flat = float(np.mean(spectral_flatness(rec, sr)) / np.mean(spectral_flatness(real, sr)))
    onsets = float(np.mean([onset_rate(x, sr) for x in rec]) / np.mean([onset_rate(x, sr) for x in real]))
    tonal = float(np.mean(tonal_share(rec, sr)) / np.mean(tonal_share(real, sr)))
    own, others = fine_structure_agreement(rec, real, sr)
    return {"flatness_x": round(flat, 2), "onsets_x": round(onsets, 2), "tonal_x": round(tonal, 2),
            "fine_own": round(own, 2), "fine_others": round(others, 2)}


def _codec_from(spec: str):
    """A codec from a base autoencoder file or a stage-1 checkpoint (RUN/codec/checkpoints/step_*.pt)."""
    from djenerator.base import load_codec_base
    from djenerator.checkpoint import CheckpointError, load_checkpoint
    from djenerator.models.codec import Codec

    try:
        ck = load_codec_base(spec)
    except CheckpointError:
        ck = load_checkpoint(spec)
    codec = Codec.of(ck["config"])
    codec.load_state_dict(ck["G"])
    return codec.eval()


def cmd_lines(a) -> None:
    """Where stage 1 loses harmonic lines: ``metrics.tonal_share`` of the 16 probe crops of DATA, of each codec's
    reconstructions, and of the two halves swapped in: the real STFT magnitude with the decoder's phase, and the
    decoder's magnitude with the real phase; and ``lobe_coherence`` of the real and the drawn STFT."""
    from djenerator import codec_train as ct
    from djenerator.config import build_config
    from djenerator.data.dataset import ClipDataset
    from djenerator.evaluate.metrics import tonal_share
    from djenerator.models.codec import lobe_coherence

    cfg = build_config("bars")
    sr = cfg.data.sample_rate
    x = ct.crops(ClipDataset(a.data), 99, 0, 16, 2 * sr // 1024 * 1024)
    share = lambda y: round(float(np.mean(tonal_share(y[:, 0].numpy(), sr))), 3)
    for spec in a.codecs:
        label, path = spec.split("=", 1)
        codec = _codec_from(path)
        with torch.no_grad():
            z = codec.encode(x)
            drawn = codec.spectrum(z)
            real = torch.stft(x[:, 0], codec.n_fft, codec.hop, window=codec.window, center=True,
                              return_complex=True)[..., : drawn.shape[-1]]
            swap = lambda mag, ph: codec.istft(torch.polar(mag.abs(), ph.angle()), z.shape[-1])
            print({"codec": label, "real": share(x), "reconstructed": share(codec.istft(drawn, z.shape[-1])),
                   "real magnitude, decoder phase": share(swap(real, drawn)),
                   "decoder magnitude, real phase": share(swap(drawn, real)),
                   "lobe coherence real": round(float(lobe_coherence(real)), 2),
                   "lobe coherence drawn": round(float(lobe_coherence(drawn)), 2)}, flush=True)


def cmd_pattern(a) -> None:
    """Is each codec's fine structure the music's or its own? ``metrics.fine_structure_pattern`` (0.5-5 kHz) of 32
    crops of 3 s of DATA (seed 7): the recordings, and per codec its drawn magnitude and its audio (round 22); and
    ``fine_structure_match``: how each reconstruction's pattern correlates with its own recording's (round 23)."""
    from djenerator import codec_train as ct
    from djenerator.data.dataset import ClipDataset
    from djenerator.evaluate.metrics import fine_structure_match, fine_structure_pattern

    codecs = [(spec.split("=", 1)[0], _codec_from(spec.split("=", 1)[1])) for spec in a.codecs]
    c0 = codecs[0][1]
    x = ct.crops(ClipDataset(a.data), 7, 0, 32, 3 * c0.sample_rate // 1024 * 1024)
    lo, hi = (round(f * c0.n_fft / c0.sample_rate) for f in (500.0, 5000.0))
    real = torch.log(c0.stft(x).abs() + 1e-7).numpy()
    show = lambda logmag: "correlation %.2f, size %.3f" % fine_structure_pattern(logmag.numpy(), lo, hi)
    match = lambda logmag: "own recording's %.2f (others' %.2f)" % fine_structure_match(logmag.numpy(), real, lo, hi)
    print("recordings:", show(torch.from_numpy(real)))
    for label, codec in codecs:
        with torch.no_grad():
            z = codec.encode(x)
            drawn, audio = codec.log_magnitude(z).transpose(1, 2), codec.decode(z)
        heard = torch.log(codec.stft(audio).abs() + 1e-7)
        print(f"{label}: drawn {show(drawn)}, {match(drawn)}; audio {show(heard)}, {match(heard)}", flush=True)


def cmd_recon_png(a) -> None:
    """Log-mel of probe crop ``--crop`` of DATA (the ``recon`` probes) beside its reconstruction by each codec; with
    ``--linear HZ``, the linear-frequency STFT magnitude up to HZ instead (where harmonic lines show)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from djenerator import codec_train as ct
    from djenerator.config import build_config
    from djenerator.data.dataset import ClipDataset

    cfg = build_config("bars")
    sr = cfg.data.sample_rate
    x = ct.crops(ClipDataset(a.data), 99, 0, 16, 2 * sr // 1024 * 1024)[a.crop:a.crop + 1]
    named = [("real", x)]
    for spec in a.codecs:
        label, path = spec.split("=", 1)
        with torch.no_grad():
            named.append((label, _codec_from(path)(x)))
    codec = _codec_from(a.codecs[0].split("=", 1)[1])
    if a.linear:
        bins = int(a.linear * codec.n_fft / sr)
        stft = lambda y: torch.stft(y[:, 0], codec.n_fft, codec.hop, window=codec.window, return_complex=True)
        specs = [torch.log(stft(y)[0, :bins].abs() + 1e-4).numpy() for _, y in named]
    else:
        specs = [codec.log_mel(y)[0].numpy() for _, y in named]
    vmax = max(float(s.max()) for s in specs)
    top = a.linear or specs[0].shape[0]  # Hz, or mel bands
    fig, axes = plt.subplots(len(specs), 1, figsize=(8, 1.5 * len(specs)), squeeze=False)
    for ax, (name, _), sp in zip(axes[:, 0], named, specs):
        ax.imshow(sp, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 14, vmax=vmax,
                  extent=(0, x.shape[-1] / sr, 0, top))
        ax.set_ylabel(name, fontsize=7)
    fig.tight_layout()
    Path(a.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.png, dpi=70)


def cmd_laptop(a) -> None:
    from djenerator import train as tr
    from djenerator.config import build_config

    cfg = build_config("laptop", overrides=[f"train.seed={a.seed}", "train.steps=1000000", "train.ckpt_every=1000000",
                                            "train.sample_every=1000000", "train.copy_check_clips=0"])
    tr.time = types.SimpleNamespace(perf_counter=time.process_time, strftime=time.strftime)  # CPU-time budget
    res = tr.train(cfg, a.data, a.run, resume=a.more, progress=False, max_seconds=a.cpu_minutes * 60)
    print(f"laptop: {res.step} steps -> {res.checkpoint}")


def _real_audio(src: Path, n_files: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """One excerpt of ``seconds`` (at EVAL_SR) from each of up to n_files recordings, from a random start."""
    from djenerator.audio import load_audio

    files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".wav", ".ogg", ".flac", ".mp3"))
    rng, out = np.random.default_rng(seed), []
    for p in files[:n_files]:
        x, _ = load_audio(p, EVAL_SR)
        n = int(seconds * EVAL_SR)
        if len(x) >= n:
            s = int(rng.integers(0, len(x) - n + 1))
            out.append(x[s:s + n].astype(np.float32))
    return out


def _segments(pieces: list[np.ndarray], seconds: float = 2.0) -> np.ndarray:
    n = int(seconds * EVAL_SR)
    segs = [p[i:i + n] for p in pieces for i in range(0, len(p) - n + 1, n)]
    return np.stack([s / max(np.abs(s).max(), 1e-4) * 0.95 for s in segs]).astype(np.float32)


def _stats(pieces: list[np.ndarray], real_feats, metrics) -> dict:
    from djenerator.evaluate.features import clip_features
    from djenerator.evaluate.structure import bar_repetition

    segs = _segments(pieces)
    feats = clip_features(segs, EVAL_SR)
    rep = [bar_repetition(p, EVAL_SR)["score"] for p in pieces]
    return {"fd": metrics.frechet_distance(real_feats, feats, warn=False),
            "flatness": float(np.mean(metrics.spectral_flatness(segs, EVAL_SR, welch=True))),
            "onsets_per_s": metrics.rhythm_stats(segs, EVAL_SR)["onset_rate_mean"],
            "bar_rep": float(np.nanmean(rep))}


def cmd_judge(a) -> None:
    from djenerator.audio import resample
    from djenerator.evaluate import metrics
    from djenerator.evaluate.features import clip_features
    from djenerator.generate import generate_long, load_generator

    real_long = _real_audio(Path(a.src), a.pieces * 2, 30.0)
    real_a, real_b = real_long[0::2], real_long[1::2]
    real_feats = clip_features(_segments(real_long), EVAL_SR)
    floor = metrics.real_baseline(real_feats, metrics.frechet_distance, warn=False)
    rows = [("real (other half)", _stats(real_b, clip_features(_segments(real_a), EVAL_SR), metrics))]
    rows[0][1]["fd"] = floor
    firsts = []
    for spec in a.runs:  # RUN, or RUN@SHARE for pieces with that share locked to the bar (generate --repeat)
        run, at, share = spec.rpartition("@")
        run, repeat = (run, float(share)) if at else (spec, None)
        G, cfg, step = load_generator(run)
        sr = cfg.data.sample_rate
        pieces = [resample(generate_long(G, cfg, 30.0, seed=s, repeat=repeat), sr, EVAL_SR) for s in range(a.pieces)]
        tag = "" if repeat is None else f", repeat {repeat:g}"
        rows.append((f"{cfg.preset} ({Path(run).name}, {step} steps, {sr} Hz{tag})", _stats(pieces, real_feats, metrics)))
        firsts.append(pieces[0])
    if a.png:
        _spectrograms([("real", real_long[0])] + [(n.split(" (")[0] + " " + Path(r).name, p) for (n, _), r, p in
                                                   zip(rows[1:], a.runs, firsts)], Path(a.png))  # r: RUN[@SHARE]
    print(f"| model | log-mel FD @16k (x floor) | flatness | onsets/s | bar repetition |\n|---|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s['fd']:.1f} ({s['fd'] / floor:.1f}x) | {s['flatness']:.3f} | {s['onsets_per_s']:.2f} | "
              f"{s['bar_rep']:.3f} |")


def cmd_checkpoints(a) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import quality as q

    from djenerator.codec_train import LatentWatch
    from djenerator.data.dataset import ClipDataset
    from djenerator.evaluate.report import find_dataset
    from djenerator.generate import generate_clips, load_generator

    run = Path(a.run)
    G, cfg, _ = load_generator(run)
    sr = cfg.data.sample_rate
    ref = q.real_reference(Path(a.src), Path(a.work), sr, 512)
    lat = torch.load(run / "codec" / "latents.pt", weights_only=True)["latents"].float()
    ds = ClipDataset(find_dataset(run, None))
    watch = LatentWatch(lat, ds, cfg, Path(tempfile.mkdtemp()), 0)  # the latent FD the run's training reads
    print("| checkpoint | weights | clip FD / floor | flatness gen/real | latent FD |\n|---|---|---|---|---|")
    for path in sorted((run / "checkpoints").glob("step_*.pt")):
        ck = torch.load(path, weights_only=True, map_location="cpu")
        for name in ("G", "G_train", "G_best"):
            if name not in ck:
                continue
            G.load_state_dict(ck[name])
            with torch.no_grad():
                clips = generate_clips(G.eval(), cfg, a.n, seed=0)
            j = q.judge(q.segments(np.asarray(clips), sr, sr), sr, ref)
            print(f"| {path.stem} | {name} | {j['fd'] / j['fd_floor']:.2f} | {j['flat_gen'] / j['flat_real']:.2f} | "
                  f"{watch(G, int(ck['step'])):.3f} |", flush=True)
    watch.close()


def _spectrograms(named: list[tuple[str, np.ndarray]], path: Path) -> None:
    """One wide log-mel spectrogram per 30-s piece, stacked, same colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from djenerator.evaluate.features import log_mel

    specs = [log_mel(x[None], EVAL_SR, n_mels=64).numpy()[0] * 10 / np.log(10) for _, x in named]
    vmax = max(float(s.max()) for s in specs)
    fig, axes = plt.subplots(len(specs), 1, figsize=(14, 1.8 * len(specs)), squeeze=False)
    for ax, (name, x), sp in zip(axes[:, 0], named, specs):
        ax.imshow(sp, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
                  extent=(0, len(x) / EVAL_SR, 0, 64))
        ax.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def cmd_speed(a) -> None:
    """Real-time factor of G(z) at batch 16 (process CPU, one thread) and peak memory of a 10-minute piece."""
    import resource

    from djenerator.generate import generate_clips, generate_long_to_file, load_generator

    G, cfg, _ = load_generator(a.runs[0])
    generate_clips(G, cfg, 16, seed=0, batch_size=16)  # warm-up
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    c0 = time.process_time()
    generate_clips(G, cfg, 16, seed=1, batch_size=16)
    cpu = time.process_time() - c0
    rtf = 16 * cfg.data.clip_samples / cfg.data.sample_rate / cpu
    if a.threads > 1:  # wall clock on that many threads: best of 3, since other programs may share the cores
        torch.set_num_threads(a.threads)
        walls = []
        for s in range(3):
            w0 = time.perf_counter()
            generate_clips(G, cfg, 16, seed=2 + s, batch_size=16)
            walls.append(time.perf_counter() - w0)
        print(f"{cfg.preset}: batch 16 on {a.threads} threads -> {16 * cfg.data.clip_samples / cfg.data.sample_rate / min(walls):.0f}x "
              "real time (wall clock, best of 3)")
        torch.set_num_threads(1)
    c0 = time.process_time()
    generate_long_to_file(G, Path(a.out) / "ten_minutes.wav", 600.0, cfg=cfg, progress=False)
    cpu10 = time.process_time() - c0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{cfg.preset}: batch 16 x {cfg.data.clip_samples / cfg.data.sample_rate:.2f} s -> {rtf:.0f}x real time per "
          f"CPU core; 10-min piece {cpu10:.1f} CPU-s ({600 / cpu10:.0f}x), peak RSS {rss1:.0f} MiB (was {rss0:.0f} MiB)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("bars", "laptop"):
        s = sub.add_parser(name)
        s.add_argument("data")
        s.add_argument("run")
        s.add_argument("--cpu-minutes", type=float, default=10.0)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--codec-share", type=float, default=0.4)
        s.add_argument("--every", type=float, default=30.0, help="CPU seconds between reconstruction probes")
        s.add_argument("--more", action="store_true", help="continue a run (bars: its stage 2) for --cpu-minutes more")
        s.add_argument("--cpu-done", type=float, default=0.0, help="bars: CPU seconds already spent on the run's stage 1")
    s = sub.add_parser("recon", help="stage 1 alone: reconstruction against steps, from a base or from scratch")
    s.add_argument("data")
    s.add_argument("run")
    s.add_argument("--base", default="none", help="base autoencoder file, auto, or none (from scratch)")
    s.add_argument("--steps", type=int, default=2000)
    s.add_argument("--probe-every", type=int, default=250)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", action="append", default=[], help="a config override, e.g. train.codec_adversarial=0.1")
    s = sub.add_parser("recon-png", help="spectrogram of a probe crop and its reconstruction by each codec")
    s.add_argument("data")
    s.add_argument("png")
    s.add_argument("codecs", nargs="+", help="LABEL=FILE: a base autoencoder or a stage-1 checkpoint")
    s.add_argument("--crop", type=int, default=0)
    s.add_argument("--linear", type=float, default=0.0, help="show the linear STFT up to this many Hz, not log-mel")
    s = sub.add_parser("lines", help="harmonic lines of the probe crops through each codec: magnitude or phase?")
    s.add_argument("data")
    s.add_argument("codecs", nargs="+", help="LABEL=FILE: a base autoencoder or a stage-1 checkpoint")
    s = sub.add_parser("pattern", help="is each codec's fine structure the music's, or one texture for every clip?")
    s.add_argument("data")
    s.add_argument("codecs", nargs="+", help="LABEL=FILE: a base autoencoder or a stage-1 checkpoint")
    s = sub.add_parser("judge")
    s.add_argument("src")
    s.add_argument("runs", nargs="+", help="RUN, or RUN@SHARE: its pieces with that share locked to the bar")
    s.add_argument("--pieces", type=int, default=8)
    s.add_argument("--png", default=None, help="write a spectrogram of the first 30-s piece of each, beside real")
    s = sub.add_parser("checkpoints", help="every stage-2 checkpoint of a run judged: clip FD, flatness, latent FD")
    s.add_argument("src")
    s.add_argument("work", help="quality.py's --work folder for SRC (its real clips are prepared there once)")
    s.add_argument("run")
    s.add_argument("-n", type=int, default=64)
    s = sub.add_parser("speed")
    s.add_argument("runs", nargs=1)
    s.add_argument("--threads", type=int, default=1, help="also time batch 16 in wall-clock time on this many threads")
    s.add_argument("--out", default="/tmp")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    {"bars": cmd_bars, "laptop": cmd_laptop, "recon": cmd_recon, "recon-png": cmd_recon_png, "lines": cmd_lines,
     "pattern": cmd_pattern, "judge": cmd_judge, "speed": cmd_speed, "checkpoints": cmd_checkpoints}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
