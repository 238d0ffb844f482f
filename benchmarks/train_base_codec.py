"""Train the shipped base autoencoder of ``bars`` (src/djenerator/base/codec_bars.pt): stage 1 of the two-stage model.

    OMP_NUM_THREADS=1 python benchmarks/train_base_codec.py --cpu-minutes 60   # resumable: run again to go on
    OMP_NUM_THREADS=1 python benchmarks/train_base_codec.py --no-train         # only export the latest checkpoint

1. data, none of it in an evaluation set (``benchmarks/fetch_real_music.sh``: nexuiz, openarena):
   ``--riffs`` built-in synth riffs of 30 s (``djenerator synth``, seeds from ``--riff-seed``; the quality
   benchmark's built-in set uses seeds 0-23), the Warzone 2100 soundtracks (Debian ``warzone2100-music``,
   GPL-2+, Legacy/Aftermath also CC-BY-SA-3.0+) and the ASC music (Debian ``asc-music``, GPL-2+), fetched
   into ``WORK/real`` and prepared together at the preset's rate into 3-s clips every 6 s (peak-normalised
   like a user's dataset, no tempo estimate);
2. ``codec_train.train_codec`` with the ``bars`` preset's autoencoder and settings (``train.codec_base=none``:
   from scratch), checkpoints every ``--every`` steps in ``WORK/run/codec`` (all kept), until ``--steps`` or
   ``--cpu-minutes`` of this process's CPU time;
   With ``--set train.codec_base=FILE`` the first leg starts from that base (in a fresh ``--work``), and the
   export's provenance puts FILE's own command first;
3. export the latest checkpoint with ``djenerator.base.export_codec_base`` (weights only, fp32,
   weights_only-loadable, with the command, data, licences and steps as provenance).
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_SETS = {"warzone2100": "Warzone 2100 soundtracks (Debian warzone2100-music 4.3.3; GPL-2+, the Legacy and "
                            "Aftermath albums also CC-BY-SA-3.0 or later, by LupusMechanicus)",
             "asc": "Advanced Strategic Command music (Debian asc-music 1.3; GPL-2+, Michael Kievernagel)"}


def raw_folder(work: Path, riffs: int, riff_seed: int, sr: int) -> Path:
    """WORK/raw: links to the riffs and to every file of the base sets (one folder for ``prepare``)."""
    from djenerator.data.prepare import find_audio
    from djenerator.synth import synth_dataset

    riff_dir = work / "riffs"
    if not (riff_dir / "metadata.json").is_file():
        synth_dataset(riff_dir, n_files=riffs, seconds=30.0, sr=sr, seed=riff_seed)
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    sources = [("riffs", riff_dir)]
    for name in BASE_SETS:
        dest = work / "real" / name
        subprocess.run(["bash", str(ROOT / "benchmarks" / "fetch_real_music.sh"), name, str(dest)], check=True,
                       stdout=subprocess.DEVNULL)
        sources.append((name, dest))
    for name, folder in sources:
        for f in find_audio(folder):
            link = raw / f"{name}__{f.name}"
            if not link.exists():
                link.symlink_to(f.resolve())
    return raw


def read_legs(run: Path) -> list[dict]:
    """The base's training history, one entry per invocation that trained: steps from/to and the critic's weight."""
    path = run / "legs.json"
    return json.loads(path.read_text()) if path.is_file() else []


def record_leg(run: Path, start: int, stop: int, a: argparse.Namespace) -> None:
    from djenerator.io import atomic_write_text

    legs = [leg for leg in read_legs(run) if leg["to"] <= start]
    if not legs and start > 0:  # trained before legs were recorded: reconstruction only
        legs = [{"from": 0, "to": start, "adversarial": 0.0}]
    legs.append({"from": start, "to": stop, "adversarial": a.adversarial})
    atomic_write_text(run / "legs.json", json.dumps(legs, indent=1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("base_codec_work"))
    ap.add_argument("--steps", type=int, default=100000, help="stop at this stage-1 step")
    ap.add_argument("--cpu-minutes", type=float, default=60.0, help="stop after this much CPU time of this process")
    ap.add_argument("--riffs", type=int, default=128)
    ap.add_argument("--riff-seed", type=int, default=1000)
    ap.add_argument("--every", type=int, default=500, help="checkpoint every N steps (all kept)")
    ap.add_argument("--adversarial", type=float, default=0.0,
                    help="train.codec_adversarial: weight of the multi-resolution STFT critic (0 = reconstruction only)")
    ap.add_argument("--set", action="append", default=[], help="a config override for every leg, e.g. model.dim=24")
    ap.add_argument("--no-train", action="store_true", help="only export the latest checkpoint")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "djenerator" / "base" / "codec_bars.pt")
    a = ap.parse_args(argv)
    import torch

    from djenerator import codec_train as ct
    from djenerator.base import export_codec_base, load_codec_base
    from djenerator.checkpoint import latest_checkpoint, load_checkpoint
    from djenerator.config import DataConfig, build_config
    from djenerator.data.dataset import ClipDataset
    from djenerator.data.prepare import prepare

    torch.set_num_threads(1)
    cfg = build_config("bars", overrides=["train.codec_base=none", f"train.codec_steps={a.steps}",
                                          f"train.codec_adversarial={a.adversarial}",
                                          f"train.ckpt_every={a.every}", "train.keep_checkpoints=1000",
                                          f"train.sample_every={a.every * 4}", "train.log_every=50", *a.set])
    data = a.work / "dataset"
    if not (data / "manifest.json").is_file():
        raw = raw_folder(a.work, a.riffs, a.riff_seed, cfg.data.sample_rate)
        clip = 65536
        prepare(raw, data, DataConfig(sample_rate=cfg.data.sample_rate, clip_samples=clip, hop_samples=2 * clip,
                                      estimate_tempo=False))
    ds, run = ClipDataset(data), a.work / "run"
    if not a.no_train:
        t0, budget = time.process_time(), ct.Budget(max_cpu_seconds=a.cpu_minutes * 60)
        signal.signal(signal.SIGINT, lambda *_: budget.stop.append(True))  # Ctrl-C: save a checkpoint, then export
        last = latest_checkpoint(run / "codec")
        before = int(load_checkpoint(last)["step"]) if last is not None else 0
        _, step, why = ct.train_codec(cfg, ds, run, True, budget)
        print(f"stage 1 at step {step} ({why}) after {time.process_time() - t0:.0f} CPU-s in this process", flush=True)
        if step > before:
            record_leg(run, before, step, a)
    last = latest_checkpoint(run / "codec")
    if last is None:
        sys.exit(f"no autoencoder checkpoint in {run / 'codec'}")
    step = int(load_checkpoint(last)["step"])
    legs = [leg for leg in read_legs(run) if leg["to"] <= step] or [{"from": 0, "to": step, "adversarial": 0.0}]
    cmd = "; then ".join(f"OMP_NUM_THREADS=1 python benchmarks/train_base_codec.py --steps {leg['to']} --cpu-minutes 100000 "
                         f"--riffs {a.riffs} --riff-seed {a.riff_seed} --every {a.every}"
                         + (f" --adversarial {leg['adversarial']}" if leg["adversarial"] else "")
                         + "".join(f" --set {o}" for o in a.set) for leg in legs)
    prov = {"command": cmd, "step": step, "preset": "bars", "clips": len(ds),
            "legs": legs,
            "data": {"riffs": f"djenerator synth: {a.riffs} riffs of 30 s, seeds {a.riff_seed}-{a.riff_seed + a.riffs - 1} "
                              "(built-in, the project's own)", **BASE_SETS},
            "prepared": "22050 Hz, 3-s clips every 6 s, peak-normalised",
            "not_in": "the evaluation sets of benchmarks/fetch_real_music.sh (nexuiz, openarena)"}
    if cfg.train.codec_base != "none":  # trained on from another base: how that one was made comes first
        start = ct.resolve_codec_base(cfg.train.codec_base, cfg.data.sample_rate)
        before = load_codec_base(start).get("provenance", {})
        prov["from_base"] = {"file": start.name, "provenance": before}
        prov["command"] = (f"{before.get('command', f'(the base {start.name})')}; then, in a fresh --work, from that base "
                           f"as {start.name}: {cmd}")
    out = export_codec_base(last, a.out, prov)
    print(f"step {step} -> {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
