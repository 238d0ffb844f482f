"""Issue 19: nothing lost, nothing run, no tracebacks (checkpoints, run folders, CLI values).

Failures of the disk (full, read-only, permission denied) are simulated with monkeypatch: the tests run as
root, where chmod does not stop a write.
"""
import errno
import os
import pickle
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import djenerator.checkpoint as C
from djenerator.checkpoint import (CheckpointError, CheckpointWriteError, UnsafeCheckpointError, latest_checkpoint,
                                   list_checkpoints, load_checkpoint, rng_state, set_rng_state, trusting_checkpoints)
from djenerator.cli import app
from djenerator.config import build_config
from djenerator.io import LockError, folder_lock
from djenerator.train import train

QUIET = dict(progress=False, log=lambda m: None)


def tiny_cfg(*extra):
    return build_config("original", [], ["data.sample_rate=8000", "data.clip_samples=1024", "model.dense_hidden=[16,32]",
                                         "train.batch_size=8", "train.log_every=2", "train.ckpt_every=5",
                                         "train.sample_every=5", "train.n_samples=2", "train.device=cpu", *extra])


def cli(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.output, r.exception


def assert_one_line_error(code, output, exc, *words):
    assert code == 2, output
    assert exc is None or isinstance(exc, SystemExit), exc
    assert "Traceback" not in output
    err = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(err) == 1, output
    for w in words:
        assert w in err[0], (w, err[0])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder with checkpoints at steps 5 and 10 (and its dataset)."""
    from conftest import sine  # noqa: F401 - the session fixture needs conftest on the path
    from djenerator.data.prepare import prepare
    import soundfile as sf

    d = tmp_path_factory.mktemp("hard")
    rng = np.random.default_rng(0)
    sf.write(d / "x.wav", (0.3 * rng.standard_normal(16000)).astype(np.float32), 8000)
    cfg = build_config("original", [], ["data.sample_rate=8000", "data.clip_samples=1024", "data.estimate_tempo=false"])
    prepare(d / "x.wav", d / "ds", cfg.data, progress=False, log=lambda m: None)
    train(tiny_cfg("train.steps=10"), d / "ds", d / "run", **QUIET)
    return d / "run", d / "ds"


# --- code execution ---------------------------------------------------------------------------------
class Planted:
    """Unpickling this creates a marker file: the proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_a_planted_pickle_does_not_run(tmp_path):
    run, marker = tmp_path / "evil", tmp_path / "ran"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"config": {}, "G": {}, "x": Planted(marker)}, run / "checkpoints" / "step_0000001.pt")
    with pytest.raises(UnsafeCheckpointError, match="--trust-checkpoint"):
        load_checkpoint(run)
    from djenerator.generate import load_generator  # what the server calls

    with pytest.raises(UnsafeCheckpointError):
        load_generator(run)
    assert_one_line_error(*cli("generate", run, "-o", tmp_path / "g"), "could run code", "--trust-checkpoint")
    assert_one_line_error(*cli("evaluate", run), "could run code")
    assert not marker.exists()


def test_checkpoints_are_plain_data(tiny_dataset, tmp_path):
    """Every entry, augmentation and ADA state included, loads with weights_only=True."""
    res = train(tiny_cfg("train.steps=5", "augment.enabled=true", "augment.ada=true"), tiny_dataset, tmp_path / "r",
                **QUIET)
    ck = torch.load(res.checkpoint, weights_only=True)
    assert ck["version"] == 2 and "augment" in ck and isinstance(ck["rng"]["numpy"]["keys"], torch.Tensor)


def test_rng_state_round_trip_through_a_safe_file(tmp_path):
    np.random.seed(3), random.seed(4), torch.manual_seed(5)
    np.random.standard_normal()  # a cached Gaussian in numpy's state
    state = rng_state()
    want = (np.random.standard_normal(4), [random.random() for _ in range(3)], torch.rand(3))
    torch.save(state, tmp_path / "s.pt")
    set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True))
    got = (np.random.standard_normal(4), [random.random() for _ in range(3)], torch.rand(3))
    assert np.array_equal(want[0], got[0]) and want[1] == got[1] and torch.equal(want[2], got[2])


def _old_format(src: Path, dst: Path) -> None:
    """A copy of checkpoint ``src`` as djenerator version 1 wrote it: RNG states as numpy/python objects."""
    ck = torch.load(src, weights_only=True)
    ck["version"], ck["rng"]["numpy"], ck["rng"]["python"] = 1, np.random.get_state(), random.getstate()
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, dst)


def test_old_checkpoints_load_only_when_trusted(tiny_run, tiny_dataset, tmp_path):
    run, _ = tiny_run
    old = tmp_path / "old" / "checkpoints" / "step_0000005.pt"
    _old_format(list_checkpoints(run)[0], old)
    with pytest.raises(UnsafeCheckpointError, match="--trust-checkpoint"):
        load_checkpoint(old)
    assert load_checkpoint(old, trust=True)["step"] == 5
    with trusting_checkpoints():
        res = train(tiny_cfg("train.steps=6"), tiny_dataset, tmp_path / "old", resume=True, **QUIET)
    assert res.step == 6 and load_checkpoint(res.checkpoint)["version"] == 2  # saved safe from now on
    code, out, _ = cli("generate", old, "-n", 1, "-o", tmp_path / "g", "--trust-checkpoint")
    assert code == 0, out


def test_every_torch_load_is_the_safe_one():
    src = Path(C.__file__).parent
    calls = [(p, line) for p in src.rglob("*.py") for line in p.read_text().splitlines()
             if "torch.load(" in line and line.strip()[:1].isalpha()]
    assert {p.name for p, _ in calls} == {"checkpoint.py"}
    assert all("weights_only=not trust" in line or "weights_only=True" in line for _, line in calls)


# --- data loss ----------------------------------------------------------------------------------------
def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tiny_run, tiny_dataset, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    newest = latest_checkpoint(run)
    newest.write_bytes(newest.read_bytes()[:1000])  # torn by a disk error
    lines = []
    res = train(tiny_cfg("train.steps=12"), tiny_dataset, run, resume=True, progress=False, log=lines.append)
    text = "\n".join(lines)
    assert "step_0000010.pt" in text and "damaged" in text and "resumed from" in text and "step_0000005.pt" in text
    assert res.step == 12 and (run / "checkpoints" / "step_0000010.pt.damaged").is_file()  # kept, out of the way


def test_resume_fallback_from_the_cli_says_so_once(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    latest_checkpoint(run).write_bytes(b"")
    code, out, _ = cli("train", tiny_run[1], "--run", run, "--resume", "--steps", 11, "--quiet")
    assert code == 0, out
    out = out.replace("\n", "")  # rich wraps long lines
    assert out.count("step_0000010.pt damaged") == 1 and "resumed from" in out and "step_0000005.pt at step 5" in out


def test_stale_temporary_files_are_removed_at_the_next_start(tiny_run, tiny_dataset, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    stale = [run / "checkpoints" / ".step_0000015.pt.x1y2.tmp", run / "checkpoints" / ".latest.abc.tmp",
             run / "samples" / ".sample_00.wav.q.tmp"]
    for p in stale:
        p.write_bytes(b"")  # what kill -9 during a write leaves
    lines = []
    train(tiny_cfg("train.steps=11"), tiny_dataset, run, resume=True, progress=False, log=lines.append)
    assert not any(p.exists() for p in stale)
    assert any("removed 3 temporary file(s)" in m for m in lines)


def test_a_second_training_process_is_refused_with_the_holders_pid(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    with folder_lock(run, "run folder"):
        with pytest.raises(LockError, match=f"PID {os.getpid()}"):
            train(tiny_cfg("train.steps=2"), tiny_dataset, run, **QUIET)
    res = train(tiny_cfg("train.steps=2"), tiny_dataset, run, **QUIET)  # the lock went with the block
    assert res.step == 2


def test_the_run_lock_dies_with_its_process(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from djenerator.io import folder_lock\n"
                               f"with folder_lock({str(run)!r}):\n print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert_one_line_error(*cli("train", tiny_dataset, "--run", run, "--preset", "original", "--steps", 2, "--quiet"),
                              f"PID {holder.pid}", str(run))
    finally:
        holder.kill()  # like kill -9: no clean-up code runs
        holder.wait()
    res = train(tiny_cfg("train.steps=2"), tiny_dataset, run, **QUIET)
    assert res.step == 2


def test_disk_full_during_a_checkpoint_stops_cleanly(tiny_dataset, tmp_path, monkeypatch):
    real_save = torch.save

    def save(obj, f, *a, **kw):
        if obj.get("step") == 10:
            Path(f).write_bytes(b"PK\x03\x04 half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(C.torch, "save", save)
    run = tmp_path / "run"
    with pytest.raises(CheckpointWriteError, match="disk full") as e:
        train(tiny_cfg("train.steps=12"), tiny_dataset, run, **QUIET)
    assert "step_0000010.pt" in str(e.value) and "step_0000005.pt" in str(e.value)
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["latest", "step_0000005.pt"]  # no torn file
    assert load_checkpoint(run)["step"] == 5


def test_disk_full_from_the_cli(tiny_dataset, tmp_path, monkeypatch):
    def full(*a, **kw):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0")

    monkeypatch.setattr(C.torch, "save", full)
    monkeypatch.setattr(C.shutil, "disk_usage", lambda p: type("U", (), {"free": 4096})())
    assert_one_line_error(*cli("train", tiny_dataset, "--run", tmp_path / "run", "--preset", "original", "--steps", 6,
                               "--quiet", "--set", "train.ckpt_every=5", "--set", "model.dense_hidden=[16,32]"),
                          "disk full", "step_0000005.pt")


def _refuse_under(monkeypatch, module, name, folder, code):
    real = getattr(module, name)

    def refuse(*a, **kw):
        where = str(kw.get("dir") or a[0])
        if where.startswith(str(folder)):
            raise OSError(code, os.strerror(code), where)
        return real(*a, **kw)

    monkeypatch.setattr(module, name, refuse)


def test_a_read_only_run_folder(tiny_dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    _refuse_under(monkeypatch, os, "open", run, errno.EROFS)
    assert_one_line_error(*cli("train", tiny_dataset, "--run", run, "--preset", "original", "--steps", 2, "--quiet"),
                          "read-only file system", str(run))


def test_permission_denied_mid_run(tiny_dataset, tmp_path, monkeypatch):
    import tempfile

    run = tmp_path / "run"
    _refuse_under(monkeypatch, tempfile, "mkstemp", run / "samples", errno.EACCES)
    assert_one_line_error(*cli("train", tiny_dataset, "--run", run, "--preset", "original", "--steps", 6, "--quiet",
                               "--set", "model.dense_hidden=[16,32]", "--set", "train.sample_every=5"),
                          "permission denied", "sample_00.wav")


# --- CLI values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,words", [
    (["-n", "0"], ["-n", "at least 1", "0"]),
    (["-n", "-2"], ["-n", "-2"]),
    (["--batch-size", "0"], ["--batch-size", "0"]),
    (["--bpm", "-10"], ["--bpm", "20", "400", "-10"]),
    (["--bpm", "-10", "--seconds", "0.1"], ["--bpm", "-10"]),
    (["--repeat", "0.5"], ["--repeat", "--seconds"]),
    (["--repeat", "2", "--seconds", "0.1"], ["--repeat", "0 to 1", "2"]),
    (["--repeat", "0.5", "--seconds", "0.1"], ["--repeat", "bar clock"]),
])
def test_bad_generate_values(tiny_run, tmp_path, args, words):
    assert_one_line_error(*cli("generate", tiny_run[0], "-o", tmp_path / "g", *args), *words)
    assert not (tmp_path / "g").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_blames_the_device_not_the_checkpoint(tiny_run, tmp_path):
    assert_one_line_error(*cli("generate", tiny_run[0], "-o", tmp_path / "g", "--device", "cuda"),
                          "--device cuda", "no CUDA GPU", "--device cpu")


def test_generate_output_under_a_file(tiny_run, tmp_path):
    (tmp_path / "f").write_text("x")
    assert_one_line_error(*cli("generate", tiny_run[0], "-n", 1, "-o", tmp_path / "f" / "out"),
                          str(tmp_path / "f" / "out"), "a file stands where a folder is needed")
    assert_one_line_error(*cli("generate", tiny_run[0], "-o", tmp_path / "f" / "x.wav", "--seconds", 0.1),
                          str(tmp_path / "f"), "exists and is not a folder")
    (tmp_path / "d.wav").mkdir()
    assert_one_line_error(*cli("generate", tiny_run[0], "-o", tmp_path / "d.wav", "--seconds", 0.1),
                          str(tmp_path / "d.wav"), "is a folder, not a file")
    assert not list(tmp_path.glob(".*.tmp"))


def test_evaluate_on_something_that_is_not_a_run(tiny_run, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(*cli("evaluate", tmp_path / "notes.txt"), "notes.txt", "not a readable checkpoint")
    assert_one_line_error(*cli("evaluate", tiny_run[1]), str(tiny_run[1]), "not a run folder")


# --- prepare through the CLI ---------------------------------------------------------------------------
def test_prepare_over_its_own_source_is_refused(tmp_path):
    os.chdir(tmp_path)
    assert cli("synth", "s", "-n", 2, "--seconds", 1)[0] == 0
    before = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert_one_line_error(*cli("prepare", "s", "-o", "s", "--overwrite"), "--overwrite would delete s", "source")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == before


def test_prepare_prints_a_non_utf8_name_escaped(tmp_path):
    import soundfile as sf

    src = tmp_path / "src"
    src.mkdir()
    sf.write(os.path.join(os.fsencode(src), b"caf\xe9.wav"), 0.5 * np.sin(np.arange(20000) / 5), 16000)
    os.symlink(os.path.join(os.fsencode(src), b"nowhere\xff.wav"), os.path.join(os.fsencode(src), b"dang\xff.wav"))
    code, out, exc = cli("prepare", src, "-o", tmp_path / "ds", "--sr", 8000, "--clip", 1024, "--no-tempo")
    assert code == 0 and exc is None, out
    assert "from 1 file(s)" in out and "dang\\xff.wav: a symbolic link to nothing" in out


def test_disk_full_while_logging_names_the_run(tiny_dataset, tmp_path, monkeypatch):
    import djenerator.io as IO

    def full(self, row):
        raise OSError(errno.ENOSPC, "No space left on device")  # a plain write names no file

    monkeypatch.setattr(IO.StepLog, "write", full)
    run = tmp_path / "run"
    assert_one_line_error(*cli("train", tiny_dataset, "--run", run, "--preset", "original", "--steps", 4, "--quiet",
                               "--set", "model.dense_hidden=[16,32]"), f"{run}: disk full")
