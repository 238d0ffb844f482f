"""Stage 2 as a flow (``model.stage2=flow``): shapes, the loss against a hand computation, learning a known
distribution, pieces made window by window (streamed = one pass), exact resume, config errors, end to end."""
import numpy as np
import pytest
import torch

from djenerator import codec_train as ct
from djenerator.config import ConfigError
from djenerator.io import read_csv_columns
from djenerator.models import build_generator
from djenerator.models.codec import LATENT_CH
from djenerator.models.latent_flow import LatentFlow, LatentTrack, noise_of
from djenerator.stream import PiecePlan, render_piece_one_pass

from test_twostage import (SR, _assert_same, assert_streams_as_one_pass, clip_ds, tiny_cfg,  # noqa: F401
                           trained_run)  # (tests/ is on sys.path)

def flow_cfg(*extra, clip=16384):
    cfg = tiny_cfg(*extra, clip=clip, preset="bars")
    assert cfg.model.stage2 == "flow"  # bars is the flow
    return cfg


def _nonzero_head(G) -> None:
    """A fresh flow's output layer is zero (it starts as the identity map of its noise): draw one."""
    torch.manual_seed(0)
    torch.nn.init.normal_(G.latent.out.weight, std=0.2)


@pytest.mark.parametrize("clip", [16384, 30000, 131072])
def test_flow_shapes_and_one_clip_per_latent(one_thread, clip):
    G = build_generator(flow_cfg(clip=clip)).eval()
    _nonzero_head(G)
    cond = torch.tensor([[0.5, 0.0], [0.2, float("nan")]])
    z = torch.randn(2, 8)
    with torch.no_grad():
        x, again = G(z, cond), G(z, cond)
    assert x.shape == (2, 1, clip) and x.abs().max() <= 1
    torch.testing.assert_close(x, again, atol=0, rtol=0)  # the noise is a function of z
    assert (x[0] - x[1]).abs().max() > 1e-3
    for frames in (16, 100, 256):
        lat = G.latents_for(z, cond, frames)
        assert lat.shape == (2, LATENT_CH, frames) and lat.abs().max() <= 1
    real = torch.rand(2, LATENT_CH, 40) * 2 - 1
    G.latent.loss(real, cond, torch.Generator().manual_seed(1)).backward()
    assert G.latent.inp.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("clip_source", [0.0, 1.0])
def test_flow_loss_is_the_masked_velocity_error_computed_by_hand(one_thread, clip_source):
    """With a clip source, from its state: each row's time mean of the noise stretched to the clip share."""
    torch.manual_seed(0)
    f = LatentFlow(4, 43.0, (80, 160), True, clip_share=clip_source)
    torch.nn.init.normal_(f.out.weight, std=0.3)
    lat = torch.rand(3, LATENT_CH, 24) * 1.6 - 0.8
    f.set_scale(lat)
    f.clip_share.fill_(0.5 if clip_source else 0.0)
    cond = torch.tensor([[0.5, 0.0], [0.1, 0.3], [0.9, float("nan")]])
    got = f.loss(lat, cond, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # the same draws, in the same order
    x1 = (lat - lat.mean((0, 2))[:, None]) / lat.std((0, 2))[:, None]
    x0 = torch.randn(x1.shape, generator=g)
    if clip_source:
        m = x0.mean(-1, keepdim=True)
        x0 = 0.5 ** 0.5 * (x0 - m) + 0.5 ** 0.5 * 24 ** 0.5 * m
    t = torch.sigmoid(torch.randn(3, generator=g))
    prefix = torch.randint(1, 13, (3,), generator=g) * (torch.rand(3, generator=g) < 0.5)
    num, den = 0.0, 0
    for i in range(3):
        mask = torch.zeros(1, 1, 24)
        mask[..., :prefix[i]] = 1
        xt = (1 - t[i]) * x0[i:i + 1] + t[i] * x1[i:i + 1]
        v = f.velocity(xt, t[i:i + 1], x1[i:i + 1], mask, cond[i:i + 1])
        keep = slice(int(prefix[i]), 24)
        num += float(((v - (x1[i:i + 1] - x0[i:i + 1]))[..., keep] ** 2).sum())
        den += (24 - int(prefix[i])) * LATENT_CH
    assert float(got) == pytest.approx(num / den, rel=1e-5)


def test_flow_learns_a_two_mode_distribution(one_thread):
    """Clips whose 16 channels all sit at +0.5 or all at -0.5: a trained flow lands on the modes and narrows
    towards them; its untrained self (noise) and the mean (0) do not."""
    torch.manual_seed(0)
    f = LatentFlow(4, 43.0, (80, 160), False)
    sign = torch.where(torch.rand(64) < 0.5, -1.0, 1.0)
    data = 0.5 * sign[:, None, None] * torch.ones(64, LATENT_CH, 16) + 0.02 * torch.randn(64, LATENT_CH, 16)
    f.set_scale(data)

    def modes() -> tuple[float, float]:
        with torch.no_grad():
            x = f.sample(torch.randn(32, LATENT_CH, 16, generator=torch.Generator().manual_seed(3)), None, steps=16)
        return float(x.mean((1, 2)).abs().median()), float(x.std((1, 2)).median())

    before = modes()
    opt = torch.optim.Adam(f.parameters(), lr=3e-3)
    for step in range(400):
        idx = torch.randint(0, 64, (16,))
        loss = f.loss(data[idx], None, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    level, spread = modes()
    assert before[0] < 0.2 and before[1] > 0.3  # noise: no mode, a wide spread
    assert level == pytest.approx(0.5, abs=0.12) and spread < 0.6 * before[1]


def test_the_sampler_integrates_a_known_flow_to_second_order():
    """Noise N(0, 1) -> data N(m, s^2): the straight-line flow has velocity m + sigma'/sigma (x - t m), sigma_t^2 =
    (1 - t)^2 + t^2 s^2, and carries noise x0 to m + s x0. The sampler lands there, its error falling about
    fourfold when the steps double; from a later start it takes fewer steps, from 1 none."""
    from djenerator.models.latent_flow import time_grid

    m, s = 0.7, 0.3
    flow = LatentFlow(4, 43.0, (80, 160), False)

    def velocity(x, t, known, mask, cond, t0=0.0):
        t = t.double()[:, None, None]
        sig2 = (1 - t) ** 2 + t ** 2 * s ** 2
        return (m + (t * s ** 2 - (1 - t)) / sig2 * (x.double() - t * m)).to(x)

    flow.velocity = velocity
    x0 = torch.randn(3, LATENT_CH, 5, generator=torch.Generator().manual_seed(0)) * 0.3
    err = {n: float((flow.sample(x0, None, steps=n) - (m + s * x0)).abs().max()) for n in (5, 10, 20)}
    assert err[5] < 0.1 and err[10] < err[5] / 3 and err[20] < err[10] / 3, err
    grid = time_grid(0.6, 10)
    assert len(grid) == 5 and grid[0] == pytest.approx(0.6) and grid[-1] == 1.0 and (grid.diff() > 0).all()
    assert len(time_grid(1.0, 10)) == 1
    torch.testing.assert_close(flow.sample(x0, None, start=1.0, guess=x0), x0.clamp(-1, 1))  # nothing left to do


def test_a_track_keeps_each_windows_prefix_and_is_the_same_however_it_is_read(one_thread):
    G = build_generator(flow_cfg()).eval()
    _nonzero_head(G)
    cond = torch.tensor([[0.5, 0.0]])
    w = G.clip_frames
    one = LatentTrack(G.latent, torch.randn(1, 8, generator=torch.Generator().manual_seed(2)), cond, w)
    whole = one.frames(0, 5 * w).clone()
    assert whole.shape == (1, LATENT_CH, 5 * w) and whole.abs().max() <= 1
    bits = LatentTrack(G.latent, torch.randn(1, 8, generator=torch.Generator().manual_seed(2)), cond, w)
    parts = torch.cat([bits.frames(a, min(a + 7, 5 * w)) for a in range(0, 5 * w, 7)], -1)
    torch.testing.assert_close(parts, whole, atol=0, rtol=0)
    # window 1 starts at hop and keeps window 0's frames from there on: only frames past window 0 are new
    first = G.latent.sample(noise_of(one.z, w, salt=0), cond)
    torch.testing.assert_close(whole[..., :w], first, atol=1e-6, rtol=0)


@pytest.mark.parametrize("phase,repeat,source", [("free", 0.0, False), ("pghi", 0.7, False), ("pghi", 0.7, True)])
def test_flow_pieces_streamed_equal_one_pass(one_thread, phase, repeat, source):
    G = build_generator(flow_cfg(f"model.decoder_phase={phase}", f"model.flow_clip_share={float(source)}")).eval()
    _nonzero_head(G)
    G.latent.clip_share.fill_(0.4 if source else 0.0)
    n = int(9.5 * SR)
    assert_streams_as_one_pass(G, PiecePlan.for_generator(G, n, seed=3, repeat=repeat), phase)
    assert_streams_as_one_pass(G, PiecePlan.for_generator(G, n, seed=3, repeat=repeat, interpolate_to=4), phase)


def test_a_flow_morphs_by_its_noise(one_thread):
    """--interpolate-to with a flow: clips along the slerp of the two seeds' noise, from seed's clip to the
    other's, each step a small change; a piece's windows move from one seed's noise to the other's."""
    from djenerator.generate import Request, generate_clips, request_clips
    from djenerator.models.latent_flow import noise_between

    G = build_generator(flow_cfg()).eval()
    _nonzero_head(G)
    cfg = flow_cfg()
    path = request_clips(G, cfg, Request(n=9, seed=1, interpolate_to=2))
    ends = [generate_clips(G, cfg, 1, seed=s)[0] for s in (1, 2)]
    np.testing.assert_allclose(path[0], ends[0], atol=1e-4)
    np.testing.assert_allclose(path[-1], ends[1], atol=1e-4)
    assert np.abs(path[4] - ends[0]).mean() > 1e-3 and np.abs(path[4] - ends[1]).mean() > 1e-3
    z0, z1 = torch.randn(2, 1, 8, generator=torch.Generator().manual_seed(0))
    n = noise_between(z0, z1, torch.tensor([0.5]), 100)
    assert 0.9 < float(n.std()) < 1.1  # independent noises: the slerp keeps their spread
    with torch.no_grad():  # the latents move a little at each step of the way
        lat = G.latent.sample(noise_between(z0.expand(9, -1), z1.expand(9, -1), torch.linspace(0, 1, 9), 50), None)
    steps = (lat[1:] - lat[:-1]).abs().mean((1, 2))
    assert float(steps.max()) < 0.4 * float((lat[-1] - lat[0]).abs().mean())
    w = G.clip_frames
    track = LatentTrack(G.latent, z0, None, w, morph=(z1, 5 * w))
    torch.testing.assert_close(track._noise(0, 0), noise_of(z0, w, 0))
    torch.testing.assert_close(track._noise(8, 4 * w), noise_of(z1, w, 8), atol=1e-5, rtol=0)
    G = build_generator(flow_cfg(clip=65536)).eval()  # a piece: its first window as seed 1 alone makes it, then
    _nonzero_head(G)  # other sound (the piece starts one context frame into the track)
    cond = torch.tensor([[0.5, 0.0]])
    plain, morph = (render_piece_one_pass(G, PiecePlan.for_generator(G, 12 * SR, seed=1, interpolate_to=to), cond)
                    for to in (None, 2))
    first = G.clip_samples // 3  # within window 0, clear of the decoder's reach into window 1
    np.testing.assert_allclose(morph[:first], plain[:first], atol=1e-5)
    assert np.abs(morph[-first:] - plain[-first:]).mean() > 1e-3


def test_a_clip_source_puts_the_datas_between_clip_share_in_the_noises_time_mean(one_thread):
    """``model.flow_clip_share``: set_scale measures each channel's share of variance between clips (the variance of
    the standardised clip means, computed here with numpy); the source keeps unit variance and puts that share in
    each row's time mean, as a function of the noise alone; without it (and for files from before it) the source
    is the white noise itself."""
    rng = np.random.default_rng(0)
    lat = np.tanh(rng.normal(0, 0.3, (64, LATENT_CH, 1)) * np.linspace(0.2, 2.0, LATENT_CH)[None, :, None]
                  + rng.normal(0, 0.4, (64, LATENT_CH, 50)))
    f = LatentFlow(4, 43.0, (80, 160), False, clip_share=1.0)
    f.set_scale(torch.from_numpy(lat).float())
    z = (lat - lat.mean((0, 2))[None, :, None]) / lat.std((0, 2), ddof=1)[None, :, None]
    share = np.clip(z.mean(2).var(0, ddof=1), 0, 0.9)
    np.testing.assert_allclose(f.clip_share.numpy(), share, atol=1e-4)
    assert share.min() < 0.2 and share.max() > 0.6  # channels of few and of much clip-level variety
    noise = torch.randn(4000, LATENT_CH, 64, generator=torch.Generator().manual_seed(1))
    x = f.source(noise)
    torch.testing.assert_close(x, f.source(noise.clone()), atol=0, rtol=0)
    np.testing.assert_allclose(x.var((0, 2)).numpy(), 1.0, atol=0.05)
    np.testing.assert_allclose(x.mean(2).var(0).numpy(), share, atol=0.06)
    white = LatentFlow(4, 43.0, (80, 160), False)
    white.set_scale(torch.from_numpy(lat).float())
    assert white.source(noise) is noise and float(white.clip_share.abs().sum()) == 0.0
    old = {k: v for k, v in f.state_dict().items() if k != "clip_share"}
    f.load_state_dict(old)
    assert float(f.clip_share.abs().sum()) == 0.0
    assert flow_cfg().model.flow_clip_share > 0  # bars has it (round 24)
    half = LatentFlow(4, 43.0, (80, 160), False, clip_share=0.5)
    half.set_scale(torch.from_numpy(lat).float())
    want = 0.5 * torch.from_numpy(z.mean(2).var(0, ddof=1)).float()
    torch.testing.assert_close(half.clip_share, want.clamp(0, 0.9))  # model.flow_clip_share scales the data's share
    with pytest.raises(ConfigError, match="model.flow_clip_share"):
        flow_cfg("model.flow_clip_share=1.5")


def test_flow_resumes_exactly_and_logs_its_loss(one_thread, clip_ds, tmp_path):
    def cfg_of(steps):
        return flow_cfg("train.codec_steps=2", f"train.steps={steps}", "train.ckpt_every=100", "train.sample_every=2",
                        "model.flow_clip_share=1.0")

    whole = ct.train_twostage(cfg_of(4), clip_ds, tmp_path / "a", progress=False, log=lambda m: None)
    assert whole.step == 4 and whole.stopped == "done"
    for steps, resume in ((2, False), (4, True)):
        ct.train_twostage(cfg_of(steps), clip_ds, tmp_path / "b", resume=resume, progress=False, log=lambda m: None)
    ga = torch.load(whole.checkpoint, weights_only=True)
    gb = torch.load(tmp_path / "b" / "checkpoints" / "step_0000004.pt", weights_only=True)
    _assert_same(ga["G"], gb["G"])
    _assert_same(ga["G_train"], gb["G_train"])
    assert "D" not in ga and "opt_d" not in ga
    lat = torch.load(tmp_path / "a" / "codec" / "latents.pt", weights_only=True)["latents"].float()
    torch.testing.assert_close(ga["G"]["latent.mu"], lat.mean((0, 2)))  # the flow's scale is the run's latents'
    share = ((lat - lat.mean((0, 2))[:, None]) / lat.std((0, 2))[:, None]).mean(2).var(0).clamp(0, 0.9)
    torch.testing.assert_close(ga["G"]["latent.clip_share"], share)  # and its clip source's share
    la, lb = (read_csv_columns(r / "logs" / "losses.csv") for r in (tmp_path / "a", tmp_path / "b"))
    assert la["step"] == lb["step"] == [1.0, 2.0, 3.0, 4.0] and la["loss"] == lb["loss"]
    assert read_csv_columns(tmp_path / "a" / "logs" / "latent_fd.csv")["step"] == [2.0, 4.0]


def _scripted_fd(monkeypatch, values):
    """The watch's latent FD reads ``values`` in turn (a list it pops): which weights are best is then known."""
    import djenerator.evaluate.latent as latent

    monkeypatch.setattr(latent, "latent_fd", lambda *a, **k: values.pop(0))


def test_a_run_keeps_its_best_weights_and_generate_uses_them(one_thread, clip_ds, tmp_path, monkeypatch,
                                                             bench_quality):
    from djenerator.generate import load_generator

    _scripted_fd(monkeypatch, [3.0, 1.0, 2.0, 5.0])
    said = []
    cfg = flow_cfg("train.codec_steps=2", "train.steps=4", "train.ckpt_every=1", "train.keep_checkpoints=10",
                   "train.sample_every=100", "train.best_every=1")
    ct.train_twostage(cfg, clip_ds, tmp_path / "a", progress=False, log=said.append)
    cks = {s: torch.load(tmp_path / "a" / "checkpoints" / f"step_{s:07d}.pt", weights_only=True) for s in (1, 2, 4)}
    _assert_same(cks[4]["G_best"], cks[2]["G"])  # step 2 read 1.0, the lowest
    _assert_same(cks[1]["G_best"], cks[1]["G"])
    assert cks[4]["best"] == [1.0, 2] and cks[1]["best"] == [3.0, 1]
    assert not torch.equal(cks[4]["G"]["latent.out.weight"], cks[2]["G"]["latent.out.weight"])
    G, _, step = load_generator(tmp_path / "a" / "checkpoints" / "step_0000004.pt")
    _assert_same(G.state_dict(), cks[2]["G"])
    assert step == 2 and any("weights of step 2" in m for m in said)  # the step of what it plays, not the file's
    G, _, step = load_generator(tmp_path / "a" / "checkpoints" / "step_0000004.pt", best=False)
    _assert_same(G.state_dict(), cks[4]["G"])
    assert step == 4
    out = bench_quality.model_output(tmp_path / "a", 2, 0)  # the benchmark: steps done, and the kept weights' step
    assert out["step"] == 4 and out["kept_step"] == 2 and bench_quality._steps(out) == "4 (kept 2)"
    assert read_csv_columns(tmp_path / "a" / "logs" / "latent_fd.csv")["latent_fd"] == [3.0, 1.0, 2.0, 5.0]


def test_the_best_weights_resume_exactly(one_thread, clip_ds, tmp_path, monkeypatch):
    def cfg_of(steps):
        return flow_cfg("train.codec_steps=2", f"train.steps={steps}", "train.ckpt_every=100",
                        "train.sample_every=100", "train.best_every=1")

    _scripted_fd(monkeypatch, [3.0, 2.0, 1.0, 5.0])
    ct.train_twostage(cfg_of(4), clip_ds, tmp_path / "a", progress=False, log=lambda m: None)
    _scripted_fd(monkeypatch, [3.0, 2.0, 1.0, 5.0])
    for steps, resume in ((2, False), (4, True)):
        ct.train_twostage(cfg_of(steps), clip_ds, tmp_path / "b", resume=resume, progress=False, log=lambda m: None)
    ga, gb = (torch.load(r / "checkpoints" / "step_0000004.pt", weights_only=True) for r in (tmp_path / "a", tmp_path / "b"))
    _assert_same(ga["G_best"], gb["G_best"])
    assert ga["best"] == gb["best"] == [1.0, 3]


def test_the_weights_at_a_budgets_end_are_measured_too(one_thread, clip_ds, tmp_path, monkeypatch):
    from djenerator.budget import Budget

    values = [2.0, 1.0]
    _scripted_fd(monkeypatch, values)
    budget, asked = Budget(), []

    def halt():  # the budget ends one step after the first measure (step 2): at step 3, between measures
        if len(values) < 2:
            asked.append(1)
        return "time budget" if len(asked) >= 2 else ""

    budget.halt = halt
    cfg = flow_cfg("train.codec_steps=2", "train.steps=100", "train.ckpt_every=100", "train.sample_every=100",
                   "train.best_every=2")
    res = ct.train_twostage(cfg, clip_ds, tmp_path / "a", progress=False, log=lambda m: None, budget=budget)
    ck = torch.load(res.checkpoint, weights_only=True)
    assert res.step == 3 and res.stopped == "time budget" and ck["best"] == [1.0, 3]
    _assert_same(ck["G_best"], ck["G"])
    assert read_csv_columns(tmp_path / "a" / "logs" / "latent_fd.csv")["step"] == [2.0, 3.0]


@pytest.mark.parametrize("extra,words", [
    (("train.best_every=-1",), "train.best_every must be 0"),
    (("model.stage2=diffusion",), "model.stage2 must be one of gan, flow"),
    (("model.stage2=flow", "model.bar_repeat=0", "model.flow_steps=0"), "model.flow_steps"),
    (("model.stage2=flow", "model.bar_repeat=0", "train.r1=1"), "train.r1"),
    (("model.stage2=flow", "model.bar_repeat=0", "train.critic_seconds=2"), "train.critic_seconds")])
def test_flow_config_errors_name_the_key(extra, words):
    with pytest.raises(ConfigError, match=words):
        tiny_cfg(*extra)


def test_flow_on_another_arch_is_refused():
    from djenerator.config import build_config

    with pytest.raises(ConfigError, match="model.arch=twostage only"):
        build_config("laptop", [], ["model.stage2=flow"])
    with pytest.raises(ConfigError, match="train.best_every.*twostage"):
        build_config("laptop", [], ["train.best_every=100"])


def test_flow_end_to_end_prepare_train_generate_evaluate_serve(one_thread, tmp_path):
    import soundfile as sf
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from djenerator.cli import app
    from djenerator.evaluate.report import evaluate
    from djenerator.server.app import create_app

    runs = tmp_path / "runs"
    trained_run(tmp_path, runs / "flow", preset="bars")
    out = tmp_path / "out.wav"
    r = CliRunner().invoke(app, ["generate", str(runs / "flow"), "--seconds", "4", "-o", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    x, got_sr = sf.read(out)
    assert got_sr == SR and len(x) == 4 * SR and np.isfinite(x).all()
    r = CliRunner().invoke(app, ["generate", str(runs / "flow"), "--seconds", "4", "-o", str(tmp_path / "r.wav"),
                                 "--quiet", "--repeat", "1"])
    assert r.exit_code == 0, r.output
    assert np.abs(sf.read(tmp_path / "r.wav")[0] - x).max() > 1e-3  # later bars start from the bar before
    r = CliRunner().invoke(app, ["generate", str(runs / "flow"), "-n", "3", "--interpolate-to", "2", "-o",
                                 str(tmp_path / "morph"), "--quiet"])
    assert r.exit_code == 0 and len(list((tmp_path / "morph").glob("*.wav"))) == 3, r.output
    rep = evaluate(runs / "flow", n=4, plots=False)
    assert rep["sample_rate"] == SR and np.isfinite(rep["autoencoder"]["stft_distance"])
    with TestClient(create_app(runs_dir=runs, cache_dir=tmp_path / "cache")) as client:
        r = client.post("/api/generate", json={"run": "flow", "seed": 1, "seconds": 3.0, "count": 1})
        assert r.status_code == 200, r.text
        assert abs(r.json()["clips"][0]["seconds"] - 3.0) < 1e-6
        r = client.post("/api/generate", json={"run": "flow", "seed": 1, "interpolate_to": 2, "count": 3})
        assert r.status_code == 200 and len(r.json()["clips"]) == 3, r.text


def test_bar_before_plays_the_sequence_again_one_bar_later():
    """Each new frame reads the sequence one bar back, any bar length, by linear interpolation, new frames
    included: against a frame-by-frame loop."""
    from djenerator.models.latent_flow import bar_before

    lat = torch.arange(10.0)[None].repeat(2, 1)
    torch.testing.assert_close(bar_before(lat, 12, 4.0)[0], torch.tensor([6.0, 7, 8, 9] * 3))
    seq = [float(v) ** 2 for v in range(10)]
    for a in range(10, 17):
        lo, w = int(np.floor(a - 2.5)), (a - 2.5) % 1
        seq.append(seq[lo] * (1 - w) + (seq[lo + 1] * w if w else 0.0))
    torch.testing.assert_close(bar_before(lat.double() ** 2, 7, 2.5)[1], torch.tensor(seq[10:], dtype=torch.float64))
    with pytest.raises(ValueError, match="at least one frame"):
        bar_before(lat, 3, 0.5)


def test_a_flow_piece_repeats_by_the_bar_within_each_run(one_thread):
    """--repeat for a flow: each window's new frames start from the bar before (at flow time ``repeat``), so
    repeat = 1 plays it again exactly and 0.7 a variation of it; the window in which a new run of bars begins
    starts afresh. The piece's bar repetition grows with repeat."""
    from djenerator.evaluate.structure import bar_repetition
    from djenerator.models.latent_flow import bar_before
    from djenerator.models.twostage import run_of

    G = build_generator(flow_cfg(clip=65536)).eval()
    _nonzero_head(G)
    cond = torch.tensor([[0.5, 0.0]])  # 120 BPM: a bar is 2 s, a run 8 s
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(5))
    lat = {r: LatentTrack(G.latent, z, cond, G.clip_frames, repeat=r).frames(0, 40 * 43) for r in (0.0, 0.7, 1.0)}
    track = LatentTrack(G.latent, z, cond, G.clip_frames, repeat=1.0)
    per_bar, hop, w = track.bar_frames(0.0), track.hop, G.clip_frames
    assert per_bar == pytest.approx(2 * G.latent.rate)
    fresh, corr = 0, {0.0: [], 0.7: []}
    for a in range(w, 40 * 43 - hop, hop):  # the new frames of window 1, 2, ...
        runs = run_of(torch.tensor([(a - 1) / G.latent.rate, (a + hop - 1) / G.latent.rate]) * 2)  # beats at 120
        again = bar_before(lat[1.0][..., :a], hop, per_bar)
        if runs[0] != runs[1]:
            fresh += 1
            assert (lat[1.0][..., a:a + hop] - again).abs().mean() > 0.05
            continue
        torch.testing.assert_close(lat[1.0][..., a:a + hop], again, atol=1e-5, rtol=0)
        for r in corr:
            ref = bar_before(lat[r][..., :a], hop, per_bar)
            corr[r].append(float(torch.corrcoef(torch.stack([lat[r][..., a:a + hop].flatten(), ref.flatten()]))[0, 1]))
    assert fresh == 4  # runs begin at 8, 16, 24 and 32 s
    assert np.mean(corr[0.7]) > np.mean(corr[0.0]) + 0.3, corr
    score = {}
    for repeat in (0.0, 1.0):
        piece = render_piece_one_pass(G, PiecePlan.for_generator(G, 24 * SR, seed=2, repeat=repeat), cond)
        score[repeat] = bar_repetition(piece, SR, bpm=120.0, first_beat=0.0)["score"]
    assert score[1.0] > score[0.0] + 0.2, score