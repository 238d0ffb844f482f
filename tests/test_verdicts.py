"""evaluate never calls noise "like real": verdicts on white and pink noise, a click track and real riffs,
all at the laptop preset's rate and clip length (8 kHz, 8192 samples), against riffs of the built-in synth."""
import numpy as np
import pytest

from djenerator.audio import resample
from djenerator.dsp.beat import estimate_tempo
from djenerator.evaluate import metrics, rhythm, verdicts
from djenerator.evaluate import report as R
from djenerator.synth import render_riff

SR, T, HOP = 8000, 8192, 2048


def _riffs(seeds):
    """Clips of built-in riffs cut as `prepare --preset laptop` cuts them, and the file of each clip."""
    clips, files = [], []
    for s in seeds:
        a, _ = render_riff(s, sr=16000, seconds=8.0)
        a = resample(a, 16000, SR)
        cut = [a[p:p + T] for p in range(0, len(a) - T + 1, HOP)]
        clips += cut
        files += [f"riff_{s}"] * len(cut)
    return np.stack(clips).astype(np.float32), files


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(0)
    real, files = _riffs(range(16))
    gen, _ = _riffs(range(100, 112))  # other riffs of the same style: what a perfect generator makes
    n = 96
    white = (0.3 * rng.standard_normal((n, T))).astype(np.float32)
    f = np.fft.rfftfreq(T, 1 / SR)
    f[0] = f[1]
    spec = (rng.standard_normal((n, len(f))) + 1j * rng.standard_normal((n, len(f)))) / np.sqrt(f)  # 1/f power
    pink = np.fft.irfft(spec, T)
    pink = (0.3 * pink / pink.std(1, keepdims=True)).astype(np.float32)
    click = np.zeros((n, T), np.float32)
    period = SR * 60 // 120 // 2  # eighth notes at 120 BPM
    for i in range(n):
        for p in range(int(rng.integers(0, period)), T - 8, period):
            click[i, p:p + 8] = 0.8 * np.hanning(8)
    return {"real": real, "files": files, "white": white, "pink": pink, "click": click, "riffs": gen}


def _verdicts(sets, name):
    real, gen = sets["real"], sets[name]
    no = R._noise(gen, real, SR)
    rh = R._rhythm(gen, real, np.full(len(real), np.nan), SR, 0, timbre=no["verdict"], real_groups=sets["files"])
    return no["verdict"], rh["verdict"]


@pytest.mark.parametrize("name", ["white", "pink"])
def test_noise_is_called_noise(sets, name):
    assert _verdicts(sets, name) == ("noise", "noise")


def test_click_track_is_rhythmic_but_not_like_real(sets):
    timbre, rhythm_v = _verdicts(sets, "click")
    assert timbre != "like real" and timbre != "noise"
    assert rhythm_v.startswith("rhythmic")


def test_riffs_against_riffs_are_like_real(sets):
    assert _verdicts(sets, "riffs") == ("like real", "like real")


def test_pitch_verdict_tells_a_wash_and_a_drone_from_riffs(sets):
    t = np.arange(T) / SR
    drone = np.stack([0.3 * np.sin(2 * np.pi * (55.0 + i) * t) + 0.2 * np.sin(2 * np.pi * 3 * (55.0 + i) * t)
                      for i in range(32)]).astype(np.float32)
    got = {k: R._noise(x, sets["real"], SR)["tonal_share"]["verdict"]
           for k, x in [("white", sets["white"]), ("pink", sets["pink"]), ("click", sets["click"]),
                        ("riffs", sets["riffs"]), ("drone", drone)]}
    assert got == {"white": "a wash (few harmonic lines)", "pink": "a wash (few harmonic lines)",
                   "click": "a wash (few harmonic lines)", "riffs": "like real", "drone": "held tones (a drone)"}


def test_pitch_verdict_table():
    v = verdicts.pitch_verdict
    assert [v(g, 0.4) for g in (0.1, 0.25, 0.4, 0.55, 0.7)] == [
        "a wash (few harmonic lines)", "fewer harmonic lines than real", "like real", "more harmonic lines than real",
        "held tones (a drone)"]
    assert v(float("nan"), 0.4) == "n/a" and v(0.3, 0.0) == "n/a"
    # with the drone share, held lines decide, not how many lines there are
    assert v(0.7, 0.4, 0.1, 0.05) == "more harmonic lines than real"
    assert v(0.4, 0.4, 0.1 + verdicts.DRONE_MARGIN + 0.01, 0.1) == "held tones (a drone)"
    assert v(0.1, 0.4, 0.9, 0.1) == "a wash (few harmonic lines)"


def test_onset_contrast_separates_noise_from_music(sets):
    c = {k: np.median([rhythm.onset_contrast(x, SR) for x in sets[k][:32]]) for k in ("white", "pink", "riffs")}
    assert c["white"] < verdicts.NOISE_CONTRAST and c["pink"] < verdicts.NOISE_CONTRAST < 2 * verdicts.NOISE_CONTRAST < c["riffs"]
    assert np.isnan(rhythm.onset_contrast(np.zeros(T), SR))


def test_spectral_shape_is_loudness_free_and_matches_a_direct_computation(sets):
    x = sets["riffs"][:8]
    a = metrics.spectral_shape_db(x, SR)
    np.testing.assert_allclose(metrics.spectral_shape_db(0.1 * x, SR), a, atol=1e-6)
    from djenerator.dsp.mel import mel_filterbank
    from djenerator.evaluate.features import power_spectrogram

    p = (mel_filterbank(SR).double() @ power_spectrogram(x).double()).sum((0, 2)).numpy()
    direct = 10 * np.log10(p)
    np.testing.assert_allclose(a, direct - direct.mean(), atol=1e-3)
    assert metrics.shape_distance_db(a, a) == 0.0
    assert metrics.shape_distance_db(a, a + np.r_[np.ones(32), -np.ones(32)]) == pytest.approx(1.0)


# ---------------------------------------------------------------- the pure verdict functions, on numbers

def test_noise_verdict_table():
    # flat_g, flat_r, hf_g, hf_r, contrast_g, contrast_r, shape, shape_base
    assert verdicts.noise_verdict(0.97, 0.07, 0.1, 0.1, 1.15, 6.4, 6.4, 0.2) == "noise"
    assert verdicts.noise_verdict(0.97, 0.07, 0.1, 0.1, 5.0, 6.4, 6.4, 0.2) == "noisier than real"
    assert verdicts.noise_verdict(0.01, 0.07, 0.1, 0.1, 900, 6.4, 15.0, 0.2) == "timbre unlike real"
    assert verdicts.noise_verdict(0.05, 0.07, 0.1, 0.1, 7.0, 6.4, 1.8, 0.2) == "like real"
    assert verdicts.noise_verdict(0.05, 0.07, 0.1, 0.1) == "like real"  # old reports: no contrast, no shape


def test_rhythm_verdict_table():
    # rate_g, rate_r, ioi, ioi_base, contrast_g, contrast_r, timbre
    assert verdicts.rhythm_verdict(4.0, 4.6, 0.01, 0.01, 1.15, 6.4, "noise") == "noise"
    assert verdicts.rhythm_verdict(4.0, 4.6, 0.01, 0.01, 1.15, 6.4, "like real") == "no rhythm (steady sound)"
    assert verdicts.rhythm_verdict(4.0, 4.6, 0.01, 0.01, 7.0, 6.4, "like real") == "like real"
    assert verdicts.rhythm_verdict(4.0, 4.6, 0.01, 0.01, 7.0, 6.4, "timbre unlike real") == "rhythmic, timbre unlike real"
    assert verdicts.rhythm_verdict(12.0, 4.6, 0.01, 0.01, 7.0, 6.4) == "rhythmic, timing unlike real"
    assert verdicts.rhythm_verdict(4.0, 4.6, 0.08, 0.01, 7.0, 6.4) == "rhythmic, timing unlike real"
    # real clips without clear onsets (ambient): a low contrast is no evidence of noise there
    assert verdicts.rhythm_verdict(4.0, 4.6, 0.01, 0.01, 1.2, 1.3) == "like real"


def test_kid_text():
    assert verdicts.kid_text(-0.0962, 0.46) == "~0 (unbiased estimate, within its error)"
    assert verdicts.kid_text(-5.0, 0.1) == "~0 (unbiased estimate, within its error)"
    assert verdicts.kid_text(0.0003, 0.0005) == "~0 (unbiased estimate, within its error)"
    assert verdicts.kid_text(0.05, 0.002) == "0.05 ± 0.002"
    assert verdicts.kid_text(0.05, 0.002, scale=1e3) == "50 ± 2"
    assert verdicts.kid_text(float("nan"), 0.1) == "n/a"


def test_tempo_text_says_why():
    assert "too short" in verdicts.tempo_text(float("nan"), 0, 64, 1.024)
    assert verdicts.tempo_text(float("nan"), 0, 64, 4.0) == "n/a: no steady beat found in 64 clips"
    assert verdicts.tempo_text(120.0, 500, 500, 1.024, "from the labels") == "120 (500/500 from the labels)"


def test_group_halves_keep_files_apart():
    files = ["a"] * 10 + ["b"] * 10 + ["c"] * 5 + ["d"] * 5
    h1, h2 = R.group_halves(len(files), files, seed=1)
    assert set(h1).isdisjoint(h2) and len(h1) + len(h2) == len(files)
    assert {files[i] for i in h1}.isdisjoint({files[i] for i in h2})
    h1, h2 = R.group_halves(10, None)
    assert len(h1) == len(h2) == 5 and set(h1).isdisjoint(h2)


# ---------------------------------------------------------------- tempo of real clips: rebuild their file

def test_stitch_rebuilds_peak_normalised_clips_and_gives_the_known_tempo():
    sr, clip, hop = 16000, 16384, 4096
    for seed in (0, 1, 2):
        a, meta = render_riff(seed, sr=sr, seconds=8.0)
        starts = list(range(0, len(a) - clip + 1, hop))
        clips = np.stack([a[p:p + clip] / np.abs(a[p:p + clip]).max() for p in starts])  # prepare's peak mode
        x = rhythm.stitch(clips, [p / sr for p in starts], sr)
        n = starts[-1] + clip
        np.testing.assert_allclose(x, a[:n] / np.abs(a[:n]).max(), atol=1e-6)
        assert all(np.isnan(estimate_tempo(c, sr)) for c in clips[:2])  # 1-s clips: too short
        assert estimate_tempo(x, sr) == pytest.approx(meta["bpm"], rel=0.04)


def test_stitch_leaves_gaps_silent():
    x = rhythm.stitch(np.ones((2, 4)), [0.0, 1.0], 8)
    np.testing.assert_array_equal(x, np.r_[np.ones(4), np.zeros(4), np.ones(4)])


def test_real_clip_tempo_from_their_files_matches_the_synth_labels(tmp_path):
    """1-s prepared clips give no tempo alone; the stretches of their files rebuilt by _context_tempo do."""
    from djenerator.config import build_config
    from djenerator.data.dataset import ClipDataset
    from djenerator.data.prepare import prepare
    from djenerator.synth import synth_dataset

    synth_dataset(tmp_path / "raw", n_files=3, seconds=8.0, sr=16000, seed=0, progress=False)
    cfg = build_config("original", [], ["data.sample_rate=16000", "data.clip_samples=16384", "data.hop_samples=4096"])
    prepare(tmp_path / "raw", tmp_path / "ds", cfg.data, log=lambda m: None, progress=False)
    ds = ClipDataset(tmp_path / "ds")
    idx = np.arange(0, len(ds), 3)
    est = R._context_tempo(ds, idx, 16000)
    assert np.isfinite(ds.bpm[idx]).all() and np.isfinite(est).all()  # labels from the synth's json sidecars
    assert np.median(np.abs(est / ds.bpm[idx] - 1)) < 0.04


def test_probe_and_reference_come_from_different_files():
    files = [f"f{i // 10}" for i in range(60)]
    probe, ref = R._probe_and_reference(60, files, 16, seed=2)
    assert len(probe) == 16 and {files[i] for i in probe}.isdisjoint({files[i] for i in ref})
    probe, ref = R._probe_and_reference(60, ["one"] * 60, 16, seed=2)  # one file: a random split
    assert len(probe) == 16 and len(ref) == 44 and set(probe).isdisjoint(ref)


def test_structure_verdicts():
    from djenerator.evaluate.verdicts import structure_verdict

    assert structure_verdict(0.5, 0.5, 0.8, 0.8) == "repeats like real"
    assert structure_verdict(0.0, 0.5, 0.1, 0.8) == "no riff that comes round"  # a drone beside riffs
    assert structure_verdict(1.2, 0.4, 1.0, 0.6) == "repeats more than real (a loop)"
    assert structure_verdict(0.2, 0.5, 0.5, 0.8) == "repeats less than real"
    assert structure_verdict(float("nan"), 0.5, 0.5, 0.8) == "n/a"
