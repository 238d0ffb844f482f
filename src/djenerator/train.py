"""The training loop: one screen for the step, plus checkpoints, logs, samples and the health monitor.

Exact resume: batches and latents are drawn from RNGs keyed by (seed, step, k), and every other random
state (dropout, instance noise, phase shuffle) lives in the global RNGs saved in each checkpoint,
so N steps + resume + N steps gives the same parameters as 2N steps in one go.

Several processes (``torchrun --nproc_per_node=N -m djenerator train ...``): see distributed.py. Each rank
trains on its slice of the global batch under DistributedDataParallel; rank 0 alone writes.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import distributed, losses
from .augment import AdaController, Augmenter, overfit_signs
from .audio import write_wav
from .checkpoint import (CheckpointWriteError, load_latest_good, pin_checkpoint, pinned_checkpoints, rng_state,
                         save_checkpoint, set_rng_state)
from .config import Config, ConfigError
from .data.dataset import ClipDataset, adopt_dataset_shape
from .io import StepLog, atomic_write_text, folder_lock, remove_stale_tmp
from .evaluate.memorisation import copy_alarm
from .health import HealthMonitor, HealthWarning, TrainingDiverged, batch_diversity
from .models import arch_of, build_discriminator, build_generator, tempo_cond

LOG_FIELDS = ["step", "d_loss", "g_loss", "d_real_acc", "d_fake_acc", "g_grad_norm", "d_grad_norm",
              "diversity", "noise_std", "steps_per_s", "augment_p", "ada_rt"]


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


def make_optimizer(params, cfg: Config, lr: float) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=t.rms_alpha, eps=t.eps)
    params = list(params)
    fused = bool(params) and all(p.device.type == "cuda" for p in params)  # one kernel for the whole update
    return torch.optim.Adam(params, lr=lr, betas=tuple(t.betas), eps=t.eps, **({"fused": True} if fused else {}))


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


def grad_norm(module: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.zeros(())


def train(cfg: Config, dataset: str | Path, run_dir: str | Path, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print, max_seconds: float | None = None) -> TrainResult:
    """Train (or with ``resume``, continue) a run; stops at ``cfg.train.steps``, on Ctrl-C or after ``max_seconds``.

    The run folder is locked meanwhile (``RUN/.lock``; under torchrun rank 0 holds it), and temporary files
    that a killed run left in it are removed first.
    """
    run_dir = Path(run_dir)
    if os.environ.get("RANK", "0") != "0":
        return _train(cfg, dataset, run_dir, resume, progress, log, max_seconds)
    with folder_lock(run_dir, "run folder"):
        gone = [p for sub in ("checkpoints", "samples", "logs") for p in remove_stale_tmp(run_dir / sub)]  # ours alone
        gone += remove_stale_tmp(run_dir, min_age_s=60, recursive=False)  # evaluate may be writing here right now
        if gone:
            log(f"removed {len(gone)} temporary file(s) left by an interrupted run: "
                + ", ".join(str(p.relative_to(run_dir)) for p in gone[:4]) + (", ..." if len(gone) > 4 else ""))
        return _train(cfg, dataset, run_dir, resume, progress, log, max_seconds)


def _train(cfg: Config, dataset: str | Path, run_dir: Path, resume: bool, progress: bool,
           log: Callable[[str], None], max_seconds: float | None) -> TrainResult:
    t_start = time.perf_counter()
    t = cfg.train
    ds = ClipDataset(dataset)
    adopt_dataset_shape(cfg, ds, log)  # the dataset's rate and clip length win, said once
    if arch_of(cfg.model.arch).two_stage:  # two stages with their own loops: autoencoder, then latent GAN
        from .codec_train import train_twostage

        return train_twostage(cfg, ds, run_dir, resume, progress, log, max_seconds)
    dd = distributed.setup(t.device)  # under torchrun: join the process group (gloo on CPU, NCCL on GPU)
    device = dd.device if dd.enabled else pick_device(t.device)
    local = distributed.local_slice(t.batch_size, dd)  # this rank's part of the global batch
    if not dd.is_main:
        log = lambda m: None  # noqa: E731 - rank 0 alone talks and writes
    torch.manual_seed(distributed.rank_seed(t.seed, dd.rank))
    np.random.seed(distributed.rank_seed(t.seed, dd.rank) % 2**32)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest convolution
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    G, D = distributed.sync_batchnorm(build_generator(cfg), dd).to(device), build_discriminator(cfg).to(device)
    opt_g, opt_d = make_optimizer(G.parameters(), cfg, t.lr_g), make_optimizer(D.parameters(), cfg, t.lr_d)
    aug = Augmenter(cfg.augment, cfg.data.sample_rate)
    a_cfg = cfg.augment
    ada = AdaController(a_cfg.ada_target, a_cfg.ada_interval, a_cfg.ada_kimg, t.batch_size, p=aug.p) \
        if aug.enabled and a_cfg.ada else None
    start = 0
    found = load_latest_good(run_dir, "cpu", log) if resume and dd.is_main else None  # damaged ones: the one before
    ckpt_path = distributed.broadcast_object(found[0] if found else None, dd)
    if resume and ckpt_path is None:
        log(f"no checkpoint in {run_dir} yet; starting from step 0")
    if ckpt_path is not None:
        ck = distributed.broadcast_object(found[1] if dd.is_main else None, dd)
        start = _restore(ck, cfg, run_dir, (G, D, opt_g, opt_d), aug, ada, dd)
        log(f"resumed from {ckpt_path} at step {start}")
    elif distributed.broadcast_object(run_dir.exists() and any((run_dir / "checkpoints").glob("step_*.pt")), dd):
        raise ConfigError(f"run folder {run_dir} already holds checkpoints: pass --resume to continue it, "
                          "or choose another --run")
    if dd.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.yaml")
        atomic_write_text(run_dir / "run.json", json.dumps({"dataset": str(Path(dataset).resolve())}, indent=1))
    # what the step calls: compiled (train.compile), DDP (several processes), bf16 autocast (train.amp, CUDA)
    G_step = distributed.fast_paths(G, dd, t.amp, t.compile)
    D_step = distributed.fast_paths(D, dd, t.amp, t.compile)
    D_frozen = distributed.fast_paths(D, dd, t.amp, t.compile, ddp=False)  # G step: D frozen, no all-reduce

    z_fixed = torch.randn(t.n_samples, cfg.model.latent_dim, generator=torch.Generator().manual_seed(t.seed + 7919)).to(device)
    bpm_fixed = _bpm_sweep(cfg, t.n_samples)
    n_check = min(t.copy_check_n, 4 * t.copy_check_clips // max(len(ds), 1))  # a check's cost stays bounded
    z_check, bpm_check = _check_latents(z_fixed, bpm_fixed, n_check, cfg, t.seed)  # written samples first
    csv_path = run_dir / "logs" / "losses.csv"
    csv_file = StepLog(csv_path, LOG_FIELDS, start) if dd.is_main else _NoLog()
    writer = _tensorboard(run_dir / "logs" / "tb", start) if dd.is_main else None
    monitor = HealthMonitor(t.loss)
    warnings: list[str] = []
    most_copies = 0
    stop_requested = []
    old_handler = signal.signal(signal.SIGINT, lambda *_: stop_requested.append(True)) if _main_thread() else None

    def make_batch(step: int, k: int):
        """(real, cond, z) of this rank for critic step k < d_steps (k = d_steps: the G step's z only)."""
        z = distributed.global_latents(t.seed, step, k, t.batch_size, cfg.model.latent_dim)[local]
        if k == t.d_steps:
            return None, None, z
        real, bpm, beat = ds.batch(batch_indices(len(ds), t.batch_size, t.seed, step, k)[local])
        return real, tempo_cond(bpm, cfg, beat), z

    # batches are pure functions of (step, k): a background thread may make them ahead (always on GPU,
    # where reading and pinning would otherwise stall the step; on CPU with train.num_workers > 0)
    keys = ((s, k) for s in range(start, max(t.steps, start)) for k in range(t.d_steps + 1))
    loader = distributed.Prefetcher(make_batch, keys, depth=2 * (t.d_steps + 1), pin=device.type == "cuda") \
        if device.type == "cuda" or t.num_workers > 0 else None

    def fetch(step: int, k: int):
        got = loader.get((step, k)) if loader is not None else make_batch(step, k)
        return tuple(x.to(device, non_blocking=True) if x is not None else None for x in got)

    def snapshot(step: int) -> Path:
        rng_ranks = distributed.gather_objects(rng_state(), dd)  # collective: every rank takes part
        if not dd.is_main:
            return run_dir / "checkpoints" / f"step_{step:07d}.pt"
        state = {"G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()}
        if dd.enabled:
            state["rng_ranks"], state["world_size"] = rng_ranks, dd.world
        if aug.enabled:
            state["augment"] = ada.state_dict() if ada is not None else {"p": aug.p}
        return save_checkpoint(run_dir, step, cfg, state, keep=t.keep_checkpoints)

    bar = _bar(start, t.steps, progress and dd.is_main, max_seconds, t_start)  # a time budget: a bar over it

    def warn(w: HealthWarning) -> None:
        warnings.append(w.message)
        if dd.is_main:
            _log_health(run_dir, w.message)
        (bar.write if bar is not None else log)(f"warning: {w.message}")

    step, stopped, last_ckpt, t0, t0_step = start, "done", ckpt_path, time.perf_counter(), start
    G.train(), D.train()
    try:
        while step < t.steps:
            halt = "interrupted" if stop_requested else \
                "time budget" if max_seconds is not None and time.perf_counter() - t_start > max_seconds else ""
            halt = distributed.agree_stop(halt, dd, step, t.log_every)  # ranks stop at the same step
            if halt:
                stopped = halt
                break
            std = noise_std(cfg, step)
            for k in range(t.d_steps):  # discriminator / critic
                real, cond, z = fetch(step, k)
                loss_d, r_out, f_out, real_in = d_step(G_step, D_step, D, opt_d, real, cond, z, std, aug, ada, t)
            # the generator is judged against the last critic step's real clips and condition (feature matching)
            loss_g, fake, f_out = g_step(G_step, D_frozen, D, opt_g, fetch(step, t.d_steps)[2], cond, real_in, std,
                                         aug, t)
            step += 1
            if ada is not None and step % ada.interval == 0:
                if dd.enabled:  # every rank adapts p from the same, global overfitting signal
                    ada.sign_sum, ada.count = distributed.mean_floats(ada.flushed_counts(), dd)
                aug.p = ada.update()
            # ---- logging, health, samples, checkpoints ----------------------------------------------
            if step % t.log_every == 0 or step == t.steps:
                now = time.perf_counter()
                stats = _step_stats(step, t.loss, (loss_d, loss_g, r_out, f_out), G, D, fake, real, std, aug, ada, dd)
                stats["steps_per_s"] = (step - t0_step) / max(now - t0, 1e-9)
                t0, t0_step = now, step
                monitor.check_finite(step, stats)
                for w in monitor.update(step, stats):
                    warn(w)
                if dd.is_main:
                    _write_log(csv_file, writer, stats)
                if bar is not None:
                    bar.set_postfix_str(bar_postfix(stats, t.steps if max_seconds else None))
            if bar is not None:
                bar.update(1)
            if step % t.sample_every == 0 or step == t.steps:
                n_copies, msg = 0, None
                if dd.is_main:
                    audio = write_samples(G, z_check, bpm_check, cfg, run_dir / "samples" / f"step_{step:07d}",
                                          t.n_samples)
                    if 0 < len(ds) <= t.copy_check_clips:
                        n_copies, msg = copy_alarm(audio, ds.clips, ds.manifest["clips"], ds.sample_rate, device=device)
                if ada is not None and a_cfg.ada_copy_step > 0:  # copies: augment more from now on (augment.py)
                    if distributed.broadcast_object(n_copies, dd):
                        aug.p = ada.raise_floor(a_cfg.ada_copy_step)
                if n_copies > most_copies:  # said again only when more samples copy
                    kept = None
                    if most_copies == 0 and dd.is_main and last_ckpt and not pinned_checkpoints(run_dir):
                        kept = Path(last_ckpt)  # saved before this check: the last one before copies were seen
                        pin_checkpoint(kept)
                    most_copies = n_copies
                    warn(HealthWarning(step, "copying", f"{msg} at step {step}: the discriminator has memorised "
                                       f"the training clips. {_copy_advice(cfg, ada, kept)}"))
            if step % t.ckpt_every == 0 or step == t.steps:
                dl, gl = distributed.mean_floats([float(loss_d.detach()), float(loss_g.detach())], dd)
                monitor.check_finite(step, {"d_loss": dl, "g_loss": gl})
                last_ckpt = snapshot(step)
            if t.eval_every and step % t.eval_every == 0 and dd.is_main:  # cheap metrics -> logs/metrics.csv + TensorBoard eval/*
                from .evaluate.report import training_metrics

                training_metrics(G, cfg, ds, step, run_dir, writer)
        if stopped != "done":
            last_ckpt = snapshot(step)
            if stopped == "time budget" and dd.is_main:
                write_samples(G, z_fixed, bpm_fixed, cfg, run_dir / "samples" / f"step_{step:07d}")
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
            _log_health(run_dir, str(e))
        log(f"stopped: {e}. The last good checkpoint is {last_ckpt}.")
    finally:
        if loader is not None:
            loader.close()
        if bar is not None:
            bar.close()
        _close_quietly(csv_file)  # on a full disk: keep the error that stopped training, not the close's
        distributed.cleanup(dd)
        if writer is not None:
            _close_quietly(writer)
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    return TrainResult(run_dir, step, Path(last_ckpt) if last_ckpt else None, stopped, warnings)


def _restore(ck: dict, cfg: Config, run_dir: Path, nets: tuple, aug: Augmenter, ada: AdaController | None, dd) -> int:
    """Load a checkpoint's weights, optimiser, RNG and augmentation states into this run; returns its step.
    A different objective, optimiser or model section cannot continue it."""
    t, saved = cfg.train, ck["config"]
    for key in ("optimizer", "loss"):
        if saved["train"][key] != getattr(t, key):
            raise ConfigError(f"cannot resume {run_dir} with train.{key}={getattr(t, key)}: it was trained with "
                              f"train.{key}={saved['train'][key]}; start a new --run instead")
    if saved["model"] != cfg.to_dict()["model"]:
        raise ConfigError(f"cannot resume {run_dir} with a different model section; start a new --run instead")
    for net, key in zip(nets, ("G", "D", "opt_g", "opt_d")):
        net.load_state_dict(ck[key])
    set_rng_state(distributed.rank_rng_state(ck, dd, t.seed))
    if aug.enabled and "augment" in ck:
        if ada is not None:
            ada.load_state_dict(ck["augment"])
        aug.p = float(ck["augment"]["p"])
    return int(ck["step"])


def _step_stats(step: int, loss: str, outs: tuple, G, D, fake, real, std: float, aug: Augmenter,
                ada: AdaController | None, dd) -> dict:
    """What a log step records: losses and D's accuracies (means over ranks), gradient norms, diversity,
    instance noise, augmentation p and ADA's overfitting signal."""
    loss_d, loss_g, r_out, f_out = outs
    stats = {"step": step, "d_loss": float(loss_d.detach()), "g_loss": float(loss_g.detach())}
    stats["d_real_acc"], stats["d_fake_acc"] = losses.d_accuracy(loss, r_out, f_out)
    if dd.enabled:  # every rank logs (and health-checks) the means over ranks
        names = ["d_loss", "g_loss", "d_real_acc", "d_fake_acc"]
        stats.update(zip(names, distributed.mean_floats([stats[n] for n in names], dd)))
    stats["g_grad_norm"], stats["d_grad_norm"] = float(grad_norm(G)), float(grad_norm(D))
    stats["diversity"] = batch_diversity(fake.detach(), real)
    stats["noise_std"] = std
    stats["augment_p"] = aug.p
    if ada is not None and math.isfinite(ada.last_rt):
        stats["ada_rt"] = ada.last_rt
    return stats


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
    for p in D.parameters():
        p.requires_grad_(False)
    f_out = D_frozen(discriminator_input(fake, std, aug), cond)
    loss_g = losses.g_loss(t.loss, f_out)
    if t.feature_matching > 0:
        with torch.no_grad():
            r_feat = D_frozen(real_in, cond)
        loss_g = loss_g + t.feature_matching * losses.feature_matching(r_feat, f_out)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    for p in D.parameters():
        p.requires_grad_(True)
    opt_g.step()
    return loss_g, fake, f_out


def judge(D: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor | None):
    """D on real and fake clips in one forward (one pass, and under DDP one backward and one all-reduce);
    returns (real outputs, fake outputs) in the losses' format."""
    b = real.shape[0]
    outs = D(torch.cat([real, fake]), torch.cat([cond, cond]) if cond is not None else None)
    return ([(lg[:b], [f[:b] for f in fs]) for lg, fs in outs], [(lg[b:], [f[b:] for f in fs]) for lg, fs in outs])


class _NoLog:
    def write(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass


@torch.no_grad()
def write_samples(G: torch.nn.Module, z: torch.Tensor, bpm: torch.Tensor, cfg: Config, out: Path,
                  n_write: int | None = None) -> np.ndarray:
    """Render one clip per latent and write the first ``n_write`` (all by default) into ``out``; returns the
    audio of all, (n, T)."""
    was_training = G.training
    G.eval()
    cond = tempo_cond(bpm, cfg)
    audio = G(z, cond.to(z.device) if cond is not None else None).float().cpu().numpy()[:, 0]
    G.train(was_training)
    for i, a in enumerate(audio[:n_write]):
        write_wav(out / f"sample_{i:02d}.wav", a, cfg.data.sample_rate)
    return audio


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


def _close_quietly(log) -> None:
    try:
        log.close()
    except OSError:
        pass


def _tensorboard(path: Path, start: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path), purge_step=start if start > 0 else None)


def _write_log(csv_file: StepLog, writer, stats: dict) -> None:
    csv_file.write(stats)
    if writer is not None:
        for k, v in stats.items():
            if k != "step" and isinstance(v, float) and math.isfinite(v):
                writer.add_scalar(f"train/{k}", v, stats["step"])


def _log_health(run_dir: Path, message: str) -> None:
    with open(run_dir / "health.log", "a") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")


def bar_postfix(stats: dict, steps: int | None = None) -> str:
    """The progress bar's fields in words: the step (with a time budget, where the bar counts seconds), the
    discriminator's and the generator's loss at the last logged step, and training speed."""
    where = f"step {stats['step']}/{steps}, " if steps else ""
    return (f"{where}D loss {stats['d_loss']:.3f}, G loss {stats['g_loss']:.3f}, "
            f"{stats['steps_per_s']:.2f} steps/s")


def _bar(start: int, total: int, enabled: bool, max_seconds: float | None = None, t_start: float | None = None):
    """A tqdm bar over the steps, or with ``max_seconds`` over the time budget (seconds since ``t_start``),
    so that its total and ETA are the budget's; ``update()`` then moves it to the time spent."""
    if not enabled:
        return None
    from tqdm import tqdm

    if max_seconds is None:
        return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
    t0 = time.perf_counter() if t_start is None else t_start

    class BudgetBar(tqdm):
        def update(self, n=1):
            return super().update(min(time.perf_counter() - t0, self.total) - self.n)

    fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of the time budget, ETA {remaining}{postfix}"
    return BudgetBar(total=float(max_seconds), initial=min(time.perf_counter() - t0, max_seconds), desc="train",
                     unit="s", dynamic_ncols=True, bar_format=fmt)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
