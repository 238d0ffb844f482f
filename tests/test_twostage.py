"""The two-stage model: autoencoder round trip, latent-GAN shapes, streaming, exact resume in either stage."""
import json
import math

import numpy as np
import pytest
import torch

from djenerator import codec_train as ct
from djenerator.budget import Budget
from djenerator.config import ConfigError, build_config
from djenerator.data.dataset import ClipDataset
from djenerator.ema import Ema
from djenerator.io import read_csv_columns
from djenerator.generate import generate_long
from djenerator.models import build_discriminator, build_generator
from djenerator.models.codec import (LATENT_CH, Codec, consistency_distance, lobe_coherence, mel_distance,
                                     phase_distance, reconstruction_loss, stft_distance)
from djenerator.models.twostage import DECODED_FRAMES, DecodedCritic
from djenerator.stream import PiecePlan, iter_piece, render_piece_one_pass

SR = 22050


def chugs(seconds: float, seed: int = 0, bpm: float = 120.0) -> np.ndarray:
    """Palm-muted chugs on the sixteenths: decaying low tones with a noise attack, a kick-like thump per beat."""
    rng = np.random.default_rng(seed)
    n, step = int(seconds * SR), int(SR * 60 / bpm / 4)
    x = np.zeros(n, dtype=np.float32)
    t = np.arange(step) / SR
    env = np.exp(-t * 30.0)
    for k, s in enumerate(range(0, n - step, step)):
        f = (82.4, 82.4, 110.0, 82.4, 123.5)[k % 5]  # a 5-step cell over 4/4
        x[s:s + step] += 0.4 * env * np.sin(2 * np.pi * f * t) + 0.05 * env * rng.standard_normal(step)
        if k % 4 == 0:
            x[s:s + step] += 0.3 * env * np.sin(2 * np.pi * 55 * t)
    return x


def tiny_cfg(*extra, clip=16384, preset="bars-gan"):
    return build_config(preset, [], [f"data.clip_samples={clip}", "model.dim=4", "model.latent_dim=8", "train.batch_size=2",
                                     "train.codec_batch=2", "train.codec_seconds=0.2", "train.log_every=1",
                                     "train.n_samples=1", "train.codec_base=none", *extra])


@pytest.fixture(scope="module")
def clip_ds(tmp_path_factory):
    """A prepared-dataset folder of six 16384-sample chug clips with tempo labels (written directly)."""
    d = tmp_path_factory.mktemp("bars") / "ds"
    d.mkdir()
    clips = np.stack([chugs(16384 / SR, seed=i)[:16384] for i in range(6)])
    np.save(d / "clips.npy", clips)
    manifest = {"sample_rate": SR, "clip_samples": 16384, "hop_samples": 16384,
                "clips": [{"file": "x.wav", "start": i, "bpm": 120.0, "beat": 0.0} for i in range(6)]}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return ClipDataset(d)


def test_codec_shapes_and_bounded_latents(one_thread):
    c = Codec(SR, dim=4, enc_blocks=1, dec_blocks=1)
    assert c.hop == 256 and c.frame_samples == 512
    x = torch.from_numpy(chugs(1.0)[: 40 * 512])[None, None].repeat(2, 1, 1)
    z = c.encode(x)
    assert z.shape == (2, LATENT_CH, 40) and z.abs().max() < 1
    assert c.decode(z).shape == x.shape


def test_stft_encoder_input_keeps_partials_apart_that_mel_merges(one_thread):
    """Two tones 65 Hz apart (three STFT bins): at 1 kHz both inputs show two peaks; at 3 kHz, where one mel band
    is ~160 Hz wide, the log-mel the "mel" encoder reads shows one, the log power the "stft" encoder reads two."""
    t = torch.arange(40 * 512) / SR

    def peaks(reads: str, f: float) -> int:
        c = Codec(SR, dim=4, enc_blocks=1, dec_blocks=1, reads=reads)
        pair = (torch.sin(2 * math.pi * f * t) + torch.sin(2 * math.pi * (f + 3 * SR / 1024) * t))[None, None]
        assert c.encode(pair).shape == (1, LATENT_CH, 40)
        p = c.features(pair).exp()[0].mean(-1)  # power, averaged over frames
        assert p.shape[0] == (80 if reads == "mel" else c.bins)
        return int(((p[1:-1] > p[:-2]) & (p[1:-1] > p[2:]) & (p[1:-1] > 0.1 * p.max())).sum())

    assert peaks("mel", 1000.0) == peaks("stft", 1000.0) == 2
    assert peaks("mel", 3000.0) == 1 and peaks("stft", 3000.0) == 2


def test_the_mel_reconstruction_reads_the_envelope_not_where_the_partials_sit(one_thread):
    """Two partials at 3 kHz moved by 30 Hz (within one ~160-Hz mel band, three bins of the 2048-point STFT): the
    "mel" fit (round 22) barely sees it, the "stft+mel" fit reads it as most of a move by 1 kHz; each kind is its
    terms added up."""
    t = torch.arange(40 * 512) / SR
    c = Codec(SR, dim=4, enc_blocks=1, dec_blocks=1)

    def partials(f: float) -> torch.Tensor:
        return 0.3 * (torch.sin(2 * math.pi * f * t) + torch.sin(2 * math.pi * (f + 130.0) * t))[None, None]

    x, near, far = partials(3000.0), partials(3030.0), partials(4000.0)
    mel = {k: float(reconstruction_loss(c, y, x, "mel")) for k, y in (("near", near), ("far", far))}
    both = {k: float(reconstruction_loss(c, y, x, "stft+mel")) for k, y in (("near", near), ("far", far))}
    assert mel["near"] < 0.1 * mel["far"] and both["near"] > 0.4 * both["far"]
    assert mel["near"] == pytest.approx(float(mel_distance(c, near, x)))
    assert both["near"] == pytest.approx(float(stft_distance(near, x) + mel_distance(c, near, x)))


def test_stage_one_fits_what_codec_recon_names(one_thread):
    """train.codec_recon reaches stage 1's step (its loss is the named fit of the reconstruction it returns), the
    config reads models.codec.RECONSTRUCTIONS, and "mel" alone needs a base or a critic to draw the fine structure."""
    cfg = build_config("bars", [], ["train.codec_recon=mel"])
    c = Codec(SR, dim=4, enc_blocks=1, dec_blocks=1, phase="pghi")
    x = torch.from_numpy(chugs(0.5)[: 16 * 512])[None, None]
    opt = torch.optim.AdamW(c.parameters(), lr=1e-3)
    loss, fake = ct.codec_step(c, opt, None, x, cfg.train)
    assert loss.item() == pytest.approx(mel_distance(c, fake, x).item())
    loss, fake = ct.codec_step(c, opt, None, x, build_config("bars").train)  # the default: stft+mel
    assert loss.item() == pytest.approx((stft_distance(fake, x) + mel_distance(c, fake, x)).item())
    for bad in ("train.codec_recon=wave", "train.codec_recon=mel,train.codec_base=none"):
        with pytest.raises(ConfigError, match="codec_recon"):
            build_config("bars", [], bad.split(","))
    assert build_config("bars", [], ["train.codec_recon=mel", "train.codec_base=none",
                                     "train.codec_adversarial=0.1"]).train.codec_recon == "mel"


@pytest.mark.parametrize("phase", ["free", "pghi"])
def test_codec_round_trips_a_known_signal(one_thread, phase):
    """A short fit on a chug pattern brings the multi-resolution STFT and log-mel errors well below the start
    (with pghi, the losses reach the decoder through its magnitude alone)."""
    c = Codec(SR, dim=8, enc_blocks=1, dec_blocks=2, phase=phase)
    x = torch.from_numpy(chugs(0.75)[: 32 * 512])[None, None]
    opt = torch.optim.AdamW(c.parameters(), lr=3e-3, betas=(0.8, 0.99))
    with torch.no_grad():
        s0, m0 = float(stft_distance(c(x), x)), float(mel_distance(c, c(x), x))
    for _ in range(120):
        loss = reconstruction_loss(c, c(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    c.eval()
    with torch.no_grad():
        y = c(x)
        s1, m1 = float(stft_distance(y, x)), float(mel_distance(c, y, x))
    assert s1 < 0.6 * s0 and m1 < 0.5 * m0
    assert m1 < 1.5  # mean |log-mel difference| in nepers: a recognisable reconstruction, not silence
    assert 0.3 < float(y.std() / x.std()) < 3


def test_consistency_distance_reads_zero_for_a_signals_stft_and_can_be_descended(one_thread):
    """The STFT of a signal, through the ISTFT and back, reads ~0; the same magnitude under phases drawn at random per
    bin (which no signal has) reads far from it; and following the gradient of a free log-magnitude under that
    random phase brings the distance down, so it can train a decoder."""
    c = Codec(SR, dim=8, enc_blocks=1, dec_blocks=1)
    x = torch.from_numpy(chugs(0.75)[: 16 * c.frame_samples])[None, None]
    spec, frames = c.stft(x), x.shape[-1] // c.frame_samples
    assert float(consistency_distance(c, spec, c.istft(spec, frames))) < 0.02
    phase = 2 * torch.pi * torch.rand(spec.shape, generator=torch.Generator().manual_seed(0))
    logmag = torch.log(spec.abs() + 1e-5).requires_grad_(True)
    drawn = lambda: torch.polar(torch.exp(logmag), phase)  # noqa: E731
    with torch.no_grad():
        d0 = float(consistency_distance(c, drawn(), c.istft(drawn(), frames)))
    opt = torch.optim.Adam([logmag], lr=0.05)
    for _ in range(60):
        loss = consistency_distance(c, drawn(), c.istft(drawn(), frames))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert d0 > 0.5 and float(loss.detach()) < 0.7 * d0


def test_phase_distance_sees_phase_steps_not_absolute_phase(one_thread):
    t = torch.arange(SR) / SR
    tone = lambda f, ph=0.0: torch.sin(2 * torch.pi * f * t + ph)[None, None]
    a, noise = tone(220.0) + 0.5 * tone(330.0), torch.randn(1, 1, SR, generator=torch.Generator().manual_seed(0))
    assert float(phase_distance(a, a)) < 1e-3
    other_start = float(phase_distance(tone(220.0, 1.3) + 0.5 * tone(330.0, -2.0), a))
    half_bin_off = float(phase_distance(tone(231.0) + 0.5 * tone(341.0), a))  # 11 Hz: 0.8 rad more per hop
    assert other_start < 0.05 and half_bin_off > 3 * other_start  # the start phase is free, the frequency is not
    assert 0.4 < float(phase_distance(noise, a)) < 1.2  # unrelated phases
    x = a.clone().requires_grad_(True)
    phase_distance(x + 0.1 * noise, a).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_lobe_coherence_reads_a_partials_bins_half_a_turn_apart(one_thread):
    """A sine at a bin's centre under a Hann window: its two neighbours are exactly pi from it (DFT of the
    window: +-1/2 at bins +-1), so 1; the same magnitudes with each bin's phase drawn at random read ~0."""
    n_fft, hop = 1024, 256
    t = torch.arange(SR) / SR
    x = torch.sin(2 * torch.pi * (40 * SR / n_fft) * t) + 0.5 * torch.sin(2 * torch.pi * (97.3 * SR / n_fft) * t)
    spec = torch.stft(x[None], n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True)
    assert float(lobe_coherence(spec)) > 0.9
    lobe = spec[:, 38:43]  # bins 38-42: the on-centre sine's lobe (peak 40) and nothing else
    assert abs(float(lobe_coherence(lobe)) - 1.0) < 1e-3
    drawn = torch.polar(spec.abs(), 2 * torch.pi * torch.rand(spec.shape, generator=torch.Generator().manual_seed(0)))
    assert abs(float(lobe_coherence(drawn))) < 0.15


def _draw_a_correction(c: Codec) -> None:
    """Give a "pghi_residual" head a correction that is not zero (it starts at zero, i.e. as "pghi")."""
    if c.phase == "pghi_residual":
        with torch.no_grad():
            c.head.weight[c.bins:].normal_(0, 0.5, generator=torch.Generator().manual_seed(1))


def test_the_residual_phase_starts_as_pghi_grows_from_its_base_and_trains(one_thread):
    """"pghi_residual" with no correction draws what "pghi" draws, and a pghi codec's weights start it
    (``adopt``: the correction's rows at zero); the losses reach the correction through the audio, where the
    phase-gradient phase itself gets no gradient; a correction changes the phase, not the magnitude."""
    torch.manual_seed(0)
    base = Codec(SR, dim=4, enc_blocks=1, dec_blocks=2, phase="pghi").eval()
    grown = Codec(SR, dim=4, enc_blocks=1, dec_blocks=2, phase="pghi_residual").eval()
    state = grown.adopt(base.state_dict(), "pghi")
    assert state["head.weight"].shape == (2 * grown.bins, 16) and not state["head.weight"][grown.bins:].any()
    other = base.state_dict()
    assert grown.adopt(other, "free") is other and Codec(SR, 4).adopt(other, "pghi") is other  # nothing to grow
    grown.load_state_dict(state)
    z = torch.rand(2, LATENT_CH, 12) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(grown.spectrum(z), base.spectrum(z), atol=1e-6, rtol=0)
    x = torch.from_numpy(chugs(0.75)[: 16 * 512])[None, None]
    grown.train()
    reconstruction_loss(grown, grown(x), x).backward()
    assert grown.head.weight.grad[grown.bins:].abs().sum() > 0
    _draw_a_correction(grown)
    grown.eval()
    with torch.no_grad():
        spec, runs = grown.spectrum(z, carry=True)
        torch.testing.assert_close(spec.abs(), base.spectrum(z).abs(), atol=1e-5, rtol=1e-5)
        assert (torch.remainder(spec.angle() - runs, 2 * np.pi) - np.pi).abs().mean() < np.pi - 0.1


def test_peak_bands_carry_a_tone_to_its_bin_and_a_base_starts_them(one_thread):
    """``model.codec_peaks``: the latents gain a place and a level per band, measured from the audio; a base without
    them starts the codec (their input weights at zero), which then decodes as the base when every band is silent;
    a tone's latents put a lobe at its bin, in the drawn magnitude and in the audio."""
    torch.manual_seed(0)
    base = Codec(SR, dim=4, enc_blocks=1, dec_blocks=2, phase="pghi").eval()
    grown = Codec(SR, dim=4, enc_blocks=1, dec_blocks=2, phase="pghi", peaks=6).eval()
    grown.load_state_dict(grown.adopt(base.state_dict(), "pghi"))
    z = torch.rand(2, LATENT_CH, 12) * 2 - 1
    silent = torch.cat([z, torch.zeros(2, 6, 12), -torch.ones(2, 6, 12)], 1)
    with torch.no_grad():
        torch.testing.assert_close(grown.log_magnitude(silent), base.log_magnitude(z), atol=1e-3, rtol=0)
        t = torch.arange(40 * grown.frame_samples) / SR
        x = (0.3 * torch.sin(2 * math.pi * 1500.0 * t))[None, None]
        lat = grown.encode(x)
        assert lat.shape == (1, LATENT_CH + 12, 40) and lat.abs().max() <= 1
        k = 1500.0 * grown.n_fft / SR
        drawn = grown.log_magnitude(lat)[0, 40]
        assert abs(int(drawn[int(k) - 8:int(k) + 9].argmax()) + int(k) - 8 - k) <= 1
        assert drawn[round(k)] > base.log_magnitude(lat[:, :LATENT_CH])[0, 40, round(k)] + 2
        heard = torch.log(grown.stft(grown.decode(lat)).abs() + 1e-7)[0, :, 40]
        assert heard[round(k)] > heard[round(k) - 8:round(k) + 9].median() + 1


def test_an_envelope_head_keeps_a_bases_envelope_and_draws_no_fine_structure_of_its_own(one_thread):
    """``model.codec_envelope``: the head draws mel-spaced points, interpolated to every bin. A base's per-bin head
    is projected onto them: a base whose head already draws such an envelope decodes the same; a random one keeps
    a fraction of its fine structure (``metrics.fine_structure_pattern``'s size)."""
    from djenerator.evaluate.metrics import fine_structure_pattern

    torch.manual_seed(0)
    base = Codec(SR, dim=4, enc_blocks=1, dec_blocks=2, phase="pghi").eval()
    env = Codec(SR, dim=4, enc_blocks=1, dec_blocks=2, phase="pghi", envelope=32).eval()
    z = torch.rand(4, LATENT_CH, 12) * 2 - 1
    size = lambda c: fine_structure_pattern(c.log_magnitude(z).transpose(1, 2).numpy(), 23, 232)[1]
    with torch.no_grad():
        env.load_state_dict(env.adopt(base.state_dict(), "pghi"))
        assert size(env) < 0.2 * size(base)
        base.head.weight.copy_(env.env_basis @ torch.randn(32, base.head.weight.shape[1]) * 0.1)
        base.head.bias.copy_(env.env_basis @ torch.randn(32))
        env.load_state_dict(env.adopt(base.state_dict(), "pghi"))
        torch.testing.assert_close(env.log_magnitude(z), base.log_magnitude(z), atol=1e-4, rtol=0)


def test_peak_bands_and_an_envelope_are_checked_and_flow_through_both_stages(one_thread, clip_ds, tmp_path):
    """Bad sizes are config errors naming the key; a flow (``bars``) over latents with peak bands trains in both
    stages, generates, and streams as one pass; so does the latent GAN's stage 2."""
    from djenerator.generate import load_generator

    for bad in ("model.codec_peaks=-1", "model.codec_peaks=99", "model.codec_envelope=3"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            tiny_cfg(bad, preset="bars")
    for preset in ("bars", "bars-gan"):
        cfg = tiny_cfg("model.codec_peaks=3", "model.codec_envelope=24", "train.codec_steps=2", "train.steps=2",
                       "train.ckpt_every=100", "train.sample_every=100", preset=preset)
        run = ct.train_twostage(cfg, clip_ds, tmp_path / preset, progress=False, log=lambda m: None)
        G, cfg, _ = load_generator(run.checkpoint)
        assert G.codec.latent_ch == LATENT_CH + 6 and generate_long(G, cfg, 2.0, seed=1).shape == (2 * SR,)
        # a smooth envelope has few magnitude peaks, so each bin's phase sums more steps' rounding on its way from
        # one: within 1e-3 (-60 dB), no decision turned (dsp.pghi.TIE)
        assert_streams_as_one_pass(G, PiecePlan.for_generator(G, int(4.5 * SR), seed=3, repeat=0.7), "pghi", 1e-3)


@pytest.mark.parametrize("phase,contrast", [("free", 1.0), ("integrated", 1.0), ("pghi", 1.0), ("pghi_residual", 1.0),
                                            ("pghi", 2.5)])
def test_codec_decodes_in_chunks_like_one_pass(one_thread, phase, contrast):
    """A chunk with decode_context frames each side equals the one pass; a running-sum phase needs the phase
    of the frame before the chunk's hand-over frame, and without it the chunk differs. So with a contrast."""
    c = Codec(SR, dim=4, enc_blocks=1, dec_blocks=3, phase=phase).eval()
    c.contrast.fill_(contrast)
    _draw_a_correction(c)
    z = torch.rand(1, LATENT_CH, 60) * 2 - 1
    k, fs = c.decode_context, c.frame_samples
    with torch.no_grad():
        full, runs = c.spectrum(z, carry=True)
        one = c.istft(full, 60)
        hand = runs[..., 2 * 20 - 5]  # the hand-over frame is 4 STFT frames before the kept audio
        spec = c.spectrum(z[:, :, 20 - k:40 + k], hand, start=2 * k - 4)
        part = c.istft(spec, 20 + 2 * k)[:, :, k * fs:(k + 20) * fs]
        alone = c.decode(z[:, :, 20 - k:40 + k])[:, :, k * fs:(k + 20) * fs]
    # pghi: each frame's phase goes through a remainder, so the decoders' float rounding (~1e-7) shows a little more
    torch.testing.assert_close(part, one[:, :, 20 * fs:40 * fs], atol=1e-4 if "pghi" in phase else 1e-5, rtol=0)
    assert c.carries_phase == (phase != "free")
    assert torch.allclose(alone, part, atol=1e-5) == (phase == "free")


def test_the_contrast_is_drawn_out_of_training_and_carried_by_the_state_dict(one_thread):
    """Decoding draws the head's log-magnitude sharpened by the codec's contrast (dsp.contrast); training draws it
    without, so stage 1 never learns to undo it. The state dict carries it, and a file from before it existed
    loads as contrast 1 (it decodes as it always did)."""
    from djenerator.dsp.contrast import sharpen

    torch.manual_seed(0)
    c, z = Codec(SR, dim=4, enc_blocks=1, dec_blocks=2, phase="pghi"), torch.rand(2, LATENT_CH, 12) * 2 - 1
    with torch.no_grad():
        plain = c.eval().log_magnitude(z)
        c.contrast.fill_(2.0)
        torch.testing.assert_close(c.log_magnitude(z), sharpen(plain, 2.0))
        sharp = c.decode(z)
        c.contrast.fill_(1.0)
        assert not torch.allclose(sharp, c.decode(z), atol=1e-3)
        c.contrast.fill_(2.0)
        torch.testing.assert_close(c.train().log_magnitude(z), plain)
    d = Codec(SR, dim=4, enc_blocks=1, dec_blocks=2, phase="pghi")
    d.load_state_dict(c.state_dict())
    assert float(d.contrast) == 2.0
    old = {k: v for k, v in c.state_dict().items() if k != "contrast"}
    d.load_state_dict(old)
    assert float(d.contrast) == 1.0


def _held_notes(path) -> ClipDataset:
    """Six 16384-sample clips of a held harmonic note each (11 partials falling as 1/h), over a faint hiss."""
    rng, t = np.random.default_rng(0), np.arange(16384) / SR
    clips = []
    for _ in range(6):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        x = sum(0.3 / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) for h in range(1, 12)) * np.exp(-2 * t)
        clips.append(x + 1e-3 * rng.standard_normal(t.size))
    path.mkdir()
    np.save(path / "clips.npy", np.stack(clips).astype(np.float32))
    (path / "manifest.json").write_text(json.dumps({"sample_rate": SR, "clip_samples": 16384, "hop_samples": 16384,
                                                    "clips": [{"file": "x.wav", "start": i} for i in range(6)]}))
    return ClipDataset(path)


def test_stage_one_fits_the_contrast_that_makes_reconstructions_as_flat_as_the_clips(one_thread, tmp_path):
    """``train.codec_contrast=fit`` on the shipped base and held notes, which it draws flatter than they are: at
    the fitted amount the reconstructions of the fit's crops are as flat as the crops (metrics.spectral_flatness,
    within 5 %) and as loud as without it (within 5 %); a number is taken as it is, "none" is 1."""
    from djenerator.evaluate.metrics import spectral_flatness

    ds = _held_notes(tmp_path / "notes")
    cfg = build_config("bars", [], ["data.clip_samples=16384", "train.codec_contrast=fit"])
    codec, logs = Codec.of(cfg), []
    assert ct.start_from_base(codec, "auto", logs.append) is not None
    ct.set_contrast(codec, ds, cfg, logs.append)
    amount = float(codec.contrast)
    assert 1.0 < amount < 4.0 and "fitted" in logs[-1]
    real = ct.crops(ds, cfg.train.seed, 10**12 + 1, ct.FIT_CLIPS, 16384)
    flat_real = np.mean(spectral_flatness(real[:, 0], SR))
    with torch.no_grad():
        at_fit = codec.eval()(real)
        codec.contrast.fill_(1.0)
        before = codec(real)
    assert np.mean(spectral_flatness(at_fit[:, 0], SR)) / flat_real == pytest.approx(1.0, abs=0.05)
    assert np.mean(spectral_flatness(before[:, 0], SR)) / flat_real > 2.0
    assert float(at_fit.square().mean().sqrt()) == pytest.approx(float(before.square().mean().sqrt()), rel=0.05)
    for text, want in (("1.7", 1.7), ("none", 1.0)):
        ct.set_contrast(codec, ds, tiny_cfg(f"train.codec_contrast={text}", preset="bars"), logs.append)
        assert float(codec.contrast) == pytest.approx(want)
    with pytest.raises(ConfigError, match="train.codec_contrast"):
        tiny_cfg("train.codec_contrast=0.5", preset="bars")
    assert build_config("bars").train.codec_contrast == "none"  # round 24: not adopted (docs/two-stage.md)


def test_integrated_phase_turns_each_bin_by_its_own_rotation_when_the_head_says_nothing(one_thread):
    """With the head's phase output at 0, every bin's phase turns by 2 pi k hop / n_fft per frame, a steady
    partial at the bin's centre: so a held note is one line, whatever the decoder's magnitude does."""
    c = Codec(SR, dim=4, enc_blocks=1, dec_blocks=1, phase="integrated").eval()
    with torch.no_grad():
        c.head.weight[c.bins:].zero_()
        c.head.bias[c.bins:].zero_()
        spec = c.spectrum(torch.rand(1, LATENT_CH, 8) * 2 - 1)
    turn = spec[..., 1:] / spec[..., 1:].abs() * (spec[..., :-1] / spec[..., :-1].abs()).conj()
    k = torch.arange(c.bins, dtype=torch.float64)
    want = torch.polar(torch.ones(c.bins, dtype=torch.float64), 2 * np.pi * k * c.hop / c.n_fft).to(turn.dtype)
    torch.testing.assert_close(turn, want[None, :, None].expand_as(turn), atol=1e-4, rtol=0)


@pytest.mark.parametrize("clip", [16384, 30000, 131072])
def test_latent_gan_shapes(one_thread, clip):
    cfg = tiny_cfg(clip=clip)
    G, D = build_generator(cfg), build_discriminator(cfg)
    cond = torch.tensor([[0.5, 0.0], [0.2, float("nan")]])
    x = G(torch.randn(2, 8), cond)
    assert x.shape == (2, 1, clip) and x.abs().max() <= 1
    for frames in (16, 100, 256):
        lat = G.latents_for(torch.randn(2, 8), cond, frames)
        assert lat.shape == (2, LATENT_CH, frames) and lat.abs().max() < 1
        (logits, feats), = D(lat, cond)
        assert logits.shape[:2] == (2, 1) and len(feats) > 2
    lat.mean().backward()
    assert G.latent.inp.weight.grad is not None
    assert G.frame_samples == 32 * 512 and G.context_frames >= 1


def test_training_window_equals_the_full_rendering(one_thread):
    """latents_for computes each layer only where the window needs it; the frames must be the full pass's."""
    G = build_generator(tiny_cfg()).eval()
    cond = torch.tensor([[0.5, 0.0], [0.3, 0.4]])
    z, reach = torch.randn(2, 8), G.latent.reach
    zs = G._sequence(z, 30)
    full = G.latent(zs, z, cond, -0.3)
    for start, frames in ((reach, 100), (reach + 37, 256), (30 * 32 - reach - 64, 64)):
        part = G.latent(zs, z, cond, -0.3, window=(start, frames))
        torch.testing.assert_close(part, full[:, :, start:start + frames], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="context"):
        G.latent(zs, z, cond, -0.3, window=(reach - 1, 64))


@pytest.mark.parametrize("phase", ["free", "integrated", "pghi", "pghi_residual"])
@pytest.mark.parametrize("repeat", [0.0, 0.7])
def test_streamed_equals_one_pass(one_thread, phase, repeat):
    cfg = tiny_cfg(f"model.decoder_phase={phase}")
    G = build_generator(cfg).eval()
    _draw_a_correction(G.codec)
    assert_streams_as_one_pass(G, PiecePlan.for_generator(G, int(9.5 * SR), seed=3, repeat=repeat), phase)
    assert generate_long(G, cfg, 3.0, seed=1).shape == (3 * SR,)


def assert_streams_as_one_pass(G, plan: PiecePlan, phase: str, atol: float | None = None) -> None:
    """A piece streamed in chunks of 1 and 4 frames equals the piece in one pass, and is not silence."""
    cond = torch.tensor([[0.5, 0.0]])
    one = render_piece_one_pass(G, plan, cond)
    for chunk in (1, 4):
        streamed = np.concatenate(list(iter_piece(G, plan, cond, chunk_frames=chunk)))
        assert streamed.shape == one.shape == (plan.n_samples,)
        # a running-sum phase adds up each chunk's float rounding (~1e-6 rad a frame) over the frames before it
        np.testing.assert_allclose(streamed, one, atol=atol or (1e-5 if phase == "free" else 2e-4))
    assert one.std() > 1e-2


def _bar_of_four_slow_frames(G) -> torch.Tensor:
    """The condition of a tempo (~81 BPM) at which one 4/4 bar lasts exactly four slow latent frames, from beat 0."""
    from djenerator.models import tempo_cond

    bar = 4 * G.frame_samples / SR
    return tempo_cond(torch.tensor([4 * 60.0 / bar]), tiny_cfg(), torch.zeros(1))


def test_bar_locked_slow_latents_come_round_each_bar_of_a_run():
    from djenerator.models.twostage import RUN_BARS

    G = build_generator(tiny_cfg()).eval()
    cond = _bar_of_four_slow_frames(G)
    z = torch.randn(1, G.frame_dim, 8 * RUN_BARS)  # two runs of RUN_BARS bars, four slow frames a bar
    assert torch.equal(G.lock_to_bar(z, 5, cond, 0.0, 0.0), z)
    locked = G.lock_to_bar(z, 5, cond, 0.0, 1.0)
    per_run = 4 * RUN_BARS
    for run in range(2):
        frames = locked[0, :, run * per_run:(run + 1) * per_run]
        torch.testing.assert_close(frames[:, 4:], frames[:, :-4])  # bar after bar
    assert (locked[0, :, 0] - locked[0, :, per_run]).abs().mean() > 0.3  # the next run plays another pattern
    assert (locked[0, :, 0] - locked[0, :, 1]).abs().mean() > 0.3  # and the pattern moves within the bar
    # the same seed and place give the same pattern wherever the chunk starts; half the variance is the pattern
    late = G.lock_to_bar(z[..., 3:], 5, cond, 3 * G.frame_samples / SR, 1.0)
    torch.testing.assert_close(late, locked[..., 3:])
    half = G.lock_to_bar(torch.randn(1, G.frame_dim, 4000), 5, _bar_of_four_slow_frames(G), 0.0, 0.5)
    assert 0.9 < float(half.std()) < 1.1


def test_a_bar_locked_piece_repeats_by_the_bar():
    from djenerator.evaluate.structure import bar_repetition

    from djenerator.models.twostage import CLOCK_DIM, RIFF_DIM

    torch.manual_seed(0)
    G = build_generator(tiny_cfg()).eval()
    with torch.no_grad():  # deaf to the clock and the riff, which come round each bar anyway: only z can repeat
        G.latent.inp.weight[:, -(CLOCK_DIM + 2 * RIFF_DIM):] = 0
    cond = _bar_of_four_slow_frames(G)
    bpm = 4 * 60.0 / (4 * G.frame_samples / SR)
    score = {}
    for repeat in (0.0, 1.0):
        piece = render_piece_one_pass(G, PiecePlan.for_generator(G, 24 * SR, seed=2, repeat=repeat), cond)
        score[repeat] = bar_repetition(piece, SR, bpm=bpm, first_beat=0.0)["score"]
    assert score[1.0] > 0.5 > 0.2 > score[0.0], score
    # a piece follows the model's model.bar_repeat unless the request says otherwise
    cfg = tiny_cfg("model.bar_repeat=1.0")
    by_default = generate_long(G, cfg, 3.0, seed=2)
    np.testing.assert_array_equal(by_default, generate_long(G, cfg, 3.0, seed=2, repeat=1.0))
    assert np.abs(by_default - generate_long(G, cfg, 3.0, seed=2, repeat=0.0)).max() > 1e-3


def test_riff_latents_come_round_each_bar_of_a_run_and_change_between_runs():
    from djenerator.models.twostage import BEATS_PER_BAR, RIFF_DIM, RUN_BARS

    lg = build_generator(tiny_cfg()).latent.eval()
    cond = torch.tensor([[0.5, 0.25]])  # 120 BPM (the middle of 80-160), first beat a quarter in
    k = int(40 * lg.rate)
    run, step = (v[0].numpy() for v in lg.riff_position(cond, 1, k, t0=-1.0))
    beats = 0.25 + (np.arange(k) / lg.rate - 1.0) * 120 / 60
    np.testing.assert_array_equal(run, np.floor(beats / (BEATS_PER_BAR * RUN_BARS)))
    np.testing.assert_array_equal(step, np.floor((beats % BEATS_PER_BAR) * 4))
    riff = lg.riffs(torch.from_numpy(run)[None], torch.from_numpy(step)[None])[0].numpy()
    bar = int(round(2.0 * lg.rate))  # frames per bar at 120 BPM
    inner = (run[bar:] == run[:-bar]) & (step[bar:] == step[:-bar])
    assert inner.mean() > 0.5 and np.array_equal(riff[:, bar:][:, inner], riff[:, :-bar][:, inner])
    changed = run[bar:] != run[:-bar]
    assert changed.any() and (np.abs(riff[:, bar:][:, changed] - riff[:, :-bar][:, changed]).sum(0) > 0).all()
    assert len(np.unique(riff[RIFF_DIM:, run == run[k // 2]], axis=1).T) == 16  # one vector per sixteenth
    v = lg.riffs.table.reshape(-1, RIFF_DIM).numpy()
    assert abs(v.mean()) < 0.05 and abs(v.var() - 1) < 0.05
    lag1 = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(v[:-1], v[1:])])
    assert abs(lag1) < 0.03  # neighbouring entries are unrelated
    lg.train()
    shifted, _ = lg.riff_position(cond.expand(64, -1), 64, k, t0=-1.0)
    assert len(set(shifted[:, 0].tolist())) > 60  # training draws an offset per item
    assert torch.equal(shifted - shifted[:, :1], torch.from_numpy(run - run[0]).expand(64, -1))


def test_bar_lag_difference_matches_a_shift_by_one_bar():
    from djenerator.models.grid import bpm_unit
    from djenerator.models.twostage import bar_lag_difference

    rate, bar = 40.0, 100  # frames per bar: 4 beats at 96 BPM = 2.5 s
    cond = torch.tensor([[float(bpm_unit(torch.tensor(96.0), (80, 160))), 0.0]], dtype=torch.float64)
    x = torch.randn(1, 3, 400, dtype=torch.float64)
    out = bar_lag_difference(x, cond, rate, (80, 160))
    assert out.shape == (1, 4, 400)
    np.testing.assert_allclose(out[0, :3, bar:].numpy(), (x[0, :, bar:] - x[0, :, :-bar]).numpy(), atol=1e-5)
    assert out[0, :, :bar].abs().max() == 0 and out[0, 3, bar:].min() == 1
    periodic = x[:, :, :bar].repeat(1, 1, 4)
    assert bar_lag_difference(periodic, cond, rate, (80, 160))[0, :3].abs().max() < 1e-5
    unknown = torch.tensor([[0.5, float("nan")]], dtype=torch.float64)
    assert bar_lag_difference(x, unknown, rate, (80, 160)).abs().max() == 0


def test_a_shifted_condition_keeps_the_clips_clock_over_the_crop():
    from djenerator.models.grid import bpm_unit, shift_phase
    from djenerator.models.twostage import bar_clock

    rate, rng = 43.0, (80, 160)
    cond = torch.tensor([[float(bpm_unit(torch.tensor(137.0), rng)), 0.3], [0.5, float("nan")]])
    whole = bar_clock(cond, 2, 256, rate, rng)
    for off in (1, 17, 60):
        moved = shift_phase(cond, torch.full((2,), off / rate), rng)
        torch.testing.assert_close(bar_clock(moved, 2, 150, rate, rng), whole[..., off:off + 150], atol=1e-4, rtol=0)
        assert moved[0, 1] > 0.3 and torch.isnan(moved[1, 1]) and torch.equal(moved[:, 0], cond[:, 0])


def test_the_critic_sees_random_windows_of_each_real_clip(clip_ds):
    lat = torch.randn(len(clip_ds), LATENT_CH, 32)
    rate = SR / 512
    whole, cond, _ = ct.latent_batch(lat, clip_ds, tiny_cfg(), 5, rate)
    assert whole.shape == (2, LATENT_CH, 32)
    cfg = tiny_cfg("train.critic_seconds=0.5", "train.batch_size=16")
    w = ct.critic_frames(cfg, 32, rate)
    assert w == round(0.5 * rate) == 22
    real, cond, z = ct.latent_batch(lat, clip_ds, cfg, 5, rate)
    again, cond2, z2 = ct.latent_batch(lat, clip_ds, cfg, 5, rate)
    assert real.shape == (16, LATENT_CH, w) and torch.equal(real, again) and torch.equal(cond, cond2)
    offsets = set()
    for x, c in zip(real, cond):  # each window is a crop of a clip, its phase moved on by the crop's start
        hits = [(i, o) for i in range(len(lat)) for o in range(32 - w + 1) if torch.equal(lat[i, :, o:o + w], x)]
        assert len(hits) == 1
        offsets.add(hits[0][1])
        assert float(c[1]) == pytest.approx(hits[0][1] / rate * 120 / 60, abs=1e-5)  # the clips' beat is at 0
    assert len(offsets) > 3
    assert ct.critic_frames(tiny_cfg("train.critic_seconds=9"), 32, rate) == 32
    with pytest.raises(ConfigError, match="critic_seconds"):
        tiny_cfg("train.critic_seconds=-1")


def test_r1_is_lazy_and_changes_the_critic_step(one_thread):
    def critic_after(r1, step):
        torch.manual_seed(0)
        cfg = tiny_cfg(f"train.r1={r1}")
        G, D, opt_g, opt_d = ct._stage2_models(cfg, Codec(SR, 4, phase=cfg.model.decoder_phase))
        real, cond = torch.rand(2, LATENT_CH, 24) - 0.5, torch.tensor([[0.5, 0.0], [0.4, 0.2]])
        ct.gan_step(G, D, opt_g, opt_d, real, cond, torch.randn(2, 8), cfg, step)
        return D.state_dict()

    plain, with_r1 = critic_after(0.0, 0), critic_after(10.0, 0)
    assert any(not torch.equal(plain[k], with_r1[k]) for k in plain)  # the penalty moved the critic
    _assert_same(critic_after(0.0, 1), critic_after(10.0, 1))  # not on this step (every R1_EVERY-th)
    with pytest.raises(ConfigError, match="r1"):
        tiny_cfg("train.r1=-1")
    with pytest.raises(ConfigError, match="two-stage"):
        build_config("laptop", [], ["train.r1=1"])


def test_modulation_loss_moves_the_generator_step_only(one_thread):
    """train.modulation adds losses.modulation_distance to the generator's loss: the critic's update is the same,
    the generator's differs."""
    def after(weight):
        torch.manual_seed(0)
        cfg = tiny_cfg(f"train.modulation={weight}")
        G, D, opt_g, opt_d = ct._stage2_models(cfg, Codec(SR, 4, phase=cfg.model.decoder_phase))
        real, cond = torch.rand(2, LATENT_CH, 24) - 0.5, torch.tensor([[0.5, 0.0], [0.4, 0.2]])
        ct.gan_step(G, D, opt_g, opt_d, real, cond, torch.randn(2, 8), cfg, 0)
        return G.latent.state_dict(), D.state_dict()

    (g0, d0), (g1, d1) = after(0.0), after(1.0)
    _assert_same(d0, d1)
    assert any(not torch.equal(g0[k], g1[k]) for k in g0)
    with pytest.raises(ConfigError, match="modulation"):
        tiny_cfg("train.modulation=-1")


def test_the_decoded_critic_hears_a_crop_of_the_latents_through_the_lent_decoder(one_thread):
    """It judges the log-magnitude the frozen decoder draws from a crop (the middle one in eval mode): gradients
    reach those latents and their decoder context only, never the decoder's weights, which it neither owns nor
    saves; a short sequence is heard whole."""
    torch.manual_seed(0)
    cfg = tiny_cfg("model.discriminators=[latent,decoded]")
    G, D, opt_g, opt_d = ct._stage2_models(cfg, Codec(SR, 4, phase="pghi"))
    critic = D.discs["decoded"]
    assert critic.codec is G.codec
    assert not any(k.startswith("codec") or ".codec." in k for k in D.state_dict())
    assert {id(p) for p in G.codec.parameters()}.isdisjoint(id(p) for p in D.parameters())
    critic.eval()
    x = (torch.rand(2, LATENT_CH, 100) - 0.5).requires_grad_()
    logits, feats = critic(x)
    assert logits.shape[:3] == (2, 1, 2 * DECODED_FRAMES) and len(feats) == 5
    logits.sum().backward()
    c = G.codec.decode_context
    s = c + (100 - 2 * c - DECODED_FRAMES) // 2
    heard = x.grad.abs().sum((0, 1)) > 0
    assert heard[s:s + DECODED_FRAMES].all() and not heard[:s - c].any() and not heard[s + DECODED_FRAMES + c:].any()
    assert all(p.grad is None for p in G.codec.parameters())
    assert critic(torch.rand(2, LATENT_CH, 20) - 0.5)[0].shape[2] == 40
    with pytest.raises(RuntimeError, match="bind"):
        DecodedCritic(cfg)(x)
    before = _state(critic)  # and a stage-2 step trains it
    critic.train()
    ct.gan_step(G, D, opt_g, opt_d, torch.rand(2, LATENT_CH, 80) - 0.5, None, torch.randn(2, 8), cfg)
    assert any(not torch.equal(before[k], v) for k, v in critic.state_dict().items())


def test_config_pairs_arch_and_discriminator():
    with pytest.raises(ConfigError):
        build_config("bars", [], ["model.discriminators=[stft]"])
    with pytest.raises(ConfigError):
        build_config("spectral", [], ["model.discriminators=[latent]"])
    with pytest.raises(ConfigError):
        build_config("laptop", [], ["model.discriminators=[decoded]"])
    with pytest.raises(ConfigError, match="decoder_phase must be one of free, integrated, pghi, pghi_residual"):
        build_config("bars", [], ["model.decoder_phase=smooth"])
    with pytest.raises(ConfigError, match="codec_input must be one of mel, stft"):
        build_config("bars", [], ["model.codec_input=cqt"])


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)


@pytest.mark.parametrize("ema,adv,window,r1,phase,head,discs", [
    ("train.ema_power=0", 0.0, 0.0, 0.0, 0.0, "free", "latent"),
    ("train.ema_power=0 train.ema=0.5", 0.1, 0.5, 1.0, 1.0, "integrated", "latent"),
    ("train.ema_power=2 train.codec_contrast=fit", 0.1, 0.0, 0.0, 0.0, "pghi", "latent,decoded")])
def test_resume_is_exact_in_either_stage(one_thread, clip_ds, tmp_path, ema, adv, window, r1, phase, head, discs):
    """Stage 1 cut at step 2 and resumed, then stage 2 cut at step 2 and resumed == both stages in one go, the
    modulation loss (with r1), the consistency loss (with the phase loss), the moving average of the generator,
    stage 1's critic, the decoded critic's random crops and the decoder's fitted contrast included."""
    def cfg_of(codec_steps, steps):
        return tiny_cfg(f"train.codec_steps={codec_steps}", f"train.steps={steps}", "train.ckpt_every=100",
                        "train.sample_every=100", *ema.split(), f"train.codec_adversarial={adv}",
                        f"train.modulation={r1}",
                        f"train.critic_seconds={window}", f"train.r1={r1}", f"train.codec_phase={phase}",
                        f"train.codec_consistency={phase}",
                        f"model.decoder_phase={head}", f"model.discriminators=[{discs}]")

    whole = ct.train_twostage(cfg_of(4, 4), clip_ds, tmp_path / "a", progress=False, log=lambda m: None)
    assert whole.step == 4 and whole.stopped == "done"
    b = tmp_path / "b"
    for codec_steps, steps, resume in ((2, 0, False), (4, 2, True), (4, 4, True)):
        c = cfg_of(codec_steps, steps)
        ct.train_twostage(c, clip_ds, b, resume=resume, progress=False, log=lambda m: None)
    ca = torch.load(tmp_path / "a" / "codec" / "checkpoints" / "step_0000004.pt", weights_only=False)
    cb = torch.load(b / "codec" / "checkpoints" / "step_0000004.pt", weights_only=False)
    _assert_same(ca["G"], cb["G"])
    assert (float(ca["G"]["contrast"]) > 1.0) == ("contrast=fit" in ema)
    assert ("D" in ca) == (adv > 0)
    if adv > 0:
        _assert_same(ca["D"], cb["D"])
    ga = torch.load(whole.checkpoint, weights_only=False)
    gb = torch.load(b / "checkpoints" / "step_0000004.pt", weights_only=False)
    _assert_same(ga["G"], gb["G"])
    _assert_same(ga["D"], gb["D"])
    assert ("G_train" in ga) == (ema != "train.ema_power=0")
    if "G_train" in ga:  # G is the average, G_train the trained weights: both resume exactly, and they differ
        _assert_same(ga["G_train"], gb["G_train"])
        assert not torch.equal(ga["G"]["latent.out.weight"], ga["G_train"]["latent.out.weight"])
    assert (tmp_path / "a" / "samples" / "step_0000004" / "sample_00.wav").is_file()
    assert (tmp_path / "a" / "samples" / "codec_step_0000004" / "recon_00.wav").is_file()
    # the latent FD logged at each sample step (b's at its cut, step 2, too) is the same number either way
    fa, fb = (read_csv_columns(r / "logs" / "latent_fd.csv") for r in (tmp_path / "a", b))
    assert fa["step"] == [4.0] and fb["step"] == [2.0, 4.0]
    assert fa["latent_fd"][0] == fb["latent_fd"][1] > 0
    # TensorBoard has each stage's numbers, and the resumed run's step 4 once
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = {k: EventAccumulator(str(b / "logs" / "tb" / k)).Reload() for k in ("stage1", "stage2")}
    assert sorted(e.step for e in tb["stage1"].Scalars("stage1/stft")) == [1, 2, 3, 4]
    assert sorted(e.step for e in tb["stage2"].Scalars("stage2/d_loss")) == [1, 2, 3, 4]
    assert sorted(e.value for e in tb["stage2"].Scalars("stage2/latent_fd")) == pytest.approx(sorted(fb["latent_fd"]), rel=1e-5)  # the CSV keeps 6 digits


def test_stage_one_alone_is_seeded_whatever_the_global_rng_did_before(one_thread, clip_ds, tmp_path):
    """``train_codec`` called directly (as the benchmarks do) seeds the global RNG its latent noise draws from:
    two fresh runs agree to the bit, though other draws came between them (torch may start each process from a
    fresh seed)."""
    cfg = tiny_cfg("train.codec_steps=2", "train.ckpt_every=100", "train.sample_every=100")
    runs = []
    for k in range(2):
        torch.rand(7 + k)
        codec, _, _ = ct.train_codec(cfg, clip_ds, tmp_path / f"r{k}", False, ct.Budget(), False, lambda m: None)
        runs.append(codec.state_dict())
    _assert_same(*runs)


def test_refuses_to_overwrite_a_run_without_resume(one_thread, clip_ds, tmp_path):
    cfg = tiny_cfg("train.codec_steps=1", "train.steps=1")
    ct.train_twostage(cfg.copy(), clip_ds, tmp_path / "r", progress=False, log=lambda m: None)
    with pytest.raises(ConfigError):
        ct.train_twostage(cfg.copy(), clip_ds, tmp_path / "r", progress=False, log=lambda m: None)


def trained_run(tmp_path, run, preset="bars-gan", extra=()):
    """Two 3-s chug recordings -> prepare -> train (both stages, 2 steps each, through train.train) into ``run``."""
    import soundfile as sf

    from djenerator.data.prepare import prepare
    from djenerator.train import train

    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        sf.write(src / f"r{i}.wav", chugs(3.0, seed=i), SR)
    cfg = tiny_cfg("train.codec_steps=2", "train.steps=2", "train.ckpt_every=2", "train.sample_every=2",
                   "data.hop_samples=8192", "data.estimate_tempo=false", *extra, preset=preset)
    prepare(src, tmp_path / "ds", cfg.data, progress=False, log=lambda m: None)
    res = train(cfg, tmp_path / "ds", run, progress=False, log=lambda m: None)
    assert res.stopped == "done" and res.step == 2 and res.checkpoint is not None


def test_prepare_train_generate_evaluate_end_to_end(one_thread, tmp_path):
    """prepare -> train (both stages, a few steps, through train.train) -> generate --seconds -> evaluate -> serve, at 22.05 kHz."""
    import soundfile as sf
    from typer.testing import CliRunner

    from djenerator.cli import app
    from djenerator.evaluate.report import evaluate

    trained_run(tmp_path, tmp_path / "run", extra=["train.codec_contrast=1.5"])
    r = CliRunner().invoke(app, ["generate", str(tmp_path / "run"), "--seconds", "4", "-o", str(tmp_path / "out.wav"),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    x, got_sr = sf.read(tmp_path / "out.wav")
    assert got_sr == SR and len(x) == 4 * SR and np.isfinite(x).all()
    r = CliRunner().invoke(app, ["generate", str(tmp_path / "run"), "--seconds", "4", "-o", str(tmp_path / "rep.wav"),
                                 "--quiet", "--repeat", "1"])
    assert r.exit_code == 0, r.output
    rep_x = sf.read(tmp_path / "rep.wav")[0]
    assert len(rep_x) == len(x) and np.abs(rep_x - x).max() > 1e-3  # the bar-locked latents are other latents
    rep = evaluate(tmp_path / "run", n=4, plots=False)
    ae = rep["autoencoder"]
    assert rep["sample_rate"] == SR and np.isfinite(ae["stft_distance"]) and np.isfinite(ae["mel_distance"])
    assert 0.0 <= ae["tonal_share"]["reconstructed"] <= 1.0 and ae["tonal_share"]["real"] > 0.0
    assert -1.0 <= ae["partials"]["own_recording"] <= 1.0 and ae["partials"]["verdict"] != "n/a"
    row = [r for r in rep["summary"] if r[0] == "stage 1: partials where the recording's are"]
    assert row and row[0][3] == ae["partials"]["verdict"]
    assert ae["flatness"]["contrast"] == 1.5 and ae["flatness"]["real"] > 0  # the checkpoint decodes as it was set
    assert any(r[0] == "stage 1: spectral flatness (decoder contrast 1.50)" for r in rep["summary"])
    from fastapi.testclient import TestClient

    from djenerator.server.app import create_app

    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "run").rename(runs / "bars")
    with TestClient(create_app(runs_dir=runs, cache_dir=tmp_path / "cache")) as client:
        info = client.get("/api/runs/bars").json()
        assert info["long_form"] is True
        r = client.post("/api/generate", json={"run": "bars", "seed": 1, "seconds": 3.0, "count": 1})
        assert r.status_code == 200, r.text
        clip = r.json()["clips"][0]
        assert r.json()["sample_rate"] == SR and abs(clip["seconds"] - 3.0) < 1e-6
        assert client.get(clip["url"]).status_code == 200


def test_ema_averages_the_latent_generator_only():
    cfg = tiny_cfg()
    G = build_generator(cfg)
    ema = Ema(G, 0.5, part="latent")
    w0, c0 = G.latent.out.weight.detach().clone(), G.codec.head.weight.detach().clone()
    with torch.no_grad():
        G.latent.out.weight.add_(1.0)
        G.codec.head.weight.add_(1.0)  # the codec is frozen in stage 2: never averaged
    ema.update(G, step=100)  # decay min(0.5, 101 / 110) = 0.5
    torch.testing.assert_close(ema.G.latent.out.weight, w0 + 0.5)
    torch.testing.assert_close(ema.G.codec.head.weight, c0)
    state = ema.state(G)
    assert set(state) == {"G", "G_train"}
    G2 = build_generator(cfg)
    ema2 = Ema(G2, 0.5, part="latent")
    ema2.load(G2, state)
    torch.testing.assert_close(G2.latent.out.weight, w0 + 1.0)
    torch.testing.assert_close(ema2.G.latent.out.weight, w0 + 0.5)
    off = Ema(G, 0.0)
    assert off.G is None and off.output(G) is G and set(off.state(G)) == {"G"}


def test_ema_and_codec_base_config():
    cfg = build_config("bars")
    assert cfg.train.ema == 0.0 and cfg.train.ema_power == 1.0 and cfg.train.codec_base == "auto"  # round 15
    assert build_config("laptop").train.ema == 0.999 and build_config("recommended").train.ema == 0.0
    assert build_config("bars", [], ["train.codec_steps=0"]).train.codec_steps == 0  # the base as it is
    for bad in ("train.ema=1.0", "train.ema=-0.1", "train.codec_base=''", "train.codec_phase=-1",
                "train.codec_steps=-1", "train.codec_steps=0,train.codec_base=none", "model.bar_repeat=1.5",
                "train.codec_tune=decoder", "train.codec_tune=encoder,train.codec_base=none",
                "train.codec_consistency=-0.5"):
        with pytest.raises(ConfigError):
            build_config("bars", [], bad.split(","))
    assert build_config("original", [], ["train.ema=0.9"]).train.ema == 0.9  # every GAN loop averages G
    with pytest.raises(ConfigError, match="bar_repeat"):
        build_config("laptop", [], ["model.bar_repeat=0.5"])  # no bar clock to lock to
    with pytest.raises(ConfigError):
        ct.resolve_codec_base("/no/such/base.pt", SR)
    assert ct.resolve_codec_base("none", SR) is None


def _first_codec_loss(run) -> float:
    import csv

    with open(run / "logs" / "codec.csv") as f:
        return float(next(csv.DictReader(f))["loss"])


def test_codec_base_loads_weights_only_and_seeds_stage1(one_thread, clip_ds, tmp_path, monkeypatch):
    """A base exported from a short stage 1 loads with weights_only and starts a new run's stage 1 at a lower
    reconstruction loss than from scratch; an "auto" base of another shape is skipped, a named one refused."""
    from djenerator.base import export_codec_base, load_codec_base
    from djenerator.checkpoint import CheckpointError, latest_checkpoint

    free = "model.decoder_phase=free"  # so that a base of the integrated head has the same shapes
    ct.train_twostage(tiny_cfg("train.codec_steps=60", "train.steps=0", "train.lr_codec=3e-3", free), clip_ds,
                      tmp_path / "base_run", progress=False, log=lambda m: None)
    out = export_codec_base(latest_checkpoint(tmp_path / "base_run" / "codec"), tmp_path / "codec_base.pt",
                            {"command": "test"})
    raw = torch.load(out, weights_only=True)
    assert raw["kind"] == "codec" and raw["step"] == 60 and "opt" not in raw
    assert load_codec_base(out)["provenance"]["command"] == "test"
    logs = []
    for name, base in (("seeded", str(out)), ("scratch", "none")):
        cfg = tiny_cfg("train.codec_steps=1", "train.steps=0", f"train.codec_base={base}", free)
        ct.train_twostage(cfg, clip_ds, tmp_path / name, progress=False, log=logs.append)
    assert any("starting from the base autoencoder" in m for m in logs)
    assert _first_codec_loss(tmp_path / "seeded") < 0.85 * _first_codec_loss(tmp_path / "scratch")
    wide = tiny_cfg("model.dim=8", "train.codec_steps=1", "train.steps=0", f"train.codec_base={out}", free)
    with pytest.raises(CheckpointError):
        ct.train_twostage(wide, clip_ds, tmp_path / "wide", progress=False, log=lambda m: None)
    codec = Codec(SR, 8)
    with pytest.raises(CheckpointError):
        ct.start_from_base(codec, str(out))
    import djenerator.base

    monkeypatch.setattr(djenerator.base, "codec_base_path", lambda sr: out)  # as if it were the shipped one
    logs.clear()
    assert ct.start_from_base(codec, "auto", logs.append) is None and "from scratch" in logs[0]
    assert ct.start_from_base(Codec(SR, 4), "auto", logs.append) == out
    # same shapes, but the phase half of the head means something else: skipped when auto, refused when named
    assert ct.start_from_base(Codec(SR, 4, phase="integrated"), "auto", logs.append) is None
    with pytest.raises(CheckpointError, match="decoder_phase"):
        ct.start_from_base(Codec(SR, 4, phase="integrated"), str(out))
    # a head grown from the base's starts from it with its extra rows at zero; the head it grows from does not fit
    pghi_base = Codec(SR, 4, phase="pghi")
    torch.save(
        {**raw, "G": pghi_base.state_dict(), "config": tiny_cfg("model.decoder_phase=pghi").to_dict()},
        tmp_path / "pghi_base.pt")
    grown = Codec(SR, 4, phase="pghi_residual")
    assert ct.start_from_base(grown, str(tmp_path / "pghi_base.pt"), logs.append) == tmp_path / "pghi_base.pt"
    assert torch.equal(grown.head.weight[: grown.bins], pghi_base.head.weight) and not grown.head.weight[grown.bins:].any()
    with pytest.raises(CheckpointError, match="decoder_phase"):
        ct.start_from_base(Codec(SR, 4, phase="free"), str(tmp_path / "pghi_base.pt"))
    assert ct.start_from_base(Codec(SR, 4, reads="stft"), "auto", logs.append) is None  # a mel base for a bin encoder
    with pytest.raises(CheckpointError, match="codec_input"):
        ct.start_from_base(Codec(SR, 4, reads="stft"), str(out))
    (tmp_path / "junk.pt").write_bytes(b"not a base")
    with pytest.raises(CheckpointError):
        ct.start_from_base(codec, str(tmp_path / "junk.pt"))
    # train.codec_steps=0: stage 2 runs on the base as it is; with no base that fits, a clear error
    cfg = tiny_cfg("train.codec_steps=0", "train.steps=1", f"train.codec_base={out}", free)
    ct.train_twostage(cfg, clip_ds, tmp_path / "as_is", progress=False, log=lambda m: None)
    G = torch.load(latest_checkpoint(tmp_path / "as_is"), weights_only=True)["G"]
    base_w = load_codec_base(out)["G"]
    assert all(torch.equal(G[f"codec.{k}"], v) for k, v in base_w.items())
    # train.codec_tune=encoder: stage 1 trains the encoder and keeps the base's decoder
    cfg = tiny_cfg("train.codec_steps=2", "train.steps=0", f"train.codec_base={out}", "train.codec_tune=encoder", free)
    ct.train_twostage(cfg, clip_ds, tmp_path / "enc", progress=False, log=lambda m: None)
    tuned = torch.load(latest_checkpoint(tmp_path / "enc" / "codec"), weights_only=True)["G"]
    assert all(torch.equal(tuned[k], v) == (not k.startswith("enc")) for k, v in base_w.items())
    with pytest.raises(ConfigError, match="needs a base"):
        ct.train_twostage(tiny_cfg("train.codec_steps=0", "train.steps=1", "train.codec_base=auto", "model.dim=8"),
                          clip_ds, tmp_path / "no_base", progress=False, log=lambda m: None)


def test_a_checkpoint_of_another_model_shape_is_a_clear_error(one_thread, tmp_path):
    from djenerator.checkpoint import CheckpointError, save_checkpoint
    from djenerator.generate import load_generator

    cfg = tiny_cfg()
    G = build_generator(cfg)
    old = {k: v for k, v in G.state_dict().items() if k != "latent.riffs.table"}  # as saved before the riffs
    path = save_checkpoint(tmp_path / "run", 7, cfg, {"G": old})
    with pytest.raises(CheckpointError, match=r"step_0000007\.pt: its generator weights do not fit .*twostage.*latent\.riffs\.table"):
        load_generator(path)


def test_a_base_trained_with_a_critic_ships_it_and_fine_tuning_goes_on_against_it(one_thread, clip_ds, tmp_path):
    from djenerator.base import export_codec_base, load_codec_base
    from djenerator.checkpoint import latest_checkpoint

    adv = ("train.codec_adversarial=0.1", "train.steps=0")
    ct.train_twostage(tiny_cfg("train.codec_steps=3", *adv), clip_ds, tmp_path / "base_run", progress=False,
                      log=lambda m: None)
    out = export_codec_base(latest_checkpoint(tmp_path / "base_run" / "codec"), tmp_path / "base.pt")
    base = load_codec_base(out)
    assert "D" in base and "opt_d" not in base
    critic = ct.Critic.build(tiny_cfg(*adv))
    fresh = {k: v.clone() for k, v in critic.D.state_dict().items()}
    assert ct.start_from_base(Codec(SR, 4, phase=tiny_cfg().model.decoder_phase), str(out), lambda m: None, critic) == out
    _assert_same(critic.D.state_dict(), base["D"])
    assert any(not torch.equal(fresh[k], base["D"][k]) for k in fresh)
    logs = []
    other = ct.Critic.build(tiny_cfg("model.dim=16", *adv))  # a wider critic
    other.start_from(base["D"], logs.append)
    assert "another shape" in logs[0]


def test_two_stage_bars_stage_one_by_steps_and_stage_two_by_the_budget(one_thread, clip_ds, tmp_path, capsys):
    cfg = tiny_cfg("train.codec_steps=2", "train.steps=2", "train.ckpt_every=100", "train.sample_every=100")
    ct.train_twostage(cfg, clip_ds, tmp_path / "run", progress=True, log=lambda m: None, budget=Budget(600))
    err = capsys.readouterr().err
    stage1 = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("stage 1")]
    stage2 = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("stage 2")]
    assert stage1 and "2/2" in stage1[-1]  # a fixed number of steps: the bar counts them
    assert stage2 and "/600 s of the time budget, ETA" in stage2[-1] and "step 2, D loss" in stage2[-1]


def test_lr_fall_in_stage_two_resumes_exactly(one_thread, clip_ds, tmp_path, monkeypatch):
    """Stage 2 cut by Ctrl-C at step 2 of 4 and resumed == one go, with train.lr_fall=0.5."""
    from test_train import interrupt_at_call

    cfg = tiny_cfg("train.codec_steps=2", "train.steps=4", "train.ckpt_every=100", "train.sample_every=100",
                   "train.lr_fall=0.5")
    whole = ct.train_twostage(cfg, clip_ds, tmp_path / "a", progress=False, log=lambda m: None)
    with monkeypatch.context() as m:
        interrupt_at_call(m, 2 + 3)  # two asks in stage 1, then stage 2's third
        cut = ct.train_twostage(cfg, clip_ds, tmp_path / "b", progress=False, log=lambda m: None)
    assert cut.stopped == "interrupted" and cut.step == 2
    ct.train_twostage(cfg, clip_ds, tmp_path / "b", resume=True, progress=False, log=lambda m: None)
    ga = torch.load(whole.checkpoint, weights_only=False)
    gb = torch.load(tmp_path / "b" / "checkpoints" / "step_0000004.pt", weights_only=False)
    _assert_same(ga["G"], gb["G"])
    _assert_same(ga["D"], gb["D"])
    # the last step (3 of 4 behind it) ran at (1 - 3/4) / 0.5 of the base rates
    assert gb["opt_g"]["param_groups"][0]["lr"] == pytest.approx(0.5 * cfg.train.lr_g)
    assert gb["opt_d"]["param_groups"][0]["lr"] == pytest.approx(0.5 * cfg.train.lr_d)


def test_codec_hinge_weighs_the_critics_hinge_term_beside_feature_matching():
    """train.codec_hinge=0 leaves stage 1's critic loss as 2 x feature matching alone (round 20); 1 adds the hinge
    term in full (the generator's hinge loss: minus the mean logit over every resolution's patches)."""
    cfg = build_config("bars", overrides=["model.dim=8"])
    torch.manual_seed(0)
    real, fake = 0.1 * torch.randn(2, 1, 4096), 0.1 * torch.randn(2, 1, 4096)
    critic = ct.Critic.build(cfg)
    logits, f_feats = critic.D(fake)
    _, r_feats = critic.D(real)
    fm = torch.stack([(f - r).abs().mean() for f, r in zip(f_feats, r_feats)]).mean()
    critic.hinge = 0.0
    assert torch.allclose(critic.g_loss(fake, real), ct.FM_WEIGHT * fm, rtol=1e-5)
    critic.hinge = 1.0
    assert torch.allclose(critic.g_loss(fake, real), ct.FM_WEIGHT * fm - logits.mean(), rtol=1e-5)
    assert ct.Critic.build(build_config("bars", overrides=["train.codec_hinge=0"])).hinge == 0.0
    with pytest.raises(ConfigError, match="codec_hinge"):
        build_config("bars", overrides=["train.codec_hinge=-1"])
