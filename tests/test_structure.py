"""Bar-level repetition: separates pieces that repeat a bar from the same bars shuffled."""
import numpy as np
import pytest

from djenerator.evaluate.structure import bar_repetition, beat_features, lag_similarity

SR = 8000


def _hit(freq: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    tone = np.sin(2 * np.pi * freq * t) + 0.3 * rng.standard_normal(n)
    return tone * np.exp(-t / 0.04)


def _bar(rng: np.random.Generator, bpm: float) -> np.ndarray:
    """One 4/4 bar of sixteenths: a kick on every beat, each other slot a hit of a random pitch or a rest."""
    slot = int(round(SR * 60 / bpm / 4))
    bar = np.zeros(16 * slot)
    for k in range(16):
        if k % 4 == 0:
            bar[k * slot:(k + 1) * slot] = 2 * _hit(50.0, slot, rng)
        elif rng.random() < 0.6:
            bar[k * slot:(k + 1) * slot] = _hit(rng.choice([110.0, 440.0, 1800.0]), slot, rng)
    return bar


def _piece(repeat: bool, seed: int, bpm: float = 120.0, n_bars: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    riff = _bar(rng, bpm)
    return np.concatenate([riff if repeat else _bar(rng, bpm) for _ in range(n_bars)])


def test_lag_similarity_matches_hand_computed_cosines():
    f = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # period 2; mean (0.5, 0.5) removed
    assert lag_similarity(f, 2) == pytest.approx(1.0)
    assert lag_similarity(f, 1) == pytest.approx(-1.0)
    assert lag_similarity(np.ones((6, 3)), 1) == 0.0  # a constant has no pattern to repeat


def test_beat_features_count_whole_beats():
    x = np.random.default_rng(0).standard_normal(SR * 3)
    assert beat_features(x, SR, bpm=120.0).shape == (6, 32)  # 3 s at 120 BPM, 4 slots x 8 bands
    assert beat_features(x, SR, bpm=120.0, first_beat=0.25).shape == (5, 32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repeated_bars_score_high_and_shuffled_bars_near_zero(seed):
    rep = bar_repetition(_piece(True, seed), SR, bpm=120.0, first_beat=0.0)
    shuf = bar_repetition(_piece(False, seed), SR, bpm=120.0, first_beat=0.0)
    assert rep["bar"] > 0.95 and rep["two_bars"] > 0.95
    assert rep["score"] > 0.5
    assert abs(shuf["score"]) < 0.2
    assert rep["score"] > shuf["score"] + 0.4


def test_a_drone_does_not_repeat_by_the_bar():
    t = np.arange(SR * 24) / SR
    drone = np.sin(2 * np.pi * 55 * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    assert abs(bar_repetition(drone, SR, bpm=120.0, first_beat=0.0)["score"]) < 0.2


def test_estimated_tempo_still_separates_them():
    rep = bar_repetition(_piece(True, 3), SR)
    shuf = bar_repetition(_piece(False, 3), SR)
    assert rep["score"] > shuf["score"] + 0.3


def test_too_short_is_nan():
    assert np.isnan(bar_repetition(np.zeros(SR), SR, bpm=120.0, first_beat=0.0)["score"])


@pytest.mark.parametrize("seed", [2, 3])  # built-in riffs whose cells are 5 sixteenths: round every 5 beats
def test_odd_time_riffs_repeat_by_their_cycle_and_shuffled_beats_do_not(seed):
    from djenerator.synth.djent import render_riff

    sr = 16000
    x, meta = render_riff(seed, sr=sr, seconds=30)
    assert meta["grouping"] == 5
    beat = int(round(sr * 60 / meta["bpm"]))
    n = len(x) // beat
    shuffled = x[:n * beat].reshape(n, beat)[np.random.default_rng(seed).permutation(n)].reshape(-1)
    riff = bar_repetition(x, sr, bpm=meta["bpm"], first_beat=0.0)
    shuf = bar_repetition(shuffled, sr, bpm=meta["bpm"], first_beat=0.0)
    assert riff["cycle_beats"] % 5 == 0 and riff["cycle"] > 0.6
    assert shuf["cycle"] < 0.3


def test_evaluate_rebuilds_30s_real_pieces_from_overlapping_clips(tmp_path):
    from djenerator.config import DataConfig
    from djenerator.data.dataset import ClipDataset
    from djenerator.data.prepare import prepare
    from djenerator.evaluate.report import PIECE_SECONDS, _real_pieces
    from djenerator.synth import synth_dataset

    synth_dataset(tmp_path / "raw", n_files=1, seconds=32.0, sr=16000, seed=2, progress=False)
    prepare(tmp_path / "raw", tmp_path / "ds", DataConfig(sample_rate=8000, clip_samples=8192, hop_samples=2048),
            progress=False, log=lambda m: None)
    ds = ClipDataset(tmp_path / "ds")
    pieces = _real_pieces(ds, 8000)
    assert len(pieces) == 1
    x, bpm = pieces[0]
    assert len(x) == int(PIECE_SECONDS * 8000)
    assert bpm == pytest.approx(float(np.nanmedian(ds.bpm)))
    assert bar_repetition(x, 8000, bpm=bpm)["cycle"] > 0.5  # a built-in riff comes round
