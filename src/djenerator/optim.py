"""The optimiser of a generator or a discriminator, from the config (``train.optimizer``, betas, eps)."""
from __future__ import annotations

import torch

from .config import Config


def make_optimizer(params, cfg: Config, lr: float) -> torch.optim.Optimizer:
    """Adam (fused on CUDA: one kernel for the whole update) or RMSprop over ``params`` at rate ``lr``."""
    t = cfg.train
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=t.rms_alpha, eps=t.eps)
    params = list(params)
    fused = bool(params) and all(p.device.type == "cuda" for p in params)
    return torch.optim.Adam(params, lr=lr, betas=tuple(t.betas), eps=t.eps, **({"fused": True} if fused else {}))


def lr_scale(done: float, fall: float) -> float:
    """The learning rates' factor once ``done`` (0..1) of the run is behind it (``train.lr_fall``): 1, then a
    straight line to 0 over the last ``fall`` of the run. ``fall`` 0 keeps them constant."""
    if fall <= 0:
        return 1.0
    return min(1.0, max(0.0, (1.0 - done) / fall))


def set_lrs(pairs, scale: float) -> None:
    """Each (optimiser, base rate) of ``pairs`` at ``scale`` times its base rate."""
    for opt, lr in pairs:
        for group in opt.param_groups:
            group["lr"] = lr * scale
