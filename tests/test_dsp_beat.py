"""Tempo and beat estimation (dsp/beat.py): click tracks at several rates and with noise, synth riffs, short clips."""
import numpy as np
import pytest

from djenerator.dsp.beat import estimate_beats, estimate_tempo, estimate_tempo_batch
from djenerator.synth import render_riff

SR = 16000


def click_track(bpm: float, seconds: float, sr: int, start: float = 0.1, noise: float = 0.0, seed: int = 0,
                burst: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = noise * rng.standard_normal(int(seconds * sr))
    wave = np.hanning(burst) * np.sin(2.0 * np.arange(burst))
    for t in np.arange(start, seconds - 0.01, 60.0 / bpm):
        i = int(round(t * sr))
        x[i:i + burst] += wave[: len(x) - i]
    return x.astype(np.float32)


def clicks16k(bpm: float) -> np.ndarray:
    return click_track(bpm, 8.0, SR, start=0.25, burst=40)


def phase_error(est: float, true: float, period: float) -> float:
    return abs((est - true + period / 2) % period - period / 2)


@pytest.mark.parametrize("bpm", [90.0, 120.0, 150.0, 100.7])
def test_tempo_click_tracks(bpm):
    assert estimate_tempo(clicks16k(bpm), SR) == pytest.approx(bpm, rel=0.02)


@pytest.mark.parametrize("sr,bpm", [(8000, 72.0), (8000, 140.0), (22050, 96.5), (16000, 160.0)])
def test_tempo_of_click_tracks_at_other_rates_and_with_noise(sr, bpm):
    x = click_track(bpm, 10.0, sr, start=0.37, noise=0.01)
    assert estimate_tempo(x, sr) == pytest.approx(bpm, rel=0.02)


def test_tempo_on_synth_riffs():
    seeds = range(10)
    ok = 0
    for s in seeds:
        a, m = render_riff(s, sr=SR, seconds=8.0)
        ok += abs(estimate_tempo(a, SR) / m["bpm"] - 1.0) < 0.05
    assert ok >= 8


def test_short_clip_gives_nan_not_garbage():
    a, _ = render_riff(1, sr=SR, seconds=2.1)
    assert np.isnan(estimate_tempo(a[:16384], SR))  # 1 s < two beats at 60 BPM
    out = estimate_tempo_batch(np.stack([a[:16384], a[16384:32768]]), SR)
    assert out.shape == (2,) and np.all(np.isnan(out))
    assert np.isnan(estimate_tempo(np.zeros(SR * 4), SR))  # silence has no tempo


def test_tempo_batch_shapes():
    clips = np.stack([clicks16k(120.0), clicks16k(90.0)])[:, None, :]  # (batch, channels, samples)
    out = estimate_tempo_batch(clips, SR)
    np.testing.assert_allclose(out, [120.0, 90.0], rtol=0.02)


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100])
@pytest.mark.parametrize("bpm,first", [(120.0, 0.1), (97.0, 0.33), (143.0, 0.05)])
def test_first_beat_of_click_tracks(sr, bpm, first):
    got_bpm, got_first = estimate_beats(click_track(bpm, 10.0, sr, start=first, noise=0.005), sr)
    assert got_bpm == pytest.approx(bpm, rel=0.02)
    # within half an envelope frame (256 samples) plus a few ms at every rate
    assert phase_error(got_first, first, 60.0 / bpm) < 0.5 * 256 / sr + 0.006


def test_no_beats_in_silence_or_too_short():
    assert all(np.isnan(estimate_beats(np.zeros(8000 * 4), 8000)))
    assert all(np.isnan(estimate_beats(click_track(120.0, 1.0, 8000), 8000)))
