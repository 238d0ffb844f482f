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
