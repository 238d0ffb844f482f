"""Training and generation throughput of every preset, against the machine's measured matmul peak.

    python benchmarks/throughput.py                       # CPU, all presets, batch 4 and 8 (5-9 min on 2 shared cores; wavegan is most of it)
    python benchmarks/throughput.py --device cuda --batch-sizes 16,64,256
    python benchmarks/throughput.py --presets original --batch-sizes 32 --set train.amp=true

For each (preset, global batch size) it runs the real training loop (:func:`djenerator.train.train`) on a
synthetic memory-mapped dataset in a fresh subprocess (so peak memory is that configuration's) and reports:

- steps/s: training steps (d_steps critic updates + one generator update) per second, after warm-up;
- audio s/s: seconds of real audio the discriminator sees per second (batch * d_steps * clip seconds * steps/s);
- load %: time to read one step's batches from the memmap, as a share of the step (how close loading is
  to starving the step; the loop prefetches in a background thread, so up to 100 % is hidden);
- gen RTF b1 / b64: seconds of audio generated per second of wall time (eval mode, batch 1 and 64);
- peak RSS (and peak CUDA memory on GPU);
- GFLOP/step counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions; FFTs are
  not counted) over one training step, that divided by the step time, and as a % of the peak matmul rate
  measured on this machine (fp32 on CPU, bf16 on GPU).

Timing hooks into the loop through ``Optimizer.register_step_post_hook`` on the generator's optimiser (the
last thing a step does), so it measures whatever train.py does, with logging every ``train.log_every`` steps
as in real runs. ``--train-file OLD.py`` times another version of train.py (before/after comparisons).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


class _Stop(Exception):
    pass


from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


class FlopCounter(FlopCounterMode):
    """FlopCounterMode without its per-module tracker, whose backward hooks fail inside the gradient
    penalty's ``autograd.grad`` (torch 2.13); all FLOPs count under "Global"."""

    def __enter__(self):
        try:
            from torch.utils.flop_counter import _FlopCounterMode
        except ImportError:
            return super().__enter__()
        self.flop_counts.clear()
        self.mode = _FlopCounterMode(self)
        self.mode.__enter__()
        return self

    def __exit__(self, *args):
        if not hasattr(self, "mode") or self.mode is None or type(self.mode).__name__ != "_FlopCounterMode":
            return super().__exit__(*args)
        b = self.mode.__exit__(*args)
        self.mode = None
        return b


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_matmul(device: str) -> tuple[float, str]:
    """Measured dense matmul rate in FLOP/s: fp32 on CPU, bf16 on CUDA (random data, median of reps)."""
    if device.startswith("cuda"):
        n, dtype, reps = 8192, torch.bfloat16, 10
    else:
        n, dtype, reps = 2048, torch.float32, 5
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / float(np.median(times)), ("bf16" if dtype == torch.bfloat16 else "fp32")


def make_dataset(path: Path, clip_samples: int, sample_rate: int, n: int = 256) -> Path:
    """Synthetic prepared dataset (clips.npy + manifest.json): decaying harmonic plucks plus noise."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(clip_samples) / sample_rate
    clips = np.lib.format.open_memmap(path / "clips.npy", mode="w+", dtype=np.float32, shape=(n, clip_samples))
    for i in range(n):
        f0 = rng.uniform(60, 240)
        x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * np.exp(-t * rng.uniform(2, 8))
        x = x + 0.02 * rng.standard_normal(clip_samples)
        clips[i] = (0.9 * x / np.abs(x).max()).astype(np.float32)
    clips.flush()
    manifest = {"sample_rate": sample_rate, "clip_samples": clip_samples,
                "clips": [{"source": "synthetic", "start": 0.0, "bpm": None} for _ in range(n)]}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def load_train_module(train_file: str | None):
    if not train_file:
        import djenerator.train as mod

        return mod
    spec = importlib.util.spec_from_file_location("djenerator._bench_train", train_file,
                                                  submodule_search_locations=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "djenerator"
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def time_training(mod, cfg, ds_path: Path, device: str, seconds: float) -> tuple[float, int, float]:
    """(seconds per step, steps timed, FLOPs of one step) of the real training loop.

    A post-step hook on the generator's optimiser times it: step 1 (the warm-up) is FLOP-counted (the counter is
    entered when train() builds its first optimiser, and nothing between that and the first step does arithmetic)
    and steps 2.. are timed until ``seconds`` have passed."""
    state = {"n": 0, "t0": None, "t_end": None, "n0": 0, "flops": None, "fc": None}
    min_steps = 2
    make_opt = mod.make_optimizer

    def hook(opt, *_):
        state["n"] += 1
        n = state["n"]
        if n == 1:
            state["fc"].__exit__(None, None, None)
            state["flops"] = state["fc"].get_total_flops()
            sync(device)
            state["t0"], state["n0"] = time.perf_counter(), n
        elif time.perf_counter() - state["t0"] >= seconds and n - state["n0"] >= min_steps:
            sync(device)
            state["t_end"] = time.perf_counter()
            raise _Stop

    def patched(params, cfg_, lr):
        opt = make_opt(params, cfg_, lr)
        if not getattr(patched, "done", False):  # the first optimiser train() builds is the generator's
            opt.register_step_post_hook(hook)
            patched.done = True
            state["fc"] = FlopCounter(display=False)
            state["fc"].__enter__()
        return opt

    mod.make_optimizer = patched
    try:
        with tempfile.TemporaryDirectory() as run:
            try:
                mod.train(cfg, ds_path, Path(run) / "r", progress=False, log=lambda m: None)
            except _Stop:
                pass
    finally:
        mod.make_optimizer = make_opt
    steps = state["n"] - state["n0"]
    return (state["t_end"] - state["t0"]) / steps, steps, state["flops"]


def load_seconds(mod, cfg, ds_path: Path, batch: int) -> float:
    """Data loading cost of one training step (what the prefetch hides)."""
    from djenerator.data.dataset import ClipDataset

    ds = ClipDataset(ds_path)
    idx = [mod.batch_indices(len(ds), batch, 0, s, 0) for s in range(20)]
    t0 = time.perf_counter()
    for i in idx:
        ds.batch(i)
    return (time.perf_counter() - t0) / len(idx) * cfg.train.d_steps


def generation_rtf(G: torch.nn.Module, cfg, device: str, seconds: float, batch: int) -> float:
    """Seconds of audio ``G`` (in eval mode) draws per second of wall time at ``batch``."""
    z = torch.randn(batch, cfg.model.latent_dim, device=device)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.train.amp and device.startswith("cuda")) \
        else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), ctx:
        G(z)
        sync(device)
        n, t0 = 0, time.perf_counter()
        while True:
            G(z)
            n += 1
            sync(device)
            el = time.perf_counter() - t0
            if el >= min(1.0, seconds / 4) and n >= 2:
                break
    return batch * cfg.data.clip_samples / cfg.data.sample_rate * n / el


def measure_one(preset: str, batch: int, device: str, seconds: float, sets: list[str], train_file: str | None,
                data_root: Path) -> dict:
    from djenerator.config import build_config
    from djenerator.models import build_generator

    cfg = build_config(preset, [], [f"train.batch_size={batch}", f"train.device={device}", "train.steps=1000000000",
                                    "train.ckpt_every=1000000000", "train.sample_every=1000000000", *sets])
    T, sr = cfg.data.clip_samples, cfg.data.sample_rate
    ds_path = data_root / f"ds_{T}_{sr}"
    if not (ds_path / "manifest.json").is_file():
        make_dataset(ds_path, T, sr)
    mod = load_train_module(train_file)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    step_s, steps, flops = time_training(mod, cfg, ds_path, device, seconds)
    load_s = load_seconds(mod, cfg, ds_path, batch)
    G = build_generator(cfg).to(device).eval()  # one generator timed at both batch sizes
    rtf = {b: generation_rtf(G, cfg, device, seconds, b) for b in (1, 64)}
    out = {
        "preset": preset, "batch": batch, "steps_per_s": 1.0 / step_s, "step_ms": 1000 * step_s,
        "audio_s_per_s": batch * cfg.train.d_steps * T / sr / step_s, "load_pct": 100 * load_s / step_s,
        "rtf_b1": rtf[1], "rtf_b64": rtf[64], "flops_per_step": flops,
        "flops_per_s": flops / step_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps_timed": steps,
    }
    if device.startswith("cuda"):
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def table(rows: list[dict], peak: float, peak_kind: str, device_desc: str) -> str:
    head = (f"{'preset':<12}{'batch':>6}{'steps/s':>9}{'audio s/s':>11}{'load %':>8}{'gen RTF b1':>11}"
            f"{'RTF b64':>9}{'peak RSS MB':>12}{'GFLOP/step':>11}{'GFLOP/s':>9}{'util %':>8}")
    has_cuda = any("peak_cuda_mb" in r for r in rows)
    if has_cuda:
        head += f"{'CUDA MB':>9}"
    lines = [f"device: {device_desc}; torch {torch.__version__}; measured peak matmul ({peak_kind}): "
             f"{peak / 1e9:.1f} GFLOP/s", head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['preset']:<12}{r['batch']:>6}  error: {r['error']}")
            continue
        line = (f"{r['preset']:<12}{r['batch']:>6}{r['steps_per_s']:>9.2f}{r['audio_s_per_s']:>11.1f}"
                f"{r['load_pct']:>8.1f}{r['rtf_b1']:>11.1f}{r['rtf_b64']:>9.1f}{r['peak_rss_mb']:>12.0f}"
                f"{r['flops_per_step'] / 1e9:>11.2f}{r['flops_per_s'] / 1e9:>9.1f}{100 * r['flops_per_s'] / peak:>8.1f}")
        if has_cuda:
            line += f"{r.get('peak_cuda_mb', 0):>9.0f}"
        lines.append(line)
    return "\n".join(lines)


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU {platform.processor() or platform.machine()}, {cores} cores, {torch.get_num_threads()} torch threads"


def main(argv: list[str] | None = None) -> None:
    from djenerator.presets import PRESETS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--presets", default=",".join(PRESETS), help="comma-separated preset names")
    p.add_argument("--batch-sizes", default=None, help="comma-separated global batch sizes (default: 4,8 on CPU; "
                   "16,64,256 on GPU)")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per measurement (default 2 CPU, 5 GPU)")
    p.add_argument("--set", dest="sets", action="append", default=[], help="config override, e.g. train.amp=true")
    p.add_argument("--train-file", default=None, help="time this train.py instead of djenerator.train")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    p.add_argument("--one", nargs=2, metavar=("PRESET", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--data-root", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    cuda = a.device.startswith("cuda")
    seconds = a.seconds if a.seconds is not None else (5.0 if cuda else 2.0)
    if a.one:
        row = measure_one(a.one[0], int(a.one[1]), a.device, seconds, a.sets, a.train_file, Path(a.data_root))
        print("ROW " + json.dumps(row), flush=True)
        return
    batches = [int(b) for b in (a.batch_sizes or ("16,64,256" if cuda else "4,8")).split(",")]
    presets = [x.strip() for x in a.presets.split(",") if x.strip()]
    peak, kind = peak_matmul(a.device)
    rows = []
    with tempfile.TemporaryDirectory() as data_root:
        for preset in presets:
            for b in batches:
                cmd = [sys.executable, __file__, "--one", preset, str(b), "--device", a.device, "--seconds",
                       str(seconds), "--data-root", data_root] + sum((["--set", s] for s in a.sets), [])
                if a.train_file:
                    cmd += ["--train-file", a.train_file]
                t0 = time.perf_counter()
                res = subprocess.run(cmd, capture_output=True, text=True)
                found = [ln for ln in res.stdout.splitlines() if ln.startswith("ROW ")]
                if res.returncode != 0 or not found:
                    err = (res.stderr.strip().splitlines() or ["failed"])[-1][:160]
                    rows.append({"preset": preset, "batch": b, "error": err})
                else:
                    rows.append(json.loads(found[-1][4:]))
                print(f"  {preset} batch {b}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    text = table(rows, peak, kind, device_description(a.device))
    print(text)
    if a.json:
        Path(a.json).write_text(json.dumps({"device": device_description(a.device), "torch": torch.__version__,
                                            "peak_flops": peak, "peak_kind": kind, "sets": a.sets, "rows": rows},
                                           indent=1))


if __name__ == "__main__":
    main()
