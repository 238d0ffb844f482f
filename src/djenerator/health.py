"""Training health monitor: notices the usual GAN failure modes and says which option to change.

The training loop calls :meth:`HealthMonitor.update` at log steps with floats it has already synchronised
for logging; the monitor does no tensor work of its own. It returns :class:`Warning` objects (``d_wins``,
``vanishing_g_grad``, ``diverging``, ``collapse``; the loop itself raises ``copying``), each kind at most
once per window, and :meth:`HealthMonitor.check_finite` raises :class:`TrainingDiverged` on NaN/inf. What
each rule watches: docs/how-it-works.md.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch
from torch import Tensor

from .losses import LOSSES

@dataclass
class HealthConfig:
    window: int = 50  # steps; also the minimum spacing between two warnings of one kind
    d_win_acc: float = 0.98
    min_g_grad: float = 1e-4
    diverge_factor: float = 10.0
    collapse_ratio: float = 0.1
    loss_floor: float = 1.0  # |loss| levels below this count as this much when judging growth
    wgan_gap_growth: float = 2.0  # critic gap widening by this factor over the window = D wins (wgan)
    collapse_warmup: int = 200  # an untrained generator's clips all look alike (its biases dominate): wait


@dataclass
class Warning:  # noqa: A001 - the name the training loop and the docs use
    step: int
    kind: str  # "d_wins" | "diverging" | "collapse" | "vanishing_g_grad" | "copying" (raised by the training loop)
    message: str

    def __str__(self) -> str:
        return f"[step {self.step}] {self.kind}: {self.message}"


HealthWarning = Warning


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/inf; the message names the loss and what to change."""


def batch_diversity(fake: Tensor, real: Tensor, max_items: int = 16) -> float:
    """Mean pairwise L2 distance within the fake batch divided by that within the real batch.

    Each clip is first scaled to unit RMS, so a quiet but varied generator is not called collapsed,
    while one that gives the same clip (or silence) for every z scores ~0; independent clips score ~1.
    Uses at most ``max_items`` clips of each batch (a few million flops). Returns a float (one host sync;
    call at log steps). Batches of fewer than 2 clips give 1.0.
    """

    def mean_pairwise(x: Tensor) -> Tensor:
        x = x.detach()[:max_items].reshape(min(x.shape[0], max_items), -1).float()
        x = x / (x.pow(2).mean(1, keepdim=True).sqrt() + 1e-8)
        n = x.shape[0]
        dist = torch.cdist(x.unsqueeze(0), x.unsqueeze(0)).squeeze(0)
        return dist.sum() / (n * (n - 1))

    if fake.shape[0] < 2 or real.shape[0] < 2:
        return 1.0
    ratio = mean_pairwise(fake) / mean_pairwise(real).clamp_min(1e-8)
    return float(ratio)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _thirds(xs: list[float]) -> tuple[float, float]:
    """Medians of the first and the last third of ``xs``."""
    k = max(len(xs) // 3, 1)
    return _median(xs[:k]), _median(xs[-k:])


class HealthMonitor:
    """Watches the statistics of one training run; see the module docstring for the rules."""

    def __init__(self, loss: str, cfg: HealthConfig | None = None):
        self.loss = loss
        self.objective = LOSSES[loss]
        self.cfg = cfg or HealthConfig()
        self.history: deque[tuple[int, dict[str, float]]] = deque()
        self.baseline: dict[str, float] = {}  # median |loss| over the first window of training
        self._first: list[tuple[int, dict[str, float]]] = []
        self._baseline_done = False
        self._last_fired: dict[str, int] = {}
        self._times_fired: dict[str, int] = {}

    # -- advice ----------------------------------------------------------------------------------
    def _advice_diverged(self) -> str:
        return f"lower train.lr_d and train.lr_g (e.g. halve them), or {self.objective.if_diverged}"

    def _advice_collapse(self) -> str:
        return f"train.loss={self.objective.alternative}, train.feature_matching=1.0, a lower train.lr_g, or train.instance_noise=0.1"

    # -- checks ----------------------------------------------------------------------------------
    def check_finite(self, step: int, stats: dict[str, float]) -> None:
        """Raise :class:`TrainingDiverged` if any statistic is NaN or infinite."""
        bad = {k: v for k, v in stats.items() if v is not None and not math.isfinite(float(v))}
        if bad:
            what = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise TrainingDiverged(
                f"training diverged at step {step}: {what} with train.loss={self.loss}. "
                f"To fix it: {self._advice_diverged()}."
            )

    def _fire(self, step: int, kind: str, message: str, out: list[Warning]) -> None:
        """Say it once, then again only after 1, 2, 4, ... windows: a long run's log is not a wall of repeats."""
        last = self._last_fired.get(kind)
        times = self._times_fired.get(kind, 0)
        if last is not None and step - last < self.cfg.window * 2 ** max(times - 1, 0):
            return
        self._last_fired[kind] = step
        self._times_fired[kind] = times + 1
        out.append(Warning(step, kind, message))

    def update(self, step: int, stats: dict[str, float]) -> list[Warning]:
        """Record ``stats`` for ``step`` and return the warnings due now (usually none).

        Keys used (all optional): d_loss, g_loss, d_real_acc, d_fake_acc, g_grad_norm, d_grad_norm,
        diversity, and critic_gap (for wgan losses; -d_loss is used when absent).
        """
        self.check_finite(step, stats)
        self._record(step, {k: float(v) for k, v in stats.items() if v is not None})
        hist = [s for _, s in self.history]
        full = len(hist) >= 3 and (self.history[-1][0] - self.history[0][0]) >= self.cfg.window // 2

        def series(key: str) -> list[float]:
            return [s[key] for s in hist if key in s]

        out: list[Warning] = []
        if full:
            self._check_d_wins(step, series, out)
        self._check_g_grad(step, series, out)
        if full:
            self._check_diverging(step, series, out)
        self._check_collapse(step, series, out)
        return out

    def _record(self, step: int, stats: dict[str, float]) -> None:
        """Keep the last ``window`` steps, and the loss baselines of the first window of training."""
        c = self.cfg
        self.history.append((step, stats))
        while self.history and self.history[0][0] <= step - c.window:
            self.history.popleft()
        if self._baseline_done:
            return
        self._first.append((step, stats))
        if step - self._first[0][0] >= c.window - 1:
            self._baseline_done = True
            for key in ("d_loss", "g_loss"):
                vals = [abs(s[key]) for _, s in self._first if key in s]
                if vals:
                    self.baseline[key] = _median(vals)
            self._first = []

    def _check_d_wins(self, step: int, series, out: list) -> None:
        c = self.cfg
        if self.objective.midpoint is None:  # a critic: no decision threshold, watch its gap
            gaps = series("critic_gap") or [-v for v in series("d_loss")]
            if len(gaps) >= 3:
                g0, g1 = _thirds(gaps)
                if all(g > 0 for g in gaps) and g1 > c.wgan_gap_growth * max(g0, 0.0) and g1 > c.loss_floor:
                    self._fire(step, "d_wins",
                               f"the critic gap E[D(real)]-E[D(fake)] widened from {g0:.3g} to {g1:.3g} over the "
                               f"last {c.window} steps: the critic is outrunning the generator. Lower train.lr_d, "
                               "lower train.d_steps, or raise train.lr_g.", out)
            return
        ra, fa = series("d_real_acc"), series("d_fake_acc")
        if len(ra) >= 3 and len(fa) >= 3:
            mr, mf = sum(ra) / len(ra), sum(fa) / len(fa)
            if mr > c.d_win_acc and mf > c.d_win_acc:
                self._fire(step, "d_wins",
                           f"the discriminator tells real from fake almost perfectly (accuracy {mr:.1%} on real, "
                           f"{mf:.1%} on fake over the last {c.window} steps), so the generator gets little "
                           "signal. Try train.instance_noise=0.1, train.label_smoothing=0.9, a lower train.lr_d "
                           "(or a higher train.lr_g), or train.loss=wgan-gp.", out)

    def _check_g_grad(self, step: int, series, out: list) -> None:
        c = self.cfg
        gg = series("g_grad_norm")
        if len(gg) >= 3 and _median(gg) < c.min_g_grad:
            self._fire(step, "vanishing_g_grad",
                       f"the generator's gradient norm is {_median(gg):.2g} (below {c.min_g_grad:g}): the discriminator "
                       "is saturated and G stopped learning. Lower train.lr_d, set train.instance_noise=0.1 or "
                       "train.label_smoothing=0.9, or use train.loss=hinge or wgan-gp.", out)

    def _check_diverging(self, step: int, series, out: list) -> None:
        c = self.cfg
        for key in ("d_loss", "g_loss"):
            vals = [abs(v) for v in series(key)]
            if len(vals) < 3:
                continue
            start, end = _thirds(vals)
            ref = max(start, c.loss_floor)
            base = self.baseline.get(key)
            grew_window = end > c.diverge_factor * ref
            grew_total = base is not None and end > c.diverge_factor * max(base, c.loss_floor)
            if grew_window or grew_total:
                since = f"{start:.3g} at the start of the window" if grew_window else f"{base:.3g} at the start of training"
                before = len(out)
                self._fire(step, "diverging",
                           f"|{key}| grew to {end:.3g} from {since} (more than {c.diverge_factor:g}x): training is "
                           f"becoming unstable. To fix it: {self._advice_diverged()}.", out)
                if len(out) > before and grew_total:
                    self.baseline[key] = end  # warn again only if it grows another diverge_factor times
                return

    def _check_collapse(self, step: int, series, out: list) -> None:
        c = self.cfg
        div = series("diversity")
        if div and step >= c.collapse_warmup:
            recent = _median(div[-3:])
            if recent < c.collapse_ratio:
                self._fire(step, "collapse",
                           f"generated clips are {recent:.2f}x as diverse as real ones (below {c.collapse_ratio:g}): "
                           f"mode collapse. Try {self._advice_collapse()}.", out)
