import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from djenerator.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from djenerator.config import ConfigError, build_config
from djenerator.generate import generate_clips, generate_to_files, interpolate, latents, load_generator
from djenerator.models import tempo_cond
from djenerator.train import batch_indices, sample_latents, train




def tiny_cfg(*extra):
    return build_config("original", [], ["data.sample_rate=8000", "data.clip_samples=1024", "model.dense_hidden=[16,32]",
                                         "train.batch_size=8", "train.log_every=2", "train.ckpt_every=5",
                                         "train.sample_every=5", "train.n_samples=2", "train.device=cpu", *extra])


def params(path):
    ck = load_checkpoint(path)
    return {f"{net}.{k}": v.clone() for net in ("G", "G_train", "D") for k, v in ck.get(net, {}).items()}


@pytest.mark.parametrize("ema", ["train.ema=0", "train.ema=0.9", "train.ema_power=3"])
def test_exact_resume_matches_one_go(one_thread, tiny_dataset, tmp_path, ema):
    """A run cut at step 5 and resumed == one go. One thread: two fresh runs in one process on two threads were
    seen to differ in the 6th digit from step 2 on a loaded machine (before any resume), which is the BLAS's
    threading, not the state a checkpoint carries."""
    cfg = lambda steps: tiny_cfg(f"train.steps={steps}", *ema.split())  # noqa: E731
    one = train(cfg(10), tiny_dataset, tmp_path / "one", progress=False, log=lambda m: None)
    assert one.stopped == "done" and one.step == 10
    train(cfg(5), tiny_dataset, tmp_path / "two", progress=False, log=lambda m: None)
    res = train(cfg(10), tiny_dataset, tmp_path / "two", resume=True, progress=False, log=lambda m: None)
    assert res.step == 10
    a, b = params(latest_checkpoint(tmp_path / "one")), params(latest_checkpoint(tmp_path / "two"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and training really changed the weights
    first = params(list_checkpoints(tmp_path / "one")[0])
    assert any(not torch.equal(first[k], a[k]) for k in a)
    def losses_by_step(run):
        rows = list(csv.DictReader(open(tmp_path / run / "logs" / "losses.csv")))
        return {r["step"]: (r["d_loss"], r["g_loss"]) for r in rows}

    one_log, two_log = losses_by_step("one"), losses_by_step("two")
    assert set(one_log) == {"2", "4", "6", "8", "10"} and set(two_log) == set(one_log) | {"5"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(tmp_path / "two" / "logs" / "tb")).Reload()  # the step it resumed at kept, once
    assert sorted(e.step for e in tb.Scalars("train/d_loss")) == sorted(map(int, two_log))
    assert all(one_log[k] == two_log[k] for k in one_log)
    assert any(k.startswith("G_train.") for k in a) == (ema != "train.ema=0")  # with an average: it and G_train


def test_outputs_come_from_the_moving_average(tiny_dataset, tmp_path):
    """With train.ema, the checkpoint's G (what generate, evaluate and serve load) is the average of the trained
    weights G_train over the steps, and the samples written during training come from it."""
    train(tiny_cfg("train.steps=5", "train.ema=0.9"), tiny_dataset, tmp_path / "r", progress=False, log=lambda m: None)
    ck = load_checkpoint(tmp_path / "r")
    moved = [k for k in ck["G_train"] if ck["G_train"][k].is_floating_point()
             and not torch.equal(ck["G"][k], ck["G_train"][k])]
    assert moved, "the average equals the trained weights"
    G, cfg, _ = load_generator(tmp_path / "r")
    wav, _ = sf.read(sorted((tmp_path / "r" / "samples" / "step_0000005").glob("*.wav"))[0], dtype="float32")
    z, bpm = sample_latents(cfg)
    audio = generate_clips(G, cfg, z=z, cond=tempo_cond(bpm, cfg), batch_size=len(z))
    np.testing.assert_allclose(audio[0].reshape(-1), wav.reshape(-1), atol=1e-4)


def test_ema_update_is_a_moving_average():
    from djenerator.ema import Ema

    net = torch.nn.Linear(3, 2)
    ema = Ema(net, 0.5)
    w0 = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(2.0)
    ema.update(net, step=1000)  # decay min(0.5, 1001 / 1010) = 0.5
    torch.testing.assert_close(ema.output(net).weight, w0 + 1.0)
    early = Ema(net, 0.999)
    with torch.no_grad():
        net.weight.add_(1.0)
    early.update(net, step=0)  # first steps average over a short window: decay min(0.999, 1/10) = 0.1
    torch.testing.assert_close(early.output(net).weight, (w0 + 2.0) * 0.1 + (w0 + 3.0) * 0.9)
    assert Ema(net, 0.0).output(net) is net and set(Ema(net, 0.0).state(net)) == {"G"}


@pytest.mark.parametrize("power", [1.0, 3.0])
def test_power_ema_weighs_each_step_by_a_power_of_its_index(power):
    """After T updates the power average is sum_s (s^(p+1) - (s-1)^(p+1)) w_s / T^(p+1), computed here in numpy from
    the trained weights' history, and its last power_share(p) of the steps holds half the weight."""
    from djenerator.ema import Ema, power_share

    net = torch.nn.Linear(1, 1, bias=False)
    ema, T = Ema(net, 0.0, power=power), 200
    history = np.random.default_rng(0).normal(size=T)
    for s, w in enumerate(history, start=1):
        with torch.no_grad():
            net.weight.fill_(float(w))
        ema.update(net, step=s)
    s = np.arange(1, T + 1, dtype=np.float64)
    weights = (s ** (power + 1) - (s - 1) ** (power + 1)) / T ** (power + 1)
    assert abs(weights.sum() - 1) < 1e-12
    assert abs(float(ema.output(net).weight) - weights @ history) < 1e-5
    tail = weights[s > T * (1 - power_share(power))].sum()
    assert abs(tail - 0.5) < 0.02
    assert abs(float(ema.output(net).weight) - history.mean()) > 1e-3  # not the plain mean


@pytest.mark.parametrize("bad", ["train.ema_power=-1", "train.ema=0.99 train.ema_power=2"])
def test_the_two_kinds_of_average_are_one_or_the_other(bad):
    with pytest.raises(ConfigError, match="train.ema_power"):
        build_config("bars", [], bad.split())
    assert build_config("bars", [], ["train.ema=0", "train.ema_power=2"]).train.ema_power == 2


def test_run_outputs_samples_logs_and_checkpoint_config(tiny_dataset, tmp_path):
    train(tiny_cfg("train.steps=5"), tiny_dataset, tmp_path / "r", progress=False, log=lambda m: None)
    wavs = sorted((tmp_path / "r" / "samples" / "step_0000005").glob("*.wav"))
    assert len(wavs) == 2
    x, sr = sf.read(wavs[0])
    assert sr == 8000 and len(x) == 1024
    ck = load_checkpoint(tmp_path / "r")
    assert ck["config"]["data"]["clip_samples"] == 1024 and ck["step"] == 5
    assert {"torch", "numpy", "python"} <= set(ck["rng"])
    assert (tmp_path / "r" / "config.yaml").is_file()
    assert list((tmp_path / "r" / "logs" / "tb").iterdir())
    header = (tmp_path / "r" / "logs" / "losses.csv").read_text().splitlines()[0]
    assert header.startswith("step,d_loss,g_loss")


def test_existing_run_needs_resume(tiny_dataset, tmp_path):
    from djenerator.config import ConfigError

    train(tiny_cfg("train.steps=5"), tiny_dataset, tmp_path / "r", progress=False, log=lambda m: None)
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_cfg("train.steps=5"), tiny_dataset, tmp_path / "r", progress=False, log=lambda m: None)


def test_the_datasets_rate_and_clip_length_win_and_are_said_once(tiny_dataset, tmp_path):
    said = []
    cfg = tiny_cfg("train.steps=1", "data.sample_rate=16000", "data.clip_samples=2048")
    train(cfg, tiny_dataset, tmp_path / "r", progress=False, log=said.append)
    about = [m for m in said if "16000 Hz" in m]
    assert len(about) == 1 and "8000 Hz" in about[0] and "1024" in about[0] and "dataset wins" in about[0]
    saved = load_checkpoint(next((tmp_path / "r" / "checkpoints").glob("step_*.pt")))["config"]["data"]
    assert (saved["sample_rate"], saved["clip_samples"]) == (8000, 1024)
    said.clear()
    train(tiny_cfg("train.steps=1"), tiny_dataset, tmp_path / "same", progress=False, log=said.append)
    assert not [m for m in said if "dataset wins" in m]


@pytest.mark.parametrize("loss", ["bce", "kl", "wgan", "wgan-gp", "hinge"])
def test_every_objective_trains_finite(tiny_dataset, tmp_path, loss):
    extra = ["train.optimizer=adam", "train.lr_g=1e-4", "train.lr_d=1e-4"] if loss != "wgan" else ["train.lr_d=5e-5"]
    res = train(tiny_cfg("train.steps=4", f"train.loss={loss}", *extra), tiny_dataset, tmp_path / loss, progress=False, log=lambda m: None)
    assert res.stopped == "done"
    ck = load_checkpoint(res.checkpoint)
    assert all(torch.isfinite(v).all() for v in ck["G"].values() if v.is_floating_point())
    if loss == "wgan":
        assert all(v.abs().max() <= 0.01 + 1e-7 for k, v in ck["D"].items() if k.endswith("weight"))


def test_generate_is_deterministic_and_bounded(tiny_dataset, tmp_path):
    train(tiny_cfg("train.steps=3"), tiny_dataset, tmp_path / "r", progress=False, log=lambda m: None)
    G, cfg, step = load_generator(tmp_path / "r")
    a = generate_clips(G, cfg, n=5, seed=3, batch_size=2)
    b = generate_clips(G, cfg, n=5, seed=3, batch_size=5)
    c = generate_clips(G, cfg, n=5, seed=4)
    again = generate_clips(G, cfg, n=5, seed=3, batch_size=2)
    assert a.shape == (5, 1024) and np.array_equal(a, again) and not np.allclose(a, c, atol=1e-3)
    np.testing.assert_allclose(a, b, atol=1e-5)  # batch size changes only float rounding
    assert np.abs(a).max() <= 1.0
    paths = generate_to_files(tmp_path / "r", tmp_path / "gen", n=3, seed=1)
    assert len(paths) == 3 and sf.info(str(paths[0])).samplerate == 8000
    interp = generate_to_files(tmp_path / "r", tmp_path / "gen", n=4, seed=1, interpolate_to=2)
    assert len(interp) == 4


def test_slerp_endpoints_and_norm():
    z = latents(2, 64, 0)
    path = interpolate(z[0], z[1], 5)
    assert torch.allclose(path[0], z[0], atol=1e-5) and torch.allclose(path[-1], z[1], atol=1e-5)
    assert abs(path[2].norm() - (z[0].norm() + z[1].norm()) / 2) < 0.2 * z[0].norm()


def test_batch_indices_are_a_pure_function():
    assert np.array_equal(batch_indices(100, 8, 1, 5), batch_indices(100, 8, 1, 5))
    assert not np.array_equal(batch_indices(100, 8, 1, 5), batch_indices(100, 8, 1, 6))


def test_nan_stops_cleanly_keeping_last_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    import djenerator.losses as L

    real_g_loss, calls = L.g_loss, []

    def poisoned(name, fake_out):
        calls.append(1)
        loss = real_g_loss(name, fake_out)
        return loss * float("nan") if len(calls) >= 7 else loss

    monkeypatch.setattr(L, "g_loss", poisoned)
    res = train(tiny_cfg("train.steps=20"), tiny_dataset, tmp_path / "r", progress=False, log=lambda m: None)
    assert res.stopped == "diverged" and res.step == 8  # NaN at step 7, caught at the next log step
    last = load_checkpoint(latest_checkpoint(tmp_path / "r"))
    assert last["step"] == 5 and res.checkpoint == latest_checkpoint(tmp_path / "r")
    assert all(torch.isfinite(v).all() for v in last["G"].values() if v.is_floating_point())
    assert "train." in (tmp_path / "r" / "health.log").read_text()


def test_training_warns_when_samples_copy_the_training_clips(tiny_dataset, tmp_path, monkeypatch):
    import djenerator.train as T
    from djenerator.data.dataset import ClipDataset

    clips = np.array(ClipDataset(tiny_dataset).clips)
    real_write, rendered = T.write_samples, []

    def replaying(G, z, bpm, cfg, out, n_write=None):  # a generator that has memorised clip 3 (as the real one may)
        audio = real_write(G, z, bpm, cfg, out, n_write)
        rendered.append(len(audio))
        if len(audio) > 9:
            audio[9] = clips[3]  # in the copy check's extra latents, past the 2 written samples
        return audio

    res = train(tiny_cfg("train.steps=5"), tiny_dataset, tmp_path / "plain", progress=False, log=lambda m: None)
    assert not any("copy" in w for w in res.warnings)
    assert len(list((tmp_path / "plain" / "samples" / "step_0000005").glob("*.wav"))) == 2  # 16 checked, 2 written
    monkeypatch.setattr(T, "write_samples", replaying)
    res = train(tiny_cfg("train.steps=15"), tiny_dataset, tmp_path / "r", progress=False, log=lambda m: None)
    copies = [w for w in res.warnings if "copy training clips" in w]  # said at step 5, not again at 10, 15
    assert rendered[-1] == 16 and len(copies) == 1 and "1 of 16 samples" in copies[0]
    assert "sample 9 replays x.wav at 0.38 s" in copies[0] and "augment.enabled=true" in copies[0]
    assert "copy training clips" in (tmp_path / "r" / "health.log").read_text()
    # with ADA, each sample step that finds copies (5, 10, 15) lifts a floor under p by augment.ada_copy_step
    ada = ["augment.enabled=true", "augment.ada=true", "augment.ada_interval=1000"]
    res = train(tiny_cfg("train.steps=15", *ada), tiny_dataset, tmp_path / "ada", progress=False, log=lambda m: None)
    state = load_checkpoint(latest_checkpoint(tmp_path / "ada"))["augment"]
    assert state["p_min"] == pytest.approx(0.3) and state["p"] == pytest.approx(0.3)
    assert "ADA now keeps p >= 0.10" in [w for w in res.warnings if "copy training clips" in w][0]
    train(tiny_cfg("train.steps=15", *ada, "augment.ada_copy_step=0"), tiny_dataset, tmp_path / "ada0", progress=False,
          log=lambda m: None)
    assert load_checkpoint(latest_checkpoint(tmp_path / "ada0"))["augment"]["p"] == 0.0
    res = train(tiny_cfg("train.steps=5", "train.copy_check_clips=0"), tiny_dataset, tmp_path / "off", progress=False,
                log=lambda m: None)
    assert not any("copy" in w for w in res.warnings)
    # the cost cap (4 * copy_check_clips clip pairs) leaves 4 latents here: the replaying 10th goes unchecked
    res = train(tiny_cfg("train.steps=5", f"train.copy_check_clips={len(clips)}"), tiny_dataset, tmp_path / "cap",
                progress=False, log=lambda m: None)
    assert rendered[-1] == 4 and not any("copy" in w for w in res.warnings)


def test_the_last_checkpoint_before_copies_is_kept(tiny_dataset, tmp_path, monkeypatch):
    import djenerator.train as T
    from djenerator.data.dataset import ClipDataset

    clips = np.array(ClipDataset(tiny_dataset).clips)
    real_write = T.write_samples

    def replaying_from_step_10(G, z, bpm, cfg, out, n_write=None):
        audio = real_write(G, z, bpm, cfg, out, n_write)
        if int(out.name.split("_")[1]) >= 10:
            audio[9] = clips[3]
        return audio

    monkeypatch.setattr(T, "write_samples", replaying_from_step_10)
    cfg = tiny_cfg("train.steps=15", "train.ckpt_every=2", "train.keep_checkpoints=1")
    res = train(cfg, tiny_dataset, tmp_path / "r", progress=False, log=lambda m: None)
    names = [p.name for p in list_checkpoints(tmp_path / "r")]
    assert names == ["step_0000008.pt", "step_0000015.pt"]  # 8: saved before the check at 10 found the copy
    assert "generate from step_0000008.pt" in [w for w in res.warnings if "copy training clips" in w][0]
    train(tiny_cfg("train.steps=21", "train.ckpt_every=2", "train.keep_checkpoints=1"), tiny_dataset, tmp_path / "r",
          resume=True, progress=False, log=lambda m: None)  # copies again after resuming: the first pin stays the only one
    assert [p.name for p in list_checkpoints(tmp_path / "r")] == ["step_0000008.pt", "step_0000021.pt"]
    monkeypatch.setattr(T, "write_samples", real_write)
    train(cfg, tiny_dataset, tmp_path / "clean", progress=False, log=lambda m: None)
    assert [p.name for p in list_checkpoints(tmp_path / "clean")] == ["step_0000015.pt"]


def test_resume_refuses_a_different_optimizer(tiny_dataset, tmp_path):
    from djenerator.config import ConfigError

    train(tiny_cfg("train.steps=5"), tiny_dataset, tmp_path / "r", progress=False, log=lambda m: None)
    with pytest.raises(ConfigError, match="optimizer"):
        train(tiny_cfg("train.steps=8", "train.optimizer=adam"), tiny_dataset, tmp_path / "r", resume=True,
              progress=False, log=lambda m: None)


def test_lr_fall_is_flat_then_a_line_to_zero():
    from djenerator.optim import lr_scale

    assert [lr_scale(d, 0.5) for d in (0.0, 0.5, 0.75, 0.9, 1.0, 1.3)] == pytest.approx([1, 1, 0.5, 0.2, 0, 0])
    assert lr_scale(0.99, 0.0) == 1.0 and lr_scale(0.5, 1.0) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="train.lr_fall must be in"):
        tiny_cfg("train.lr_fall=1.5")


def test_budget_share_reads_the_clock_that_ends_first(monkeypatch):
    from djenerator import budget as bmod

    wall, cpu = [100.0], [10.0]
    monkeypatch.setattr(bmod.time, "perf_counter", lambda: wall[0])
    monkeypatch.setattr(bmod.time, "process_time", lambda: cpu[0])
    b = bmod.Budget(max_seconds=60, max_cpu_seconds=20)
    wall[0], cpu[0] = 130.0, 15.0  # half the wall budget, a quarter of the CPU one
    assert b.share() == pytest.approx(0.5) and b.halt() == ""
    cpu[0] = 31.0  # the CPU budget is spent first
    assert b.share() == pytest.approx(1.05) and b.halt() == "time budget"
    assert bmod.Budget().share() == 0.0


def test_cpu_minutes_stop_a_run_with_a_checkpoint(tiny_dataset, tmp_path):
    res = train(tiny_cfg("train.steps=100000"), tiny_dataset, tmp_path / "r", progress=False, log=lambda m: None,
                max_cpu_seconds=1.0)
    assert res.stopped == "time budget" and 0 < res.step < 100000
    assert latest_checkpoint(tmp_path / "r").name == f"step_{res.step:07d}.pt"


def interrupt_at_call(monkeypatch, n: int) -> None:
    """Ctrl-C as the loops see it, at the ``n``-th time they ask the budget whether to stop (one ask per step)."""
    from djenerator.budget import Budget

    calls, halt = [0], Budget.halt

    def patched(self):
        calls[0] += 1
        return "interrupted" if calls[0] == n else halt(self)

    monkeypatch.setattr(Budget, "halt", patched)


def test_lr_fall_resumes_exactly(one_thread, tiny_dataset, tmp_path, monkeypatch):
    """A run cut by Ctrl-C at step 5 of 10 and resumed == one go, with the rates falling over the last half."""
    cfg = tiny_cfg("train.steps=10", "train.lr_fall=0.5")
    one = train(cfg, tiny_dataset, tmp_path / "one", progress=False, log=lambda m: None)
    with monkeypatch.context() as m:
        interrupt_at_call(m, 6)
        cut = train(cfg, tiny_dataset, tmp_path / "two", progress=False, log=lambda m: None)
    assert cut.stopped == "interrupted" and cut.step == 5
    train(cfg, tiny_dataset, tmp_path / "two", resume=True, progress=False, log=lambda m: None)
    a, b = params(latest_checkpoint(tmp_path / "one")), params(latest_checkpoint(tmp_path / "two"))
    assert one.step == 10 and all(torch.equal(a[k], b[k]) for k in a)
    ck = load_checkpoint(latest_checkpoint(tmp_path / "two"))  # set at the last log step, 8 of 10: (1 - 0.8) / 0.5
    assert ck["opt_g"]["param_groups"][0]["lr"] == pytest.approx(0.4 * cfg.train.lr_g)
    assert ck["opt_d"]["param_groups"][0]["lr"] == pytest.approx(0.4 * cfg.train.lr_d)
