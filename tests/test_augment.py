"""Augmentation: shape, range, gradient flow to the generator, identity at p=0; ADA controller; exact resume."""
import csv

import pytest
import torch

from djenerator.augment import OPS, AdaController, Augmenter, augment, overfit_signs
from djenerator.checkpoint import latest_checkpoint, load_checkpoint
from djenerator.config import ConfigError, build_config
from djenerator.train import train

SR = 8000


def batch(b=4, t=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, t, generator=g) * 2 - 1
    return x * torch.linspace(0.2, 1.0, b).reshape(-1, 1, 1)  # peaks from 0.2 to 1


@pytest.mark.parametrize("op", OPS)
def test_each_op_keeps_shape_and_range_and_passes_gradient_to_the_generator(op):
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(8, 2048), torch.nn.Tanh())  # a tiny "generator"
    x = G(torch.randn(4, 8)).unsqueeze(1)
    y = augment(x, 0.99, [op], SR, leaky_p_max=0.99)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all() and y.abs().max() <= 1.0 + 1e-6
    y.square().mean().backward()
    grads = [p.grad for p in G.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("op", OPS)
def test_each_op_changes_the_signal_and_keeps_full_scale_range(op):
    torch.manual_seed(1)
    x = batch()
    y = OPS[op].fn(x, SR)
    assert y.shape == x.shape and y.abs().max() <= 1.0 + 1e-6
    assert not torch.allclose(y, x)


def test_probability_zero_is_the_identity_and_draws_nothing():
    x = batch()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert augment(x, 0.0, list(OPS), SR) is x
    assert torch.equal(torch.get_rng_state(), state)
    aug = Augmenter(build_config("few").augment, SR)
    assert aug.p == 0.0 and aug(x) is x
    off = Augmenter(build_config("recommended").augment, SR)
    assert not off.enabled and off(x) is x


def test_probability_is_per_example_and_leaky_ops_are_capped():
    torch.manual_seed(0)
    x = batch(b=4000, t=64)
    y = augment(x, 0.3, ["polarity"], SR)
    flipped = (y[:, 0, 0] == -x[:, 0, 0]).float().mean()
    assert abs(float(flipped) - 0.3) < 0.04
    y = augment(x, 0.95, ["cutout"], SR, leaky_p_max=0.5)  # capped at 0.5
    changed = (y != x).flatten(1).any(1).float().mean()
    assert abs(float(changed) - 0.5) < 0.04


def test_ada_moves_p_up_when_over_target_and_down_when_under():
    ada = AdaController(target=0.6, interval=4, kimg=1.0, batch=10, p=0.5)
    step = 10 * 4 / 1000.0
    ada.accumulate(torch.tensor(36.0), 40)  # r_t = 0.9 > 0.6: overfitting
    assert ada.update() == pytest.approx(0.5 + step) and ada.last_rt == pytest.approx(0.9)
    ada.accumulate(torch.tensor(-8.0), 40)  # r_t = -0.2 < 0.6
    assert ada.update() == pytest.approx(0.5)
    for _ in range(100):
        ada.accumulate(torch.tensor(-40.0), 40)
        ada.update()
    assert ada.p == 0.0
    for _ in range(1000):
        ada.accumulate(torch.tensor(40.0), 40)
        ada.update()
    assert 0.9 < ada.p < 1.0
    restored = AdaController()
    ada.accumulate(torch.tensor(3.0), 8)
    restored.load_state_dict(ada.state_dict())
    assert restored.state_dict() == ada.state_dict()


def test_copies_raise_a_floor_that_r_t_cannot_undo():
    ada = AdaController(target=0.6, interval=4, kimg=1.0, batch=10, p=0.05)
    assert ada.raise_floor(0.1) == pytest.approx(0.1) and ada.p_min == pytest.approx(0.1)
    for _ in range(50):  # r_t far under target: p falls, but only to the floor
        ada.accumulate(torch.tensor(-40.0), 40)
        ada.update()
    assert ada.p == pytest.approx(0.1)
    ada.accumulate(torch.tensor(40.0), 40)  # and still rises above it
    assert ada.update() == pytest.approx(0.14)
    assert ada.raise_floor(0.1) == pytest.approx(0.2)  # a floor above p lifts p
    for _ in range(20):
        ada.raise_floor(0.1)
    assert ada.p_min == pytest.approx(0.99)
    restored = AdaController()
    restored.load_state_dict(ada.state_dict())
    assert restored.p_min == ada.p_min and restored.state_dict() == ada.state_dict()


def test_overfit_signal_per_objective():
    r = [(torch.tensor([[2.0], [1.5], [-1.0], [0.5]]), [])]
    f = [(torch.tensor([[1.0], [1.0], [1.0], [1.0]]), [])]
    assert float(overfit_signs("hinge", r)[0]) == 2.0 and overfit_signs("hinge", r)[1] == 4
    assert float(overfit_signs("kl", r)[0]) == 0.0  # midpoint 1: +1 +1 -1 -1
    assert float(overfit_signs("wgan-gp", r, f)[0]) == 0.0  # relative to the mean fake score (1.0)
    patch = [(torch.tensor([[3.0, -1.0], [-3.0, 1.0]]), [])]  # per-clip mean first: +1, -1
    assert float(overfit_signs("bce", patch)[0]) == 0.0


def test_config_rejects_unknown_ops():
    with pytest.raises(ConfigError, match="augment.ops"):
        build_config("few", [], ["augment.ops=[gain,reverb]"])
    with pytest.raises(ConfigError, match="augment.ada_copy_step"):
        build_config("few", [], ["augment.ada_copy_step=-0.1"])
    with pytest.raises(ConfigError, match="train.copy_check_n"):
        build_config("few", [], ["train.copy_check_n=-1"])




def aug_cfg(*extra):
    return build_config("original", [], [
        "data.sample_rate=8000", "data.clip_samples=1024", "model.dense_hidden=[16,32]", "train.batch_size=8",
        "train.log_every=2", "train.ckpt_every=5", "train.sample_every=5", "train.n_samples=2", "train.device=cpu",
        "augment.enabled=true", "augment.ada=true", "augment.p=0.2", "augment.ada_interval=3", "augment.ada_kimg=0.05",
        "augment.ops=[polarity,gain,shift,pitch,eq,bandpass,noise,cutout]", *extra])


@pytest.mark.parametrize("loss", ["wgan-gp"])
def test_exact_resume_with_augmentation_and_ada(tiny_dataset, tmp_path, loss):
    """ckpt_every=5 and ada_interval=3: the checkpoint falls mid-interval, so the accumulator must be saved too."""
    opts = [f"train.loss={loss}"] + (["train.optimizer=adam", "train.lr_g=1e-4", "train.lr_d=1e-4"] if loss != "bce" else [])
    quiet = dict(progress=False, log=lambda m: None)
    train(aug_cfg("train.steps=10", *opts), tiny_dataset, tmp_path / "one", **quiet)
    train(aug_cfg("train.steps=5", *opts), tiny_dataset, tmp_path / "two", **quiet)
    train(aug_cfg("train.steps=10", *opts), tiny_dataset, tmp_path / "two", resume=True, **quiet)
    a, b = load_checkpoint(latest_checkpoint(tmp_path / "one")), load_checkpoint(latest_checkpoint(tmp_path / "two"))
    assert a["augment"] == b["augment"]
    for part in ("G", "D"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["augment"]["p"] != 0.2  # ADA moved it (kimg is tiny)
    rows = list(csv.DictReader(open(tmp_path / "one" / "logs" / "losses.csv")))
    assert all(r["augment_p"] != "" for r in rows) and rows[-1]["ada_rt"] != ""
    assert float(rows[-1]["augment_p"]) == pytest.approx(a["augment"]["p"], abs=1e-5)
