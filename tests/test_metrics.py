"""Features and metrics: each against a known answer or a slow, obviously-correct reference."""
import math
import warnings

import numpy as np
import pytest
import torch

from djenerator.dsp.mel import mel_filterbank
from djenerator.evaluate.features import clip_features, feature_names, log_mel
from djenerator.evaluate.metrics import (
    diversity,
    drone_share,
    fidelity_coverage,
    fine_structure_agreement,
    fine_structure_match,
    fine_structure_pattern,
    fine_structure_similarity,
    frechet_distance,
    high_freq_energy_ratio,
    ioi_distance,
    kernel_distance,
    real_baseline,
    rhythm_stats,
    spectral_flatness,
    standardise,
    tonal_share,
)

SR = 16000


def sine(f, seconds=1.0, sr=SR, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


# ---------------------------------------------------------------- features

def test_log_mel_puts_a_tone_in_its_band():
    x = np.stack([sine(440.0), sine(3000.0)])
    lm = log_mel(x, SR, n_fft=1024, hop=256, n_mels=64)
    assert lm.shape == (2, 64, 1 + 16000 // 256)
    fb = mel_filterbank(SR, 1024, 64)
    bins = torch.tensor([round(440 * 1024 / SR), round(3000 * 1024 / SR)])
    expect = fb[:, bins].argmax(0)
    got = lm.mean(-1).argmax(1)
    assert torch.all(torch.abs(got - expect) <= 1)
    assert lm[0].mean(-1).argmax() < lm[1].mean(-1).argmax()


def test_clip_features_layout():
    rng = np.random.default_rng(0)
    x = np.concatenate([0.1 * rng.standard_normal((3, 8192)), np.stack([sine(200.0, 8192 / SR)] * 2),
                        np.zeros((1, 8192))]).astype(np.float32)
    f = clip_features(x, SR)
    names = feature_names()
    assert f.shape == (6, len(names)) == (6, 136)
    assert np.all(np.isfinite(f))
    flat = f[:, names.index("flatness_mean")]
    assert flat[:3].min() > 0.5 and flat[3:5].max() < 0.2  # mel flatness: noise flat, tone not
    centroid = f[:, names.index("centroid_mean")]
    assert centroid[:3].min() > centroid[3:5].max()
    np.testing.assert_allclose(f[3], f[4])  # deterministic
    # batched in chunks gives the same as one at a time
    np.testing.assert_allclose(clip_features(x, SR, chunk=2), f, rtol=1e-6, atol=1e-9)
    # (N, 1, T) with a channel axis is accepted
    np.testing.assert_allclose(clip_features(x[:, None, :], SR), f)


# ---------------------------------------------------------------- Frechet / KID

def slow_frechet(a, b, eps=1e-6):
    """Textbook formula with numpy eigenvalues: tr sqrt(S_a S_b) = sum sqrt(eig(S_a S_b))."""
    d = a.shape[1]
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa = np.cov(a, rowvar=False) + eps * np.eye(d)
    sb = np.cov(b, rowvar=False) + eps * np.eye(d)
    ev = np.linalg.eigvals(sa @ sb)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sa) + np.trace(sb) - 2 * np.sum(np.sqrt(np.abs(ev.real))))


def test_frechet_matches_reference():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((60, 6)) @ rng.standard_normal((6, 6))
    b = rng.standard_normal((80, 6)) * 2.0 + 0.5
    assert frechet_distance(a, b) == pytest.approx(slow_frechet(a, b), rel=1e-6)


def test_frechet_self_zero_and_grows_with_shift():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 16))
    assert abs(frechet_distance(a, a)) < 1e-6
    d = np.ones(16) / 4.0  # |d|^2 = 1
    fds = [frechet_distance(a, a + s * d) for s in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert np.all(np.diff(fds) > 0)
    # identical covariances: the distance is exactly the squared mean shift
    np.testing.assert_allclose(fds, [0.0, 0.25, 1.0, 4.0, 16.0], atol=1e-5)


def test_frechet_fewer_clips_than_dims():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((10, 40)), rng.standard_normal((12, 40)) + 1.0
    with pytest.warns(UserWarning, match="singular"):
        fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert frechet_distance(a, a) < 1e-3 * fd
    with pytest.raises(ValueError):
        frechet_distance(a[:1], b)


def slow_mmd2(x, y):
    d = x.shape[1]
    k = lambda u, v: (float(np.dot(u, v)) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_reference_on_full_sets():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((15, 4)), rng.standard_normal((15, 4)) + 0.3
    mean, _ = kernel_distance(a, b, n_subsets=1, subset_size=15)
    assert mean == pytest.approx(slow_mmd2(a, b), rel=1e-9)


def test_kid_self_near_zero_grows_with_shift_and_has_positive_se():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((200, 8))
    b = rng.standard_normal((200, 8))
    m_self, se_self = kernel_distance(a, b)
    assert se_self > 0
    assert abs(m_self) < 3 * se_self + 1e-3
    means = [kernel_distance(a, b + s)[0] for s in (0.25, 0.5, 1.0, 2.0)]
    assert np.all(np.diff(means) > 0) and means[0] > m_self
    assert means[-1] > 10 * kernel_distance(a, b + 2.0)[1]  # a clear difference is many SEs away


def test_real_baseline_and_standardise():
    rng = np.random.default_rng(5)
    real = rng.standard_normal((400, 5)) * np.array([1, 10, 100, 1, 1])
    fake = real[:200] + np.array([0, 0, 0, 1.0, 0])
    z_real, z_fake = standardise(real, fake)
    np.testing.assert_allclose(z_real.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(z_real.std(0), 1, atol=1e-9)
    base = real_baseline(z_real, frechet_distance)
    assert base < 0.2 < frechet_distance(z_real, z_fake)
    m, se = real_baseline(z_real, kernel_distance, n_subsets=10)
    assert np.isfinite(m) and se > 0


# ---------------------------------------------------------------- noise

def test_spectral_flatness_noise_vs_tone():
    rng = np.random.default_rng(6)
    noise = (0.3 * rng.standard_normal((3, SR))).astype(np.float32)
    tones = np.stack([sine(440.0), sine(1234.5)])
    fn, ft = spectral_flatness(noise, SR), spectral_flatness(tones, SR)
    assert fn.shape == (3,) and np.all(fn > 0.5)
    np.testing.assert_allclose(fn, math.exp(-0.5772), atol=0.05)  # per-frame periodogram of noise: e^-gamma
    assert np.all(ft < 0.01)
    assert np.all(spectral_flatness(noise, SR, welch=True) > 0.9)
    assert np.all(spectral_flatness(tones, SR, welch=True) < 0.01)
    # silence is ignored; a half-silent tone is still a tone; all-silent is 0
    half = sine(440.0).copy()
    half[: SR // 2] = 0
    assert spectral_flatness(half, SR)[0] < 0.01
    assert spectral_flatness(np.zeros((1, SR)), SR)[0] == 0.0


def test_tonal_share_reads_the_energy_in_held_tones():
    rng = np.random.default_rng(8)
    noise = rng.standard_normal((3, 2 * SR)).astype(np.float32)
    t = np.arange(2 * SR) / SR
    saw = sum(np.sin(2 * np.pi * 110 * k * t) / k for k in range(1, 40)).astype(np.float32)
    tone = sine(440.0, 2.0)
    mix = tone / tone.std() * 0.5 + 0.5 * noise[0]  # equal energy: tone and white noise
    clicks = np.zeros(2 * SR, np.float32)
    clicks[:: SR // 8] = 1.0  # eight clicks a second
    riff = np.concatenate([sine(f, 0.25) for f in (82.4, 110.0, 98.0, 123.5, 82.4, 146.8, 110.0, 98.0)])
    s = tonal_share(np.stack([*noise, saw, tone, mix, clicks, riff, np.zeros(2 * SR, np.float32)]), SR)
    assert s.shape == (9,)
    assert np.all(s[:3] < 0.03)  # noise: no bin stays above its neighbours
    assert s[3] > 0.9 and s[4] > 0.9  # held tones, one partial or many
    assert s[5] == pytest.approx(0.5, abs=0.05)  # the tone's share of the energy, known by construction
    assert s[6] < 0.1  # clicks: broadband, no lines
    assert s[7] > 0.8  # a note every 0.25 s is still pitched
    assert s[8] == 0.0  # silence


def test_drone_share_tells_a_held_tone_from_notes_that_change():
    """A tone held all clip long reads ~1, a riff of changing notes ~0, noise and silence 0; a held 55 Hz tone at a
    fifth of a riff's power (frequencies apart) reads its share of the line energy, 1/6, known by construction."""
    rng = np.random.default_rng(9)
    held = sine(55.0, 2.0)
    riff = np.concatenate([sine(f, 0.25) for f in (82.4, 110.0, 98.0, 123.5, 82.4, 146.8, 110.0, 98.0)])
    mix = riff + held * np.sqrt(0.2)
    x = np.stack([held, riff, mix, rng.standard_normal(2 * SR).astype(np.float32), np.zeros(2 * SR, np.float32)])
    d = drone_share(x, SR)
    assert d[0] > 0.95 and d[1] < 0.05 and d[3] == 0.0 and d[4] == 0.0
    assert d[2] == pytest.approx(1 / 6, abs=0.04)
    assert drone_share(riff[None], SR, held=0.1)[0] > 0.3  # a short enough hold counts every note as held


def test_fine_structure_pattern_matches_a_median_filter_and_pearson_computed_apart():
    """The pattern is the frame-averaged log-magnitude less scipy's 9-bin medfilt (the same away from the edges);
    its correlation is the mean Pearson correlation over every pair of clips, here summed pair by pair."""
    from scipy.signal import medfilt

    g = np.random.default_rng(0)
    logmag = np.linspace(0, -6, 257)[None, :, None] + 0.3 * g.standard_normal((12, 257, 1)) \
        + 0.05 * g.standard_normal((12, 257, 20))
    pattern = np.stack([row - medfilt(row, 9) for row in logmag.mean(-1)])[:, 10:240]
    z = (pattern - pattern.mean(1, keepdims=True)) / pattern.std(1, keepdims=True)
    pairs = [float(np.mean(z[i] * z[j])) for i in range(12) for j in range(12) if i != j]
    corr, size = fine_structure_pattern(logmag, 10, 240)
    assert corr == pytest.approx(np.mean(pairs), abs=1e-9) and abs(corr) < 0.1
    assert size == pytest.approx(float(np.abs(pattern).mean()), rel=1e-9) and size > 0.1


def test_fine_structure_similarity_tells_one_texture_for_every_clip_from_the_musics():
    """Clips whose partials sit at the same frequencies (a decoder's fixed texture) read near 1; clips with partials
    of their own (recordings of different notes) near 0."""
    g = np.random.default_rng(0)
    t = np.arange(SR) / SR

    def clip(freqs):
        return 0.1 * sum(np.sin(2 * np.pi * f * t + g.uniform(0, 2 * np.pi)) for f in freqs) + 0.05 * g.standard_normal(SR)

    fixed = [620.0, 1130.0, 1770.0, 2930.0, 4110.0]
    same = np.stack([clip(fixed) for _ in range(16)]).astype(np.float32)
    own = np.stack([clip(g.uniform(550.0, 4900.0, 5)) for _ in range(16)]).astype(np.float32)
    assert fine_structure_similarity(same, SR)[0] > 0.9 and fine_structure_similarity(own, SR)[0] < 0.1
    with_silence = np.concatenate([same, np.zeros((1, SR), np.float32)])  # skipped, not a nan
    assert fine_structure_similarity(with_silence, SR)[0] == pytest.approx(fine_structure_similarity(same, SR)[0])
    assert np.isnan(fine_structure_similarity(np.zeros((3, SR), np.float32), SR)[0])


def test_fine_structure_match_is_the_pattern_correlation_clip_by_clip():
    """Own = mean Pearson correlation of clip i's pattern with reference clip i's, others = over every i != j;
    computed apart with scipy's medfilt. A copy with the same partials reads near 1 against its own clip, a fixed
    texture as much against every clip."""
    from scipy.signal import medfilt

    g = np.random.default_rng(1)
    ref = np.linspace(0, -6, 257)[None, :, None] + 0.4 * g.standard_normal((10, 257, 1)) + 0.05 * g.standard_normal((10, 257, 8))
    near = ref + 0.2 * g.standard_normal(ref.shape)
    pat = lambda x: np.stack([row - medfilt(row, 9) for row in x.mean(-1)])[:, 10:240]
    a, b = pat(near), pat(ref)
    z = lambda p: (p - p.mean(1, keepdims=True)) / p.std(1, keepdims=True)
    c = z(a) @ z(b).T / a.shape[1]
    own, others = fine_structure_match(near, ref, 10, 240)
    assert own == pytest.approx(np.trace(c) / 10, abs=1e-9) and own > 0.8
    assert others == pytest.approx((c.sum() - np.trace(c)) / 90, abs=1e-9) and abs(others) < 0.1
    fixed = np.repeat(ref[:1], 10, 0)  # one texture for every clip
    own, others = fine_structure_match(fixed, ref, 10, 240)
    assert abs(own - others) < 0.15
    assert np.isnan(fine_structure_match(ref[:1], ref[:1], 10, 240)[0])


def test_fine_structure_agreement_tells_partials_in_place_from_one_texture():
    """Audio: reconstructions that keep each clip's partials (a little noise added) read own near 1 and others
    near 0, 'partials in place'; one clip's texture for every clip reads own as others, 'one texture'."""
    from djenerator.evaluate.verdicts import partials_verdict

    g = np.random.default_rng(2)
    t = np.arange(SR) / SR
    clips = np.stack([sum(0.1 * np.sin(2 * np.pi * f * t) for f in g.uniform(550.0, 4900.0, 6))
                      for _ in range(12)]).astype(np.float32)
    kept = clips + 0.002 * g.standard_normal(clips.shape).astype(np.float32)
    own, others = fine_structure_agreement(kept, clips, SR)
    assert own > 0.8 and abs(others) < 0.15 and partials_verdict(own, others) == "partials in place"
    own, others = fine_structure_agreement(np.repeat(kept[:1], 12, 0), clips, SR)
    assert partials_verdict(own, others) == "one texture for every clip"
    assert partials_verdict(float("nan"), 0.0) == "n/a" and partials_verdict(0.3, 0.05) == "partly in place"


def test_high_freq_energy_ratio():
    rng = np.random.default_rng(7)
    x = np.stack([sine(1000.0), sine(6000.0), 0.3 * rng.standard_normal(SR).astype(np.float32),
                  np.zeros(SR, np.float32)])
    r = high_freq_energy_ratio(x, SR, cutoff_hz=4000)
    assert r[0] < 1e-3 and r[1] > 0.999 and r[3] == 0.0
    assert r[2] == pytest.approx(0.5, abs=0.03)  # white noise: half the band is above 4 kHz


# ---------------------------------------------------------------- diversity

def test_diversity_detects_collapse():
    rng = np.random.default_rng(8)
    spread = rng.standard_normal((100, 6))
    collapsed = np.tile(spread[:1], (100, 1)) + 0.01 * rng.standard_normal((100, 6))
    assert diversity(np.tile(spread[:1], (5, 1))) == pytest.approx(0.0, abs=1e-9)
    assert diversity(collapsed) < 0.05 * diversity(spread)
    # slow reference
    pts = spread[:7]
    ref = np.mean([np.linalg.norm(pts[i] - pts[j]) for i in range(7) for j in range(i + 1, 7)])
    assert diversity(pts) == pytest.approx(ref)
    assert diversity(spread, max_n=50) == pytest.approx(diversity(spread), rel=0.15)


# ---------------------------------------------------------------- rhythm

def test_ioi_distance():
    edges = np.linspace(0.0, 1.0, 41)  # 25 ms bins
    def delta(i):
        h = np.zeros(40)
        h[i] = 1.0
        return h
    assert ioi_distance(delta(10), delta(10), edges) == 0.0
    assert ioi_distance(delta(10), delta(14), edges) == pytest.approx(4 * 0.025)
    assert ioi_distance(delta(10), delta(14), edges) < ioi_distance(delta(10), delta(30), edges)
    assert ioi_distance(delta(10), delta(14), edges, method="tv") == pytest.approx(1.0)
    mix = 0.5 * delta(10) + 0.5 * delta(14)
    assert ioi_distance(mix, delta(10), edges, method="tv") == pytest.approx(0.5)
    assert ioi_distance(2 * mix, mix, edges) == pytest.approx(0.0)  # normalised first
    assert ioi_distance(np.zeros(40), np.zeros(40), edges) == 0.0
    with pytest.raises(ValueError):
        ioi_distance(delta(1), np.zeros(39), edges)


def click_train(spacing_s, seconds=4.0, sr=SR, offset_s=0.1):
    x = np.zeros(int(seconds * sr), np.float32)
    t = np.arange(int(0.01 * sr))
    click = (np.exp(-t / (0.002 * sr)) * np.sin(2 * np.pi * 2000 * t / sr)).astype(np.float32)
    for start in np.arange(offset_s, seconds - 0.02, spacing_s):
        i = int(round(start * sr))
        x[i:i + len(click)] += click
    return x


def test_rhythm_stats_click_trains():
    clips = np.stack([click_train(0.5), click_train(0.5, offset_s=0.23), click_train(0.25)])
    st = rhythm_stats(clips[:2], SR)
    assert st["onset_rate"].shape == (2,)
    np.testing.assert_allclose(st["onset_rate"], 2.0, rtol=0.15)  # 8 clicks in 4 s
    centres = 0.5 * (st["ioi_bins"][:-1] + st["ioi_bins"][1:])
    assert abs(centres[np.argmax(st["ioi_hist"])] - 0.5) <= 0.025
    assert st["ioi_hist"].sum() == pytest.approx(1.0)
    assert st["tempo_median"] == pytest.approx(120.0, rel=0.03)
    fast = rhythm_stats(clips[2:], SR)
    assert fast["onset_rate_mean"] == pytest.approx(4.0, rel=0.15)
    assert ioi_distance(st["ioi_hist"], fast["ioi_hist"], st["ioi_bins"]) == pytest.approx(0.25, abs=0.03)


# ---------------------------------------------------------------- precision / recall / density / coverage
def _prdc_loops(real, fake, k):
    """The papers' definitions, one clip at a time."""
    def kth(x, i):
        return sorted(np.linalg.norm(x - x[i], axis=1))[k]  # index 0 is the clip itself
    r_rad = [kth(real, i) for i in range(len(real))]
    f_rad = [kth(fake, j) for j in range(len(fake))]
    inside = [[np.linalg.norm(fake[j] - real[i]) <= r_rad[i] for i in range(len(real))] for j in range(len(fake))]
    return {
        "precision": np.mean([any(row) for row in inside]),
        "recall": np.mean([any(np.linalg.norm(real[i] - fake[j]) <= f_rad[j] for j in range(len(fake)))
                           for i in range(len(real))]),
        "density": np.sum(inside) / (k * len(fake)),
        "coverage": np.mean([any(inside[j][i] for j in range(len(fake))) for i in range(len(real))]),
    }


def test_fidelity_coverage_matches_the_definitions():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(40, 6)), rng.normal(0.4, 1.3, size=(31, 6))
    got, ref = fidelity_coverage(real, fake, k=4), _prdc_loops(real, fake, 4)
    for key in ("precision", "recall", "density", "coverage"):
        assert got[key] == pytest.approx(ref[key]), key
    assert 0 < got["coverage"] < 1 and 0 < got["precision"] < 1


def test_fidelity_coverage_tells_copies_blandness_and_strangers_apart():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    same = fidelity_coverage(real, real.copy())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    fresh = fidelity_coverage(real, rng.normal(size=(300, 8)))
    assert fresh["precision"] > 0.6 and fresh["coverage"] > 0.6 and 0.6 < fresh["density"] < 1.5
    bland = fidelity_coverage(real, 0.1 * rng.normal(size=(300, 8)))  # all near the mean
    assert bland["precision"] == 1.0 and bland["density"] > 2 * fresh["density"]
    assert bland["coverage"] < 0.5 * fresh["coverage"] and bland["recall"] < 0.2
    few = fidelity_coverage(real, np.repeat(real[:5], 60, axis=0))  # replays of 5 clips
    assert few["precision"] == 1.0 and few["coverage"] < 0.25 * fresh["coverage"] and few["recall"] < 0.05
    far = fidelity_coverage(real, real + 100.0)
    assert far["precision"] == far["recall"] == far["coverage"] == far["density"] == 0.0
    with pytest.raises(ValueError, match="k must be"):
        fidelity_coverage(real[:5], real[:5], k=5)


def test_kid_default_uses_every_clip_with_a_calibrated_jackknife_error():
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((12, 4)), rng.standard_normal((17, 4)) + 0.2  # unequal sizes
    assert kernel_distance(a, b)[0] == pytest.approx(slow_mmd2(a, b), rel=1e-9)
    # the jackknife error is close to the estimate's true spread over fresh draws of equal distributions
    draws, ses = [], []
    for s in range(60):
        r = np.random.default_rng(100 + s)
        m, se = kernel_distance(r.standard_normal((40, 8)), r.standard_normal((200, 8)))
        draws.append(m)
        ses.append(se)
    assert 0.6 < np.mean(ses) / np.std(draws) < 1.8
    assert abs(np.mean(draws)) < 2 * np.std(draws) / np.sqrt(60)  # unbiased
    # the old subset estimate's spread (one half-size subset) is wider than the full estimate's error
    x, y = rng.standard_normal((64, 8)), rng.standard_normal((400, 8))
    assert kernel_distance(x, y, subset_size=32)[1] > kernel_distance(x, y)[1]


def test_kid_with_two_clips_has_a_value_but_no_error():
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((2, 4)), rng.standard_normal((9, 4))
    m, se = kernel_distance(a, b)
    assert m == pytest.approx(slow_mmd2(a, b), rel=1e-9) and np.isnan(se)
