"""benchmarks/quality.py judges 1-s segments scaled as prepare scales the real ones."""
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
