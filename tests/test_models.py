"""WaveGAN generator, phase shuffle and the convolutional discriminators (small widths to stay fast)."""
from __future__ import annotations

import pytest
import torch

from djenerator.config import Config, ConfigError
from djenerator.models import ARCHS, DISCRIMINATORS, build_discriminator, build_generator, count_parameters
from djenerator.models.discriminators import (
    MultiResolutionSTFTDiscriminator,
    MultiScaleDiscriminator,
    PhaseShuffle,
    WaveDiscriminator,
)
from djenerator.models.wavegan import WaveGANGenerator

DISCS = {"wave": WaveDiscriminator, "msd": MultiScaleDiscriminator, "stft": MultiResolutionSTFTDiscriminator}


def make_cfg(clip=16384, dim=4, cond=False, discs=("wave",), ffts=(128, 256, 512)) -> Config:
    cfg = Config()
    cfg.data.clip_samples = clip
    cfg.model.arch = "wavegan"
    cfg.model.dim = dim
    cfg.model.latent_dim = 16
    cfg.model.tempo_conditioning = cond
    cfg.model.discriminators = list(discs)
    cfg.model.stft_ffts = list(ffts)
    return cfg


pytestmark = pytest.mark.usefixtures("one_thread")


# --- generator ----------------------------------------------------------------------------------
@pytest.mark.parametrize("clip", [16384, 65536, 1024])
def test_generator_shape_and_range(clip):
    cfg = make_cfg(clip)
    g = build_generator(cfg)
    assert isinstance(g, WaveGANGenerator)
    with torch.no_grad():
        y = g(torch.randn(3, 16) * 10)  # large z to drive tanh towards its limits
    assert y.shape == (3, 1, clip)
    assert y.abs().max() <= 1.0 and torch.isfinite(y).all()


def test_generator_follows_the_paper_layout():
    cfg = make_cfg(16384, dim=64)
    cfg.model.latent_dim = 100
    g = WaveGANGenerator(cfg)
    assert g.fc.out_features == 16 * 1024
    convs = [m for m in g.net if isinstance(m, torch.nn.ConvTranspose1d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1024, 512), (512, 256), (256, 128), (128, 64), (64, 1)]
    assert all(c.kernel_size == (25,) and c.stride == (4,) for c in convs)
    assert isinstance(g.net[-1], torch.nn.Tanh)
    # 65536 samples: one more layer from a 32d base
    g = WaveGANGenerator(make_cfg(65536, dim=64))
    convs = [m for m in g.net if isinstance(m, torch.nn.ConvTranspose1d)]
    assert convs[0].in_channels == 2048 and len(convs) == 6


def test_generator_rejects_other_lengths_with_a_clear_message():
    with pytest.raises(ConfigError, match="16 \\* 4\\^k.*16384"):
        WaveGANGenerator(make_cfg(16000))


def test_generator_conditioning_changes_output():
    g = WaveGANGenerator(make_cfg(1024, cond=True)).eval()
    z = torch.randn(2, 16)
    with torch.no_grad():
        a = g(z, torch.tensor([0.1, 0.1]))
        b = g(z, torch.tensor([0.9, 0.9]))
        c = g(z, torch.tensor([0.1, 0.1]))
        d = g(z)  # no tempo given: the middle of the range
    assert not torch.allclose(a, b)
    assert torch.equal(a, c)
    assert torch.allclose(d, g(z, torch.tensor([0.5, 0.5])))


# --- phase shuffle ------------------------------------------------------------------------------
def test_phase_shuffle_shifts_within_n_with_reflection():
    n = 3
    ps = PhaseShuffle(n).train()
    x = torch.randn(64, 2, 50)
    y = ps(x)
    k = ps.last_shift
    assert k.min() >= -n and k.max() <= n and len(set(k.tolist())) > 1  # per-example shifts
    for i in range(x.shape[0]):
        s = int(k[i])
        ref = torch.nn.functional.pad(x[i : i + 1], (n, n), mode="reflect")[0, :, n - s : n - s + 50]
        assert torch.equal(y[i], ref)
        if s >= 0:  # the body is x moved right by s
            assert torch.equal(y[i, :, s:], x[i, :, : 50 - s])
        else:
            assert torch.equal(y[i, :, : 50 + s], x[i, :, -s:])


def test_phase_shuffle_is_identity_in_eval_mode_and_passes_gradients():
    ps = PhaseShuffle(2)
    x = torch.randn(4, 3, 20, requires_grad=True)
    assert torch.equal(ps.eval()(x), x)
    ps.train()(x).sum().backward()
    assert torch.allclose(x.grad.sum(), torch.tensor(4 * 3 * 20.0))  # a permutation-with-repeats of inputs
    assert torch.equal(PhaseShuffle(0).train()(x), x)


# --- discriminators -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(DISCS))
@pytest.mark.parametrize("length", [16384, 5000, 700])
def test_discriminators_any_length(name, length):
    cfg = make_cfg(16384)
    d = DISCS[name](cfg)
    with torch.no_grad():
        logits, feats = d(torch.randn(2, 1, length) * 0.5)
    assert logits.dim() == 2 and logits.shape[0] == 2 and logits.shape[1] >= 1
    assert torch.isfinite(logits).all()
    assert len(feats) >= 3 and all(f.shape[0] == 2 for f in feats)


def test_wave_discriminator_layout_and_logit_shape():
    cfg = make_cfg(16384, dim=64)
    d = WaveDiscriminator(cfg)
    assert [(c.in_channels, c.out_channels) for c in d.convs] == [(1, 64), (64, 128), (128, 256), (256, 512), (512, 1024)]
    assert d.fc.in_features == 16 * 1024
    assert sum(isinstance(s, PhaseShuffle) for s in d.shuffles) == 4
    d65 = WaveDiscriminator(make_cfg(65536, dim=2))
    assert len(d65.convs) == 6 and d65.convs[-1].out_channels == 64
    logits, feats = d65(torch.randn(2, 1, 65536))
    assert logits.shape == (2, 1) and len(feats) == 6 and feats[-1].shape[-1] == 16


@pytest.mark.parametrize("name", list(DISCS))
def test_gradient_reaches_the_input(name):
    d = DISCS[name](make_cfg(4096)).train()
    x = torch.randn(2, 1, 4096, requires_grad=True)
    logits, feats = d(x)
    (logits.mean() + sum(f.mean() for f in feats)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in d.parameters())


@pytest.mark.parametrize("name", list(DISCS))
def test_conditioning_changes_discriminator_output(name):
    d = DISCS[name](make_cfg(4096, cond=True)).eval()
    for m in d.modules():  # the projection starts small; make its effect unmistakable
        if type(m).__name__ == "_Projection":
            torch.nn.init.normal_(m.embed.weight, std=1.0)
    x = torch.randn(2, 1, 4096)
    with torch.no_grad():
        a, _ = d(x, torch.tensor([0.1, 0.1]))
        b, _ = d(x, torch.tensor([0.9, 0.9]))
        c, _ = d(x)
    assert a.shape == b.shape == c.shape
    assert not torch.allclose(a, b)


def test_msd_scales_weigh_the_same():
    d = MultiScaleDiscriminator(make_cfg(16384))
    logits, feats = d(torch.randn(1, 1, 16384))
    assert logits.shape[1] % 3 == 0
    assert len(feats) == 3 * 6


def test_build_with_spectral_norm_and_all_discriminators():
    cfg = make_cfg(4096, discs=("wave", "msd", "stft"), cond=True)
    cfg.model.spectral_norm = True
    disc = build_discriminator(cfg)
    n_sn = sum(hasattr(m, "parametrizations") for m in disc.modules())
    assert n_sn > 20
    x = torch.randn(2, 1, 4096, requires_grad=True)
    outs = disc(x, torch.tensor([0.2, 0.7]))
    assert len(outs) == 3
    sum(lg.mean() for lg, _ in outs).backward()
    assert x.grad.abs().sum() > 0
    # spectral norm keeps every layer's largest singular value near 1
    conv = disc.discs["wave"].convs[1]
    w = conv.weight.reshape(conv.weight.shape[0], -1)
    for _ in range(5):  # a few more power iterations
        disc(x.detach())
    assert torch.linalg.matrix_norm(conv.weight.reshape(conv.weight.shape[0], -1), ord=2).item() == pytest.approx(1.0, rel=0.1)
    assert count_parameters(disc) > 0 and w.shape[0] == 8


def test_dim_scales_parameter_count():
    small, big = make_cfg(16384, dim=8, discs=("wave", "msd", "stft")), make_cfg(16384, dim=16, discs=("wave", "msd", "stft"))
    assert count_parameters(build_generator(big)) > 3 * count_parameters(build_generator(small))
    db, ds = build_discriminator(big), build_discriminator(small)
    for name in ("wave", "msd", "stft"):
        assert count_parameters(db.discs[name]) > count_parameters(ds.discs[name])


def test_tiny_adversarial_step_runs():
    """One hinge step of G against all three discriminators updates every parameter."""
    from djenerator import losses as L

    cfg = make_cfg(1024, discs=("wave", "msd", "stft"))
    g, d = build_generator(cfg), build_discriminator(cfg)
    fake = g(torch.randn(2, 16))
    real = torch.rand(2, 1, 1024) * 2 - 1
    ro, fo = d(real), d(fake)
    loss = L.g_loss("hinge", fo) + L.feature_matching(ro, fo) + L.d_loss("hinge", ro, [(f.detach(), []) for f, _ in fo])
    loss.backward()
    assert all(p.grad is not None for p in g.parameters())


@pytest.mark.parametrize("sn", [False, True])
def test_gradient_penalty_through_all_discriminators(sn):
    """WGAN-GP needs double backward through phase shuffle, reflect padding, STFT and in-place activations."""
    from djenerator import losses as L

    cfg = make_cfg(1024, discs=("wave", "msd", "stft"), cond=True)
    cfg.model.spectral_norm = sn
    d = build_discriminator(cfg).train()
    real, fake = torch.rand(2, 1, 1024) * 2 - 1, torch.rand(2, 1, 1024) * 2 - 1
    gp = L.gradient_penalty(d, real, fake, torch.tensor([0.3, 0.6]))
    assert torch.isfinite(gp) and gp.item() > 0
    gp.backward()
    grads = [p.grad for p in d.parameters() if p.requires_grad]
    assert sum(g is not None and g.abs().sum().item() > 0 for g in grads) > len(grads) // 2


@pytest.mark.parametrize("arch", list(ARCHS))
def test_the_arch_table_says_which_generators_make_long_pieces(arch):
    from djenerator.stream import is_longform

    cfg = make_cfg(dim=4)
    cfg.model.arch, cfg.model.dense_hidden = arch, [8, 8]
    assert is_longform(build_generator(cfg)) == ARCHS[arch].longform


def test_every_discriminator_in_the_table_builds_by_name():
    for name, disc in DISCRIMINATORS.items():
        cfg = make_cfg(dim=4, discs=(name,))
        cfg.model.arch, cfg.model.dense_hidden = ("twostage" if disc.latent else "wavegan"), [8, 8]
        assert list(build_discriminator(cfg).discs) == [name]
    with pytest.raises(ConfigError, match="unknown discriminator"):
        build_discriminator(make_cfg(discs=("nope",)))
