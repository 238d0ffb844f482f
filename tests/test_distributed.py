"""Data-parallel training: two CPU processes (gloo on loopback) against one process on the same global batch."""
import json
import os
import shutil
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from djenerator import distributed
from djenerator.checkpoint import list_checkpoints, load_checkpoint
from djenerator.config import build_config
from djenerator.train import train

STEPS = 4
ADA = ("augment.enabled=true", "augment.ada=true", "augment.ada_interval=1", "augment.ada_kimg=0.01",
       "augment.ada_target=0.3", "augment.ops=[gain,shift,cutout]")


def make_dataset(path, n=24, T=1024, sr=8000):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(T) / sr
    clips = np.stack([0.5 * np.sin(2 * np.pi * rng.uniform(100, 800) * t) + 0.05 * rng.standard_normal(T)
                      for _ in range(n)]).astype(np.float32)
    np.save(path / "clips.npy", clips)
    (path / "manifest.json").write_text(json.dumps({"sample_rate": sr, "clip_samples": T,
                                                    "clips": [{"bpm": None} for _ in range(n)]}))
    return path


def cfg_for(loss, *extra):
    # no dropout and no instance noise: then the only randomness is the keyed batches and latents, which
    # N processes share with one process; batch norm stays on (synchronised across ranks)
    opt = ["train.optimizer=adam", "train.lr_g=1e-3", "train.lr_d=1e-3"] if loss != "bce" else []
    return build_config("original", [], ["data.sample_rate=8000", "data.clip_samples=1024", "model.dense_hidden=[16,32]",
                                         "model.dropout=0", "train.instance_noise=0", f"train.loss={loss}",
                                         "train.batch_size=8", "train.log_every=2", "train.ckpt_every=1",
                                         "train.sample_every=1000", "train.n_samples=1", "train.keep_checkpoints=0",
                                         f"train.steps={STEPS}", "train.device=cpu", "train.feature_matching=1.0",
                                         *opt, *extra])


def run_recording(cfg, ds, run_dir, out_file, resume=False):
    """train() while recording every parameter of G and D after every step (an optimiser post-step hook)."""
    import djenerator.train as T

    real_make, opts, snaps = T.make_optimizer, [], []

    def make(params, cfg_, lr):
        opt = real_make(params, cfg_, lr)
        opts.append(opt)
        if len(opts) == 1:  # the generator's optimiser steps last in every training step
            opt.register_step_post_hook(lambda *_: snaps.append(
                [p.detach().clone() for o in opts for g in o.param_groups for p in g["params"]]))
        return opt

    T.make_optimizer = make
    try:
        res = train(cfg, ds, run_dir, resume=resume, progress=False, log=lambda m: None)
    finally:
        T.make_optimizer = real_make
    torch.save(snaps, out_file)
    return res


def _worker(rank, world, jobs):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "RANK": str(rank), "WORLD_SIZE": str(world),
                       "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)})
    torch.set_num_threads(1)
    from djenerator.augment import AdaController

    real_update, ps = AdaController.update, []

    def recording_update(self):
        p = real_update(self)
        ps.append([p, self.last_rt])
        return p

    AdaController.update = recording_update
    import djenerator.train as T

    real_alarm = T.copy_alarm
    for port, loss, ds, run_dir, out_prefix, extra in jobs:  # train() joins and leaves a process group per run
        os.environ["MASTER_PORT"] = str(port)
        ps.clear()
        # "copying" runs: rank 0 (which alone checks samples) finds a copy at every sample step
        T.copy_alarm = (lambda *a, **k: (1, "1 of 1 samples copy training clips")) if "copying" in str(run_dir) \
            else real_alarm
        run_recording(cfg_for(loss, *extra), ds, run_dir, f"{out_prefix}{rank}.pt")
        with open(f"{out_prefix}{rank}_ada.json", "w") as f:
            json.dump(ps, f)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    ds = make_dataset(root / "ds")
    jobs = [(free_port(), "bce", ds, root / "bce2", str(root / "bce2_rank"), ()),
            (free_port(), "wgan-gp", ds, root / "gp2", str(root / "gp2_rank"), ()),
            (free_port(), "hinge", ds, root / "ada2", str(root / "ada2_rank"), ADA),
            (free_port(), "hinge", ds, root / "copying2", str(root / "copying2_rank"),
             (*ADA, "augment.ada_kimg=100", "train.sample_every=2"))]
    mp.start_processes(_worker, args=(2, jobs), nprocs=2, join=True, start_method="spawn")
    run_recording(cfg_for("bce"), ds, root / "bce1", root / "bce1.pt")
    return root


def assert_close(a, b, rtol=1e-4, atol=1e-5):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


def test_ranks_hold_identical_parameters_after_every_step(runs):
    for name in ("bce2", "gp2", "ada2"):  # wgan-gp: the penalty's gradient (through D.module) is all-reduced too
        r0, r1 = torch.load(runs / f"{name}_rank0.pt"), torch.load(runs / f"{name}_rank1.pt")
        assert len(r0) == len(r1) == STEPS
        for step, (a, b) in enumerate(zip(r0, r1)):
            assert all(torch.equal(x, y) for x, y in zip(a, b)), f"{name}: ranks differ after step {step + 1}"
        assert not torch.equal(r0[0][0], r0[-1][0])  # and training moved them


def test_two_processes_match_one_process_on_the_same_global_batch(runs):
    two, one = torch.load(runs / "bce2_rank0.pt"), torch.load(runs / "bce1.pt")
    assert len(two) == len(one) == STEPS
    for a, b in zip(two, one):
        assert_close(a, b)
    # the models really differ from step to step by far more than the tolerance
    assert max((x - y).abs().max().item() for x, y in zip(one[0], one[-1])) > 1e-3


def test_only_rank_zero_writes_and_checkpoints_load_into_plain_models(runs):
    run = runs / "bce2"
    ckpts = list_checkpoints(run)
    assert [load_checkpoint(p)["step"] for p in ckpts] == list(range(1, STEPS + 1))
    ck = load_checkpoint(ckpts[-1])
    assert ck["world_size"] == 2 and len(ck["rng_ranks"]) == 2
    rows = (run / "logs" / "losses.csv").read_text().splitlines()
    assert len(rows) == 1 + STEPS // 2  # header + one row per log step, written once
    from djenerator.models import build_discriminator, build_generator

    cfg = cfg_for("bce")
    build_generator(cfg).load_state_dict(ck["G"])  # DistBatchNorm1d keeps BatchNorm1d's keys
    build_discriminator(cfg).load_state_dict(ck["D"])


def test_resume_with_another_number_of_processes(runs, tmp_path):
    """Steps 1-2 with two processes, then 3-4 resumed in one process = 4 steps in one process."""
    run = tmp_path / "resumed"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(runs / "bce2" / "checkpoints" / "step_0000002.pt", run / "checkpoints")
    res = run_recording(cfg_for("bce"), runs / "ds", run, tmp_path / "resumed.pt", resume=True)
    assert res.step == STEPS
    resumed, one = torch.load(tmp_path / "resumed.pt"), torch.load(runs / "bce1.pt")
    assert len(resumed) == STEPS - 2
    assert_close(resumed[-1], one[-1])


def test_background_loading_changes_nothing(runs, tmp_path):
    run_recording(cfg_for("bce", "train.num_workers=1", "train.steps=3"), runs / "ds", tmp_path / "pf", tmp_path / "pf.pt")
    pf, one = torch.load(tmp_path / "pf.pt"), torch.load(runs / "bce1.pt")
    for a, b in zip(pf, one[:3]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_batch_slices_and_latents_tile_the_global_batch():
    d0, d1 = distributed.Dist(rank=0, world=2), distributed.Dist(rank=1, world=2)
    z = distributed.global_latents(3, 7, 0, 8, 5)
    assert torch.equal(z, distributed.global_latents(3, 7, 0, 8, 5))
    assert not torch.equal(z, distributed.global_latents(3, 7, 1, 8, 5))
    assert torch.equal(torch.cat([z[distributed.local_slice(8, d0)], z[distributed.local_slice(8, d1)]]), z)
    from djenerator.config import ConfigError

    with pytest.raises(ConfigError, match="multiple of 2"):
        distributed.local_slice(7, d0)


def test_ada_probability_is_the_same_on_every_rank(runs):
    """Each rank sees different clips; p must still move from the global overfitting signal, in step."""
    p0 = json.loads((runs / "ada2_rank0_ada.json").read_text())
    p1 = json.loads((runs / "ada2_rank1_ada.json").read_text())
    assert len(p0) == STEPS and p0 == p1  # the same signal r_t and the same p on both ranks
    assert len({p for p, _ in p0}) > 1  # p moved


def test_copies_found_on_rank_0_lift_p_on_every_rank(runs):
    p0 = json.loads((runs / "copying2_rank0_ada.json").read_text())
    p1 = json.loads((runs / "copying2_rank1_ada.json").read_text())
    assert len(p0) == STEPS and p0 == p1
    assert max(p for p, _ in p0[:2]) < 0.01 <= 0.1 <= min(p for p, _ in p0[2:])  # r_t alone moves p by 8e-5 a step
