"""Pieces of any length: length-agnostic spectral generator, streamed rendering, seams, sample rates."""
import numpy as np
import pytest
import soundfile as sf
import torch

from djenerator.config import ConfigError, build_config
from djenerator.generate import generate_long, generate_long_to_file, latents
from djenerator.models import build_generator
from djenerator.stream import (PiecePlan, frame_latents, iter_piece, render_piece_one_pass, seam_statistics,
                               style_latent)

RATES = (16000, 22050, 24000, 32000, 44100)


def spectral_cfg(sr=16000, clip=16384, *extra):
    return build_config("spectral", [], [f"data.sample_rate={sr}", f"data.clip_samples={clip}", "model.dim=8",
                                         "model.latent_dim=16", *extra])


@pytest.fixture(scope="module")
def G16():
    torch.manual_seed(0)
    cfg = spectral_cfg()
    return build_generator(cfg).eval(), cfg


@pytest.mark.parametrize("sr", RATES)
def test_shapes_any_rate_and_length(sr):
    torch.manual_seed(0)
    for clip in (16384, 10000):
        cfg = spectral_cfg(sr, clip)
        G = build_generator(cfg)
        x = G(torch.randn(2, 16))  # training mode: random offset, random local latents
        assert x.shape == (2, 1, clip) and x.abs().max() <= 1
        x.mean().backward()
        assert G.inp.weight.grad is not None
    G.eval()
    assert abs(G.frame_samples / sr - 0.25) < 0.06  # latent frames of about a quarter second at every rate
    for n in (1, 3, 7):
        assert G.render(torch.randn(1, G.frame_dim, n), torch.randn(1, 16)).shape == (1, 1, n * G.frame_samples)
    for seconds in (0.05, 1.0, 2.3):
        assert generate_long(G, cfg, seconds, seed=1).shape == (round(seconds * sr),)


def test_eval_forward_is_deterministic_in_z(G16):
    G, cfg = G16
    z = latents(3, 16, 5)
    with torch.no_grad():
        a, b = G(z), G(z)
    assert torch.equal(a, b) and not torch.allclose(a[0], a[1])


@pytest.mark.parametrize("interp", [None, 9])
def test_streamed_equals_one_pass(G16, interp):
    G, cfg = G16
    n = int(5.3 * cfg.data.sample_rate)
    plan = PiecePlan.for_generator(G, n, seed=3, interpolate_to=interp)
    one = render_piece_one_pass(G, plan)
    for chunk in (1, 3, 8):
        streamed = np.concatenate(list(iter_piece(G, plan, chunk_frames=chunk)))
        assert streamed.shape == one.shape == (n,)
        np.testing.assert_allclose(streamed, one, atol=1e-5)
    assert one.std() > 1e-3


def test_latents_are_lazy_and_seeded():
    full = frame_latents(4, 0, 12, 8)
    assert torch.equal(frame_latents(4, 5, 9, 8), full[:, 5:9])
    assert not torch.equal(frame_latents(5, 0, 12, 8), full)
    assert torch.equal(style_latent(4, 16), latents(1, 16, 4)[0])


def test_same_seed_same_piece_file_equals_memory(G16, tmp_path):
    G, cfg = G16
    a = generate_long(G, cfg, 3.0, seed=7, chunk_seconds=1.0)
    np.testing.assert_allclose(generate_long(G, cfg, 3.0, seed=7, chunk_seconds=2.0), a, atol=1e-5)
    assert not np.allclose(a, generate_long(G, cfg, 3.0, seed=8))
    p = generate_long_to_file(G, tmp_path / "p.wav", 3.0, seed=7, cfg=cfg, progress=False, chunk_seconds=1.0)
    x, sr = sf.read(p, dtype="float32")
    assert sr == cfg.data.sample_rate and len(x) == len(a)
    assert np.abs(x - a).max() < 2e-4  # PCM_16
    assert [q.name for q in tmp_path.iterdir()] == ["p.wav"]  # no temp file left
    # interpolation along time: starts like seed 7's piece style, ends like seed 8's
    m = generate_long(G, cfg, 3.0, seed=7, interpolate_to=8)
    assert m.shape == a.shape and not np.allclose(m, a)


def test_fixed_window_archs_refuse_long_pieces():
    cfg = build_config("original", [], ["data.sample_rate=8000", "data.clip_samples=1024", "model.dense_hidden=[8,8]"])
    G = build_generator(cfg).eval()
    assert generate_long(G, cfg, 0.1, seed=0).shape == (800,)  # within one window: fine
    with pytest.raises(ConfigError, match="spectral"):
        generate_long(G, cfg, 2.0, seed=0)


def test_seam_statistic_flags_planted_discontinuities():
    from djenerator.synth.djent import render_riff

    sr = 16000
    x, _ = render_riff(3, sr=sr, seconds=6.0)
    joins = np.arange(1, len(x) // 4096) * 4096
    clean = seam_statistics(x, sr, joins)
    assert not clean["flagged"] and 0.5 < clean["jump_ratio"] < 2
    # the same riff with a hard cut at every join (what naive concatenation of windows does)
    y, _ = render_riff(5, sr=sr, seconds=12.0)
    rng = np.random.default_rng(0)
    edges = np.r_[0, joins, len(x)]
    spliced = np.concatenate([y[(s := rng.integers(0, len(y) - (b - a))):s + b - a] for a, b in zip(edges[:-1], edges[1:])])
    bad = seam_statistics(spliced, sr, joins)
    assert bad["flagged"] and bad["jump_ratio"] > 2
    # a plain sine with noise: clean passes, a level jump at every join is flagged
    t = np.arange(6 * sr) / sr
    s = (0.4 * np.sin(2 * np.pi * 110 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    assert not seam_statistics(s, sr, joins)["flagged"]
    gain = np.ones_like(s)
    for k, j in enumerate(joins):
        gain[j:] = 1.0 + 0.3 * ((k % 2) * 2 - 1)
    assert seam_statistics(s * gain, sr, joins)["flagged"]


def test_other_rate_round_trip_prepare_train_generate(tmp_path):
    from typer.testing import CliRunner

    from djenerator.cli import app
    from djenerator.data.prepare import prepare
    from djenerator.synth.djent import render_riff
    from djenerator.train import train

    sr = 22050
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        sf.write(src / f"r{i}.wav", render_riff(i, sr=sr, seconds=2.0)[0], sr)
    cfg = spectral_cfg(sr, 8192, "model.discriminators=[stft]", "model.stft_ffts=[256,512]", "train.batch_size=4",
                       "train.steps=3", "train.log_every=1", "train.ckpt_every=3", "train.sample_every=3",
                       "train.n_samples=1", "train.device=cpu", "data.estimate_tempo=false")
    prepare(src, tmp_path / "ds", cfg.data, progress=False, log=lambda m: None)
    res = train(cfg, tmp_path / "ds", tmp_path / "run", progress=False, log=lambda m: None)
    assert res.stopped == "done" and res.checkpoint is not None
    r = CliRunner().invoke(app, ["generate", str(tmp_path / "run"), "--seconds", "2.5", "-o", str(tmp_path / "out.wav"),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    x, got_sr = sf.read(tmp_path / "out.wav")
    assert got_sr == sr and len(x) == round(2.5 * sr) and np.isfinite(x).all() and x.std() > 0
    # a fixed-window checkpoint asked for a long piece: one clear sentence, exit 2
    dense = build_config("original", [], [f"data.sample_rate={sr}", "data.clip_samples=8192", "model.dense_hidden=[8,8]",
                                          "train.steps=1", "train.batch_size=2", "train.device=cpu", "train.n_samples=1"])
    train(dense, tmp_path / "ds", tmp_path / "dense", progress=False, log=lambda m: None)
    r = CliRunner().invoke(app, ["generate", str(tmp_path / "dense"), "--seconds", "30", "-o", str(tmp_path / "d.wav")])
    assert r.exit_code == 2 and "spectral" in r.output
