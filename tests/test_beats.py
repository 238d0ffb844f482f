"""The beat grid: beat labels in prepare (estimation: test_dsp_beat.py), the grid clock, and grid-conditioned models."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from djenerator.config import ConfigError, build_config
from djenerator.data.dataset import ClipDataset
from djenerator.data.prepare import prepare
from djenerator.generate import bpm_cond
from djenerator.models import build_discriminator, build_generator, tempo_cond
from djenerator.models.grid import GRID_DIM, beat_grid
from djenerator.stream import PiecePlan, iter_piece, render_piece_one_pass
from test_dsp_beat import click_track


def test_prepare_stores_beat_phase_from_sidecar_and_estimate(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sr, bpm = 8000, 120.0
    sf.write(src / "labelled.wav", click_track(100.0, 12.0, sr, start=0.2), sr)
    (src / "labelled.json").write_text(json.dumps({"bpm": 100.0, "first_beat": 0.2}))
    sf.write(src / "clicks.wav", click_track(bpm, 12.0, sr, start=0.125), sr)
    sf.write(src / "tempo_only.wav", click_track(110.0, 12.0, sr, start=0.3), sr)  # bpm label, beats estimated
    (src / "tempo_only.json").write_text(json.dumps({"bpm": 110.0}))
    cfg = build_config("laptop", [], ["data.hop_samples=3000"])
    prepare(src, tmp_path / "ds", cfg.data, progress=False, log=lambda m: None)
    ds = ClipDataset(tmp_path / "ds")
    for c, beat in zip(ds.manifest["clips"], ds.beat):
        b, first = {"labelled.wav": (100.0, 0.2), "tempo_only.wav": (110.0, 0.3)}.get(c["file"], (bpm, 0.125))
        want = ((c["start"] - first) * b / 60.0) % 1.0
        tol = 1e-3 if c["file"] == "labelled.wav" else 0.04  # estimated: within 20 ms at 120 BPM
        assert min(abs(beat - want), 1 - abs(beat - want)) < tol, (c, want)
    assert ds.batch(np.array([0, 1]))[2].shape == (2,)


def test_grid_is_a_clock():
    cond = torch.tensor([[0.5, 0.25], [0.0, float("nan")]])  # 125 BPM, a quarter beat in; unknown beats
    rate, rng = 50.0, (90.0, 160.0)
    g = beat_grid(cond, 400, rate, rng)
    assert g.shape == (2, GRID_DIM, 400)
    assert torch.count_nonzero(g[1]) == 0  # unknown phase: no clock at all
    # the beat channel (multiple 1) is sin(2 pi b(t)) with b(t) = 0.25 + t * 125 / 60
    t = np.arange(400) / rate
    np.testing.assert_allclose(g[0, 1], np.sin(2 * np.pi * (0.25 + t * 125 / 60)), atol=1e-5)
    np.testing.assert_allclose(g[0, 2], np.sin(2 * np.pi * 2 * (0.25 + t * 125 / 60)), atol=1e-5)  # eighths
    # a later start of the same clock gives the same values (what makes streamed chunks agree)
    late = beat_grid(cond, 100, rate, rng, t0=123 / rate)
    np.testing.assert_allclose(late[0], g[0, :, 123:223], atol=1e-4)
    # far into a piece (an hour) the clock still has full precision
    np.testing.assert_allclose(beat_grid(cond, 1, rate, rng, t0=3600.0)[0, 1, 0],
                               np.sin(2 * np.pi * (0.25 + 3600 * 125 / 60)), atol=1e-5)


def grid_cfg(*extra):
    return build_config("laptop", [], ["model.dim=4", "model.latent_dim=16", "model.tempo_conditioning=true",
                                       "model.beat_grid=true", "model.discriminators=[msd,stft]", *extra])


def test_beat_grid_needs_the_spectral_generator_and_tempo():
    with pytest.raises(ConfigError, match="beat_grid"):
        build_config("few", [], ["model.tempo_conditioning=true", "model.beat_grid=true"])
    with pytest.raises(ConfigError, match="beat_grid"):
        build_config("laptop", [], ["model.tempo_conditioning=false"])


def _wake(module: torch.nn.Module) -> None:
    """Give every weight a small random part, as training would: the grid inputs start at zero."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))


def test_generator_and_discriminators_read_the_grid():
    torch.manual_seed(0)
    cfg = grid_cfg()
    G, D = build_generator(cfg).eval(), build_discriminator(cfg)
    z = torch.randn(2, 16)
    on_beat, off_beat = tempo_cond(torch.tensor([120.0, 120.0]), cfg, torch.tensor([0.0, 0.5])).chunk(2)
    with torch.no_grad():  # at initialisation the grid is switched off: same audio, same judgement
        x = G(z[:1], on_beat)
        assert torch.equal(x, G(z[:1], off_beat))
        assert all(torch.equal(la, lb) for (la, _), (lb, _) in zip(D(x, on_beat), D(x, off_beat)))
    _wake(G), _wake(D)
    with torch.no_grad():
        a, b = G(z[:1], on_beat), G(z[:1], off_beat)
        assert not torch.allclose(a, b, atol=1e-5) and torch.equal(a, G(z[:1], on_beat))
        for (la, _), (lb, _) in zip(D(a, on_beat), D(a, off_beat)):
            assert not torch.allclose(la, lb)  # same audio, another clock: another judgement
        assert all(torch.isfinite(lg).all() for lg, _ in D(a, None))  # unconditional judgement still works
    # gradients reach the generator through the grid-conditioned discriminators
    G.train()
    x = G(z, torch.cat([on_beat, off_beat]))
    sum(lg.mean() for lg, _ in D(x, torch.cat([on_beat, off_beat]))).backward()
    assert G.inp.weight.grad is not None and G.inp.weight.grad.abs().sum() > 0


def test_streamed_pieces_keep_one_clock():
    torch.manual_seed(0)
    cfg = grid_cfg()
    G = build_generator(cfg).eval()
    _wake(G)
    n = int(4.3 * cfg.data.sample_rate)
    plan = PiecePlan.for_generator(G, n, seed=3)
    cond = bpm_cond(cfg, 140.0, 1)
    one = render_piece_one_pass(G, plan, cond)
    for chunk in (1, 3):
        np.testing.assert_allclose(np.concatenate(list(iter_piece(G, plan, cond, chunk_frames=chunk))), one, atol=1e-5)
    assert not np.allclose(one, render_piece_one_pass(G, plan, bpm_cond(cfg, 100.0, 1)), atol=1e-4)
