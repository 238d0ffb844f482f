import json

import numpy as np
import pytest
import soundfile as sf

from djenerator.config import DataConfig
from djenerator.data.dataset import ClipDataset
from djenerator.data.prepare import PrepareError, prepare
from conftest import sine


def cfg(**kw):
    base = dict(sample_rate=16000, clip_samples=4096, hop_samples=0, estimate_tempo=False)
    base.update(kw)
    return DataConfig(**base)


def test_clip_count_for_length_and_hop(tmp_path):
    sf.write(tmp_path / "x.wav", sine(200, 16000, 2.0), 16000)  # 32000 samples
    rep = prepare(tmp_path / "x.wav", tmp_path / "ds", cfg(clip_samples=4096, hop_samples=2048), progress=False)
    assert rep.n_clips == (32000 - 4096) // 2048 + 1
    ds = ClipDataset(tmp_path / "ds")
    assert ds.clips.shape == (rep.n_clips, 4096)
    starts = [c["start"] for c in ds.manifest["clips"]]
    assert starts[:3] == [0.0, 2048 / 16000, 4096 / 16000]
    assert isinstance(ds.clips, np.memmap)


def test_65536_sample_clips(tmp_path):
    sf.write(tmp_path / "x.wav", sine(200, 16000, 9.0), 16000)
    rep = prepare(tmp_path / "x.wav", tmp_path / "ds", cfg(clip_samples=65536), progress=False)
    assert rep.n_clips == 2
    assert ClipDataset(tmp_path / "ds").clips.shape == (2, 65536)


def test_mixed_folder_formats_rates_and_normalisation(audio_dir, tmp_path):
    rep = prepare(audio_dir, tmp_path / "ds", cfg(), progress=False)
    assert len(rep.files_used) == len(list(audio_dir.iterdir())) >= 7 and not rep.skipped
    ds = ClipDataset(tmp_path / "ds")
    assert np.all(np.abs(ds.clips) <= 1.0)
    assert np.allclose(np.max(np.abs(ds.clips), axis=1), 0.95, atol=1e-3)
    assert {c["file"] for c in ds.manifest["clips"]} == set(rep.files_used)
    x, bpm, _ = ds.batch(np.array([3, 0, 1]))
    assert x.shape == (3, 1, 4096)
    np.testing.assert_array_equal(x[0, 0].numpy(), ds.clips[3])


def test_silent_clips_dropped(tmp_path):
    x = np.concatenate([sine(200, 16000, 1.0), np.zeros(16000, np.float32), sine(200, 16000, 1.0)])
    sf.write(tmp_path / "x.wav", x, 16000)
    rep = prepare(tmp_path / "x.wav", tmp_path / "ds", cfg(clip_samples=8000), progress=False)
    assert rep.silent_clips == 2 and rep.n_clips == 4


def _bad_files(d):
    sf.write(d / "good1.wav", sine(220, 16000, 2.0), 16000)
    sf.write(d / "good2.flac", sine(330, 16000, 2.0), 16000)
    (d / "not_audio.wav").write_text("hello, I am a text file")
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 16000)
    nan = sine(220, 16000, 1.0)
    nan[100:200] = np.nan
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(d / "tiny.wav", sine(220, 16000, 0.05), 16000)
    full = d / "trunc_src.flac"
    sf.write(full, sine(220, 16000, 3.0), 16000)
    data = full.read_bytes()
    full.unlink()
    (d / "truncated.flac").write_bytes(data[: len(data) // 3])
    (d / "zero_bytes.ogg").write_bytes(b"")
    sf.write(d / "trunc.wav", sine(220, 16000, 3.0), 16000)
    (d / "trunc.wav").write_bytes((d / "trunc.wav").read_bytes()[:40000])


def test_bad_files_skipped_and_reported_good_kept(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _bad_files(src)
    lines = []
    rep = prepare(src, tmp_path / "ds", cfg(), progress=False, log=lines.append)
    assert sorted(rep.files_used)[:2] == ["good1.wav", "good2.flac"]
    skipped = {p.split("/")[-1] for p, _ in rep.skipped}
    assert {"not_audio.wav", "empty.wav", "nan.wav", "tiny.wav", "zero_bytes.ogg", "truncated.flac", "trunc.wav"} <= skipped
    for p, why in rep.skipped:
        assert p.split("/")[-1] in why  # each message names its file
    assert len(lines) >= len(rep.skipped)
    ds = ClipDataset(tmp_path / "ds")
    assert np.all(np.isfinite(ds.clips))
    assert len(ds) == rep.n_clips
    files = {c["file"] for c in ds.manifest["clips"]}
    assert {"good1.wav", "good2.flac"} <= files and "nan.wav" not in files
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["skipped"]


def test_no_usable_audio_leaves_nothing_behind(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.wav").write_text("nope")
    with pytest.raises(PrepareError, match="no usable clips"):
        prepare(src, tmp_path / "ds", cfg(), progress=False, log=lambda m: None)
    assert not (tmp_path / "ds").exists()
    assert not list(tmp_path.glob(".ds*"))


def test_existing_output_refused_unless_overwrite(tmp_path):
    sf.write(tmp_path / "x.wav", sine(200, 16000, 1.0), 16000)
    prepare(tmp_path / "x.wav", tmp_path / "ds", cfg(), progress=False)
    with pytest.raises(PrepareError, match="already exists"):
        prepare(tmp_path / "x.wav", tmp_path / "ds", cfg(), progress=False)
    prepare(tmp_path / "x.wav", tmp_path / "ds", cfg(clip_samples=2048), progress=False, overwrite=True)
    assert ClipDataset(tmp_path / "ds").clip_samples == 2048


def test_sidecar_bpm_labels_are_used(tmp_path):
    sf.write(tmp_path / "x.wav", sine(200, 16000, 1.0), 16000)
    (tmp_path / "x.json").write_text(json.dumps({"bpm": 137.0}))
    prepare(tmp_path / "x.wav", tmp_path / "ds", cfg(), progress=False)
    assert np.all(ClipDataset(tmp_path / "ds").bpm == 137.0)
