import json
import os

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


# --- issue 19: nothing lost, nothing hidden, nothing unbounded ------------------------------------------
def _src(tmp_path, name="src", n=2):
    src = tmp_path / name
    src.mkdir()
    for i in range(n):
        sf.write(src / f"x{i}.wav", sine(200 + 50 * i, 16000, 1.0), 16000)
    return src


def test_overwrite_never_deletes_the_source_or_an_unrelated_folder(tmp_path):
    src = _src(tmp_path)
    before = sorted(p.name for p in src.iterdir())
    for out in (src, tmp_path):  # the source itself, its parent
        with pytest.raises(PrepareError, match="holds the source"):
            prepare(src, out, cfg(), overwrite=True, progress=False, log=lambda m: None)
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.txt").write_text("years of work")
    with pytest.raises(PrepareError, match="not one"):
        prepare(src, work, cfg(), overwrite=True, progress=False, log=lambda m: None)
    assert sorted(p.name for p in src.iterdir()) == before and (work / "thesis.txt").read_text() == "years of work"
    prepare(src, tmp_path / "ds", cfg(), progress=False, log=lambda m: None)
    prepare(src, tmp_path / "ds", cfg(clip_samples=2048), overwrite=True, progress=False, log=lambda m: None)
    assert ClipDataset(tmp_path / "ds").clip_samples == 2048  # a dataset is still replaced


def test_a_killed_prepares_partial_folder_is_removed_by_the_next_prepare(tmp_path):
    from djenerator.io import lock_dir

    src = _src(tmp_path)
    stale, alive = tmp_path / ".old.partial", tmp_path / ".busy.partial"
    for d in (stale, alive):
        d.mkdir()
        (d / "clips.npy").write_bytes(b"\0" * 300_000)
    fd = lock_dir(alive)  # a prepare that is still running
    try:
        rep = prepare(src, tmp_path / "other", cfg(), progress=False, log=lambda m: None)
    finally:
        os.close(fd)
    assert not stale.exists() and alive.exists()
    assert any(".old.partial" in n and "0.3 MB" in n and "interrupted" in n for n in rep.notes)


def test_implausible_sample_rates_are_skipped_and_said(tmp_path):
    src = _src(tmp_path)
    sf.write(src / "one_hz.wav", np.full(64000, 0.5, np.float32), 1, subtype="PCM_16")
    sf.write(src / "huge_rate.wav", sine(200, 16000, 0.5), 1_000_000, subtype="PCM_16")
    lines = []
    rep = prepare(src, tmp_path / "ds", cfg(), progress=False, log=lines.append)
    why = {p.split("/")[-1]: r for p, r in rep.skipped}
    assert "sample rate 1 Hz is outside 2000-768000 Hz" in why["one_hz.wav"]
    assert "1000000 Hz" in why["huge_rate.wav"]
    assert sorted(rep.files_used) == ["x0.wav", "x1.wav"] and any("one_hz.wav" in m for m in lines)


def test_a_file_cannot_become_a_dataset_far_larger_than_itself(tmp_path):
    src = _src(tmp_path)
    sf.write(src / "bomb.flac", np.full(8000 * 600, 0.5, np.float32), 8000)  # 14 KB -> 19 MB of float32
    rep = prepare(src, tmp_path / "ds", cfg(sample_rate=8000), progress=False, log=lambda m: None)
    why = {p.split("/")[-1]: r for p, r in rep.skipped}
    assert "over 512 times its size" in why["bomb.flac"]
    assert (tmp_path / "ds" / "clips.npy").stat().st_size < 1e6


def test_unreadable_entries_and_bad_labels_are_reported(tmp_path, monkeypatch):
    src = _src(tmp_path)
    os.symlink(tmp_path / "nowhere.wav", src / "dangling.wav")
    os.symlink(src / "loop_b.wav", src / "loop_a.wav")
    os.symlink(src / "loop_a.wav", src / "loop_b.wav")
    os.mkfifo(src / "pipe.wav")  # opening it would block for ever
    (src / "locked").mkdir()
    os.symlink(tmp_path, src / "linked_folder")
    (src / "x0.json").write_text("{bpm: 120,")
    (src / "x1.json").write_text(json.dumps({"bpm": 0}))
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p=".": (_ for _ in ()).throw(PermissionError(13, "Permission denied", str(p)))
                        if str(p).endswith("locked") else real_scandir(p))
    lines = []
    rep = prepare(src, tmp_path / "ds", cfg(), progress=False, log=lines.append)
    why = {p.split("/")[-1]: r for p, r in rep.skipped}
    assert "dangling" in why["dangling.wav"] and "loop" in why["loop_a.wav"] and "loop" in why["loop_b.wav"]
    assert "FIFO" in why["pipe.wav"] and "not readable" in why["locked"] and "not followed" in why["linked_folder"]
    assert any("x0.json" in n and "JSONDecodeError" in n for n in rep.notes)
    assert any("x1.json" in n and "bpm 0 " in n for n in rep.notes)
    assert sorted(rep.files_used) == ["x0.wav", "x1.wav"]
    assert all(m.startswith(("skipped: ", "note: ")) for m in lines) and len(lines) == len(rep.skipped) + len(rep.notes)


def test_a_file_name_that_is_not_utf8_is_prepared_and_shown_escaped(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sf.write(os.path.join(os.fsencode(src), b"caf\xe9.wav"), sine(200, 16000, 1.0), 16000)
    rep = prepare(src, tmp_path / "ds", cfg(), progress=False, log=lambda m: None)
    assert rep.files_used == ["caf\\xe9.wav"] and rep.n_clips == 3
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_bytes().decode("utf-8"))  # strict UTF-8
    assert manifest["clips"][0]["file"] == "caf\\xe9.wav"
