"""GAN objectives as small pure functions of discriminator logits.

``real`` and ``fake`` are logits (any shape; patch discriminators give several per clip).
Every ``d_*`` function returns the loss the discriminator minimises, every ``g_*`` the loss the
generator minimises. :data:`LOSSES` names the objectives (``train.loss``) with their properties;
:func:`d_loss` and :func:`g_loss` sum a named objective over the outputs of several discriminators.
At the end, :func:`modulation_distance` is a statistic of the samples themselves that a generator may match.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

DOut = list[tuple[Tensor, list[Tensor]]]


# --- non-saturating binary cross-entropy (Goodfellow et al. 2014) ---------------------------------
def d_bce(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """BCE with the real label set to ``real_target``; 0.9 is one-sided label smoothing
    (Salimans et al. 2016, "Improved techniques for training GANs"): fakes keep the label 0."""
    s = real_target
    return (s * F.softplus(-real) + (1 - s) * F.softplus(real)).mean() + F.softplus(fake).mean()


def g_bce(fake: Tensor) -> Tensor:
    """Non-saturating generator loss -log D(G(z))."""
    return F.softplus(-fake).mean()


# --- KL divergence in the f-GAN form (Nowozin et al. 2016) ------------------------------------------
_KL_CLAMP = 20.0


def d_kl(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """f-GAN with f(u) = u log u (KL), output activation g_f(v) = v and conjugate f*(t) = exp(t - 1).

    The discriminator T maximises E_data[T] - E_G[exp(T - 1)], a lower bound of KL(P_data || P_G)
    that is tight at T*(x) = 1 + log(p_data(x) / p_G(x)). ``real_target`` < 1 scales the real term
    (one-sided smoothing). Logits are clamped at 20 before the exponential for numerical safety.
    """
    return -(real_target * real.mean() - torch.exp(fake.clamp(max=_KL_CLAMP) - 1.0).mean())


def g_kl(fake: Tensor) -> Tensor:
    """The f-GAN paper's non-saturating generator step: maximise E_G[T(G(z))].

    At the optimal T this is -E_G[1 + log(p_data / p_G)] = KL(P_G || P_data) - 1, so the generator
    minimises the *reverse* KL (mode-seeking), while the discriminator estimates the forward KL.
    """
    return -fake.mean()


# --- Wasserstein (Arjovsky et al. 2017) and with gradient penalty (Gulrajani et al. 2017) -----------
def d_wgan(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """Critic loss E[D(fake)] - E[D(real)]; Lipschitz by weight clipping (WGAN) or a penalty (WGAN-GP)."""
    return fake.mean() - real.mean()


def g_wgan(fake: Tensor) -> Tensor:
    return -fake.mean()


def _score_gradients(disc: Callable[..., DOut], x: Tensor, cond: Tensor | None) -> list[Tensor]:
    """Per discriminator, the gradient of its score (patch logits averaged per clip) w.r.t. ``x``, as (B, -1),
    kept in the graph so a penalty on it trains the discriminator."""
    b = x.shape[0]
    outs = disc(x, cond) if cond is not None else disc(x)
    return [torch.autograd.grad(logits.reshape(b, -1).mean(1).sum(), x, create_graph=True)[0].reshape(b, -1)
            for logits, _ in outs]


def gradient_penalty(disc: Callable[[Tensor], DOut], real: Tensor, fake: Tensor, cond: Tensor | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at random interpolates x_hat (Gulrajani et al. 2017).

    Summed over discriminators; a patch discriminator's logits are averaged per clip first.
    """
    b = real.shape[0]
    eps = torch.rand((b,) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    grads = _score_gradients(disc, x_hat, cond)
    return sum((((g.norm(2, dim=1) - 1.0) ** 2).mean() for g in grads), real.new_zeros(()))


def r1_penalty(disc: Callable[..., DOut], real: Tensor, cond: Tensor | None = None) -> Tensor:
    """E[||grad_x D(x)||_2^2] at the real inputs (R1, Mescheder et al. 2018): keeps the critic flat where the data
    is, so it cannot grow sharp on a small set. Summed over discriminators; patch logits are averaged per clip."""
    x = real.detach().requires_grad_(True)
    return sum((g.pow(2).sum(1).mean() for g in _score_gradients(disc, x, cond)), real.new_zeros(()))


# --- hinge (Lim & Ye 2017; Miyato et al. 2018) -----------------------------------------------------
def d_hinge(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """E[relu(1 - D(real))] + E[relu(1 + D(fake))]; ``real_target`` scales the real margin."""
    return F.relu(real_target - real).mean() + F.relu(1.0 + fake).mean()


def g_hinge(fake: Tensor) -> Tensor:
    return -fake.mean()


@dataclass(frozen=True)
class Loss:
    """An objective (``train.loss``) and what training, ADA and the health monitor need to know of it."""

    d: Callable[..., Tensor]  # (real, fake, real_target) -> the discriminator's loss
    g: Callable[[Tensor], Tensor]  # fake -> the generator's loss
    midpoint: float | None = 0.0  # the logit between "real" and "fake"; None: a critic without one (Wasserstein)
    gradient_penalty: bool = False  # D's loss gains train.gp_lambda * gradient_penalty
    weight_clip: bool = False  # D's weights are clamped to +-train.clip_value after each step
    if_diverged: str = ""  # besides lower learning rates, what to change when training diverges
    alternative: str = "wgan-gp"  # the objective to suggest when the generator collapses


LOSSES: dict[str, Loss] = {
    "bce": Loss(d_bce, g_bce, if_diverged="enable train.instance_noise=0.1 and train.label_smoothing=0.9, or use "
                "train.loss=wgan-gp or train.loss=hinge"),
    "kl": Loss(d_kl, g_kl, midpoint=1.0, if_diverged="use train.loss=hinge or train.loss=wgan-gp (the KL objective is "
               "unbounded: exp of the critic output), or set model.spectral_norm=true"),
    "wgan": Loss(d_wgan, g_wgan, midpoint=None, weight_clip=True,
                 if_diverged="lower train.clip_value, or use train.loss=wgan-gp"),
    "wgan-gp": Loss(d_wgan, g_wgan, midpoint=None, gradient_penalty=True, alternative="hinge",
                    if_diverged="raise train.gp_lambda (and set train.amp=false if mixed precision is on)"),
    "hinge": Loss(d_hinge, g_hinge, if_diverged="set model.spectral_norm=true"),
}


def d_loss(name: str, real_out: DOut, fake_out: DOut, real_target: float = 1.0) -> Tensor:
    fn = LOSSES[name].d
    return sum(fn(r, f, real_target) for (r, _), (f, _) in zip(real_out, fake_out))


def g_loss(name: str, fake_out: DOut) -> Tensor:
    fn = LOSSES[name].g
    return sum(fn(f) for f, _ in fake_out)


def g_objective(name: str, D: torch.nn.Module, judge: Callable[[Tensor], DOut], fake_in: Tensor, real_in: Tensor,
                fm_weight: float, adv_weight: float = 1.0) -> tuple[Tensor, DOut]:
    """The generator's loss: ``adv_weight`` x ``judge`` (D as the step calls it) on ``fake_in`` with D's parameters
    frozen, so gradients reach G only, plus ``fm_weight`` x feature matching against its features of ``real_in``;
    returns (loss, D's outputs on the fakes)."""
    for p in D.parameters():
        p.requires_grad_(False)
    try:
        f_out = judge(fake_in)
        loss = adv_weight * g_loss(name, f_out)
        if fm_weight > 0:
            with torch.no_grad():
                r_feat = judge(real_in)
            loss = loss + fm_weight * feature_matching(r_feat, f_out)
    finally:
        for p in D.parameters():
            p.requires_grad_(True)
    return loss, f_out


def feature_matching(real_out: DOut, fake_out: DOut) -> Tensor:
    """Mean L1 distance between discriminator features of real and generated clips (HiFi-GAN, Kong et al. 2020)."""
    terms = [F.l1_loss(f, r.detach()) for (_, rf), (_, ff) in zip(real_out, fake_out) for r, f in zip(rf, ff)]
    return torch.stack(terms).mean() if terms else torch.zeros(())


def d_accuracy(name: str, real_out: DOut, fake_out: DOut) -> tuple[float, float]:
    """Share of real clips judged real and of fakes judged fake (logit above/below the objective's midpoint).

    Returns tensors' means as Python floats (one host sync; call at log steps only).
    """
    mid = LOSSES[name].midpoint or 0.0  # a Wasserstein critic has no midpoint: 0 is reported
    real_acc = torch.stack([(r.reshape(r.shape[0], -1).mean(1) > mid).float().mean() for r, _ in real_out]).mean()
    fake_acc = torch.stack([(f.reshape(f.shape[0], -1).mean(1) < mid).float().mean() for f, _ in fake_out]).mean()
    return float(real_acc), float(fake_acc)


# --- statistics the generator matches directly --------------------------------------------------------
MODULATION_EDGES_HZ = (1.0, 2.0, 4.0, 6.0, 8.0, 11.0, 16.0)  # bands below 1 Hz, between these, and above 16 Hz


def modulation_shares(x: Tensor, rate: float, edges=MODULATION_EDGES_HZ) -> Tensor:
    """How a batch of sequences (B, C, F) at ``rate`` frames/s changes over time: each channel's power spectrum
    along F (mean removed, Hann window, averaged over the batch), summed into bands at ``edges`` Hz, as shares of
    the channel's total, (C, len(edges) + 1). Notes and beats live at 4-11 Hz; a held drone puts it all below 1."""
    win = torch.hann_window(x.shape[-1], dtype=x.dtype, device=x.device)
    power = torch.fft.rfft((x - x.mean(-1, keepdim=True)) * win, dim=-1).abs().square().mean(0)
    power[..., 1:(x.shape[-1] + 1) // 2] *= 2  # one-sided: each bin but 0 Hz and Nyquist stands for two
    freq = torch.fft.rfftfreq(x.shape[-1], 1.0 / rate).to(x.device)
    band = torch.bucketize(freq, torch.tensor(edges, dtype=freq.dtype, device=x.device), right=True)
    sums = power.new_zeros(power.shape[0], len(edges) + 1).index_add_(1, band, power)
    return sums / sums.sum(-1, keepdim=True).clamp_min(1e-12)


def modulation_distance(fake: Tensor, real: Tensor, rate: float, edges=MODULATION_EDGES_HZ) -> Tensor:
    """Mean |log share| difference of the two batches' ``modulation_shares``: 0 when fake changes at the rates and
    in the proportions real does; ~1.6 for a band with a fifth of its real share. Stage 2 adds it to the generator's
    loss (``train.modulation``) so that its latents change at the rate of notes, not only of bars."""
    f = modulation_shares(fake, rate, edges)
    r = modulation_shares(real.detach(), rate, edges)
    return (torch.log(f + 1e-4) - torch.log(r + 1e-4)).abs().mean()
