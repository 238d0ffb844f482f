"""`djenerator demo` end to end (what `make demo` runs), shrunk to seconds."""
import soundfile as sf

from djenerator.checkpoint import list_checkpoints
from djenerator.pipeline import demo_epilogue, demo_preset, run_demo


def test_auto_preset_is_sized_for_the_machine():
    import torch

    assert demo_preset("auto") == ("recommended" if torch.cuda.is_available() else "laptop")
    assert demo_preset("original") == "original"


def test_demo_with_the_cpu_preset_writes_clips_and_a_piece(tmp_path):
    res = run_demo(tmp_path / "demo", preset="laptop", minutes=0.05, n_files=2, seconds=3.0,
                   log=lambda m: None, piece_seconds=5.0)
    clips = sorted(res["generated_dir"].glob("clip_*.wav"))
    pieces = sorted(res["generated_dir"].glob("piece_*.wav"))
    assert len(clips) == 8 and len(pieces) == 4  # DEMO_PIECES, seeds 0-3
    info = sf.info(str(pieces[0]))
    assert info.samplerate == 8000 and abs(info.duration - 5.0) < 0.01
    assert sf.info(str(clips[0])).frames == 8192
    assert res["checkpoint"].is_file() and (res["run_dir"] / "logs" / "losses.csv").is_file()


def test_demo_continues_from_a_base_model_for_a_step_budget(tmp_path, one_thread):
    from test_base import tiny_base

    base = tiny_base(tmp_path / "tiny.pt", step=7)
    kw = dict(preset="laptop", steps=3, n_files=2, seconds=3.0, base=base, log=lambda m: None, piece_seconds=3.0,
              eval_n=4)
    res = run_demo(tmp_path / "demo", **kw)
    ckpts = [p.name for p in list_checkpoints(res["run_dir"])]
    assert res["start_step"] == 7 and res["step"] == 10 and ckpts[0] == "step_0000007.pt"
    assert res["before"].is_file() and len(res["pieces"]) == 4 and all(p.is_file() for p in res["pieces"])
    assert len(res["piece_stats"]) == 4 and len(res["verdict"]) == 4
    mean_flat = sum(s["flatness"] for s in res["piece_stats"]) / 4  # the verdict judges the mean over the pieces
    assert abs(res["piece_compare"]["flatness"]["generated"] - mean_flat) < 1e-9
    again = run_demo(tmp_path / "demo", **kw)  # a second demo continues the same run
    assert again["start_step"] == 10 and again["step"] == 13
    text = "\n".join(demo_epilogue(again, tmp_path / "demo"))
    assert "--resume --steps 2013" in text and "again" in text
