import numpy as np
import pytest
import soundfile as sf

from djenerator.audio import AudioError, load_audio, peak_normalize, resample, rms_db, to_mono, write_wav
from conftest import sine


def dominant_freq(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)]


@pytest.mark.parametrize("sr_in,sr_out", [(44100, 16000), (48000, 22050), (8000, 16000), (16000, 44100)])
def test_resample_keeps_frequency(sr_in, sr_out):
    y = resample(sine(440.0, sr_in, 1.0), sr_in, sr_out)
    assert abs(len(y) - sr_out) <= 1
    assert abs(dominant_freq(y, sr_out) - 440.0) < 2.0


def test_stereo_to_mono_averages_channels():
    st = np.stack([np.ones(10), -np.ones(10) * 0.5], 1).astype(np.float32)
    np.testing.assert_allclose(to_mono(st), 0.25)
    assert to_mono(st[:, 0]).shape == (10,)


def test_load_stereo_file_is_mono_and_resampled(tmp_path):
    x = np.stack([sine(300, 44100, 1.0), sine(300, 44100, 1.0)], 1)
    sf.write(tmp_path / "s.wav", x, 44100, subtype="PCM_24")
    y, sr = load_audio(tmp_path / "s.wav", 16000)
    assert sr == 16000 and y.ndim == 1 and abs(len(y) - 16000) <= 1
    assert abs(dominant_freq(y, sr) - 300) < 2


def test_load_streams_long_file_in_blocks_seamlessly(tmp_path):
    x = sine(123.0, 44100, 65.0)  # longer than the 30 s streaming block
    sf.write(tmp_path / "long.wav", x, 44100, subtype="FLOAT")
    y, _ = load_audio(tmp_path / "long.wav", 16000)
    ref = resample(x, 44100, 16000)
    assert abs(len(y) - len(ref)) <= 2
    n = min(len(y), len(ref)) - 100
    assert np.max(np.abs(y[100:n] - ref[100:n])) < 1e-3


def test_unreadable_file_names_the_file(tmp_path):
    p = tmp_path / "junk.wav"
    p.write_bytes(b"this is not audio at all")
    with pytest.raises(AudioError, match="junk.wav"):
        load_audio(p)


def test_write_wav_clips_and_roundtrips(tmp_path):
    import os

    os.umask(0o022)
    x = np.array([0.0, 0.5, 2.0, -3.0], dtype=np.float32)
    write_wav(tmp_path / "o.wav", x, 16000, subtype="FLOAT")
    y, sr = sf.read(tmp_path / "o.wav", dtype="float32")
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0, -1.0])
    assert not list(tmp_path.glob(".*tmp"))
    assert (tmp_path / "o.wav").stat().st_mode & 0o044 == 0o044  # readable by others, like any file (umask 022)


def test_peak_normalize_and_rms():
    x = sine(100, 16000, 0.5, amp=0.1)
    assert np.isclose(np.max(np.abs(peak_normalize(x, 0.9))), 0.9, atol=1e-4)
    assert np.isclose(rms_db(sine(100, 16000, 1.0, amp=1.0)), 20 * np.log10(1 / np.sqrt(2)), atol=0.01)
