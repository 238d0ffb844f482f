"""Memorisation detection: shifted, rescaled copies are found; independent clips are not; FFT == slow loop."""
import math

import numpy as np
import pytest

from djenerator.evaluate.memorisation import (
    copy_alarm,
    data_copying_z,
    fast_fft_size,
    max_normalized_xcorr,
    memorisation_report,
    nearest_feature_neighbour,
)

SR = 8000


def slow_xcorr(gen, train, min_overlap=0.5):
    """Obviously-correct reference: every pair, every lag, direct dot products over the overlap."""
    G, T = gen.shape
    max_lag = T - math.ceil(min_overlap * T)
    best = []
    for g in gen.astype(np.float64):
        g = g - g.mean()
        top = (-1.0, -1, 0)
        for i, x in enumerate(train.astype(np.float64)):
            x = x - x.mean()
            eg_tot, ex_tot = np.dot(g, g), np.dot(x, x)
            for lag in range(-max_lag, max_lag + 1):
                # gen[t] meets train[t + lag]
                t0, t1 = max(0, -lag), min(T, T - lag)
                a, b = g[t0:t1], x[t0 + lag:t1 + lag]
                ea = max(np.dot(a, a), 1e-3 * eg_tot, 1e-20)
                eb = max(np.dot(b, b), 1e-3 * ex_tot, 1e-20)
                c = abs(np.dot(a, b)) / math.sqrt(ea * eb)
                if c > top[0]:
                    top = (c, i, lag)
        best.append(top)
    return (np.array([b[1] for b in best]), np.array([b[0] for b in best]), np.array([b[2] for b in best]))


def synth_clips(n, T, rng):
    """Decaying plucks at random pitches over coloured noise: music-like, mutually independent."""
    t = np.arange(T) / SR
    out = np.zeros((n, T), np.float32)
    for i in range(n):
        x = 0.05 * np.cumsum(rng.standard_normal(T)) / np.sqrt(T)  # brown-ish noise bed
        x += 0.1 * rng.standard_normal(T)
        for _ in range(rng.integers(2, 6)):
            onset = rng.integers(0, T - 10)
            f0 = rng.uniform(60, 600)
            env = np.exp(-np.clip(t - onset / SR, 0, None) * rng.uniform(5, 30)) * (t >= onset / SR)
            x += env * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6.28))
        out[i] = x / np.max(np.abs(x))
    return out


def test_fast_fft_size():
    for n in [1, 7, 100, 1000, 24577, 40000]:
        m = fast_fft_size(n)
        assert m >= n
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        assert r == 1
    assert fast_fft_size(24576) == 24576


@pytest.mark.parametrize("min_overlap", [0.5, 0.8])
def test_matches_slow_reference(min_overlap):
    rng = np.random.default_rng(0)
    T = 256
    train = synth_clips(7, T, rng)
    gen = np.concatenate([
        rng.standard_normal((2, T)).astype(np.float32),
        np.roll(train[3:4], -40, axis=1) * -0.5,  # partial copy (wrapped tail differs)
        synth_clips(1, T, rng),
    ])
    idx, corr, lag = max_normalized_xcorr(gen, train, batch=3, min_overlap=min_overlap)
    ridx, rcorr, rlag = slow_xcorr(gen, train, min_overlap)
    np.testing.assert_allclose(corr, rcorr, atol=2e-5)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(lag, rlag)
    assert idx[2] == 3 and lag[2] == 40 and corr[2] > 0.999


def test_edge_lags_and_silence():
    T = 64
    rng = np.random.default_rng(1)
    train = rng.standard_normal((3, T)).astype(np.float32)
    gen = np.zeros((2, T), np.float32)
    gen[0, :32] = train[1, 32:]  # exactly the largest allowed shift with 50% overlap
    gen[0, 32:] = rng.standard_normal(32)
    idx, corr, lag = max_normalized_xcorr(gen, train)
    assert idx[0] == 1 and lag[0] == 32 and corr[0] > 0.999
    assert corr[1] == 0.0  # silence copies nothing
    with pytest.raises(ValueError):
        max_normalized_xcorr(gen[:, :32], train)


def test_report_finds_shifted_scaled_copy_and_not_independent():
    rng = np.random.default_rng(42)
    T, N = 4096, 40
    train = synth_clips(N, T, rng)
    manifest = [{"file": f"song_{i // 10}.wav", "start": (i % 10) * T / SR} for i in range(N)]
    src, shift = 17, 1234
    copy = np.zeros(T, np.float32)
    copy[:T - shift] = train[src, shift:]  # gen[t] = train[src, t + shift]
    copy[T - shift:] = train[src + 1, :shift]  # the tail continues into other material
    copy = 0.3 * copy + 0.003 * rng.standard_normal(T)
    flipped = -0.8 * np.roll(train[5], 300)  # polarity-flipped, shifted the other way
    gen = np.concatenate([np.stack([copy, flipped]), synth_clips(3, T, rng), 0.2 * rng.standard_normal((3, T))]).astype(np.float32)
    rep = memorisation_report(gen, train, manifest, SR, threshold=0.8)
    c0, c1 = rep["clips"][0], rep["clips"][1]
    assert c0["nearest_index"] == src and c0["corr"] > 0.95 and c0["flagged"]
    assert abs(c0["lag_s"] * SR - shift) <= 1
    assert c0["source_file"] == "song_1.wav"
    assert c0["source_time_s"] == pytest.approx((7 * T + shift) / SR, abs=1.5 / SR)
    assert c1["nearest_index"] == 5 and c1["flagged"] and abs(c1["lag_s"] * SR + 300) <= 1
    others = rep["clips"][2:]
    assert not any(c["flagged"] for c in others)
    assert max(c["corr"] for c in others[:3]) < 0.7  # music-like clips share pitches by chance
    assert max(c["corr"] for c in others[3:]) < 0.2  # independent noise
    assert rep["n_flagged"] == 2 and rep["max_corr"] == pytest.approx(c0["corr"] if c0["corr"] > c1["corr"] else c1["corr"])
    # feature check is present; log-mel features are level-dependent, so only the near-unity-gain
    # flipped copy is expected to sit closer to its source than the independent clips
    assert all(np.isfinite(c["feature_ratio"]) for c in rep["clips"])
    assert c1["feature_index"] == 5
    assert min(c["feature_ratio"] for c in others) > c1["feature_ratio"]


def test_memmap_input_matches_array(tmp_path):
    rng = np.random.default_rng(3)
    T = 512
    train = rng.standard_normal((21, T)).astype(np.float32)
    mm = np.lib.format.open_memmap(tmp_path / "clips.npy", mode="w+", dtype=np.float32, shape=train.shape)
    mm[:] = train
    mm.flush()
    mm = np.load(tmp_path / "clips.npy", mmap_mode="r")
    gen = np.stack([train[13] * 2.0, rng.standard_normal(T)]).astype(np.float32)
    a = max_normalized_xcorr(gen, mm, batch=4)
    b = max_normalized_xcorr(gen, train, batch=64)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, atol=1e-6)
    assert a[0][0] == 13 and a[2][0] == 0 and a[1][0] > 0.999


def test_nearest_feature_neighbour():
    rng = np.random.default_rng(0)
    train = rng.standard_normal((200, 10))
    gen = np.stack([train[42] + 1e-3, rng.standard_normal(10) * 3])
    nn = nearest_feature_neighbour(gen, train)
    assert nn["index"][0] == 42
    assert nn["ratio"][0] < 0.05
    assert nn["ratio"][1] > 0.5
    assert nn["real_nn_distance"] > 0


def test_copy_alarm_names_the_replayed_file_and_time():
    rng = np.random.default_rng(3)
    train = rng.standard_normal((6, 2048)).astype(np.float32)
    manifest = [{"file": f"song_{i}.wav", "start": 1.5 * i} for i in range(6)]
    gen = rng.standard_normal((4, 2048)).astype(np.float32)
    assert copy_alarm(gen, train, manifest, SR) == (0, None)
    gen[2, :1900] = -0.3 * train[4, 148:]  # a quieter, polarity-flipped copy starting 148 samples in
    n, msg = copy_alarm(gen, train, manifest, SR)
    assert n == 1 and msg.startswith("1 of 4 samples")
    assert "sample 2 replays song_4.wav at 6.02 s" in msg  # 1.5 * 4 + 148 / 8000 = 6.0185


def test_data_copying_z_against_a_direct_count():
    gen, held = np.array([0.1, 0.2, 0.5]), np.array([0.3, 0.4, 0.6, 0.7])
    u = sum(float(g > h) + 0.5 * float(g == h) for g in gen for h in held)  # only 0.5 > 0.3 and 0.4
    assert u == 2
    assert data_copying_z(gen, held) == pytest.approx((2 - 6) / math.sqrt(3 * 4 * 8 / 12))


def test_data_copying_z_tells_copies_from_new_music():
    rng = np.random.default_rng(0)
    held = rng.uniform(0.4, 0.7, 64)  # new clips of the style: 1 - corr to the nearest training clip
    assert abs(data_copying_z(rng.uniform(0.4, 0.7, 64), held)) < 3
    assert data_copying_z(rng.uniform(0.0, 0.1, 64), held) < -9  # replays
    assert data_copying_z(rng.uniform(0.8, 1.0, 64), held) > 9  # noise, unlike anything
