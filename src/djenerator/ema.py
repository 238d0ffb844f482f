"""The moving average of a generator's weights (``train.ema`` or ``train.ema_power``), the generator every output uses.

GAN weights oscillate from step to step; their exponential moving average samples more steadily
(Karras et al. 2018, Yazici et al. 2019). A fixed decay averages a fixed number of steps. A run stopped by a
time budget does not know its length, and a GAN can drift late in a run, so the power-function average
(Karras et al. 2024, "Analyzing and improving the training dynamics of diffusion models") instead weighs
step s in proportion to s**power: its window is a fixed share of the run so far, however long the run.
Checkpoints store the average as ``G`` (so generate, evaluate, serve and base exports use it unchanged) and the
trained weights beside it as ``G_train``.
"""
from __future__ import annotations

import copy

import torch

from .checkpoint import fit_weights


def power_decay(step: int, power: float) -> float:
    """Decay at ``step`` (1 = the first), EDM2's (1 - 1/step) ** (power + 1): after T steps step s weighs
    (s**(power+1) - (s-1)**(power+1)) / T**(power+1), the integral of (power+1) * x**power / T**(power+1) over it."""
    return (1.0 - 1.0 / step) ** (power + 1.0)


def power_share(power: float, half: float = 0.5) -> float:
    """The share of a run, counted back from its end, that holds ``half`` of the power average's weight."""
    return 1.0 - (1.0 - half) ** (1.0 / (power + 1.0))


class Ema:
    """Average of ``G``'s weights (of its ``part`` sub-module if given), or off (decay 0 and power 0).

    With ``decay``, early steps average over a shorter window, as TensorFlow's ExponentialMovingAverage with
    num_updates: decay = min(decay, (1 + step) / (10 + step)). With ``power`` > 0 the decay is
    ``power_decay(step, power)`` instead. ``step`` counts the steps done, this one included."""

    def __init__(self, G: torch.nn.Module, decay: float, part: str | None = None, power: float = 0.0):
        self.decay, self.power, self.part = float(decay), float(power), part
        on = self.decay > 0 or self.power > 0
        self.G = copy.deepcopy(G).eval().requires_grad_(False) if on else None

    @classmethod
    def of(cls, G: torch.nn.Module, t, part: str | None = None) -> "Ema":
        """The average that a ``TrainConfig`` asks for (train.ema, train.ema_power)."""
        return cls(G, t.ema, part, t.ema_power)

    def describe(self) -> str:
        if self.power > 0:
            return (f"train.ema_power={self.power:g}: steps weigh as step**{self.power:g}, so the last "
                    f"{power_share(self.power):.0%} of the run holds half the weight")
        return f"train.ema={self.decay:g}"

    def decay_at(self, step: int) -> float:
        if self.power > 0:
            return power_decay(max(step, 1), self.power)
        return min(self.decay, (1.0 + step) / (10.0 + step))

    def _of(self, G: torch.nn.Module) -> torch.nn.Module:
        return getattr(G, self.part) if self.part else G

    @torch.no_grad()
    def update(self, G: torch.nn.Module, step: int) -> None:
        if self.G is None:
            return
        d = self.decay_at(step)
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
