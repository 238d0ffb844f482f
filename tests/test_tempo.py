"""Tempo control end to end: labels from prepare (sidecar json or estimated), conditioning in train and generate."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from djenerator.config import build_config
from djenerator.data.dataset import ClipDataset
from djenerator.data.prepare import prepare
from djenerator.generate import generate_clips, generate_to_files, load_generator
from djenerator.models import build_generator
from djenerator.models import tempo_cond
from djenerator.train import train
from test_dsp_beat import click_track


def test_prepare_stores_estimated_tempo_and_prefers_sidecar_labels(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sf.write(src / "clicks.wav", click_track(132.0, 12.0, 8000), 8000)
    sf.write(src / "labelled.wav", click_track(100.0, 12.0, 8000), 8000)
    (src / "labelled.json").write_text(json.dumps({"bpm": 101.0}))
    cfg = build_config("few", [], ["data.sample_rate=8000", "data.clip_samples=16384", "data.hop_samples=16384"])
    prepare(src, tmp_path / "ds", cfg.data, progress=False, log=lambda m: None)
    ds = ClipDataset(tmp_path / "ds")
    by_file = {}
    for c in ds.manifest["clips"]:
        by_file.setdefault(c["file"], []).append(c["bpm"])
    assert all(b == pytest.approx(132.0, rel=0.02) for b in by_file["clicks.wav"])
    assert all(b == 101.0 for b in by_file["labelled.wav"])


def tiny_wavegan(cond: bool):
    return build_config("few", [], ["data.sample_rate=8000", "data.clip_samples=1024", "model.dim=4",
                                    f"model.tempo_conditioning={str(cond).lower()}", "model.bpm_range=[90,160]"])


def test_conditioning_changes_the_output_for_another_bpm_at_the_same_seed():
    torch.manual_seed(0)
    cfg = tiny_wavegan(True)
    G = build_generator(cfg).eval()
    a = generate_clips(G, cfg, n=3, seed=5, bpm=100.0)
    b = generate_clips(G, cfg, n=3, seed=5, bpm=150.0)
    again = generate_clips(G, cfg, n=3, seed=5, bpm=100.0)
    assert np.array_equal(a, again) and not np.allclose(a, b, atol=1e-4)
    cu = tiny_wavegan(False)
    Gu = build_generator(cu).eval()
    assert np.array_equal(generate_clips(Gu, cu, n=2, seed=5, bpm=100.0), generate_clips(Gu, cu, n=2, seed=5, bpm=150.0))


def test_tempo_cond_normalises_and_fills_unknown():
    cfg = tiny_wavegan(True)
    c = tempo_cond(torch.tensor([90.0, 125.0, 160.0, 200.0, 60.0, 400.0, float("nan")]), cfg,
                   torch.tensor([0.0, 0.25, 0.5, 0.5, 0.75, 0.1, 0.3]))
    # 200 -> 100, 60 -> 120 and 400 -> 100 by octaves (the phase halves / doubles with them)
    assert torch.allclose(c[:, 0], torch.tensor([0.0, 0.5, 1.0, 10 / 70, 30 / 70, 10 / 70, 0.5]))
    assert torch.allclose(c[:6, 1], torch.tensor([0.0, 0.25, 0.5, 0.25, 0.5, 0.025]))
    assert torch.isnan(c[6, 1])  # unknown tempo: unknown beats
    assert torch.isnan(tempo_cond(torch.tensor([120.0]), cfg)[0, 1])  # no beat labels
    assert tempo_cond(torch.tensor([120.0]), tiny_wavegan(False)) is None


def test_train_and_generate_with_bpm_end_to_end(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i, bpm in enumerate((95.0, 150.0)):
        sf.write(src / f"f{i}.wav", click_track(bpm, 3.0, 8000), 8000)
        (src / f"f{i}.json").write_text(json.dumps({"bpm": bpm}))
    cfg = tiny_wavegan(True)
    prepare(src, tmp_path / "ds", cfg.data, progress=False, log=lambda m: None)
    for o in ("train.steps=2", "train.batch_size=4", "train.device=cpu", "train.n_samples=2"):
        k, v = o.split("=")
        sec, key = k.split(".")
        setattr(getattr(cfg, sec), key, type(getattr(getattr(cfg, sec), key))(v))
    res = train(cfg, tmp_path / "ds", tmp_path / "run", progress=False, log=lambda m: None)
    assert res.stopped == "done" and res.step == 2
    G, gcfg, _ = load_generator(tmp_path / "run")
    assert gcfg.model.tempo_conditioning
    slow = generate_to_files(tmp_path / "run", tmp_path / "slow", n=2, seed=0, bpm=95.0)
    fast = generate_to_files(tmp_path / "run", tmp_path / "fast", n=2, seed=0, bpm=150.0)
    assert not np.allclose(sf.read(slow[0])[0], sf.read(fast[0])[0])
