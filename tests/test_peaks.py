"""dsp.peaks: the spectral peaks stage 1's latents carry, checked against numbers computed another way."""
import math

import numpy as np
import pytest
import torch

from djenerator.dsp.peaks import (band_edges, band_peaks, hann_lobe, mel_interp, peak_latents, peaks_of_latents,
                                  render_lobes)

SR, N_FFT, HOP = 22050, 1024, 512


def _stft_mag(x: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(x.astype(np.float32))[None]
    return torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, return_complex=True).abs()


def test_band_peaks_find_each_partials_frequency_and_level():
    """Three steady tones: in its band each is found within 0.05 bin of f N / sr, at the log of the peak magnitude
    a Hann window gives a sinusoid of amplitude A (A N / 4) within 0.05 neper; bands without a tone hold only the
    faint noise floor's peaks, if any."""
    t = np.arange(SR) / SR
    tones = {310.0: 0.3, 1234.5: 0.2, 3111.0: 0.1}
    rng = np.random.default_rng(0)
    x = sum(a * np.sin(2 * np.pi * f * t + 1.0) for f, a in tones.items()) + 1e-4 * rng.standard_normal(SR)
    edges = band_edges(SR, N_FFT, 8)
    freq, level, valid = band_peaks(_stft_mag(x), edges)
    mid = freq.shape[1] // 2
    tone_bands = set()
    for f, a in tones.items():
        b = int(np.searchsorted(edges.numpy(), f * N_FFT / SR)) - 1
        tone_bands.add(b)
        assert valid[0, mid, b]
        assert float(freq[0, mid, b]) == pytest.approx(f * N_FFT / SR, abs=0.05)
        assert float(level[0, mid, b]) == pytest.approx(math.log(a * N_FFT / 4), abs=0.05)
    others = [b for b in range(8) if b not in tone_bands]
    quiet = torch.where(valid[0, mid, others], level[0, mid, others], torch.full((len(others),), -30.0))
    assert float(quiet.max()) < math.log(0.1 * N_FFT / 4) - 4


def test_peak_latents_round_trip_and_hold_a_bands_place():
    """Places and levels come back as the frequency and the peak magnitude; a frame without a peak is silent
    (level -1, magnitude ~1e-4) at the place its band last had one (0, the band's middle, before any)."""
    edges = band_edges(SR, N_FFT, 2)
    lo, hi = edges.numpy()[:2], edges.numpy()[1:]
    freq = torch.tensor([[[lo[0] * 1.1, lo[1] * 1.2], [lo[0] * 1.3, lo[1] * 1.2], [lo[0] * 1.3, lo[1] * 1.4]]])
    level = torch.tensor([[[2.5, 1.0], [3.0, 0.0], [1.5, 4.0]]])
    valid = torch.tensor([[[True, False], [False, True], [True, True]]])
    z = peak_latents(freq, level, valid, edges)
    assert z.shape == (1, 4, 3) and z.abs().max() <= 1
    f, mag = peaks_of_latents(z, edges)
    np.testing.assert_allclose(f[valid].numpy(), freq[valid].numpy(), rtol=1e-5)
    np.testing.assert_allclose(mag[valid].numpy(), np.exp(level[valid].numpy()), rtol=1e-3)
    assert float(mag[~valid].max()) < 1e-3
    assert float(f[0, 1, 0]) == pytest.approx(float(freq[0, 0, 0]), rel=1e-5)  # held from frame 0
    assert float(f[0, 0, 1]) == pytest.approx(math.sqrt(lo[1] * hi[1]), rel=1e-5)  # none yet: the band's middle


def test_rendered_lobes_are_a_sinusoids_stft_magnitude_near_its_peak():
    """A tone between bins, rendered at its frequency and peak magnitude, matches the STFT magnitude of the tone
    itself at the 4 bins around it (within 2 % of the peak); and the 4-bin render equals the lobe summed densely."""
    f = 1234.5
    t = np.arange(SR) / SR
    mag = _stft_mag(0.2 * np.sin(2 * np.pi * f * t))[:, :, 10]  # (1, bins)
    k = f * N_FFT / SR
    drawn = render_lobes(torch.tensor([[[k]]]), torch.tensor([[[0.2 * N_FFT / 4]]]), mag.shape[-1])[0, 0]
    near = slice(int(k) - 1, int(k) + 3)
    np.testing.assert_allclose(drawn[near].numpy(), mag[0, near].numpy(), atol=0.02 * float(mag.max()))
    g = torch.Generator().manual_seed(0)
    freq, amp = torch.rand(2, 3, 5, generator=g) * 500, torch.rand(2, 3, 5, generator=g)
    dense = (amp[..., None] * hann_lobe(torch.arange(513.0) - freq[..., None])).sum(-2)
    torch.testing.assert_close(render_lobes(freq, amp, 513), dense, atol=1e-6, rtol=0)


def test_mel_interp_is_numpy_interp_on_the_mel_axis():
    """Each bin's value is np.interp of the points at their mel positions; rows sum to 1."""
    basis = mel_interp(SR, 513, 40)
    mel = lambda f: 2595 * np.log10(1 + f / 700)
    bins_mel = mel(np.arange(513) * (SR / 2) / 512)
    points_mel = np.linspace(0, mel(SR / 2), 40)
    v = np.random.default_rng(1).standard_normal(40)
    np.testing.assert_allclose((basis.double() @ torch.from_numpy(v)).numpy(), np.interp(bins_mel, points_mel, v),
                               atol=1e-5)
    np.testing.assert_allclose(basis.sum(1).numpy(), 1.0, atol=1e-6)
