"""`djenerator demo` end to end (what `make demo` runs), shrunk to seconds."""
import soundfile as sf

from djenerator.pipeline import demo_preset, run_demo


def test_auto_preset_is_sized_for_the_machine():
    import torch

    assert demo_preset("auto") == ("recommended" if torch.cuda.is_available() else "laptop")
    assert demo_preset("original") == "original"


def test_demo_with_the_cpu_preset_writes_clips_and_a_piece(tmp_path):
    res = run_demo(tmp_path / "demo", preset="laptop", minutes=0.05, n_files=2, seconds=3.0,
                   log=lambda m: None, piece_seconds=5.0)
    clips = sorted(res["generated_dir"].glob("clip_*.wav"))
    pieces = sorted(res["generated_dir"].glob("piece_*.wav"))
    assert len(clips) == 8 and len(pieces) == 1
    info = sf.info(str(pieces[0]))
    assert info.samplerate == 8000 and abs(info.duration - 5.0) < 0.01
    assert sf.info(str(clips[0])).frames == 8192
    assert res["checkpoint"].is_file() and (res["run_dir"] / "logs" / "losses.csv").is_file()
