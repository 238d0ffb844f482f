"""The training loop: one screen for the step, plus checkpoints, samples and their copy check. What the
run reports as it goes (loss log, progress bar, health warnings) is train_report.py's.

Exact resume: batches and latents are drawn from RNGs keyed by (seed, step, k), and every other random
state (dropout, instance noise, phase shuffle) lives in the global RNGs saved in each checkpoint,
so N steps + resume + N steps gives the same parameters as 2N steps in one go.

Several processes (``torchrun --nproc_per_node=N -m djenerator train ...``): see distributed.py. Each rank
trains on its slice of the global batch under DistributedDataParallel; rank 0 alone writes.
"""
from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import distributed, losses
from .audio import write_wav
from .augment import AdaController, Augmenter, overfit_signs
from .budget import Budget
from .checkpoint import (CheckpointWriteError, fit_weights, load_latest_good, pin_checkpoint, pinned_checkpoints, rng_state,
                         save_checkpoint, set_rng_state)
from .config import Config, ConfigError
from .data.dataset import ClipDataset, adopt_dataset_shape
from .ema import Ema
from .evaluate.memorisation import copy_alarm
from .generate import generate_clips
from .health import HealthWarning, TrainingDiverged
from .io import atomic_write_text, folder_lock, remove_stale_tmp
from .models import arch_of, build_discriminator, build_generator, tempo_cond
from .optim import lr_scale, make_optimizer, set_lrs
from .train_report import Report, log_health, step_stats


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    stopped: str  # "done" | "interrupted" | "time budget" | "diverged"
    warnings: list[str]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but no CUDA GPU is available; use train.device=cpu")
    return torch.device(name)


def batch_indices(n: int, batch: int, seed: int, step: int, k: int = 0) -> np.ndarray:
    """The clips of global step ``step`` (k-th critic step): a pure function of its arguments."""
    return np.random.default_rng([seed, step, k]).integers(0, n, size=batch)


def noise_std(cfg: Config, step: int) -> float:
    t = cfg.train
    if t.instance_noise <= 0:
        return 0.0
    if t.instance_noise_anneal_steps > 0:
        return t.instance_noise * max(0.0, 1.0 - step / t.instance_noise_anneal_steps)
    return t.instance_noise


def discriminator_input(x: torch.Tensor, std: float, aug: Augmenter | None = None) -> torch.Tensor:
    """The one place every discriminator input (real and fake alike, D step, G step and the gradient
    penalty's endpoints) passes through: differentiable augmentation (see augment.py), then instance noise."""
    if aug is not None:
        x = aug(x)
    return x + std * torch.randn_like(x) if std > 0 else x


def train(cfg: Config, dataset: str | Path, run_dir: str | Path, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print, max_seconds: float | None = None,
          max_cpu_seconds: float | None = None) -> TrainResult:
    """Train (or with ``resume``, continue) a run; stops at ``cfg.train.steps``, on Ctrl-C, after ``max_seconds``
    of wall-clock time or after ``max_cpu_seconds`` of this process's CPU time.

    The run folder is locked meanwhile (``RUN/.lock``; under torchrun rank 0 holds it), and temporary files
    that a killed run left in it are removed first.
    """
    run_dir = Path(run_dir)
    if os.environ.get("RANK", "0") != "0":
        return _train(cfg, dataset, run_dir, resume, progress, log, Budget(max_seconds, max_cpu_seconds))
    with folder_lock(run_dir, "run folder"):
        gone = [p for sub in ("checkpoints", "samples", "logs") for p in remove_stale_tmp(run_dir / sub)]  # ours alone
        gone += remove_stale_tmp(run_dir, min_age_s=60, recursive=False)  # evaluate may be writing here right now
        if gone:
            log(f"removed {len(gone)} temporary file(s) left by an interrupted run: "
                + ", ".join(str(p.relative_to(run_dir)) for p in gone[:4]) + (", ..." if len(gone) > 4 else ""))
        return _train(cfg, dataset, run_dir, resume, progress, log, Budget(max_seconds, max_cpu_seconds))


def _train(cfg: Config, dataset: str | Path, run_dir: Path, resume: bool, progress: bool,
           log: Callable[[str], None], budget: Budget) -> TrainResult:
    t = cfg.train
    ds = ClipDataset(dataset)
    adopt_dataset_shape(cfg, ds, log)  # the dataset's rate and clip length win, said once
    if arch_of(cfg.model.arch).two_stage:  # two stages with their own loops: autoencoder, then latent GAN
        from .codec_train import train_twostage

        return train_twostage(cfg, ds, run_dir, resume, progress, log, budget)
    # ---- set-up: processes and device, models, resume, the run folder ----------------------------------
    dd, device = _join(t)
    local = distributed.local_slice(t.batch_size, dd)  # this rank's part of the global batch
    if not dd.is_main:
        log = lambda m: None  # noqa: E731 - rank 0 alone talks and writes
    G, D, opt_g, opt_d = nets = _models(cfg, dd, device)
    ema = Ema.of(G, t)  # the moving average of G's weights that every output uses (train.ema or train.ema_power)
    aug, ada = _augmentation(cfg)
    start, last_ckpt = _resume(cfg, run_dir, resume, nets, ema, aug, ada, dd, log)
    if dd.is_main:
        _write_run_files(cfg, run_dir, dataset)
    G_step, D_step, D_frozen = _step_paths(G, D, dd, t)
    samples = Samples(cfg, ds, run_dir, device, dd)
    report = Report(run_dir, start, t.steps, t.loss, dd.is_main, progress, log, budget)
    batches, ctrl_c = Batches(ds, cfg, local, device, start), CtrlC()
    step, stopped = start, "done"
    G.train(), D.train()
    try:
        while step < t.steps:
            if (stopped := _halt(ctrl_c, budget, dd, step, t.log_every) or "done") != "done":  # ranks stop together
                break
            if t.lr_fall > 0 and (step == start or step % t.log_every == 0):
                lr_fall(opt_g, opt_d, t, step, budget, dd)
            std = noise_std(cfg, step)
            for k in range(t.d_steps):  # discriminator / critic
                real, cond, z = batches.get(step, k)
                loss_d, r_out, f_out, real_in = d_step(G_step, D_step, D, opt_d, real, cond, z, std, aug, ada, t)
            # the generator is judged against the last critic step's real clips and condition (feature matching)
            loss_g, fake, f_out = g_step(G_step, D_frozen, D, opt_g, batches.get(step, t.d_steps)[2], cond, real_in,
                                         std, aug, t)
            step += 1
            ema.update(G, step)
            _adapt(step, aug, ada, dd)
            # ---- logging, health, samples, checkpoints ----------------------------------------------
            if step % t.log_every == 0 or step == t.steps:
                report.log_step(step_stats(step, t.loss, (loss_d, loss_g, r_out, f_out), G, D, fake, real, std, aug,
                                           ada, dd))
            report.tick()
            if step % t.sample_every == 0 or step == t.steps:
                samples.check(step, ema.output(G), aug, ada, last_ckpt, report.warn)
            if step % t.ckpt_every == 0 or step == t.steps:
                report.check_finite(step, *distributed.mean_floats([float(loss_d.detach()), float(loss_g.detach())], dd))
                last_ckpt = snapshot(run_dir, step, cfg, nets, ema, aug, ada, dd)
            if t.eval_every and step % t.eval_every == 0 and dd.is_main:  # cheap metrics -> logs/metrics.csv + TensorBoard eval/*
                from .evaluate.report import training_metrics

                training_metrics(ema.output(G), cfg, ds, step, run_dir, report.writer)
        if stopped != "done":
            last_ckpt = snapshot(run_dir, step, cfg, nets, ema, aug, ada, dd)
            if stopped == "time budget" and dd.is_main:
                samples.write(step, ema.output(G))
            log(f"{stopped}: saved {last_ckpt} at step {step}; continue with --resume")
    except CheckpointWriteError as e:
        kept = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was saved"
        raise CheckpointWriteError(f"{e}; training stopped at step {step}, {kept}") from None
    except OSError as e:
        if e.filename is None:  # a write without a name (the loss log on a full disk): name the run
            raise OSError(e.errno, e.strerror, str(run_dir)) from None
        raise
    except TrainingDiverged as e:
        stopped = "diverged"
        if dd.is_main:
            log_health(run_dir, str(e))
        log(f"stopped: {e}. The last good checkpoint is {last_ckpt}.")
    finally:
        batches.close()
        report.close()
        distributed.cleanup(dd)
        ctrl_c.restore()
    return TrainResult(run_dir, step, Path(last_ckpt) if last_ckpt else None, stopped, report.warnings)


# ---- set-up ------------------------------------------------------------------------------------------
def _join(t) -> tuple:
    """(distributed state, device): under torchrun join the process group (gloo on CPU, NCCL on GPU); then
    seed the global RNGs (per rank) and let cuDNN pick the fastest kernels for the fixed shapes."""
    dd = distributed.setup(t.device)
    device = dd.device if dd.enabled else pick_device(t.device)
    torch.manual_seed(distributed.rank_seed(t.seed, dd.rank))
    np.random.seed(distributed.rank_seed(t.seed, dd.rank) % 2**32)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return dd, device


def _models(cfg: Config, dd, device: torch.device) -> tuple:
    """(G, D, G's optimiser, D's optimiser), fresh, on ``device``."""
    t = cfg.train
    G, D = distributed.sync_batchnorm(build_generator(cfg), dd).to(device), build_discriminator(cfg).to(device)
    return G, D, make_optimizer(G.parameters(), cfg, t.lr_g), make_optimizer(D.parameters(), cfg, t.lr_d)


def _step_paths(G: torch.nn.Module, D: torch.nn.Module, dd, t) -> tuple:
    """(G, D, frozen D) as the step calls them: compiled (train.compile), DDP (several processes), under bf16
    autocast (train.amp, CUDA). The G step's D is frozen and needs no all-reduce. Parameters stay shared."""
    return (distributed.fast_paths(G, dd, t.amp, t.compile), distributed.fast_paths(D, dd, t.amp, t.compile),
            distributed.fast_paths(D, dd, t.amp, t.compile, ddp=False))


def _augmentation(cfg: Config) -> tuple[Augmenter, AdaController | None]:
    """The discriminator's input augmentation and, with ``augment.ada``, the controller that adapts its p."""
    aug, a_cfg = Augmenter(cfg.augment, cfg.data.sample_rate), cfg.augment
    ada = AdaController(a_cfg.ada_target, a_cfg.ada_interval, a_cfg.ada_kimg, cfg.train.batch_size, p=aug.p) \
        if aug.enabled and a_cfg.ada else None
    return aug, ada


def _resume(cfg: Config, run_dir: Path, resume: bool, nets: tuple, ema: Ema, aug: Augmenter,
            ada: AdaController | None, dd, log) -> tuple[int, Path | None]:
    """(step to start at, the checkpoint it continues): with ``resume`` the newest checkpoint that loads (a
    damaged one is set aside for the one before) is restored into ``nets``; without, the run folder must
    hold no checkpoints yet."""
    found = load_latest_good(run_dir, "cpu", log) if resume and dd.is_main else None
    ckpt_path = distributed.broadcast_object(found[0] if found else None, dd)
    if resume and ckpt_path is None:
        log(f"no checkpoint in {run_dir} yet; starting from step 0")
    if ckpt_path is not None:
        ck = distributed.broadcast_object(found[1] if dd.is_main else None, dd)
        start = _restore(ck, cfg, run_dir, nets, ema, aug, ada, dd)
        log(f"resumed from {ckpt_path} at step {start}")
        return start, ckpt_path
    if distributed.broadcast_object(run_dir.exists() and any((run_dir / "checkpoints").glob("step_*.pt")), dd):
        raise ConfigError(f"run folder {run_dir} already holds checkpoints: pass --resume to continue it, "
                          "or choose another --run")
    return 0, None


def _restore(ck: dict, cfg: Config, run_dir: Path, nets: tuple, ema: Ema, aug: Augmenter, ada: AdaController | None,
             dd) -> int:
    """Load a checkpoint's weights, optimiser, RNG and augmentation states into this run; returns its step.
    A different objective, optimiser or model section cannot continue it."""
    t, saved = cfg.train, ck["config"]
    for key in ("optimizer", "loss"):
        if saved["train"][key] != getattr(t, key):
            raise ConfigError(f"cannot resume {run_dir} with train.{key}={getattr(t, key)}: it was trained with "
                              f"train.{key}={saved['train'][key]}; start a new --run instead")
    if saved["model"] != cfg.to_dict()["model"]:
        raise ConfigError(f"cannot resume {run_dir} with a different model section; start a new --run instead")
    ema.load(nets[0], ck)  # G: the trained weights, and the average if there is one
    fit_weights(nets[1], ck["D"], ck, "discriminator")
    for net, key in zip(nets[2:], ("opt_g", "opt_d")):
        net.load_state_dict(ck[key])
    set_rng_state(distributed.rank_rng_state(ck, dd, t.seed))
    if aug.enabled and "augment" in ck:
        if ada is not None:
            ada.load_state_dict(ck["augment"])
        aug.p = float(ck["augment"]["p"])
    return int(ck["step"])


def _write_run_files(cfg: Config, run_dir: Path, dataset: str | Path) -> None:
    """The run folder's config.yaml and run.json (which dataset it trains on)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    atomic_write_text(run_dir / "run.json", json.dumps({"dataset": str(Path(dataset).resolve())}, indent=1))


class Batches:
    """(real, cond, z) of this rank for critic step k < d_steps of a step (k = d_steps: the G step's z only),
    on the device. Batches are pure functions of (step, k), so a background thread may make them ahead
    (always on GPU, where reading and pinning would otherwise stall the step; on CPU with train.num_workers > 0)."""

    def __init__(self, ds: ClipDataset, cfg: Config, local: slice, device: torch.device, start: int):
        t = cfg.train
        self.ds, self.cfg, self.local, self.device = ds, cfg, local, device
        keys = ((s, k) for s in range(start, max(t.steps, start)) for k in range(t.d_steps + 1))
        self.loader = distributed.Prefetcher(self.make, keys, depth=2 * (t.d_steps + 1), pin=device.type == "cuda") \
            if device.type == "cuda" or t.num_workers > 0 else None

    def make(self, step: int, k: int):
        t = self.cfg.train
        z = distributed.global_latents(t.seed, step, k, t.batch_size, self.cfg.model.latent_dim)[self.local]
        if k == t.d_steps:
            return None, None, z
        real, bpm, beat = self.ds.batch(batch_indices(len(self.ds), t.batch_size, t.seed, step, k)[self.local])
        return real, tempo_cond(bpm, self.cfg, beat), z

    def get(self, step: int, k: int):
        got = self.loader.get((step, k)) if self.loader is not None else self.make(step, k)
        return tuple(x.to(self.device, non_blocking=True) if x is not None else None for x in got)

    def close(self) -> None:
        if self.loader is not None:
            self.loader.close()


class CtrlC:
    """While training, Ctrl-C (SIGINT in the main thread) asks the loop to stop at the next step, with a
    checkpoint, instead of raising; ``restore`` puts the previous handler back."""

    def __init__(self):
        self.requested = False
        self.old = signal.signal(signal.SIGINT, self._on_signal) if _main_thread() else None

    def _on_signal(self, *_) -> None:
        self.requested = True

    def restore(self) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


def _halt(ctrl_c: CtrlC, budget: Budget, dd, step: int, log_every: int) -> str:
    """Why to stop before this step ("interrupted", "time budget"), or "": the same on every rank."""
    halt = "interrupted" if ctrl_c.requested else budget.halt()
    return distributed.agree_stop(halt, dd, step, log_every)


def lr_fall(opt_g, opt_d, t, step: int, budget: Budget, dd) -> float:
    """Both learning rates for ``train.lr_fall``, from the share of the run behind it: its steps, counted at the
    last log step (so a resumed run repeats them), or its time budget (the ranks' mean share). Returns the
    factor."""
    done = max((step - step % max(t.log_every, 1)) / max(t.steps, 1), distributed.mean_floats([budget.share()], dd)[0])
    k = lr_scale(done, t.lr_fall)
    set_lrs(((opt_g, t.lr_g), (opt_d, t.lr_d)), k)
    return k


# ---- the step ----------------------------------------------------------------------------------------
def d_step(G_step, D_step, D: torch.nn.Module, opt_d, real: torch.Tensor, cond: torch.Tensor | None,
           z: torch.Tensor, std: float, aug: Augmenter, ada: AdaController | None, t) -> tuple:
    """One discriminator (critic) update on real clips and G(z); returns (loss, real outputs, fake outputs,
    the real clips as D saw them). ``D_step`` is D as the step calls it (DDP, compiled); ``D`` itself takes
    the gradient penalty and the weight clipping."""
    with torch.no_grad():
        fake = G_step(z, cond)
    real_in, fake_in = discriminator_input(real, std, aug), discriminator_input(fake, std, aug)
    r_out, f_out = judge(D_step, real_in, fake_in, cond)  # one forward, one all-reduce
    if ada is not None:
        ada.accumulate(*overfit_signs(t.loss, r_out, f_out))
    loss_d = losses.d_loss(t.loss, r_out, f_out, t.label_smoothing)
    if losses.LOSSES[t.loss].gradient_penalty:
        loss_d = loss_d + t.gp_lambda * losses.gradient_penalty(D, real_in, fake_in, cond)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    if losses.LOSSES[t.loss].weight_clip:
        for p in D.parameters():
            p.data.clamp_(-t.clip_value, t.clip_value)
    return loss_d, r_out, f_out, real_in


def g_step(G_step, D_frozen, D: torch.nn.Module, opt_g, z: torch.Tensor, cond: torch.Tensor | None,
           real_in: torch.Tensor, std: float, aug: Augmenter, t) -> tuple:
    """One generator update against the frozen D (plus feature matching against ``real_in``, the real clips
    of the last critic step as D saw them); returns (loss, the generated clips, D's outputs on them)."""
    fake = G_step(z, cond)
    loss_g, f_out = losses.g_objective(t.loss, D, lambda x: D_frozen(x, cond), discriminator_input(fake, std, aug),
                                       real_in, t.feature_matching)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return loss_g, fake, f_out


def judge(D: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor | None):
    """D on real and fake clips in one forward (one pass, and under DDP one backward and one all-reduce);
    returns (real outputs, fake outputs) in the losses' format."""
    b = real.shape[0]
    outs = D(torch.cat([real, fake]), torch.cat([cond, cond]) if cond is not None else None)
    return ([(lg[:b], [f[:b] for f in fs]) for lg, fs in outs], [(lg[b:], [f[b:] for f in fs]) for lg, fs in outs])


def _adapt(step: int, aug: Augmenter, ada: AdaController | None, dd) -> None:
    """ADA: every ``ada.interval`` steps p follows the overfitting signal (under several processes every rank
    adapts p from the same, global signal)."""
    if ada is not None and step % ada.interval == 0:
        if dd.enabled:
            ada.sign_sum, ada.count = distributed.mean_floats(ada.flushed_counts(), dd)
        aug.p = ada.update()


# ---- what the loop writes: checkpoints and samples ---------------------------------------------------
def snapshot(run_dir: Path, step: int, cfg: Config, nets: tuple, ema: Ema, aug: Augmenter, ada: AdaController | None,
             dd) -> Path:
    """Save a checkpoint of this step (rank 0; a collective: every rank sends its RNG state); its path.
    ``G`` is the weights outputs use (the average with train.ema), ``G_train`` the trained ones beside it."""
    rng_ranks = distributed.gather_objects(rng_state(), dd)  # collective: every rank takes part
    if not dd.is_main:
        return run_dir / "checkpoints" / f"step_{step:07d}.pt"
    state = {**ema.state(nets[0]), **dict(zip(("D", "opt_g", "opt_d"), (m.state_dict() for m in nets[1:])))}
    if dd.enabled:
        state["rng_ranks"], state["world_size"] = rng_ranks, dd.world
    if aug.enabled:
        state["augment"] = ada.state_dict() if ada is not None else {"p": aug.p}
    return save_checkpoint(run_dir, step, cfg, state, keep=cfg.train.keep_checkpoints)


class Samples:
    """Samples every ``train.sample_every`` steps, and the copy check on them: the written samples' latents
    plus fixed extra ones, each compared with every training clip (``copy_alarm``). Copies found are said
    once for each new highest count; the first time, the checkpoint saved before is pinned (kept)."""

    def __init__(self, cfg: Config, ds: ClipDataset, run_dir: Path, device: torch.device, dd):
        t = cfg.train
        self.cfg, self.ds, self.run_dir, self.device, self.dd = cfg, ds, run_dir, device, dd
        self.z, self.bpm = sample_latents(cfg, device)
        n_check = min(t.copy_check_n, 4 * t.copy_check_clips // max(len(ds), 1))  # a check's cost stays bounded
        self.z_check, self.bpm_check = _check_latents(self.z, self.bpm, n_check, cfg, t.seed)  # written samples first
        self.most_copies = 0

    def write(self, step: int, G: torch.nn.Module) -> None:
        """The written samples alone, without the check (when a time budget ends the run)."""
        write_samples(G, self.z, self.bpm, self.cfg, self.run_dir / "samples" / f"step_{step:07d}")

    def check(self, step: int, G: torch.nn.Module, aug: Augmenter, ada: AdaController | None,
              last_ckpt: Path | None, warn: Callable[[HealthWarning], None]) -> None:
        """Write this step's samples and check them for copies (rank 0); with ADA, copies raise p's floor."""
        t, a_cfg, ds, dd = self.cfg.train, self.cfg.augment, self.ds, self.dd
        n_copies, msg = 0, None
        if dd.is_main:
            audio = write_samples(G, self.z_check, self.bpm_check, self.cfg,
                                  self.run_dir / "samples" / f"step_{step:07d}", t.n_samples)
            if 0 < len(ds) <= t.copy_check_clips:
                n_copies, msg = copy_alarm(audio, ds.clips, ds.manifest["clips"], ds.sample_rate, device=self.device)
        if ada is not None and a_cfg.ada_copy_step > 0:  # copies: augment more from now on (augment.py)
            if distributed.broadcast_object(n_copies, dd):
                aug.p = ada.raise_floor(a_cfg.ada_copy_step)
        if n_copies > self.most_copies:  # said again only when more samples copy
            kept = None
            if self.most_copies == 0 and dd.is_main and last_ckpt and not pinned_checkpoints(self.run_dir):
                kept = Path(last_ckpt)  # saved before this check: the last one before copies were seen
                pin_checkpoint(kept)
            self.most_copies = n_copies
            warn(HealthWarning(step, "copying", f"{msg} at step {step}: the discriminator has memorised "
                               f"the training clips. {_copy_advice(self.cfg, ada, kept)}"))


def write_samples(G: torch.nn.Module, z: torch.Tensor, bpm: torch.Tensor, cfg: Config, out: Path,
                  n_write: int | None = None) -> np.ndarray:
    """Render one clip per latent (at tempo ``bpm``) and write the first ``n_write`` (all by default) into
    ``out``; returns the audio of all, (n, T)."""
    audio = generate_clips(G, cfg, z=z, cond=tempo_cond(bpm, cfg), batch_size=max(len(z), 1))
    for i, a in enumerate(audio[:n_write]):
        write_wav(out / f"sample_{i:02d}.wav", a, cfg.data.sample_rate)
    return audio


def sample_latents(cfg: Config, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed latents and tempos of the ``train.n_samples`` samples written during training: the same
    every sample step and across resumes."""
    t = cfg.train
    z = torch.randn(t.n_samples, cfg.model.latent_dim, generator=torch.Generator().manual_seed(t.seed + 7919))
    return z.to(device), _bpm_sweep(cfg, t.n_samples)


def _check_latents(z_fixed: torch.Tensor, bpm_fixed: torch.Tensor, n: int, cfg: Config, seed: int):
    """The copy check's latents and tempos: the written samples' own, then fixed extra ones up to ``n``
    (a replay that only part of the latent space makes is missed by 4 samples more often than by 16)."""
    extra = n - len(z_fixed)
    if extra <= 0:
        return z_fixed, bpm_fixed
    z = torch.randn(extra, z_fixed.shape[1], generator=torch.Generator().manual_seed(seed + 7927)).to(z_fixed.device)
    return torch.cat([z_fixed, z]), torch.cat([bpm_fixed, _bpm_sweep(cfg, extra)])


def _bpm_sweep(cfg: Config, n: int) -> torch.Tensor:
    """n tempos across the trained range, for the fixed latents of samples and copy checks."""
    return torch.linspace(*cfg.model.bpm_range, n) if n > 1 else torch.tensor([cfg.model.bpm_range[0]])


def _copy_advice(cfg: Config, ada=None, kept: Path | None = None) -> str:
    earlier = (f"generate from {kept.name}, the last checkpoint saved before copies were seen (kept: "
               "checkpoints/pinned)") if kept is not None else "use an earlier checkpoint"
    if ada is not None:
        floor = f"ADA now keeps p >= {ada.p_min:.2f} (augment.ada_copy_step). " if ada.p_min > 0 else ""
        return (f"{floor}If copies persist, lower augment.ada_target (now {cfg.augment.ada_target}) so that ADA "
                f"augments more, or {earlier}.")
    return f"Train with augmentation (--preset few, or --set augment.enabled=true --set augment.ada=true), or {earlier}."


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
