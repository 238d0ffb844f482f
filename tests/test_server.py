"""`djenerator serve`: API against a real uvicorn process on loopback, plus in-process checks.

The fixtures train a tiny dense model for a few steps on audio made here, so every test talks to a
real checkpoint. Helpers (make_runs, LiveServer) are shared with tests/browser/.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from djenerator.config import build_config
from djenerator.data.prepare import prepare
from djenerator.train import train

TOKEN = "s3cret-token"


# ---- shared helpers ---------------------------------------------------------------------------------
def tiny_cfg(*extra):
    return build_config("original", [], ["data.sample_rate=8000", "data.clip_samples=1024", "model.dense_hidden=[16,32]",
                                         "train.batch_size=8", "train.log_every=2", "train.ckpt_every=5",
                                         "train.sample_every=5", "train.n_samples=2", "train.device=cpu", *extra])


def make_runs(root: Path) -> dict[str, Path]:
    """root/datasets/tiny (prepared), root/runs/tiny (10 steps, checkpoints at 5 and 10, a report.json),
    root/outside (things that must never be served) and symlinks from the runs folder pointing at it."""
    root.mkdir(parents=True, exist_ok=True)
    sr = 8000
    t = np.arange(sr * 4) / sr
    x = (0.5 * np.sin(2 * np.pi * 110 * (1 + np.floor(t)) * t)).astype(np.float32)
    x += 0.02 * np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    sf.write(root / "x.wav", x, sr)
    cfg = build_config("original", [], ["data.sample_rate=8000", "data.clip_samples=1024", "data.estimate_tempo=false"])
    prepare(root / "x.wav", root / "datasets" / "tiny", cfg.data, progress=False)
    runs = root / "runs"
    train(tiny_cfg("train.steps=10"), root / "datasets" / "tiny", runs / "tiny", progress=False, log=lambda m: None)
    # an evaluation report in the evaluator's format, with the seed its clips were made from
    report = {"step": 10, "memorisation": {"seed": 0, "threshold": 0.8, "n_flagged": 1,
                                           "clips": [{"flagged": True, "corr": 0.93, "source_file": "x.wav", "source_time_s": 1.5},
                                                     {"flagged": False, "corr": 0.2, "source_file": "x.wav", "source_time_s": 0.0}]}}
    (runs / "tiny" / "report.json").write_text(json.dumps(report))
    # things outside the runs folder, reachable only through symlinks
    outside = root / "outside"
    shutil.copytree(runs / "tiny", outside / "secret_run")
    shutil.copy(runs / "tiny" / "checkpoints" / "step_0000005.pt", outside / "secret.pt")
    (outside / "passwd").write_text("root:x:0:0:SECRET\n")
    (runs / "evil").symlink_to(outside / "secret_run")
    (runs / "tiny" / "checkpoints" / "step_0000099.pt").symlink_to(outside / "secret.pt")
    return {"root": root, "runs": runs, "datasets": root / "datasets", "outside": outside}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`python -m djenerator serve` as a child process on a random loopback port."""

    def __init__(self, runs: Path, cache: Path, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log = open(cache.parent / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "djenerator", "serve", "--runs", str(runs),
                                      "--port", str(self.port), "--cache-dir", str(cache), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start in 60 s")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def raw_get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    """GET with the path sent byte for byte (no client-side normalisation of '..' or %2e)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    if token:
        conn.putheader("Authorization", f"Bearer {token}")
    conn.endheaders()
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


# ---- fixtures ---------------------------------------------------------------------------------------
def live_server(world, workers: int, queue: int):
    """A real `djenerator serve` process on ``world``'s runs, with the token and these pool limits."""
    srv = LiveServer(world["runs"], world["root"] / "cache", "--token", TOKEN, "--workers", str(workers),
                     "--queue", str(queue), "--datasets", str(world["datasets"]))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_runs(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def live(world):
    yield from live_server(world, workers=2, queue=4)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


# ---- the real server ---------------------------------------------------------------------------------
def test_health_runs_and_details(live):
    h = httpx.get(live.url + "/api/health").json()
    assert h["status"] == "ok" and h["auth_required"] is True and h["generation"]["capacity"] == 6
    runs = httpx.get(live.url + "/api/runs", headers=AUTH).json()
    assert [r["id"] for r in runs] == ["tiny"]  # the symlinked 'evil' run is invisible
    assert runs[0]["step"] == 10 and runs[0]["n_checkpoints"] == 2 and runs[0]["has_report"]
    d = httpx.get(live.url + "/api/runs/tiny", headers=AUTH).json()
    assert d["config"]["data"]["sample_rate"] == 8000 and d["step"] == 10
    assert d["config"]["model"]["arch"] == "dense" and d["long_form"] is False  # one window: models.ARCHS says
    assert [c["id"] for c in d["checkpoints"]] == ["step_0000005.pt", "step_0000010.pt"]  # not the symlinked 99
    assert d["latest_metrics"]["step"] == 10 and "d_loss" in d["latest_metrics"]
    assert d["evaluation"]["n_flagged"] == 1
    losses = httpx.get(live.url + "/api/runs/tiny/losses", headers=AUTH).json()
    assert losses["data"]["step"] == [2, 4, 6, 8, 10] and len(losses["data"]["g_loss"]) == 5
    assert httpx.get(live.url + "/docs").status_code == 200
    assert "/api/generate" in httpx.get(live.url + "/openapi.json").json()["paths"]


def test_generate_needs_token_and_serves_ranges(live):
    body = {"run": "tiny", "count": 2, "seed": 0}
    assert httpx.post(live.url + "/api/generate", json=body).status_code == 401
    assert httpx.post(live.url + "/api/generate", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    r = httpx.post(live.url + "/api/generate", json=body, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["step"] == 10 and res["checkpoint"] == "step_0000010.pt" and len(res["clips"]) == 2
    # the report's memorisation flags carry over to clip i of the report's seed
    assert res["clips"][0]["memorisation"]["flagged"] is True and res["clips"][1]["memorisation"]["flagged"] is False
    clip = res["clips"][0]
    full = httpx.get(live.url + clip["url"])
    assert full.status_code == 200 and full.headers["content-type"] == "audio/wav"
    assert full.headers["accept-ranges"] == "bytes"
    assert 'filename="tiny_step10_seed0_00.wav"' in full.headers["content-disposition"]
    data = full.content
    x, sr = sf.read(__import__("io").BytesIO(data))
    assert sr == 8000 and len(x) == 1024
    part = httpx.get(live.url + clip["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert part.content == data[100:200]
    tail = httpx.get(live.url + clip["url"], headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    dl = httpx.get(live.url + clip["download_url"])
    assert dl.headers["content-disposition"].startswith("attachment;")
    head = httpx.head(live.url + clip["url"])
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
    an = httpx.get(live.url + clip["analysis_url"]).json()
    assert len(an["peaks"]["min"]) == 800 and an["spectrogram"]["frames"] > 5 and an["samples"] == 1024
    # same request, same clips (from the cache); a different seed differs; seed 5 is not in the report
    again = httpx.post(live.url + "/api/generate", json=body, headers=AUTH).json()
    assert again["cached"] and [c["id"] for c in again["clips"]] == [c["id"] for c in res["clips"]]
    other = httpx.post(live.url + "/api/generate", json={**body, "seed": 5}, headers=AUTH).json()
    assert httpx.get(live.url + other["clips"][0]["url"]).content != data
    assert other["clips"][0]["memorisation"] is None


def test_limits_answer_422_with_a_clear_message(live):
    def post(**kw):
        return httpx.post(live.url + "/api/generate", json={"run": "tiny", **kw}, headers=AUTH)

    r = post(count=17)
    assert r.status_code == 422 and "count must be between 1 and 16" in r.json()["detail"]
    r = post(interpolate_to=3, steps=40)
    assert r.status_code == 422 and "steps must be between 2 and 32" in r.json()["detail"]
    r = post(seconds=5000)
    assert r.status_code == 422 and "seconds" in r.json()["detail"]
    r = post(seconds=2)  # a dense model makes one 0.128-s window: no 2-s pieces
    assert r.status_code == 422 and "fixed" in r.json()["detail"]
    r = post(repeat=0.5)  # repeat shapes pieces
    assert r.status_code == 422 and "repeat" in r.json()["detail"] and "seconds" in r.json()["detail"]
    r = post(seconds=0.1, repeat=0.5)  # a dense model has no bar clock to lock its latents to
    assert r.status_code == 422 and "bar clock" in r.json()["detail"]
    assert post(seconds=0.1, repeat=1.5).status_code == 422
    assert post(count=0).status_code == 422 and post(seed=-1).status_code == 422
    assert post(bpm=10000).status_code == 422 and post(unknown=1).status_code == 422
    r = post(seed=1, interpolate_to=2, steps=3)
    assert r.status_code == 200 and len(r.json()["clips"]) == 3


@pytest.mark.parametrize("path", [
    "/api/runs/..", "/api/runs/%2e%2e", "/api/runs/%2E%2E/outside", "/api/runs/..%2f..%2foutside",
    "/api/runs/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/api/runs//etc/passwd", "/api/runs/evil", "/api/runs/evil/losses",
    "/api/runs/..%2Foutside%2Fsecret_run", "/api/runs/tiny/../evil", "/api/clips/..%2f..%2fpasswd",
    "/api/clips/%2e%2e%2f%2e%2e%2foutside%2fpasswd", "/api/clips/%2Fetc%2Fpasswd", "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/app.py", "/static/..%2fapp.py", "/api/runs/tiny%00", "/api/runs/" + "a" * 300,
])
def test_path_traversal_get(live, path):
    status, body = raw_get(live.port, path, TOKEN)
    assert status in (400, 404, 405, 422), (path, status)
    assert b"SECRET" not in body and b"root:" not in body and b"import " not in body


@pytest.mark.parametrize("run,ckpt", [
    ("..", "latest"), ("../outside/secret_run", "latest"), ("/etc", "latest"), ("evil", "latest"),
    ("tiny/../evil", "latest"), (str(Path("/tmp")), "latest"),
    ("tiny", "../../outside/secret.pt"), ("tiny", "/etc/passwd"), ("tiny", "step_0000099.pt"),
    ("tiny", "%2e%2e%2fsecret.pt"), ("tiny", "step_0000010.pt/../../x"), ("tiny", "config.yaml"),
])
def test_path_traversal_generate(live, run, ckpt):
    r = httpx.post(live.url + "/api/generate", json={"run": run, "checkpoint": ckpt}, headers=AUTH)
    assert r.status_code == 404, (run, ckpt, r.status_code, r.text)


def test_concurrent_generation_is_bounded(live):
    """30 simultaneous requests on 2 workers + 4 queue slots: each one succeeds or gets 503 + Retry-After,
    and the server's memory stays bounded."""
    live_rss = [live.rss_mb()]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            live_rss.append(live.rss_mb())
            time.sleep(0.02)

    async def fire(n):
        async with httpx.AsyncClient(base_url=live.url, headers=AUTH, timeout=60,
                                     limits=httpx.Limits(max_connections=n)) as c:
            return await asyncio.gather(*[c.post("/api/generate", json={"run": "tiny", "count": 16, "seed": 1000 + i})
                                          for i in range(n)])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    before = live.rss_mb()
    rs = asyncio.run(fire(30))
    stop.set()
    sampler.join()
    codes = [r.status_code for r in rs]
    assert set(codes) <= {200, 503}, codes
    for r in rs:
        if r.status_code == 503:
            assert int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["detail"]
        else:
            assert len(r.json()["clips"]) == 16
    peak = max(live_rss)
    print(f"\nconcurrency: {len(rs)} requests, {codes.count(200)} ok, {codes.count(503)} x 503; "
          f"RSS before {before:.0f} MB, peak {peak:.0f} MB")
    assert codes.count(200) >= 2
    assert peak < 1500 and peak - before < 300
    h = httpx.get(live.url + "/api/health").json()
    assert h["generation"]["in_flight"] == 0 and h["generation"]["rejected"] == codes.count(503)


def test_training_job_progress_limit_and_stop(live, world):
    body = {"dataset": "tiny", "run": "job1", "steps": 100000, "preset": "original",
            "overrides": ["model.dense_hidden=[16,32]", "train.batch_size=8", "train.log_every=5",
                          "train.ckpt_every=1000000", "train.sample_every=1000000", "train.device=cpu"]}
    assert httpx.post(live.url + "/api/jobs", json=body).status_code == 401
    assert httpx.get(live.url + "/api/datasets", headers=AUTH).json()["datasets"] == ["tiny"]
    bad = httpx.post(live.url + "/api/jobs", json={**body, "dataset": "../outside"}, headers=AUTH)
    assert bad.status_code == 404
    assert httpx.post(live.url + "/api/jobs", json={**body, "run": "../x"}, headers=AUTH).status_code == 422
    assert httpx.post(live.url + "/api/jobs", json={**body, "run": "tiny"}, headers=AUTH).status_code == 409
    r = httpx.post(live.url + "/api/jobs", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "running"
    second = httpx.post(live.url + "/api/jobs", json={**body, "run": "job2"}, headers=AUTH)
    assert second.status_code == 429 and "at most 1" in second.json()["detail"]
    deadline = time.time() + 60
    while time.time() < deadline:
        job = httpx.get(f"{live.url}/api/jobs/{job['id']}", headers=AUTH).json()
        if job["step"] > 0 or job["state"] != "running":
            break
        time.sleep(0.3)
    assert job["state"] == "running" and job["step"] > 0, job
    assert httpx.post(f"{live.url}/api/jobs/{job['id']}/stop").status_code == 401
    httpx.post(f"{live.url}/api/jobs/{job['id']}/stop", headers=AUTH)
    deadline = time.time() + 30
    while time.time() < deadline and job["state"] in ("running", "stopping"):
        time.sleep(0.3)
        job = httpx.get(f"{live.url}/api/jobs/{job['id']}", headers=AUTH).json()
    assert job["state"] == "stopped", job
    # the interrupted run saved a checkpoint and is now a run like any other
    runs = {r["id"]: r for r in httpx.get(live.url + "/api/runs", headers=AUTH).json()}
    assert "job1" in runs and runs["job1"]["n_checkpoints"] == 1 and runs["job1"]["step"] >= job["step"]


# ---- in-process checks ------------------------------------------------------------------------------
def client(world, tmp_path, **kw):
    from fastapi.testclient import TestClient

    from djenerator.server import create_app

    return TestClient(create_app(runs_dir=world["runs"], cache_dir=tmp_path / "cache", **kw))


def test_clip_cache_is_bounded_and_regenerates_identically(world, tmp_path):
    # clip_ttl=0: no result is promised past its response, so the LRU bound alone applies
    with client(world, tmp_path, cache_max_entries=3, clip_ttl=0) as c:
        first = c.post("/api/generate", json={"run": "tiny", "count": 2, "seed": 0}).json()
        audio = c.get(first["clips"][1]["url"]).content
        for seed in range(1, 6):
            assert c.post("/api/generate", json={"run": "tiny", "count": 2, "seed": seed}).status_code == 200
        assert c.get("/api/health").json()["cache"]["entries"] <= 3
        assert c.get(first["clips"][1]["url"]).status_code == 404  # evicted
        again = c.post("/api/generate", json={"run": "tiny", "count": 2, "seed": 0}).json()
        assert not again["cached"] and again["clips"][1]["id"] == first["clips"][1]["id"]
        assert c.get(again["clips"][1]["url"]).content == audio  # same request, same audio


def test_model_cache_is_bounded(world, tmp_path):
    with client(world, tmp_path, max_models=1) as c:
        for seed, ck in enumerate(("step_0000005.pt", "step_0000010.pt", "step_0000005.pt")):
            r = c.post("/api/generate", json={"run": "tiny", "checkpoint": ck, "count": 1, "seed": seed})
            assert r.status_code == 200 and r.json()["checkpoint"] == ck
        h = c.get("/api/health").json()
        assert h["models_cached"] == 1 and h["model_loads"] == 3


def test_full_queue_answers_503_with_retry_after(world, tmp_path, monkeypatch):
    import djenerator.generate as gen

    real = gen.generate_clips
    gate = threading.Event()

    def slow(*a, **k):
        gate.wait(10)
        return real(*a, **k)

    monkeypatch.setattr(gen, "generate_clips", slow)
    from djenerator.server import create_app

    app = create_app(runs_dir=world["runs"], cache_dir=tmp_path / "cache", workers=1, queue=1)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            tasks = []
            for s in (0, 1, 2, 0):  # 0 runs, 1 waits, 2 finds the queue full, the second 0 shares the first's work
                tasks.append(asyncio.create_task(c.post("/api/generate", json={"run": "tiny", "seed": s})))
                await asyncio.sleep(0.15)
            await asyncio.sleep(0.2)
            gate.set()
            return await asyncio.gather(*tasks)

    rs = asyncio.run(go())
    assert [r.status_code for r in rs] == [200, 200, 503, 200]
    busy = rs[2]
    assert int(busy.headers["Retry-After"]) >= 1
    assert rs[0].json()["clips"][0]["id"] == rs[3].json()["clips"][0]["id"]


def test_long_form_uses_generate_long_when_present(world, tmp_path, monkeypatch):
    import djenerator.generate as gen

    calls = []

    def generate_long(G, cfg, seconds, seed, bpm=None):
        calls.append((seconds, seed, bpm))
        return np.full(int(seconds * cfg.data.sample_rate), 0.1 * (seed % 5), dtype=np.float32)

    monkeypatch.setattr(gen, "generate_long", generate_long, raising=False)
    with client(world, tmp_path, max_seconds=10) as c:
        r = c.post("/api/generate", json={"run": "tiny", "seconds": 2.5, "count": 2, "seed": 3, "bpm": 120})
        assert r.status_code == 200, r.text
        assert [cl["seconds"] for cl in r.json()["clips"]] == [2.5, 2.5]
        assert calls == [(2.5, 3, 120.0), (2.5, 4, 120.0)]
        r = c.post("/api/generate", json={"run": "tiny", "seconds": 11})
        assert r.status_code == 422 and "at most 10" in r.json()["detail"]


def test_page_is_served_without_external_resources(world, tmp_path):
    with client(world, tmp_path) as c:
        html = c.get("/").text
        assert "<canvas" in html and "/static/app.js" in html
        for asset in ("/static/app.js", "/static/style.css"):
            assert c.get(asset).status_code == 200
        for text in (html, c.get("/static/app.js").text, c.get("/static/style.css").text):
            assert "http://" not in text.replace("http://t", "") and "https://" not in text
