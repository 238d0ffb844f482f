"""The CLI end to end in a temporary folder, through a real subprocess (as a user runs it)."""
import os
import subprocess
import sys

import soundfile as sf


def djenerator(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "djenerator", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_end_to_end(tmp_path):
    r = djenerator("synth", "raw", "-n", "3", "--seconds", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "raw").glob("*.wav"))) == 3
    r = djenerator("prepare", "raw", "-o", "ds", "--sr", "8000", "--clip", "1024", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "clips" in r.stdout
    r = djenerator("train", "ds", "--preset", "original", "--run", "run", "--steps", "6", "--quiet",
                   "--set", "model.dense_hidden=[16,32]", "--set", "train.batch_size=4", "--set", "train.ckpt_every=3",
                   cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "checkpoints" / "step_0000006.pt").is_file()
    r = djenerator("train", "ds", "--run", "run", "--steps", "8", "--resume", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stderr and (tmp_path / "run" / "checkpoints" / "step_0000008.pt").is_file()
    r = djenerator("train", "ds", "--run", "run", "--steps", "100000", "--resume", "--cpu-minutes", "0.05", "--quiet",
                   cwd=tmp_path)  # a CPU budget stops it, with a checkpoint
    assert r.returncode == 0, r.stderr
    assert "time budget at step" in r.stdout and "step 100000" not in r.stdout
    r = djenerator("generate", "run", "-n", "3", "--seed", "5", "-o", "gen", "--bpm", "140", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "--bpm is ignored" in r.stderr
    wavs = sorted((tmp_path / "gen").glob("*.wav"))
    assert len(wavs) == 3
    x, sr = sf.read(wavs[0])
    assert sr == 8000 and len(x) == 1024 and abs(x).max() <= 1.0
    r = djenerator("prepare", "raw", "-o", "ds_laptop", "--preset", "laptop", "--hop", "4096", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    from djenerator.data.dataset import ClipDataset

    ds = ClipDataset(tmp_path / "ds_laptop")
    assert (ds.sample_rate, ds.clip_samples, ds.manifest["hop_samples"]) == (8000, 8192, 4096)
    r = djenerator("presets", cwd=tmp_path)
    assert r.returncode == 0 and "original" in r.stdout and "recommended" in r.stdout


def test_user_errors_are_one_line_not_tracebacks(tmp_path):
    cases = [
        ("prepare", "nowhere", "-o", "ds"),
        ("train", "not_a_dataset", "--quiet"),
        ("generate", "missing.pt"),
        ("train", "x", "--preset", "nope"),
        ("train", "x", "--set", "train.loss=magic"),
        ("synth", "raw", "--sr", "1000"),
    ]
    from typer.testing import CliRunner

    from djenerator.cli import app

    os.chdir(tmp_path)
    for args in cases:
        r = CliRunner().invoke(app, list(args))
        assert r.exit_code == 2, (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
        assert "error:" in r.output, (args, r.output)
