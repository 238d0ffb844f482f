"""The shipped base model (data only, weights_only) and starting a run from a base."""
import numpy as np
import pytest
import torch

from djenerator.base import base_path, load_base, seed_run
from djenerator.checkpoint import latest_checkpoint, list_checkpoints
from djenerator.config import build_config
from djenerator.models import build_discriminator, build_generator


def tiny_base(path, step: int = 7):
    """A small laptop-preset base (fresh weights, no optimiser states) at ``step``."""
    cfg = build_config("laptop", [], ["model.dim=4", "model.latent_dim=8"])
    torch.manual_seed(0)
    G, D = build_generator(cfg), build_discriminator(cfg)
    torch.save({"version": 1, "step": step, "config": cfg.to_dict(), "G": G.state_dict(), "D": D.state_dict()}, path)
    return path


def test_shipped_laptop_base_loads_weights_only_and_makes_sound(one_thread):
    from djenerator.base import base_config
    from djenerator.generate import generate_clips, generate_long

    path = base_path("laptop")
    assert path is not None, "src/djenerator/base/laptop.pt is missing"
    assert path.stat().st_size < 5e6
    base = torch.load(path, map_location="cpu", weights_only=True)
    assert base["step"] > 0 and base["provenance"]["command"]
    cfg = base_config(load_base(path))
    G = build_generator(cfg)
    G.load_state_dict(base["G"])
    G.eval()
    clips = np.asarray(generate_clips(G, cfg, 2, seed=0))
    assert clips.shape == (2, cfg.data.clip_samples) and np.isfinite(clips).all()
    piece = generate_long(G, cfg, 2.0, seed=0)
    assert piece.shape == (2 * cfg.data.sample_rate,) and np.sqrt(np.mean(piece**2)) > 1e-3


def test_seed_run_writes_the_base_as_a_checkpoint_at_its_step(tmp_path, one_thread):
    base = load_base(tiny_base(tmp_path / "b.pt", step=7))
    ck = seed_run(base, tmp_path / "run")
    assert ck.name == "step_0000007.pt" and latest_checkpoint(tmp_path / "run") == ck
    assert torch.load(ck, weights_only=False)["step"] == 7


def test_load_base_rejects_other_files(tmp_path):
    from djenerator.checkpoint import CheckpointError

    torch.save({"G": {}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError):
        load_base(tmp_path / "x.pt")
