"""Each objective in losses.py against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from djenerator import losses as L

LOGITS_R = torch.tensor([2.0, -1.0, 0.5])
LOGITS_F = torch.tensor([-3.0, 0.0, 1.5])


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _argmin_1d(f, lo=-10.0, hi=10.0, iters=200) -> float:
    """Golden-section search of a convex 1-D function."""
    g = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    for _ in range(iters):
        c, d = b - g * (b - a), a + g * (b - a)
        if f(c) < f(d):
            b = d
        else:
            a = c
    return 0.5 * (a + b)


# --- BCE ----------------------------------------------------------------------------------------
def test_d_bce_matches_formula():
    want = sum(-math.log(_sig(r)) for r in LOGITS_R.tolist()) / 3 + sum(-math.log(1 - _sig(f)) for f in LOGITS_F.tolist()) / 3
    assert L.d_bce(LOGITS_R, LOGITS_F).item() == pytest.approx(want, rel=1e-6)


def test_g_bce_is_non_saturating():
    want = sum(-math.log(_sig(f)) for f in LOGITS_F.tolist()) / 3
    assert L.g_bce(LOGITS_F).item() == pytest.approx(want, rel=1e-6)
    # the non-saturating loss still has a strong gradient where D confidently rejects the fake
    x = torch.tensor([-8.0], requires_grad=True)
    L.g_bce(x).backward()
    assert x.grad.item() == pytest.approx(-(1 - _sig(-8.0)), rel=1e-6)


def test_label_smoothing_value_and_optimum():
    s = 0.9
    r, f = torch.tensor([1.3]), torch.tensor([-0.4])
    want = -(s * math.log(_sig(1.3)) + (1 - s) * math.log(1 - _sig(1.3))) - math.log(1 - _sig(-0.4))
    assert L.d_bce(r, f, real_target=s).item() == pytest.approx(want, rel=1e-6)
    # the optimal logit for a single real sample is log(s / (1 - s)), i.e. D(x) = 0.9, not 1
    opt = _argmin_1d(lambda v: L.d_bce(torch.tensor([v], dtype=torch.float64), torch.tensor([-50.0], dtype=torch.float64), s).item())
    assert opt == pytest.approx(math.log(s / (1 - s)), abs=1e-4)
    x = torch.tensor([math.log(s / (1 - s))], requires_grad=True)
    L.d_bce(x, torch.tensor([0.0]), s).backward()
    assert abs(x.grad.item()) < 1e-6
    # without smoothing, the loss keeps pushing the real logit up
    x = torch.tensor([math.log(s / (1 - s))], requires_grad=True)
    L.d_bce(x, torch.tensor([0.0])).backward()
    assert x.grad.item() < -0.05


# --- KL (f-GAN) ---------------------------------------------------------------------------------
def test_d_kl_value():
    want = -(LOGITS_R.mean().item() - sum(math.exp(f - 1) for f in LOGITS_F.tolist()) / 3)
    assert L.d_kl(LOGITS_R, LOGITS_F).item() == pytest.approx(want, rel=1e-6)
    assert L.g_kl(LOGITS_F).item() == pytest.approx(-LOGITS_F.mean().item())


def test_kl_discriminator_optimum_is_one_plus_log_density_ratio():
    # two discrete distributions on 4 points; the discriminator is a free table T[x]. Samples drawn in
    # the exact proportions of p (real) and q (fake) make d_kl's means the exact expectations.
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)  # data
    q = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)  # generator
    real_idx = torch.arange(4).repeat_interleave(torch.tensor([1, 2, 3, 4]))
    fake_idx = torch.arange(4).repeat_interleave(torch.tensor([4, 3, 2, 1]))
    T = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([T], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = L.d_kl(T[real_idx], T[fake_idx])
        loss.backward()
        return loss

    opt.step(closure)
    t_star = 1 + torch.log(p / q)
    assert torch.allclose(T.detach(), t_star, atol=1e-6)
    # at the optimum the bound is tight: E_p[T*] - E_q[exp(T* - 1)] = KL(p || q)
    kl = (p * torch.log(p / q)).sum().item()
    assert -L.d_kl(t_star[real_idx], t_star[fake_idx]).item() == pytest.approx(kl, rel=1e-9)
    # and the gradient of d_kl vanishes there
    t = t_star.clone().requires_grad_(True)
    L.d_kl(t[real_idx], t[fake_idx]).backward()
    assert t.grad.abs().max().item() < 1e-12


def test_kl_clamp_keeps_loss_finite():
    assert torch.isfinite(L.d_kl(torch.zeros(2), torch.full((2,), 1e4)))


# --- Wasserstein and the gradient penalty -------------------------------------------------------
def test_wgan_values():
    assert L.d_wgan(LOGITS_R, LOGITS_F).item() == pytest.approx(LOGITS_F.mean().item() - LOGITS_R.mean().item())
    assert L.g_wgan(LOGITS_F).item() == pytest.approx(-LOGITS_F.mean().item())


@pytest.mark.parametrize("w_scale", [0.3, 1.0, 2.5])
def test_gradient_penalty_of_linear_critic_is_exact(w_scale):
    torch.manual_seed(0)
    w = torch.randn(1, 1, 64, dtype=torch.float64)
    w = w / w.norm() * w_scale

    def critic(x, cond=None):
        return [((x * w).sum(dim=(1, 2)).unsqueeze(1), [])]

    real, fake = torch.randn(5, 1, 64, dtype=torch.float64), torch.randn(5, 1, 64, dtype=torch.float64)
    gp = L.gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((w_scale - 1.0) ** 2, abs=1e-12)


def test_gradient_penalty_sums_discriminators_and_averages_patches():
    w = torch.zeros(1, 1, 8)
    w[..., 0] = 3.0

    def critic(x, cond=None):
        patch = (x * w).sum(dim=(1, 2)).unsqueeze(1).expand(-1, 4)  # 4 identical patch logits
        return [(patch, []), ((x * w / 3).sum(dim=(1, 2)).unsqueeze(1), [])]

    gp = L.gradient_penalty(critic, torch.randn(3, 1, 8), torch.randn(3, 1, 8))
    assert gp.item() == pytest.approx((3 - 1) ** 2 + 0.0, abs=1e-5)


def test_gradient_penalty_reaches_the_discriminator_weights():
    lin = torch.nn.Linear(16, 1)

    def critic(x, cond=None):
        return [(lin(x.flatten(1)), [])]

    L.gradient_penalty(critic, torch.randn(4, 1, 16), torch.randn(4, 1, 16)).backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


# --- hinge --------------------------------------------------------------------------------------
def test_hinge_values_and_zeros():
    r, f = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, -0.5, 1.0])
    want = (0 + 0.5 + 2.0) / 3 + (0 + 0.5 + 2.0) / 3
    assert L.d_hinge(r, f).item() == pytest.approx(want)
    # zero once every real logit is >= 1 and every fake logit <= -1; no gradient there
    r = torch.tensor([1.0, 3.0], requires_grad=True)
    f = torch.tensor([-1.0, -4.0], requires_grad=True)
    loss = L.d_hinge(r, f)
    loss.backward()
    assert loss.item() == 0.0 and r.grad.abs().sum() == 0 and f.grad.abs().sum() == 0
    assert L.g_hinge(torch.tensor([0.5, -1.5])).item() == pytest.approx(0.5)


def test_hinge_real_target_scales_margin():
    assert L.d_hinge(torch.tensor([0.9]), torch.tensor([-1.0]), real_target=0.9).item() == pytest.approx(0.0)
    assert L.d_hinge(torch.tensor([0.5]), torch.tensor([-1.0]), real_target=0.9).item() == pytest.approx(0.4)


# --- sums over discriminators, feature matching, accuracy ----------------------------------------
def test_d_loss_and_g_loss_sum_over_discriminators():
    outs_r = [(LOGITS_R, []), (LOGITS_R * 2, [])]
    outs_f = [(LOGITS_F, []), (LOGITS_F * 2, [])]
    pairs = {"bce": (L.d_bce, L.g_bce), "kl": (L.d_kl, L.g_kl), "wgan": (L.d_wgan, L.g_wgan),
             "wgan-gp": (L.d_wgan, L.g_wgan), "hinge": (L.d_hinge, L.g_hinge)}
    assert set(pairs) == set(L.LOSSES)
    for name, (d, g) in pairs.items():
        want = d(LOGITS_R, LOGITS_F) + d(LOGITS_R * 2, LOGITS_F * 2)
        assert L.d_loss(name, outs_r, outs_f).item() == pytest.approx(want.item(), rel=1e-6)
        want = g(LOGITS_F) + g(LOGITS_F * 2)
        assert L.g_loss(name, outs_f).item() == pytest.approx(want.item(), rel=1e-6)


def test_the_table_says_what_training_does_with_each_objective():
    gp = {n for n, o in L.LOSSES.items() if o.gradient_penalty}
    clip = {n for n, o in L.LOSSES.items() if o.weight_clip}
    critics = {n for n, o in L.LOSSES.items() if o.midpoint is None}
    assert gp == {"wgan-gp"} and clip == {"wgan"} and critics == {"wgan", "wgan-gp"}
    assert L.LOSSES["kl"].midpoint == 1.0 and L.LOSSES["bce"].midpoint == L.LOSSES["hinge"].midpoint == 0.0
    assert all(o.if_diverged and o.alternative in L.LOSSES and o.alternative != n for n, o in L.LOSSES.items())


def test_feature_matching():
    feats = [torch.randn(2, 3, 5), torch.randn(2, 4)]
    same = [(None, feats)]
    assert L.feature_matching(same, [(None, [f.clone() for f in feats])]).item() == 0.0
    shifted = [(None, [feats[0] + 0.5, feats[1] - 2.0])]
    assert L.feature_matching(same, shifted).item() == pytest.approx((0.5 + 2.0) / 2)
    # gradient goes only to the fake features
    real_f = torch.randn(2, 3, requires_grad=True)
    fake_f = torch.randn(2, 3, requires_grad=True)
    L.feature_matching([(None, [real_f])], [(None, [fake_f])]).backward()
    assert real_f.grad is None and fake_f.grad is not None
    assert L.feature_matching([(None, [])], [(None, [])]).item() == 0.0


def test_d_accuracy():
    real = [(torch.tensor([[2.0, 1.0], [-1.0, -2.0]]), [])]  # clip means 1.5, -1.5
    fake = [(torch.tensor([[-1.0], [-0.5]]), [])]
    assert L.d_accuracy("bce", real, fake) == (0.5, 1.0)
    # the KL critic's decision point is T = 1 (p = q)
    assert L.d_accuracy("kl", real, fake) == (0.5, 1.0)
    assert L.d_accuracy("kl", [(torch.tensor([[0.9]]), [])], [(torch.tensor([[0.9]]), [])]) == (0.0, 1.0)


def test_g_objective_reaches_the_generator_only_and_adds_feature_matching():
    import torch

    from djenerator import losses

    torch.manual_seed(0)
    D = torch.nn.Linear(4, 1)
    judge = lambda x: [(D(x), [x * 2.0])]  # noqa: E731 - (logits, features), as the discriminators return
    fake = torch.randn(3, 4, requires_grad=True)
    real = torch.randn(3, 4)
    plain, _ = losses.g_objective("hinge", D, judge, fake, real, 0.0)
    with_fm, f_out = losses.g_objective("hinge", D, judge, fake, real, 0.5)
    expected_fm = torch.nn.functional.l1_loss(fake * 2.0, real * 2.0)
    torch.testing.assert_close(with_fm - plain, 0.5 * expected_fm)
    with_fm.backward()
    assert fake.grad is not None and all(p.grad is None for p in D.parameters())
    assert all(p.requires_grad for p in D.parameters())  # unfrozen again for the next critic step


def test_r1_penalty_of_linear_and_quadratic_critics_is_exact():
    b, c, f = 3, 2, 5
    w = torch.randn(c, f)
    linear = lambda x: [(torch.einsum("bcf,cf->bf", x, w)[:, None], [])]  # noqa: E731  patch logits (B, 1, F)
    x = torch.randn(b, c, f)
    # score = mean over patches = sum(w * x) / f -> gradient w / f for every clip
    assert float(L.r1_penalty(linear, x).detach()) == pytest.approx(float((w**2).sum()) / f**2, rel=1e-5)
    square = lambda x: [(x.pow(2).sum(1, keepdim=True), []), (x.sum(1, keepdim=True), [])]  # noqa: E731
    # two critics, summed: gradients 2x/f and 1/f
    want = float((4 * x.pow(2).sum((1, 2))).mean()) / f**2 + c * f / f**2
    assert float(L.r1_penalty(square, x).detach()) == pytest.approx(want, rel=1e-5)


def test_r1_penalty_reaches_the_critic_weights():
    conv = torch.nn.Conv1d(2, 1, 3, padding=1)
    L.r1_penalty(lambda x, cond: [(conv(x), [])], torch.randn(4, 2, 16), torch.zeros(4, 2)).backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_modulation_shares_match_scipy_periodogram():
    """Band shares of each channel's power over time equal scipy's Hann periodogram summed into the same bands."""
    from scipy.signal import periodogram

    rate, rng = 43.07, np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 256)).cumsum(-1) * 0.1 + np.sin(2 * np.pi * 9.0 * np.arange(256) / rate)
    f, p = periodogram(x, fs=rate, window="hann", detrend="constant", scaling="spectrum", return_onesided=True)
    p = p.mean(0)
    band = np.searchsorted(L.MODULATION_EDGES_HZ, f, side="right")
    want = np.stack([p[:, band == k].sum(-1) for k in range(len(L.MODULATION_EDGES_HZ) + 1)], -1)
    want /= want.sum(-1, keepdims=True)
    got = L.modulation_shares(torch.from_numpy(x), rate).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    assert got[:, 5].min() > 0.5  # the 9-Hz line is in the 8-11 Hz band


def test_modulation_distance_separates_note_rate_from_drones_and_moves_the_fake():
    """0 for equal batches; large for slow drift against 9-Hz changes; following its gradient brings the fake nearer."""
    rate, t = 43.07, torch.arange(256) / 43.07
    real = torch.sin(2 * torch.pi * 9.0 * t + torch.rand(8, 4, 1) * 6.28) + 0.05 * torch.randn(8, 4, 256)
    drone = torch.sin(2 * torch.pi * 0.5 * t + torch.rand(8, 4, 1) * 6.28) + 0.05 * torch.randn(8, 4, 256)
    assert float(L.modulation_distance(real, real, rate)) < 1e-6
    fake = drone.clone().requires_grad_(True)
    d0 = float(L.modulation_distance(fake, real, rate))
    assert d0 > 1.0
    opt = torch.optim.Adam([fake], lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        L.modulation_distance(fake, real, rate).backward()
        opt.step()
    assert float(L.modulation_distance(fake, real, rate)) < 0.75 * d0
