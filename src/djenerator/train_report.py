"""What a training run reports as it goes: the loss log (``logs/losses.csv`` and TensorBoard ``train/*``),
the progress bar, and health warnings (said, kept for the result, appended to ``health.log``)."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch

from . import distributed, losses
from .augment import AdaController, Augmenter
from .budget import Budget
from .health import HealthMonitor, HealthWarning, batch_diversity
from .io import StepLog

LOG_FIELDS = ["step", "d_loss", "g_loss", "d_real_acc", "d_fake_acc", "g_grad_norm", "d_grad_norm",
              "diversity", "noise_std", "steps_per_s", "augment_p", "ada_rt"]


class Report:
    """The loss log, the progress bar, the health monitor and the warnings of one run. Every rank checks
    health (so that all stop together); ``write`` (rank 0) alone writes files and shows the bar."""

    def __init__(self, run_dir: Path, start: int, steps: int, loss: str, write: bool, progress: bool,
                 log: Callable[[str], None], budget: Budget):
        self.run_dir, self.steps, self.write, self.log = run_dir, steps, write, log
        self.budget = budget.limited  # the bar counts seconds: say the step beside it
        self.logs = RunLog(run_dir / "logs" / "losses.csv", LOG_FIELDS, start, run_dir / "logs" / "tb", "train") \
            if write else None
        self.writer = self.logs.writer if write else None  # TensorBoard, for the eval/* metrics too
        self.monitor = HealthMonitor(loss)
        self.warnings: list[str] = []
        self.bar = progress_bar(start, steps, progress and write, budget)  # a time budget: a bar over it
        self.t0, self.t0_step = time.perf_counter(), start

    def log_step(self, stats: dict) -> None:
        """A log step's numbers (see :func:`step_stats`) plus training speed: health-checked (non-finite losses
        raise TrainingDiverged), written, and shown beside the bar."""
        now = time.perf_counter()
        stats["steps_per_s"] = (stats["step"] - self.t0_step) / max(now - self.t0, 1e-9)
        self.t0, self.t0_step = now, stats["step"]
        self.monitor.check_finite(stats["step"], stats)
        for w in self.monitor.update(stats["step"], stats):
            self.warn(w)
        if self.write:
            self.logs.write(stats)
        if self.bar is not None:
            self.bar.set_postfix_str(bar_postfix(stats, self.steps if self.budget else None))

    def check_finite(self, step: int, d_loss: float, g_loss: float) -> None:
        self.monitor.check_finite(step, {"d_loss": d_loss, "g_loss": g_loss})

    def warn(self, w: HealthWarning) -> None:
        self.warnings.append(w.message)
        if self.write:
            log_health(self.run_dir, w.message)
        (self.bar.write if self.bar is not None else self.log)(f"warning: {w.message}")

    def tick(self) -> None:
        """One step done: move the bar."""
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        """Close bar and logs; on a full disk keep the error that stopped training, not the close's."""
        if self.bar is not None:
            self.bar.close()
        if self.logs is not None:
            self.logs.close()


def grad_norm(module: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.zeros(())


def step_stats(step: int, loss: str, outs: tuple, G, D, fake, real, std: float, aug: Augmenter,
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


def log_health(run_dir: Path, message: str) -> None:
    with open(run_dir / "health.log", "a") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")


def _tensorboard(path: Path, start: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    # a run resumed at checkpoint step ``start`` logged ``start`` already: hide what its first attempt wrote after it
    return SummaryWriter(str(path), purge_step=start + 1 if start > 0 else None)


class RunLog:
    """A CSV log of steps and the same numbers in TensorBoard as ``TAG/name`` (in ``tb_dir``, where TensorBoard is
    installed); a resumed run continues both from ``start``. The dense loop's report keeps one, the two-stage
    loops one per stage."""

    def __init__(self, csv_path: Path, fields: list[str], start: int, tb_dir: Path, tag: str):
        self.csv, self.writer, self.tag = StepLog(csv_path, fields, start), _tensorboard(tb_dir, start), tag

    def write(self, stats: dict) -> None:
        self.csv.write(stats)
        if self.writer is not None:
            for k, v in stats.items():
                if k != "step" and isinstance(v, float) and math.isfinite(v):
                    self.writer.add_scalar(f"{self.tag}/{k}", v, stats["step"])

    def close(self) -> None:
        """Close both; on a full disk keep the error that stopped training, not the close's."""
        for f in (self.csv, self.writer):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


def bar_postfix(stats: dict, steps: int | None = None) -> str:
    """The progress bar's fields in words: the step (with a time budget, where the bar counts seconds), the
    discriminator's and the generator's loss at the last logged step, and training speed."""
    where = f"step {stats['step']}/{steps}, " if steps else ""
    return (f"{where}D loss {stats['d_loss']:.3f}, G loss {stats['g_loss']:.3f}, "
            f"{stats['steps_per_s']:.2f} steps/s")


def progress_bar(start: int, total: int, enabled: bool, budget: Budget | None = None, desc: str = "train"):
    """A tqdm bar over the steps, or, when ``budget`` has a limit (``--minutes``, ``--cpu-minutes``), over that
    budget, so that its total and ETA are the budget's; ``update()`` then moves it to the share spent."""
    if not enabled:
        return None
    from tqdm import tqdm

    if budget is None or not budget.limited:
        return tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True)
    seconds, what = budget.scale()

    class BudgetBar(tqdm):
        def update(self, n=1):
            return super().update(min(budget.share() * self.total, self.total) - self.n)

    fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} " + what + ", ETA {remaining}{postfix}"
    return BudgetBar(total=seconds, initial=min(budget.share() * seconds, seconds), desc=desc, unit="s",
                     dynamic_ncols=True, bar_format=fmt)
