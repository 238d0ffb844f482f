import numpy as np
import pytest
import soundfile as sf
import torch

torch.set_num_threads(2)


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids OpenMP stalls on a busy 2-core machine (restored afterwards); seeded."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def bench_quality():
    """benchmarks/quality.py as a module (benchmarks/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Four seconds of tones + noise at 8 kHz, prepared into 1024-sample clips (shared by training tests)."""
    from djenerator.config import build_config
    from djenerator.data.prepare import prepare

    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    x = np.concatenate([sine(f, 8000, 1.0) for f in (110, 220, 330, 440)]) + 0.05 * rng.standard_normal(32000).astype(np.float32)
    sf.write(d / "x.wav", x, 8000)
    cfg = build_config("original", [], ["data.sample_rate=8000", "data.clip_samples=1024", "data.estimate_tempo=false"])
    prepare(d / "x.wav", d / "ds", cfg.data, progress=False)
    return d / "ds"


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
    sf.write(d / "g_32bit.wav", sine(770, 32000, 2.0), 32000, subtype="PCM_32")
    if "MP3" in sf.available_formats():  # libsndfile >= 1.1 reads and writes mp3
        sf.write(d / "h.mp3", sine(880, 24000, 2.0), 24000, format="MP3")
    return d
