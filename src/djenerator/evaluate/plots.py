"""PNG figures for the evaluation report (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import read_csv_columns  # noqa: E402
from .features import log_mel  # noqa: E402

__all__ = ["spectrogram_grid", "loss_curves", "metrics_over_steps"]


def _save(fig, path: Path) -> Path:
    from ..io import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def spectrogram_grid(gen: np.ndarray, real: np.ndarray, sr: int, path: Path, n_mels: int = 64) -> Path:
    """Log-mel spectrograms: generated clips in the top row, real clips in the bottom row, same colour scale."""
    gen, real = np.asarray(gen, dtype=np.float32), np.asarray(real, dtype=np.float32)
    cols = max(len(gen), len(real), 1)
    specs = [log_mel(x, sr, n_mels=n_mels).numpy() / np.log(10) * 10 if len(x) else np.zeros((0, n_mels, 1))
             for x in (gen, real)]  # dB
    vmax = max((float(s.max()) for s in specs if s.size), default=0.0)
    fig, axes = plt.subplots(2, cols, figsize=(2.2 * cols, 4.6), squeeze=False)
    dur = (gen.shape[-1] if len(gen) else real.shape[-1]) / sr
    for r, (name, s) in enumerate(zip(("generated", "real"), specs)):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(s):
                ax.imshow(s[c], origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
                          extent=(0, dur, 0, n_mels))
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(name)
    fig.suptitle(f"log-mel spectrograms ({dur:.2f} s clips, {sr} Hz, dB)")
    fig.tight_layout()
    return _save(fig, path)


def loss_curves(csv_path: Path, path: Path) -> Path | None:
    """D and G losses (and D accuracies when logged) over steps from logs/losses.csv; None without a log."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        return None
    cols = read_csv_columns(csv_path)
    if not cols.get("step"):
        return None
    step = np.asarray(cols["step"])
    acc = [k for k in ("d_real_acc", "d_fake_acc") if k in cols]
    fig, axes = plt.subplots(1, 2 if acc else 1, figsize=(10 if acc else 6, 3.6), squeeze=False)
    ax = axes[0, 0]
    for k in ("d_loss", "g_loss"):
        if k in cols:
            ax.plot(step, cols[k], label=k, lw=1)
    ax.set_xlabel("step")
    ax.set_title("losses")
    ax.legend()
    if acc:
        ax = axes[0, 1]
        for k in acc:
            ax.plot(step, cols[k], label=k, lw=1)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("step")
        ax.set_title("discriminator accuracy")
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


PAIRS = [("flatness_fake", "flatness_real", "spectral flatness (Welch)"),
         ("hf_ratio_fake", "hf_ratio_real", "energy share above 4 kHz / sr/4"),
         ("fd_batch", None, "Frechet distance (batch)"),
         ("kid_batch", None, "KID (batch)"),
         ("diversity_ratio", None, "diversity generated / real"),
         ("copies", None, "clips copying a training clip")]


def metrics_over_steps(series: dict, path: Path) -> Path:
    """One panel per cheap metric over training steps (generated solid, real dashed)."""
    step = np.asarray(series["step"], dtype=np.float64)
    panels = [p for p in PAIRS if p[0] in series]
    cols = min(3, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (k, kr, title) in zip(axes.flat, panels):
        ax.plot(step, np.asarray(series[k], dtype=np.float64), "o-", lw=1, ms=3, label="generated")
        if kr and kr in series:
            ax.plot(step, np.asarray(series[kr], dtype=np.float64), "--", lw=1, label="real")
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
    fig.tight_layout()
    return _save(fig, path)
