"""Rhythm DSP: onset envelope against a loop reference, onsets vs synth metadata, rates (tempo: test_dsp_beat.py)."""
import numpy as np
import pytest

from djenerator.evaluate.rhythm import detect_onsets, ioi_histogram, onset_envelope, onset_rate
from djenerator.synth import render_riff

SR = 16000


def click_track(bpm: float, seconds: float = 8.0, sr: int = SR, start: float = 0.25) -> np.ndarray:
    x = np.zeros(int(seconds * sr))
    burst = np.hanning(40) * np.sin(2.0 * np.arange(40))
    for t in np.arange(start, seconds - 0.01, 60.0 / bpm):
        i = int(round(t * sr))
        x[i:i + 40] += burst[: len(x) - i]
    return x


def slow_onset_envelope(x, hop, n_fft):
    """Obviously-correct reference: explicit padding, per-frame loop, explicit DFT sum."""
    pad = n_fft // 2
    xp = np.concatenate([np.zeros(pad), x, np.zeros(pad)])
    n = np.arange(n_fft)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
    frames = []
    t = 0
    while t * hop + n_fft <= len(xp):
        seg = xp[t * hop: t * hop + n_fft] * win
        mags = []
        for k in range(n_fft // 2 + 1):
            mags.append(abs(sum(seg[j] * np.exp(-2j * np.pi * k * j / n_fft) for j in range(n_fft))))
        frames.append(np.log1p(1000.0 * np.array(mags) / win.sum()))
        t += 1
    env = [0.0]
    for t in range(1, len(frames)):
        env.append(np.mean([max(0.0, frames[t][k] - frames[t - 1][k]) for k in range(len(frames[t]))]))
    return np.array(env)


def test_onset_envelope_matches_loop_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300) * np.repeat([0.01, 1.0, 0.1], 100)
    env, fps = onset_envelope(x, 8000, hop=16, n_fft=32)
    ref = slow_onset_envelope(x, 16, 32)
    assert fps == 8000 / 16
    assert env.shape == ref.shape
    np.testing.assert_allclose(env, ref, rtol=1e-9, atol=1e-12)


def test_click_train_onsets_and_rate():
    x = click_track(120.0, seconds=8.0)  # clicks every 0.5 s from 0.25 s: 16 clicks
    on = detect_onsets(x, SR)
    expected = np.arange(0.25, 8.0, 0.5)
    assert len(on) == len(expected)
    assert np.max(np.abs(on - expected)) < 0.03
    assert onset_rate(x, SR) == pytest.approx(16 / 8.0)
    faster = click_track(60.0 / 0.125, seconds=4.0)  # every 125 ms
    assert onset_rate(faster, SR) == pytest.approx(len(np.arange(0.25, 3.99, 0.125)) / 4.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 4])
def test_onsets_match_synth_metadata(seed):
    a, m = render_riff(seed, sr=SR, seconds=6.0)
    on = detect_onsets(a, SR)
    ref = np.array(sorted(set(m["guitar_onsets"]) - set(m["ghost_onsets"])))
    recall = np.mean(np.abs(ref[:, None] - on[None]).min(axis=1) <= 0.03)
    assert recall >= 0.8
    precision = np.mean(np.abs(on[:, None] - np.array(m["onsets"])[None]).min(axis=1) <= 0.03)
    assert precision >= 0.8


def test_ioi_histogram():
    h = ioi_histogram([0.0, 0.11, 0.32, 0.43])
    assert h.shape == (40,) and h.sum() == pytest.approx(1.0)
    assert h[4] == pytest.approx(2 / 3) and h[8] == pytest.approx(1 / 3)  # 0.11 s twice, 0.21 s once
    assert ioi_histogram([0.5]).sum() == 0.0
    assert ioi_histogram([]).shape == (40,)


def test_empty_and_silent_input():
    assert detect_onsets(np.zeros(0), SR).size == 0
    assert detect_onsets(np.zeros(SR), SR).size == 0
    assert onset_rate(np.zeros(SR), SR) == 0.0
