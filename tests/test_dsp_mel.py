"""The mel scale and filterbank (dsp/mel.py) against known values and a slow, obviously-correct reference."""
import numpy as np
import pytest

from djenerator.dsp.mel import hz_to_mel, mel_filterbank, mel_to_hz

SR = 16000


def test_mel_scale_formulas():
    assert hz_to_mel(1000.0, htk=True) == pytest.approx(1000.0, abs=0.1)  # HTK: 1000 Hz ~ 1000 mel
    assert hz_to_mel(1000.0) == pytest.approx(15.0)  # Slaney: linear 3 mel / 200 Hz up to 1 kHz
    assert hz_to_mel(6400.0) == pytest.approx(15.0 + 27.0)  # then 27 mel per factor 6.4
    f = np.array([0.0, 50.0, 999.0, 1000.0, 3000.0, 8000.0])
    for htk in (True, False):
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, htk), htk), f, atol=1e-6)


def slow_filterbank(sr, n_fft, n_mels, htk):
    """Loop version of the textbook triangles (peak 1 at the centre frequency)."""
    edges = [float(mel_to_hz(m, htk)) for m in np.linspace(hz_to_mel(0.0, htk), hz_to_mel(sr / 2, htk), n_mels + 2)]
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if lo <= f <= c:
                fb[m, k] = (f - lo) / (c - lo)
            elif c < f <= hi:
                fb[m, k] = (hi - f) / (hi - c)
    return fb


@pytest.mark.parametrize("htk", [False, True])
def test_mel_filterbank_matches_reference(htk):
    fb = mel_filterbank(SR, 512, 40, htk=htk, norm=None).numpy()
    ref = slow_filterbank(SR, 512, 40, htk)
    np.testing.assert_allclose(fb, ref, atol=1e-5)


def test_mel_filterbank_shape_peaks_and_area():
    n_fft, n_mels = 1024, 64
    fb = mel_filterbank(SR, n_fft, n_mels, norm=None).numpy()
    assert fb.shape == (n_mels, n_fft // 2 + 1)
    freqs = np.linspace(0, SR / 2, n_fft // 2 + 1)
    centres = mel_to_hz(np.linspace(0, hz_to_mel(SR / 2), n_mels + 2))[1:-1]
    peak_f = freqs[fb.argmax(1)]
    assert np.all(np.abs(peak_f - centres) <= SR / n_fft)  # each peak within a bin of its centre
    assert np.all(np.diff(peak_f) >= 0) and np.all(fb.max(1) > 0.5) and np.all(fb <= 1.0 + 1e-6)
    # Slaney normalisation: each triangle has unit area in Hz (checked where bands span many bins)
    fbn = mel_filterbank(SR, n_fft, n_mels, norm="slaney").numpy()
    area = fbn.sum(1) * (SR / n_fft)
    np.testing.assert_allclose(area[20:], 1.0, rtol=0.05)
