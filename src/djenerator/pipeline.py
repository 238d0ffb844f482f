"""The whole pipeline in one call, for `djenerator demo` and `make demo`."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Callable

from .config import Config, apply_dict, build_config

DEMO_STEPS = 500  # steps each demo run adds to a run that starts from a shipped base model
DEMO_PIECES = 4  # 30-s pieces the demo writes and judges (seeds 0, 1, ...)
DEMO_MINUTES = 3.0  # time budget of a demo with no base model (e.g. 'recommended' on a GPU)


def demo_preset(preset: str) -> str:
    """The demo's preset: ``auto`` resolves as everywhere (``presets.resolve_preset``)."""
    from .presets import resolve_preset

    return resolve_preset(preset)


def cpu_threads() -> int:
    """Torch threads for CPU training: the cores not already busy (load average), at least one.

    On a 2-core machine beside one busy program, two OpenMP threads wait on each other at every op and
    run ~25x slower than one (measured: 0.06 vs 1.5 steps/s of 'laptop' under load); one thread does not.
    """
    import os

    n = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        busy = 0.0
    return max(1, min(n, int(n - busy + 0.5)))


def cli_name() -> str:
    """How the user called us, for commands we print: the djenerator script's path, or python -m djenerator."""
    arg0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if arg0 is not None and arg0.name == "djenerator":
        return shlex.quote(str(arg0)) if "/" in str(arg0) else "djenerator"
    return "python -m djenerator"


def _demo_config(run_dir: Path, preset: str, base_file: Path | None) -> tuple[Config, dict | None]:
    """The run's own config when it has a checkpoint (it continues), else the base model's, else the preset's."""
    from .base import base_config, load_base
    from .checkpoint import config_of, latest_checkpoint, load_checkpoint

    if (ck := latest_checkpoint(run_dir)) is not None:
        return config_of(load_checkpoint(ck)), None
    if base_file is not None:
        base = load_base(base_file)
        return base_config(base), base
    return build_config(preset), None


def _demo_data(out_dir: Path, cfg: Config, n_files: int, seconds: float, log) -> tuple[Path, Path]:
    from .data.prepare import prepare
    from .synth import synth_dataset

    d = cfg.data
    raw, data = out_dir / "builtin_audio", out_dir / f"dataset_{d.sample_rate}hz_{d.clip_samples}"
    if not (raw / "metadata.json").is_file():
        log(f"[1/6] synthesising {n_files} Djent riffs -> {raw}")
        synth_dataset(raw, n_files=n_files, seconds=seconds, sr=max(16000, d.sample_rate), seed=0)
    if not (data / "manifest.json").is_file():
        log(f"[2/6] preparing clips -> {data}")
        d.hop_samples = d.hop_samples or d.clip_samples // 4
        prepare(raw, data, d, log=log)
    return raw, data


def _render_now(run_dir: Path, gen_dir: Path, seconds: float, log) -> Path | None:
    """A piece from the run's latest checkpoint before training, so that there is something to hear at once."""
    from .checkpoint import latest_checkpoint
    from .generate import generate_long_to_file, load_generator

    ck = latest_checkpoint(run_dir)
    if ck is None:
        return None
    from .stream import is_longform

    G, cfg, step = load_generator(ck)
    if not is_longform(G):
        return None
    path = generate_long_to_file(G, gen_dir / "before_training" / f"piece_step{step}_{seconds:g}s.wav", seconds,
                                 cfg=cfg, progress=False)
    log(f"[3/6] listen now: {path} (step {step}, before this run's training)")
    return path


def run_demo(out_dir: str | Path, preset: str = "auto", minutes: float | None = None, n_files: int = 32,
             seconds: float = 8.0, log: Callable[[str], None] = print, overrides: dict | None = None,
             piece_seconds: float = 30.0, steps: int | None = None, base: str | Path | None = "auto",
             eval_n: int = 16) -> dict:
    """Built-in Djent data -> prepare -> (start from the shipped base model) -> train -> generate -> judge.

    With a base model (``base='auto'``: the preset's shipped one, if any) the run starts at the base's step and
    trains ``steps`` more (default DEMO_STEPS); each call continues the run. Without one it trains for
    ``minutes`` (default DEMO_MINUTES). ``minutes`` also caps a step budget.
    """
    import torch

    threads = torch.get_num_threads()
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads())
        log(f"using {torch.get_num_threads()} of {os.cpu_count()} CPU cores (the others are busy)"
            if torch.get_num_threads() < (os.cpu_count() or 1) else f"using {torch.get_num_threads()} CPU threads")
    try:
        return _run_demo(out_dir, preset, minutes, n_files, seconds, log, overrides, piece_seconds, steps, base, eval_n)
    finally:
        torch.set_num_threads(threads)


def _run_demo(out_dir, preset, minutes, n_files, seconds, log, overrides, piece_seconds, steps, base, eval_n) -> dict:
    from .base import base_path, seed_run
    from .train import train

    preset = demo_preset(preset)
    out_dir = Path(out_dir)
    run_dir, gen_dir = out_dir / "runs" / preset, out_dir / "generated"
    base_file = base_path(preset) if base == "auto" else (Path(base) if base else None)
    cfg, base_ck = _demo_config(run_dir, preset, base_file)
    if overrides:
        apply_dict(cfg, overrides)
    raw, data = _demo_data(out_dir, cfg, n_files, seconds, log)
    if base_ck is not None:
        seed_run(base_ck, run_dir, cfg)
        log(f"starting from the shipped base model {base_file.name} (step {base_ck['step']}, trained on the "
            f"built-in riffs only) -> {run_dir}")
    before = _render_now(run_dir, gen_dir, piece_seconds, log)
    from .checkpoint import latest_checkpoint

    start = _step_of(latest_checkpoint(run_dir))
    if steps is None and minutes is None:
        steps, minutes = (DEMO_STEPS, None) if start > 0 else (None, DEMO_MINUTES)
    cfg.train.steps = start + steps if steps else max(cfg.train.steps, 100_000)
    cfg.train.sample_every = cfg.train.ckpt_every = 200 if steps is None else max(100, min(200, steps))
    budget = f"{steps} steps (to step {cfg.train.steps})" if steps else f"{minutes:g} min"
    log(f"[4/6] training preset '{preset}' for {budget}" + (f", at most {minutes:g} min" if steps and minutes else "")
        + f" -> {run_dir}")
    res = train(cfg, data, run_dir, resume=True, log=log, max_seconds=minutes * 60 if minutes else None)
    log(f"[5/6] generating clips from {res.checkpoint} -> {gen_dir}")
    paths, pieces = _generate(res.checkpoint, gen_dir, cfg, piece_seconds)
    log(f"[6/6] judging the {len(pieces)} pieces against the built-in riffs" if pieces else "[6/6] evaluating")
    report = demo_report(res.checkpoint, pieces, raw, data, out_dir / "evaluation", cfg, eval_n)
    return {"run_dir": run_dir, "checkpoint": res.checkpoint, "generated_dir": gen_dir, "generated": paths,
            "pieces": pieces, "piece_seconds": piece_seconds, "before": before, "step": res.step, "start_step": start, "dataset": data,
            "stopped": res.stopped, **report}


def _step_of(ckpt: Path | None) -> int:
    return int(ckpt.stem.split("_")[1]) if ckpt is not None else 0


def _generate(ckpt: Path, gen_dir: Path, cfg: Config, piece_seconds: float,
              n_pieces: int = DEMO_PIECES) -> tuple[list[Path], list[Path]]:
    """8 clips, and ``n_pieces`` pieces (seeds 0, 1, ...) when the generator makes any length."""
    from .generate import Request, load_generator, write_files
    from .stream import is_longform

    G, g_cfg, _ = load_generator(ckpt)
    paths = write_files(G, g_cfg, Request(n=8, seed=0), gen_dir)
    if not is_longform(G):  # a fixed-window generator makes clips only
        return paths, []
    pieces = write_files(G, g_cfg, Request(n=n_pieces, seed=0, seconds=piece_seconds), gen_dir)  # seeds 0, 1, ...
    return paths + pieces, pieces


def demo_report(ckpt: Path, pieces: list[Path], raw: Path, data: Path, eval_dir: Path, cfg: Config,
                eval_n: int) -> dict:
    """A short ``evaluate`` of the checkpoint (its summary rows) and the pieces against the riffs (verdict lines).

    The verdict judges the mean over all pieces: one seed can land on a tonal or a noisy stretch, as one riff
    can, so a single piece would make the verdict a coin toss."""
    from .audio import load_audio
    from .evaluate.piece import audio_stats, compare, folder_stats, mean_stats, verdict_lines
    from .evaluate.report import evaluate

    rep = evaluate(ckpt, dataset=data, n=eval_n, max_real=256, out_dir=eval_dir, seed=0)
    out = {"evaluation": rep["report_path"], "eval_summary": rep["summary"], "piece_compare": None, "verdict": [],
           "piece_stats": []}
    if pieces:
        sr = cfg.data.sample_rate
        out["piece_stats"] = [audio_stats(load_audio(p, sr)[0], sr) for p in pieces]
        out["piece_compare"] = compare(mean_stats(out["piece_stats"]), folder_stats(raw, sr))
        out["verdict"] = verdict_lines(out["piece_compare"], out["piece_stats"])
    return out


def demo_epilogue(res: dict, out_dir: Path, steps_more: int = 2000) -> list[str]:
    """What the demo prints last: where to listen, the verdict, and how to go on."""
    cmd = cli_name()
    pieces, secs = res["pieces"], res.get("piece_seconds", 30)
    lines = [f"listen: {pieces[0]}" + (f" and piece_seed1..{len(pieces) - 1} beside it ({len(pieces)} pieces of "
                                       f"{secs:g} s); 8 clips in {res['generated_dir']}")
             if pieces else f"listen: {res['generated_dir']} (8 clips)"]
    if res.get("before"):
        lines.append(f"        {res['before']} (the same piece at step {res['start_step']}, before this run)")
    lines.append(f"trained steps {res['start_step']} -> {res['step']} ({res['stopped']}); "
                 f"evaluation: {res['evaluation']}")
    if res["verdict"]:
        lines.append(f"the {len(pieces)} pieces against the built-in riffs (mean, and the range over pieces):")
        lines += res["verdict"]
    lines.append(f"train longer: {cmd} train {res['dataset']} --run {res['run_dir']} --resume "
                 f"--steps {res['step'] + steps_more}")
    lines.append(f"or run `make demo` (or `{cmd} demo --out {out_dir}`) again: it continues this run.")
    return lines
