"""The `djenerator` command. Each subcommand parses options and calls one library function."""
from __future__ import annotations

import errno
import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .presets import DEFAULT_PRESET

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train GANs on raw audio and generate new music in the style of the training set.")
console = Console(stderr=True)
out = Console()

RunOpt = typer.Option(None, "--run", "--run-dir", "-r", help="Run folder (default: runs/<preset>); --run-dir under torchrun, whose parser takes --run for its own --run-path.")
PresetOpt = typer.Option(None, "--preset", "-p", help=f"Named configuration: {DEFAULT_PRESET} unless given (auto: laptop on a CPU, recommended on a GPU); see `djenerator presets`.")
ConfigOpt = typer.Option(None, "--config", "-c", help="TOML/YAML config file(s), applied after the preset.")
SetOpt = typer.Option(None, "--set", "-s", help="Override: section.key=value, e.g. train.lr_g=2e-4 (repeatable).")
TrustOpt = typer.Option(False, "--trust-checkpoint", help="Also load checkpoints of older djenerator versions, which hold pickled Python objects that can run code: only for files from a source you trust.")
OS_REASONS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
              errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.ENOTDIR: "a file stands where a folder is needed", errno.EISDIR: "is a folder, not a file",
              errno.EEXIST: "exists and is not a folder", errno.ENOENT: "not found"}


def os_error_message(e: OSError) -> str:
    """One sentence for a failed file operation: the file, then the reason in plain words."""
    reason = OS_REASONS.get(e.errno, e.strerror or type(e).__name__)
    return f"{e.filename}: {reason}" if e.filename else reason


def user_errors(fn):
    """Errors a user can cause end in one clear sentence and exit code 2, not a traceback.

    A command with a ``trust_checkpoint`` option runs inside :func:`djenerator.checkpoint.trusting_checkpoints`.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .audio import AudioError
        from .checkpoint import CheckpointError
        from .config import ConfigError
        from .data.dataset import DatasetError
        from .data.prepare import PrepareError
        from .checkpoint import trusting_checkpoints
        from .io import LockError

        try:
            with trusting_checkpoints(bool(kwargs.get("trust_checkpoint", False))):
                return fn(*args, **kwargs)
        except (ConfigError, AudioError, CheckpointError, DatasetError, PrepareError, LockError) as e:
            _error(str(e))
        except OSError as e:  # a file the user named or a full/read-only disk: not a bug in djenerator
            _error(os_error_message(e))
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _error(message: str) -> None:
    """Print one unwrapped error line and exit with code 2."""
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


@app.command()
@user_errors
def synth(out_dir: Path = typer.Argument(..., help="Folder for the built-in Djent riffs (wav + json metadata)."),
          n: int = typer.Option(16, "-n", help="Number of files."),
          seconds: float = typer.Option(8.0, help="Length of each file."),
          sr: int = typer.Option(16000, "--sr", help="Sample rate."),
          seed: int = typer.Option(0, help="Seed: same seed, same dataset.")):
    """Render the built-in procedural Djent dataset."""
    from .config import ConfigError
    from .synth import synth_dataset

    try:
        paths = synth_dataset(out_dir, n_files=n, seconds=seconds, sr=sr, seed=seed)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    out.print(f"wrote {len(paths)} riffs to {out_dir}")


@app.command()
@user_errors
def prepare(src: Path = typer.Argument(..., help="Folder (or file) of wav/flac/ogg/mp3 audio."),
            output: Path = typer.Option(..., "-o", "--output", help="Dataset folder to create."),
            preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Take rate, clip and hop from this preset (e.g. laptop; auto matches train --preset auto)."),
            sr: Optional[int] = typer.Option(None, "--sr", help="Target sample rate [default: 16000, or the preset's]."),
            clip: Optional[int] = typer.Option(None, "--clip", help="Clip length in samples [default: 16384, or the preset's]."),
            hop: Optional[int] = typer.Option(None, "--hop", help="Hop between clips in samples (0 = clip length)."),
            silence_db: float = typer.Option(-45.0, help="Drop clips quieter than this RMS (dBFS)."),
            normalize: str = typer.Option("peak", help="peak (per clip) | file (one gain per file) | none."),
            no_tempo: bool = typer.Option(False, "--no-tempo", help="Skip tempo and beat estimation (sidecar json labels are still read)."),
            overwrite: bool = typer.Option(False, help="Replace an existing dataset.")):
    """Cut a folder of audio into a memory-mapped dataset of fixed-length clips."""
    from .config import DataConfig, build_config
    from .data.prepare import prepare as run_prepare

    if normalize not in ("peak", "file", "none"):
        raise typer.BadParameter("--normalize must be peak, file or none")
    cfg = build_config(preset).data if preset else DataConfig()
    for key, value in {"sample_rate": sr, "clip_samples": clip, "hop_samples": hop}.items():
        if value is not None:
            setattr(cfg, key, value)
    cfg.silence_db, cfg.normalize, cfg.estimate_tempo = silence_db, normalize, not no_tempo
    rep = run_prepare(src, output, cfg, overwrite=overwrite,
                      log=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True))
    out.print(f"{rep.n_clips} clips ({rep.seconds:.1f} s of audio) from {len(rep.files_used)} file(s) -> {rep.out}")
    if rep.skipped:
        out.print(f"{len(rep.skipped)} file(s) skipped:")
        for f, why in rep.skipped:
            out.print(f"  {why}", markup=False, highlight=False, soft_wrap=True)
    if rep.silent_clips:
        out.print(f"{rep.silent_clips} near-silent clip(s) dropped")


@app.command()
@user_errors
def train(dataset: Path = typer.Argument(..., help="Prepared dataset folder (from `djenerator prepare`)."),
          run: Optional[Path] = RunOpt, preset: Optional[str] = PresetOpt,
          config: Optional[list[Path]] = ConfigOpt, set_: Optional[list[str]] = SetOpt,
          steps: Optional[int] = typer.Option(None, help="Total training steps."),
          minutes: Optional[float] = typer.Option(None, help="Stop (with a checkpoint) after this wall-clock time."),
          cpu_minutes: Optional[float] = typer.Option(
              None, help="Stop (with a checkpoint) after this much CPU time of the training process (all its threads): "
              "a budget that machine load does not change, as benchmarks/quality.py uses."),
          device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N"),
          resume: bool = typer.Option(False, "--resume", help="Continue the run from its last checkpoint (the newest that loads)."),
          quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
          trust_checkpoint: bool = TrustOpt):
    """Train a GAN on a prepared dataset.

    The progress bar counts steps, or with --minutes (--cpu-minutes) the seconds (CPU seconds) of the budget (its ETA is then the budget's end). Its fields: step (done/total), D loss and G loss (the discriminator's and the generator's losses at the last logged step; they pull against each other, so neither falls steadily), steps/s (training speed).
    """  # noqa: E501 (one paragraph: the help text re-wraps it)
    from .train import train as run_train

    flags = {"train.steps": steps, "train.device": device}  # after --set: the flags win
    sets = [*(set_ or []), *(f"{k}={v}" for k, v in flags.items() if v is not None)]
    cfg = _resume_or_new_config(run, resume, preset, config or [], sets)
    run_dir = run or Path("runs") / cfg.preset
    import os

    talk = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 alone prints
    res = run_train(cfg, dataset, run_dir, resume=resume, progress=not quiet,
                    log=(lambda m: console.print(m, markup=False)) if talk else (lambda m: None),
                    max_seconds=minutes * 60 if minutes else None,
                    max_cpu_seconds=cpu_minutes * 60 if cpu_minutes else None)
    if talk:
        out.print(f"{res.stopped} at step {res.step}; checkpoint: {res.checkpoint}; samples: {run_dir / 'samples'}")
    if res.stopped == "diverged":
        raise typer.Exit(1)


def _resume_or_new_config(run, resume, preset, files, sets):
    """A resumed run's config (from its latest good checkpoint), else the preset's; then files and overrides."""
    from .checkpoint import config_of, load_latest_good
    from .config import apply_overrides, build_config

    if resume and run is not None and (found := load_latest_good(run, log=lambda m: None, set_aside=False)) is not None:
        return apply_overrides(config_of(found[1]), files, sets)
    return build_config(preset, files, sets)


@app.command()
@user_errors
def generate(checkpoint: Path = typer.Argument(..., help="Checkpoint file or run folder (its latest checkpoint)."),
             n: Optional[int] = typer.Option(None, "-n", help="Number of clips (default 8), or of pieces with --seconds (default 1; seeds seed, seed+1, ...)."),
             seed: int = typer.Option(0, help="Same seed, same audio."),
             output: Path = typer.Option(Path("generated"), "-o", "--output", help="Output folder (or, with --seconds and one piece, a .wav file)."),
             seconds: Optional[float] = typer.Option(None, "--seconds", help="Make pieces of this length (any length; streamed to disk) instead of training-length clips."),
             batch_size: int = typer.Option(16, help="Clips per forward pass."),
             interpolate_to: Optional[int] = typer.Option(None, "--interpolate-to", help="Interpolate from --seed to this seed: in n clips, or along time with --seconds."),
             bpm: Optional[float] = typer.Option(None, help="Requested tempo (tempo-conditioned models)."),
             repeat: Optional[float] = typer.Option(None, "--repeat", help="With --seconds: how much (0 to 1) each bar repeats the bar before, so riffs come round (two-stage models: bars, bars-gan; 1 plays it again; default: the model's model.bar_repeat)."),
             device: str = typer.Option("cpu", help="cpu | cuda"),
             quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
             trust_checkpoint: bool = TrustOpt):
    """Write generated clips (or, with --seconds, pieces of any length) as wav files."""
    from .generate import generate_to_files

    count = n if n is not None else (8 if seconds is None else 1)
    paths = generate_to_files(checkpoint, output, n=count, seed=seed, batch_size=batch_size, bpm=bpm,
                              interpolate_to=interpolate_to, device=device, log=console.print, seconds=seconds,
                              progress=not quiet, repeat=repeat)
    if seconds is None:
        out.print(f"wrote {len(paths)} clip(s) to {output}")
    else:
        out.print(f"wrote {len(paths)} piece(s) of {seconds:g} s: {', '.join(str(p) for p in paths)}")


@app.command()
@user_errors
def evaluate(target: Path = typer.Argument(..., help="Run folder (its latest checkpoint) or checkpoint file."),
             dataset: Optional[Path] = typer.Option(None, "--dataset", "-d", help="Prepared dataset (default: the run's, from run.json)."),
             n: int = typer.Option(64, "-n", help="Generated clips to evaluate."),
             seed: int = typer.Option(0, help="Seed of the generated clips (clip i = clip i of `generate --seed`)."),
             output: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.json and PNGs (default: the run folder)."),
             threshold: float = typer.Option(0.8, help="Flag a generated clip as a copy at this normalised cross-correlation."),
             all_checkpoints: bool = typer.Option(False, "--all-checkpoints", help="Also plot cheap metrics and copies for every checkpoint of the run, and name the last that does not copy."),
             max_real: int = typer.Option(2000, help="Real clips (random subset) for the distribution metrics."),
             held: Optional[Path] = typer.Option(None, "--held", help="Prepared dataset of music of the same kind that was not trained on: adds the distance to it and the data-copying test."),
             device: str = typer.Option("cpu", help="cpu | cuda"),
             quiet: bool = typer.Option(False, "--quiet", help="No progress messages."),
             trust_checkpoint: bool = TrustOpt):
    """Measure a checkpoint: distance to real data, noise, rhythm, memorisation (copies), diversity; writes report.json + PNGs."""
    import time as _time

    from .evaluate.report import evaluate as run_evaluate

    t0 = _time.perf_counter()
    rep = run_evaluate(target, dataset=dataset, n=n, seed=seed, out_dir=output, threshold=threshold, max_real=max_real,
                       all_checkpoints=all_checkpoints, device=device, progress=not quiet, held=held,
                       log=(lambda m: None) if quiet else (lambda m: console.print(m, markup=False)))
    table = Table("metric", "generated", "real / baseline", "verdict",
                  title=f"{Path(rep['checkpoint']).name} (weights of step {rep['step']}): "
                        f"{rep['n_generated']} generated vs {rep['n_real']} real clips")
    for row in rep["summary"]:
        style = "red" if any(w in row[3] for w in ("copy", "copies", "collapse", "far", "noisier", "unlike")) else None
        table.add_row(*row, style=style)
    out.print(table)
    flagged = [c for c in rep["memorisation"]["clips"] if c["flagged"]]
    for i, c in enumerate(rep["memorisation"]["clips"]):
        if c["flagged"]:
            out.print(f"  clip {i}: corr {c['corr']:.3f} with {c['source_file']} at {c['source_time_s']:.2f} s",
                      markup=False)
    if flagged:
        out.print(f"[bold red]{len(flagged)} generated clip(s) copy training data[/]")
    out.print(f"report: {rep['report_path']}" + "".join(f"\n{k}: {v}" for k, v in rep.get("plots", {}).items())
              + f"\n({_time.perf_counter() - t0:.1f} s)", markup=False)


@app.command()
def presets():
    """List the named configurations."""
    from .presets import describe

    table = Table("preset", "what it is", show_lines=False)
    for name, summary in describe():
        table.add_row(name, summary)
    out.print(table)


@app.command()
@user_errors
def demo(out_dir: Path = typer.Option(Path("demo"), "--out", help="Folder for everything the demo makes."),
         preset: str = typer.Option("auto", help="Preset to train; auto = recommended on a GPU, laptop on a CPU."),
         steps: Optional[int] = typer.Option(None, help="Training steps this run adds (default: 500 from a shipped base model; without one, a time budget)."),
         minutes: Optional[float] = typer.Option(None, help="Cap on training minutes (default: none with a base model; 3 without one, e.g. on a GPU)."),
         files: int = typer.Option(32, help="Built-in riffs to synthesise."),
         no_base: bool = typer.Option(False, "--no-base", help="Train from scratch, not from the shipped base model.")):
    """Built-in Djent data -> prepare -> (shipped base model) -> train -> generate -> judge, end to end.

    With a shipped base model (the laptop preset has one) you hear a piece at once, then training continues
    for a fixed number of steps; running the demo again continues the same run. Progress bar fields:
    d = discriminator loss, g = generator loss, it_s = training steps per second.
    """
    from .pipeline import demo_epilogue, run_demo

    res = run_demo(out_dir, preset=preset, minutes=minutes, steps=steps, n_files=files, base=None if no_base else "auto",
                   log=lambda m: console.print(m, markup=False))
    out.print(f"\n[bold green]done[/]: {len(res['generated'])} generated files in {res['generated_dir']}")
    for line in demo_epilogue(res, out_dir):
        out.print(line, markup=False)


@app.command()
@user_errors
def serve(runs: Path = typer.Option(Path("runs"), "--runs", help="Folder whose sub-folders are runs."),
          host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 opens the server to the network."),
          port: int = typer.Option(8000, help="TCP port."),
          token: Optional[str] = typer.Option(None, envvar="DJENERATOR_TOKEN",
                                              help="Require 'Authorization: Bearer TOKEN' on every API route but "
                                                   "/api/health. Prefer the DJENERATOR_TOKEN variable or "
                                                   "--token-file: a --token value shows in `ps`."),
          token_file: Optional[Path] = typer.Option(None, help="Read the token from this file (first line)."),
          allow_host: Optional[list[str]] = typer.Option(
              None, "--allow-host", help="Another name this server answers to in the Host header (repeatable; "
                                         "'*' turns the DNS-rebinding check off). Loopback and 0.0.0.0 binds "
                                         "also answer to localhost, 127.0.0.1 and [::1]."),
          datasets: Optional[Path] = typer.Option(None, help="Folder of prepared datasets: enables training jobs."),
          workers: int = typer.Option(2, help="Generation worker threads."),
          queue: int = typer.Option(8, help="Generation requests that may wait; beyond it: 503."),
          cache_dir: Optional[Path] = typer.Option(None, help="Folder for the generated-clip cache (default: temp dir)."),
          clip_ttl: float = typer.Option(600.0, min=1, help="Seconds a generated result stays fetchable after a "
                                                            "response names it (the cache keeps it that long)."),
          device: str = typer.Option("cpu", help="cpu | cuda")):
    """Serve the HTTP API and the web page (player, waveforms, loss charts) for a runs folder."""
    from .server import serve as run_server
    from .server.app import ServerConfigError

    if token_file is not None:
        token = _read_token_file(token_file)
    if token is not None and not token.strip():
        console.print("[bold red]error:[/] the token is empty; give a non-empty token or none")
        raise typer.Exit(2)
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        console.print(f"[yellow]warning:[/] serving on {host} without a token: anyone who can reach it can generate")
    if host in ("0.0.0.0", "::") and not allow_host:
        console.print("[yellow]note:[/] only loopback Host names are answered; add the names clients use with "
                      "--allow-host NAME")
    try:
        run_server(runs, host=host, port=port, token=token, allow_hosts=tuple(allow_host or ()),
                   datasets_dir=datasets, workers=workers, queue=queue, cache_dir=cache_dir, clip_ttl=clip_ttl,
                   device=device,
                   on_ready=lambda: out.print(f"djenerator: http://{host}:{port}/  (API docs: /docs; runs: {runs})"))
    except ServerConfigError as e:
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None


def _read_token_file(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        console.print(f"[bold red]error:[/] cannot read the token file {path}: {getattr(e, 'strerror', None) or e}")
        raise typer.Exit(2) from None
    token = lines[0].strip() if lines else ""
    if not token:
        console.print(f"[bold red]error:[/] the token file {path} is empty")
        raise typer.Exit(2)
    return token


def _thread_error(args) -> None:
    """A background writer (TensorBoard's) that fails on a full or read-only disk: one line, not a traceback."""
    import threading

    if isinstance(args.exc_value, OSError):
        console.print(f"warning: a background writer stopped: {os_error_message(args.exc_value)}", markup=False)
    else:
        threading.__excepthook__(args)


def main() -> None:
    import threading

    threading.excepthook = _thread_error
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
