"""benchmarks/quality.py judges 1-s segments scaled as prepare scales the real ones, and shows what it judged."""
import numpy as np

from djenerator.audio import rms_db
from djenerator.config import DataConfig


def test_segments_are_peak_normalised_like_prepared_clips_and_silence_is_left_alone(bench_quality):
    sr = 1000
    t = np.arange(sr) / sr
    loud, quiet = 0.9 * np.sin(2 * np.pi * 50 * t), 0.05 * np.sin(2 * np.pi * 80 * t)
    silent = np.full(sr, 1e-4) * np.sin(2 * np.pi * 30 * t)
    assert rms_db(silent) < DataConfig().silence_db < rms_db(quiet)
    clip = np.concatenate([loud, quiet, silent, loud[:500]]).astype(np.float32)  # the half second is dropped
    seg = bench_quality.segments(clip[None], sr, sr)
    assert seg.shape == (3, sr)
    np.testing.assert_allclose(np.abs(seg[:2]).max(1), 0.95, rtol=1e-5)
    np.testing.assert_allclose(seg[1] / seg[1].max(), quiet / quiet.max(), atol=1e-5)  # only scaled
    np.testing.assert_allclose(seg[2], silent, atol=1e-7)


def test_the_table_shows_whether_generated_segments_share_one_fine_structure(bench_quality):
    """judge() reads a fixed texture (the same partials in every generated segment) against recordings whose
    partials differ, and the table prints both, beside the drone share (round 22)."""
    from rich.console import Console

    from djenerator.evaluate.features import clip_features

    sr, g = 16000, np.random.default_rng(0)
    t = np.arange(sr) / sr

    def clip(freqs):
        return 0.1 * sum(np.sin(2 * np.pi * f * t + g.uniform(0, 2 * np.pi)) for f in freqs) + 0.05 * g.standard_normal(sr)

    gen = np.stack([clip([620.0, 1130.0, 1770.0, 2930.0]) for _ in range(12)]).astype(np.float32)
    real = np.stack([clip(g.uniform(550.0, 4900.0, 4)) for _ in range(24)]).astype(np.float32)
    j = bench_quality.judge(gen, sr, {"segments": real, "features": clip_features(real, sr)})
    assert j["pattern_gen"] > 0.9 and j["pattern_real"] < 0.1
    row = {"set": "s", "eval_sr": sr, "preset": "p", "seed": 0, "model_sr": sr, "step": 3, "cpu_s": 1.0, "judge": j,
           "bar_gen": 0.5, "bar_real": 0.5, "copies": 0}
    console = Console(width=400, record=True)
    console.print(bench_quality.table([row], "t"))
    assert f"{j['pattern_gen']:.2f} / {j['pattern_real']:.2f}" in console.export_text()
    assert bench_quality.ratios(row)["pattern gen-real"] == j["pattern_gen"] - j["pattern_real"]
