"""The procedural Djent dataset: deterministic, valid audio, honest metadata, files on disk."""
import json

import numpy as np
import pytest
import soundfile as sf

from djenerator.synth import GROUPINGS, render_riff, synth_dataset

META_KEYS = {"bpm", "grouping", "onsets", "guitar_onsets", "kick_onsets", "sr", "seconds", "seed"}


def test_deterministic_for_a_seed():
    a1, m1 = render_riff(7, seconds=3.0)
    a2, m2 = render_riff(7, seconds=3.0)
    assert a1.tobytes() == a2.tobytes()
    assert m1 == m2


def test_differs_across_seeds():
    a, _ = render_riff(1, seconds=3.0)
    b, _ = render_riff(2, seconds=3.0)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("seed", range(6))
def test_valid_audio_and_metadata(seed):
    sr, seconds = 16000, 4.0
    a, m = render_riff(seed, sr=sr, seconds=seconds)
    assert a.dtype == np.float32 and a.ndim == 1 and len(a) == int(sr * seconds)
    assert np.all(np.isfinite(a)) and np.abs(a).max() <= 1.0
    assert 0.85 <= np.abs(a).max() <= 0.91  # peak-normalised to ~0.9
    assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) > 0.05  # not silence
    assert META_KEYS <= set(m)
    assert 90.0 <= m["bpm"] <= 160.0 and m["grouping"] in GROUPINGS
    assert m["sr"] == sr and m["seconds"] == seconds and m["seed"] == seed
    on = m["onsets"]
    assert on == sorted(on) and all(0.0 <= t < seconds for t in on)
    assert set(m["guitar_onsets"]) <= set(on) and set(m["kick_onsets"]) <= set(on)
    assert set(m["ghost_onsets"]) <= set(m["guitar_onsets"])
    # the kick is locked to the (non-ghost) chugs
    assert set(m["kick_onsets"]) == set(m["guitar_onsets"]) - set(m["ghost_onsets"])
    assert len(m["guitar_onsets"]) >= 4 and len(m["snare_onsets"]) >= 2
    json.dumps(m)  # serialisable


def test_pattern_recycles_every_grouping():
    _, m = render_riff(3, seconds=6.0, bpm=120.0, grouping=7)
    assert m["bpm"] == 120.0 and m["grouping"] == 7 and len(m["pattern"]) == 7
    s16 = 60.0 / 120.0 / 4.0
    steps = {int(round(t / s16)) for t in m["kick_onsets"]}
    assert steps, "no chugs"
    for s in steps:
        if s + 7 < 6.0 / s16 - 1:
            assert s + 7 in steps  # the accent pattern repeats every 7 sixteenths
    snare_steps = [int(round(t / s16)) % 16 for t in m["snare_onsets"]]
    assert set(snare_steps) == {4, 12}  # the snare keeps 4/4 (beats 2 and 4)


def test_has_low_guitar_energy():
    a, m = render_riff(5, seconds=4.0)
    spec = np.abs(np.fft.rfft(a))
    f = np.fft.rfftfreq(len(a), 1 / 16000)
    low = spec[(f > 40) & (f < 400)].sum() / spec.sum()
    assert low > 0.1 and 54.0 <= m["root_hz"] <= 62.0


@pytest.mark.parametrize("sr", [22050, 48000])
def test_other_sample_rates(sr):
    a, m = render_riff(0, sr=sr, seconds=1.5)
    assert len(a) == int(sr * 1.5) and m["sr"] == sr and np.abs(a).max() <= 1.0


def test_bad_sample_rate():
    with pytest.raises(ValueError):
        render_riff(0, sr=8000)


def test_synth_dataset_writes_files(tmp_path):
    paths = synth_dataset(tmp_path / "ds", n_files=3, seconds=2.0, sr=22050, seed=10, progress=False)
    assert [p.name for p in paths] == ["djent_000.wav", "djent_001.wav", "djent_002.wav"]
    meta_all = json.loads((tmp_path / "ds" / "metadata.json").read_text())
    assert len(meta_all) == 3
    for i, p in enumerate(paths):
        x, sr = sf.read(str(p))
        assert sr == 22050 and x.ndim == 1 and len(x) == 44100 and np.abs(x).max() > 0.5
        m = json.loads(p.with_suffix(".json").read_text())
        assert m["seed"] == 10 + i and m["file"] == p.name and META_KEYS <= set(m)
        assert meta_all[i] == m
    assert not list((tmp_path / "ds").glob("*.tmp"))
