"""evaluate.latent: the latent-frame FD that stage 2 logs, against numbers computed another way."""
import numpy as np
import pytest
import torch

from djenerator.evaluate.latent import frame_features, latent_fd, real_frames


def test_frame_features_are_each_frame_and_its_step():
    lat = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    f = frame_features(lat)
    assert f.shape == (2 * 3, 6)
    # clip 1, frame 2: its three channels, then each minus frame 1's
    np.testing.assert_array_equal(f[3 + 1], [lat[1, c, 2] for c in range(3)] + [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="frames >= 2"):
        frame_features(torch.zeros(2, 3, 1))


def test_a_shift_costs_its_squared_length_and_nothing_else():
    """Shifting every frame by mu leaves the steps and both covariances as they were: FD = C * mu^2."""
    real = torch.randn(64, 4, 50, generator=torch.Generator().manual_seed(0))
    assert latent_fd(real, real) == pytest.approx(0.0, abs=1e-6)
    assert latent_fd(real + 0.5, real) == pytest.approx(4 * 0.25, rel=1e-6)


def test_a_slower_sequence_is_far_even_with_the_same_frames():
    """Each frame held for two: every value's distribution is the same, the steps are not."""
    g = torch.Generator().manual_seed(1)
    real = torch.randn(64, 4, 50, generator=g)
    slow = real[:, :, :25].repeat_interleave(2, dim=-1)
    same = torch.randn(64, 4, 50, generator=g)
    assert latent_fd(slow, real) > 10 * latent_fd(same, real)


def test_real_frames_keep_a_fixed_subset():
    real = torch.randn(10, 2, 30, generator=torch.Generator().manual_seed(2))
    a, b = real_frames(real, seed=3, max_frames=100), real_frames(real, seed=3, max_frames=100)
    assert a.shape == (100, 4) and np.array_equal(a, b)
    assert real_frames(real, max_frames=1000).shape == (10 * 29, 4)
    # fitted to the subset, the same latents stay near and shifted ones far (C * mu^2 = 2)
    assert latent_fd(real, real_feats=a) < 0.2 < 1.5 < latent_fd(real + 1.0, real_feats=a)
