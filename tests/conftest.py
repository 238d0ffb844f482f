import numpy as np
import pytest
import soundfile as sf
import torch

torch.set_num_threads(2)


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def audio_dir(tmp_path):
    """A folder of small, varied, valid audio files (rates, channels, formats)."""
    d = tmp_path / "audio"
    d.mkdir()
    rng = np.random.default_rng(0)
    sf.write(d / "a_mono16k.wav", sine(220, 16000, 3.0), 16000, subtype="PCM_16")
    stereo = np.stack([sine(330, 44100, 2.5), 0.5 * rng.standard_normal(int(44100 * 2.5)).astype(np.float32) * 0.2], 1)
    sf.write(d / "b_stereo44k.wav", stereo, 44100, subtype="PCM_24")
    sf.write(d / "c_float48k.wav", sine(440, 48000, 2.0), 48000, subtype="FLOAT")
    sf.write(d / "d.flac", sine(110, 22050, 2.0), 22050)
    sf.write(d / "e.ogg", sine(550, 16000, 2.0), 16000, format="OGG", subtype="VORBIS")
    sf.write(d / "f_8bit.wav", sine(660, 8000, 2.0), 8000, subtype="PCM_U8")
    return d
