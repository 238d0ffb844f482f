"""The moving average of a generator's weights (``train.ema``), the generator every output uses.

GAN weights oscillate from step to step; their exponential moving average samples more steadily
(Karras et al. 2018, Yazici et al. 2019). Checkpoints store the average as ``G`` (so generate, evaluate,
serve and base exports use it unchanged) and the trained weights beside it as ``G_train``.
"""
from __future__ import annotations

import copy

import torch

from .checkpoint import fit_weights


class Ema:
    """Average of ``G``'s weights (of its ``part`` sub-module if given; 0 = off). Early steps average over a
    shorter window, as TensorFlow's ExponentialMovingAverage with num_updates:
    decay = min(ema, (1 + step) / (10 + step))."""

    def __init__(self, G: torch.nn.Module, decay: float, part: str | None = None):
        self.decay, self.part = float(decay), part
        self.G = copy.deepcopy(G).eval().requires_grad_(False) if self.decay > 0 else None

    def _of(self, G: torch.nn.Module) -> torch.nn.Module:
        return getattr(G, self.part) if self.part else G

    @torch.no_grad()
    def update(self, G: torch.nn.Module, step: int) -> None:
        if self.G is None:
            return
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for pe, p in zip(self._of(self.G).parameters(), self._of(G).parameters()):
            pe.lerp_(p, 1.0 - d)
        for be, b in zip(self._of(self.G).buffers(), self._of(G).buffers()):
            be.copy_(b)  # running statistics follow the trained model

    def output(self, G: torch.nn.Module) -> torch.nn.Module:
        """The generator outputs come from: the average, or ``G`` when off."""
        return G if self.G is None else self.G

    def state(self, G: torch.nn.Module) -> dict:
        if self.G is None:
            return {"G": G.state_dict()}
        return {"G": self.G.state_dict(), "G_train": G.state_dict()}

    def load(self, G: torch.nn.Module, ck: dict) -> None:
        """Trained weights from ``G_train`` (or ``G`` when the checkpoint has no average), the average from
        ``G`` (or the trained weights: a run that turns the average on starts it there)."""
        fit_weights(G, ck.get("G_train", ck["G"]), ck)
        if self.G is not None:
            self.G.load_state_dict(ck["G"] if "G_train" in ck else G.state_dict())
