"""`djenerator evaluate`: report.json + PNGs from a tiny trained run, copy detection, CLI, cheap metrics."""
import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from djenerator.checkpoint import latest_checkpoint
from djenerator.cli import app
from djenerator.config import ConfigError, build_config
from djenerator.data.dataset import ClipDataset
from djenerator.data.prepare import prepare
from djenerator.evaluate import report as R
from djenerator.train import train
from conftest import sine

SR, T = 8000, 1024


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Three source files (different chords + noise, bpm sidecars) -> dataset; a 10-step tiny dense run."""
    d = tmp_path_factory.mktemp("ev")
    rng = np.random.default_rng(0)
    src = d / "src"
    src.mkdir()
    for k, freqs in enumerate([(110, 165), (220, 277), (330, 392)]):
        x = sum(sine(f, SR, 1.6, 0.3) for f in freqs) * (1 + 0.5 * np.sin(2 * np.pi * (2 + k) * np.arange(int(1.6 * SR)) / SR))
        x = (x + 0.05 * rng.standard_normal(len(x))).astype(np.float32)
        sf.write(src / f"f{k}.wav", x, SR)
        (src / f"f{k}.json").write_text(json.dumps({"bpm": 100 + 10 * k}))
    cfg = build_config("original", [], [f"data.sample_rate={SR}", f"data.clip_samples={T}", "data.estimate_tempo=false"])
    prepare(src, d / "ds", cfg.data, progress=False)
    run_cfg = build_config("original", [], [f"data.sample_rate={SR}", f"data.clip_samples={T}", "model.dense_hidden=[16,32]",
                                            "train.batch_size=8", "train.log_every=2", "train.ckpt_every=5",
                                            "train.sample_every=5", "train.n_samples=2", "train.device=cpu",
                                            "train.steps=10", "train.eval_every=5"])
    train(run_cfg, d / "ds", d / "run", progress=False, log=lambda m: None)
    return d


def test_training_logs_cheap_metrics(tiny):
    rows = list(csv.DictReader(open(tiny / "run" / "logs" / "metrics.csv")))
    assert [r["step"] for r in rows] == ["5", "10"]
    assert set(R.CHEAP_METRIC_KEYS) <= set(rows[0])
    assert all(np.isfinite(float(r["flatness_fake"])) for r in rows)


def test_evaluate_writes_report_and_pngs(tiny, tmp_path):
    rep = R.evaluate(tiny / "run", n=8, seed=3, out_dir=tmp_path / "out", all_checkpoints=True, n_per_checkpoint=4)
    data = json.loads((tmp_path / "out" / "report.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    for key in ("distribution", "noise", "rhythm", "memorisation", "diversity", "summary", "over_steps"):
        assert key in data, key
    assert data["step"] == 10 and data["checkpoint"].endswith("step_0000010.pt") and data["seed"] == 3
    assert data["dataset"] == str((tiny / "ds").resolve())  # found through run.json
    assert len(data["memorisation"]["clips"]) == 8 and all(isinstance(c["flagged"], bool) for c in data["memorisation"]["clips"])
    assert data["memorisation"]["n_train"] == len(ClipDataset(tiny / "ds"))  # all training clips searched
    assert data["memorisation"]["n_flagged"] == 0  # an (untrained, independent) generator copies nothing
    d = data["distribution"]
    assert d["frechet"]["generated"] > 0 and d["frechet"]["real_baseline"] >= 0 and "se" in str(d["kid"])
    cov = d["coverage"]
    assert all(0 <= cov[w][key] <= 1 for w in ("generated", "real_baseline") for key in ("precision", "coverage"))
    assert any(r[0].startswith("coverage of real clips") for r in rep["summary"])
    assert data["rhythm"]["tempo_vs_labels"]["n_labelled"] > 0  # bpm labels from the sidecars
    assert data["over_steps"]["step"] == [5, 10] and data["over_steps"]["copies"] == [0, 0]
    assert ["checkpoints whose clips copy", "0/2", "at most 0 copying", "none copy"] in rep["summary"]
    for name in ("spectrograms", "losses", "over_steps"):
        p = tmp_path / "out" / f"report_{name}.png"
        assert p.is_file() and p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG", name
    assert rep["summary"] and all(len(r) == 4 for r in rep["summary"])
    rows = {r[0]: r for r in rep["summary"]}
    tempo = rows["tempo median (BPM)"]  # 0.128-s clips: why the generated side has none; the real side: labels
    assert "too short" in tempo[1] and "from the labels" in tempo[2]
    kid = next(r for r in rep["summary"] if r[0].startswith("KID"))
    assert not kid[1].startswith("-") and not kid[2].startswith("-")  # a negative unbiased KID reads ~0


def test_over_steps_counts_copies_and_names_the_last_checkpoint_without(tiny, monkeypatch):
    from djenerator.checkpoint import list_checkpoints

    ds = ClipDataset(tiny / "ds")
    real_generate, calls = R.generate_clips, []

    def replaying_at_the_second(G, cfg, n, seed, **kw):  # the step-10 checkpoint replays training clip 4
        out = np.array(real_generate(G, cfg, n, seed, **kw))
        calls.append(n)
        if len(calls) == 2:
            out[1] = ds.clips[4]
        return out

    monkeypatch.setattr(R, "generate_clips", replaying_at_the_second)
    ov = R.over_steps(list_checkpoints(tiny / "run"), ds, np.arange(len(ds)), 4, seed=0)
    assert ov["step"] == [5, 10] and ov["copies"] == [0, 1]
    assert R._copies_over_steps_row(ov) == ["checkpoints whose clips copy", "1/2", "at most 1 copying",
                                            "last without copies: step 5"]
    assert R._copies_over_steps_row({"step": [5, 10], "copies": [2, 1]})[3] == "every checkpoint copies"
    assert R._copies_over_steps_row({"step": [5, 10], "copies": [1, 0]})[3] == "last without copies: step 10 (the latest)"


def test_copies_are_flagged_with_their_source(tiny, tmp_path, monkeypatch):
    ds = ClipDataset(tiny / "ds")
    picks, shift = [2, len(ds) // 2, len(ds) - 3], 200
    rng = np.random.default_rng(1)

    def fake_generate(G, cfg, n=8, seed=0, *a, **k):
        out = 0.1 * rng.standard_normal((n, T)).astype(np.float32)  # independent clips
        for j, i in enumerate(picks):  # copies: shifted by 200 samples, gain -0.6, a little noise
            out[j] = -0.6 * np.pad(ds.clips[i][shift:], (0, shift)) + 0.005 * rng.standard_normal(T)
        return out

    monkeypatch.setattr(R, "generate_clips", fake_generate)
    rep = R.evaluate(tiny / "run", n=6, out_dir=tmp_path, plots=False)
    clips = rep["memorisation"]["clips"]
    for j, i in enumerate(picks):
        c = clips[j]
        assert c["flagged"] and c["corr"] > 0.95
        assert c["source_file"] == ds.source(i)["file"]
        assert c["source_time_s"] == pytest.approx(ds.source(i)["start"] + shift / SR, abs=2 / SR)
    assert not any(c["flagged"] for c in clips[len(picks):])
    assert rep["memorisation"]["n_flagged"] == len(picks)
    assert "copy" in rep["memorisation"]["verdict"]


@pytest.mark.filterwarnings("ignore:frechet_distance with")  # 8 clips: singular covariances, said by design
def test_held_back_copying_test(tiny, tmp_path, monkeypatch):
    ds = ClipDataset(tiny / "ds")
    src = tmp_path / "held_src"
    src.mkdir()
    rng = np.random.default_rng(5)
    for k, freqs in enumerate([(147, 196), (262, 311)]):  # new music of the same kind: other chords
        x = sum(sine(f, SR, 1.6, 0.3) for f in freqs) + 0.05 * rng.standard_normal(int(1.6 * SR))
        sf.write(src / f"h{k}.wav", x.astype(np.float32), SR)
    prepare(src, tmp_path / "held", build_config("original", [], [f"data.sample_rate={SR}", f"data.clip_samples={T}",
                                                                   "data.estimate_tempo=false"]).data, progress=False)

    def replaying(G, cfg, n=8, seed=0, *a, **k):
        return np.array([ds.clips[i % len(ds)] for i in range(n)]) + 0.01 * rng.standard_normal((n, T)).astype(np.float32)

    monkeypatch.setattr(R, "generate_clips", replaying)
    rep = R.evaluate(tiny / "run", n=8, out_dir=tmp_path / "a", plots=False, held=tmp_path / "held")
    hb = rep["held_back"]
    assert hb["n_held"] == len(ClipDataset(tmp_path / "held")) and hb["copy_z"] < -3 and hb["verdict"].startswith("copying")
    assert any(r[0].startswith("data-copying z") for r in rep["summary"])
    assert set(hb["coverage"]) == {"generated", "training_clips"}
    assert any(r[0].startswith("coverage of held-back") for r in rep["summary"])
    with pytest.raises(R.DatasetError, match="held_short"):
        short = tmp_path / "held_short"
        prepare(src, short, build_config("original", [], [f"data.sample_rate={SR}", "data.clip_samples=512",
                                                          "data.estimate_tempo=false"]).data, progress=False)
        R.evaluate(tiny / "run", n=8, out_dir=tmp_path / "b", plots=False, held=short)


def test_cli_end_to_end_and_missing_dataset(tiny, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(tiny / "run"), "-n", "4", "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "memorisation" in res.output and (tmp_path / "o" / "report.json").is_file()
    # a checkpoint outside its run folder, no --dataset: one clear sentence, exit 2
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(latest_checkpoint(tiny / "run"), lone / "model.pt")
    res = runner.invoke(app, ["evaluate", str(lone / "model.pt"), "-n", "4"])
    assert res.exit_code == 2 and "pass --dataset" in " ".join(res.output.split()) and "Traceback" not in res.output
    res = runner.invoke(app, ["evaluate", str(tiny / "run"), "--dataset", str(tmp_path / "nope"), "-n", "4"])
    assert res.exit_code == 2 and "not a prepared dataset" in " ".join(res.output.split())


def test_evaluate_rejects_bad_options(tiny):
    with pytest.raises(ConfigError):
        R.evaluate(tiny / "run", n=1)
    with pytest.raises(ConfigError):
        R.evaluate(tiny / "run", threshold=1.5)


def test_cheap_metrics_noise_vs_tone():
    torch.manual_seed(0)
    sr, n = 16000, 16384
    noise = 0.3 * torch.randn(16, 1, n)
    t = torch.arange(n) / sr
    tone = torch.stack([0.5 * torch.sin(2 * torch.pi * (220 + 20 * i) * t) for i in range(16)])[:, None]
    m = R.cheap_metrics(noise, tone, sr)
    assert set(m) == set(R.CHEAP_METRIC_KEYS)
    assert all(np.isfinite(v) for v in m.values())
    assert m["flatness_fake"] > 0.9 and m["flatness_real"] < 0.05
    assert m["hf_ratio_fake"] > 0.4 and m["hf_ratio_real"] < 1e-3
    same = R.cheap_metrics(tone, tone, sr)
    assert same["fd_batch"] < 1e-3 * m["fd_batch"] and same["diversity_ratio"] == pytest.approx(1.0)


def test_frechet_matches_the_sqrtm_formula():
    import scipy.linalg

    from djenerator.evaluate.metrics import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((80, 12)), rng.standard_normal((90, 12)) * 1.3 + 0.2
    s_a, s_b = np.cov(a, rowvar=False) + 1e-6 * np.eye(12), np.cov(b, rowvar=False) + 1e-6 * np.eye(12)
    d = a.mean(0) - b.mean(0)
    ref = d @ d + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(np.real(scipy.linalg.sqrtm(s_a @ s_b)))
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


def test_training_metrics_leaves_rng_and_mode_alone(tiny, tmp_path):
    from djenerator.generate import load_generator

    G, cfg, _ = load_generator(tiny / "run")
    G.train()
    before = torch.get_rng_state().clone()
    vals = R.training_metrics(G, cfg, ClipDataset(tiny / "ds"), 7, tmp_path)
    assert torch.equal(before, torch.get_rng_state()) and G.training
    assert (tmp_path / "logs" / "metrics.csv").is_file() and np.isfinite(vals["flatness_fake"])


def test_coverage_verdict_is_relative_to_what_real_clips_reach():
    base = {"coverage": 0.4, "precision": 0.9}
    verdict = [R._coverage_row("c", {"coverage": c, "precision": 0.5}, base, "real")[3] for c in (0.35, 0.2, 0.0)]
    assert verdict == ["covers them", "covers part of them", "covers little of them"]
