"""The health monitor on purpose-made failures of tiny, real GAN training runs."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from djenerator import losses as L
from djenerator.health import HealthConfig, HealthMonitor, TrainingDiverged, Warning, batch_diversity


pytestmark = pytest.mark.usefixtures("one_thread")


def real_batch(b: int = 32) -> torch.Tensor:
    """Toy 'audio': sines of random frequency and phase, (B, 1, 64)."""
    t = torch.arange(64) / 64
    f = torch.randint(2, 8, (b, 1)).float()
    ph = torch.rand(b, 1) * 2 * math.pi
    return (0.8 * torch.sin(2 * math.pi * f * t + ph)).unsqueeze(1)


class ToyG(nn.Module):
    def __init__(self, constant: bool = False):
        super().__init__()
        self.constant = constant
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 64), nn.Tanh())
        self.const = nn.Parameter(torch.randn(1, 1, 64) * 0.5)

    def forward(self, z):
        if self.constant:
            return torch.tanh(self.const).expand(z.shape[0], 1, 64)
        return self.net(z).unsqueeze(1)


class ToyD(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))

    def forward(self, x, cond=None):
        return [(self.net(x), [])]


def _grad_norm(m: nn.Module) -> float:
    return float(torch.sqrt(sum((p.grad**2).sum() for p in m.parameters() if p.grad is not None)))


def train(loss: str, steps: int, lr_g: float, lr_d: float, monitor: HealthMonitor, constant_g: bool = False,
          nan_at: int | None = None) -> list[Warning]:
    """A plain GAN loop that reports the statistics train.py logs to the monitor every step."""
    g, d = ToyG(constant_g), ToyD()
    og = torch.optim.Adam(g.parameters(), lr_g, betas=(0.5, 0.9))
    od = torch.optim.Adam(d.parameters(), lr_d, betas=(0.5, 0.9))
    warnings: list[Warning] = []
    for step in range(steps):
        real, z = real_batch(), torch.randn(32, 8)
        fake = g(z).detach()
        ro, fo = d(real), d(fake)
        ld = L.d_loss(loss, ro, fo)
        od.zero_grad()
        ld.backward()
        d_grad = _grad_norm(d)
        od.step()
        fake = g(z)
        fo = d(fake)
        lg = L.g_loss(loss, fo)
        if nan_at is not None and step >= nan_at:
            lg = lg * float("nan")
        og.zero_grad()
        lg.backward()
        g_grad = _grad_norm(g)
        og.step()
        ra, fa = L.d_accuracy(loss, ro, fo)
        stats = {"d_loss": ld.item(), "g_loss": lg.item(), "d_real_acc": ra, "d_fake_acc": fa,
                 "g_grad_norm": g_grad, "d_grad_norm": d_grad, "diversity": batch_diversity(fake, real)}
        monitor.check_finite(step, stats)
        warnings += monitor.update(step, stats)
    return warnings


# --- batch_diversity ----------------------------------------------------------------------------
def test_batch_diversity():
    real = real_batch()
    assert batch_diversity(real_batch(), real) == pytest.approx(1.0, abs=0.2)
    assert batch_diversity(torch.randn(16, 1, 64) * 1e-3, real) > 0.8  # quiet but varied is not collapse
    assert batch_diversity(real[:1].expand(16, 1, 64), real) < 1e-3
    assert batch_diversity(torch.zeros(16, 1, 64), real) == 0.0
    assert batch_diversity(real[:1], real) == 1.0


# --- the four provoked failures -----------------------------------------------------------------
def test_strong_discriminator_triggers_d_wins():
    mon = HealthMonitor("bce", HealthConfig(window=10))
    warnings = train("bce", 40, lr_g=1e-6, lr_d=2e-2, monitor=mon)
    kinds = [w.kind for w in warnings]
    assert "d_wins" in kinds, kinds
    msg = next(w.message for w in warnings if w.kind == "d_wins")
    assert "train.instance_noise" in msg and "train.lr_d" in msg
    assert "collapse" not in kinds
    # the same loop with balanced learning rates raises nothing
    assert train("bce", 40, lr_g=1e-3, lr_d=1e-3, monitor=HealthMonitor("bce", HealthConfig(window=10))) == []


def test_constant_generator_triggers_collapse():
    mon = HealthMonitor("hinge", HealthConfig(window=10, collapse_warmup=0))
    warnings = train("hinge", 12, lr_g=1e-3, lr_d=1e-3, monitor=mon, constant_g=True)
    col = [w for w in warnings if w.kind == "collapse"]
    assert col and col[0].step == 0
    assert len(col) == 2 and col[1].step == 10  # once per window, not every step
    assert "collapse" in col[0].message and "train.loss=wgan-gp" in col[0].message


def test_collapse_waits_for_warmup():
    mon = HealthMonitor("hinge", HealthConfig(window=10, collapse_warmup=50))
    early = mon.update(10, {"diversity": 0.0})
    assert not early and [w.kind for w in mon.update(60, {"diversity": 0.0})] == ["collapse"]


def test_nan_loss_raises_training_diverged():
    mon = HealthMonitor("bce", HealthConfig(window=10))
    with pytest.raises(TrainingDiverged) as e:
        train("bce", 10, lr_g=1e-3, lr_d=1e-3, monitor=mon, nan_at=5)
    msg = str(e.value)
    assert "step 5" in msg and "g_loss=nan" in msg and "train.loss=bce" in msg
    assert "train.lr_d" in msg and "train.instance_noise" in msg
    with pytest.raises(TrainingDiverged, match="train.loss=kl"):
        HealthMonitor("kl").update(3, {"d_loss": float("inf")})


def test_unconstrained_critic_triggers_diverging():
    """WGAN without clipping or penalty: nothing bounds the critic, so its loss runs away."""
    mon = HealthMonitor("wgan", HealthConfig(window=30))
    warnings = train("wgan", 60, lr_g=1e-4, lr_d=5e-2, monitor=mon)
    kinds = [w.kind for w in warnings]
    assert "diverging" in kinds, kinds
    assert "d_wins" in kinds  # the critic gap keeps widening too
    msg = next(w.message for w in warnings if w.kind == "diverging")
    assert "d_loss" in msg and "train.lr_d" in msg and "train.clip_value" in msg


def test_exploding_losses_trigger_diverging_once_per_window():
    mon = HealthMonitor("bce", HealthConfig(window=20))
    warnings = []
    for step in range(60):
        warnings += mon.update(step, {"d_loss": 1.3 * 1.15**step, "g_loss": 0.7, "d_real_acc": 0.6, "d_fake_acc": 0.6})
    div = [w for w in warnings if w.kind == "diverging"]
    assert div and all(b.step - a.step >= 20 for a, b in zip(div, div[1:]))
    assert len(div) <= 3


# --- no false alarms and the wgan rules ---------------------------------------------------------
def test_healthy_statistics_give_no_warnings():
    mon = HealthMonitor("bce")
    torch.manual_seed(1)
    out = []
    for step in range(0, 500, 10):
        n = torch.rand(4).tolist()
        out += mon.update(step, {"d_loss": 1.3 + 0.1 * n[0], "g_loss": 0.8 + 0.1 * n[1], "d_real_acc": 0.6 + 0.1 * n[2],
                                 "d_fake_acc": 0.55, "g_grad_norm": 0.5, "d_grad_norm": 1.0, "diversity": 0.9 + 0.1 * n[3]})
    assert out == []


def test_vanishing_generator_gradient():
    mon = HealthMonitor("bce", HealthConfig(window=10))
    out = []
    for step in range(10):
        out += mon.update(step, {"g_grad_norm": 1e-7})
    assert [w.kind for w in out] == ["vanishing_g_grad"]
    assert "train.lr_d" in out[0].message


def test_wgan_uses_critic_gap_not_accuracy():
    mon = HealthMonitor("wgan-gp", HealthConfig(window=10))
    # accuracies meaningless for a critic: perfect 'accuracy' with a flat gap is not a warning
    out = []
    for step in range(30):
        out += mon.update(step, {"d_loss": -0.5, "d_real_acc": 1.0, "d_fake_acc": 1.0})
    assert out == []
    for step in range(30, 60):
        out += mon.update(step, {"critic_gap": 0.5 * 1.2 ** (step - 30), "d_real_acc": 0.5, "d_fake_acc": 0.5})
    assert "d_wins" in [w.kind for w in out]


def test_loss_that_settles_high_is_reported_once():
    mon = HealthMonitor("bce", HealthConfig(window=10))
    out = []
    for step in range(200):
        out += mon.update(step, {"d_loss": 1.4 if step < 20 else 30.0})
    assert [w.kind for w in out] == ["diverging"]


def test_repeated_warnings_back_off():
    mon = HealthMonitor("hinge", HealthConfig(window=10, collapse_warmup=0))
    fired = [s for s in range(0, 200) if mon.update(s, {"diversity": 0.0})]
    assert fired == [0, 10, 30, 70, 150]  # gaps of 1, 2, 4, 8 windows
