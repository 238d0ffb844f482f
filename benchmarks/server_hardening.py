"""Issue 19, HTTP API half: probe every hostile-input case against a real `djenerator serve` and print a table.

Bounded (a few MB of bodies, 50 concurrent generate requests); not a unit test. Run it before and after a
change to compare:  PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/server_hardening.py [--out FILE.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_server import TOKEN, LiveServer, make_runs  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post_raw(url: str, content, headers=None) -> tuple[int, int, str]:
    r = httpx.post(url + "/api/generate", content=content, timeout=60,
                   headers={"Content-Type": "application/json", **AUTH, **(headers or {})})
    return r.status_code, len(r.content), r.text[:90]


def body_cases(url: str) -> dict:
    big = json.dumps({"run": "tiny", "junk": "A" * 2_000_000}).encode()
    out = {"2 MB body (Content-Length)": post_raw(url, big)[:2]}

    def chunks():
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
    out["2 MB body (chunked)"] = post_raw(url, chunks())[:2]
    for field in ("count", "seed", "bpm", "seconds", "steps", "interpolate_to"):
        for lit in ("NaN", "Infinity", "-Infinity", "1e400"):
            st, n, text = post_raw(url, f'{{"run":"tiny","{field}":{lit}}}')
            out[f"{field}={lit}"] = (st, text)
    out["count=true"] = post_raw(url, '{"run":"tiny","count":true}')[::2]
    out["seed=false"] = post_raw(url, '{"run":"tiny","seed":false}')[::2]
    return out


def access_cases(url: str, port: int) -> dict:
    out = {}
    r = httpx.post(url + "/api/generate", json={"run": "tiny", "count": 1}, headers=AUTH, timeout=60)
    clip = r.json()["clips"][0]
    bare = clip["url"].split("?")[0]
    for path in ("/api/runs", "/api/runs/tiny", "/api/runs/tiny/losses", bare, bare + "/analysis",
                 "/api/datasets", "/api/jobs"):
        out[f"GET {path.replace(clip['id'], '<clip>')} no token"] = httpx.get(url + path).status_code
    out["GET clip url as returned, no header"] = httpx.get(url + clip["url"]).status_code
    for host in ("evil.example", f"evil.example:{port}", f"localhost:{port}", f"127.0.0.1:{port}"):
        out[f"Host: {host}"] = httpx.get(url + "/api/health", headers={"Host": host}).status_code
    return out


def pointer_case(world: dict, url: str) -> dict:
    runs, outside = world["runs"], world["outside"]
    if not (runs / "ptr").exists():
        shutil.copytree(runs / "tiny", runs / "ptr", symlinks=True)
        shutil.copy(runs / "tiny" / "checkpoints" / "step_0000010.pt", outside / "step_0000010.pt")
        (runs / "ptr" / "checkpoints" / "latest").write_text("../../../outside/step_0000010.pt\n")
    r = httpx.post(url + "/api/generate", json={"run": "ptr", "count": 1}, headers=AUTH, timeout=60)
    d = httpx.get(url + "/api/runs/ptr", headers=AUTH)
    return {"generate, latest -> outside": (r.status_code, r.text[:100]), "GET run, latest -> outside": d.status_code}


def cache_case(world: dict, tmp: Path) -> dict:
    """A cache holding 2 entries, 3 different results in a row: are the first results still fetchable?"""
    from djenerator.server import create_app

    app = create_app(runs_dir=world["runs"], cache_dir=tmp / "tinycache", cache_max_entries=2)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000",
                                     timeout=60) as c:
            codes, urls = [], []
            for seed in range(3):
                r = await c.post("/api/generate", json={"run": "tiny", "count": 2, "seed": seed})
                codes.append(r.status_code)
                if r.status_code == 200:
                    urls += [cl["url"] for cl in r.json()["clips"]]
            gone = sum([(await c.get(u)).status_code != 200 for u in urls])
            return codes, f"{gone} of {len(urls)} returned URLs gone"
    codes, gone = asyncio.run(go())
    return {"tiny cache, 3 results: statuses": codes, "tiny cache: URLs promised but gone": gone}


def cache_dir_file(tmp: Path) -> dict:
    f = tmp / "afile"
    f.write_text("x")
    p = subprocess.run([sys.executable, "-m", "djenerator", "serve", "--runs", str(tmp), "--cache-dir", str(f),
                        "--port", "1"], capture_output=True, text=True, timeout=60)
    err = (p.stderr + p.stdout).strip()
    return {"serve --cache-dir FILE": (p.returncode, "Traceback" in err, err.splitlines()[-1][:110] if err else "")}


def concurrency(srv: LiveServer, n: int = 50) -> dict:
    rss = [srv.rss_mb()]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            rss.append(srv.rss_mb())
            time.sleep(0.02)

    async def one(c, i):
        t0 = time.perf_counter()
        r = await c.post("/api/generate", json={"run": "tiny", "count": 16, "seed": 5000 + i})
        return r.status_code, time.perf_counter() - t0

    async def fire():
        async with httpx.AsyncClient(base_url=srv.url, headers=AUTH, timeout=120,
                                     limits=httpx.Limits(max_connections=n)) as c:
            return await asyncio.gather(*[one(c, i) for i in range(n)])

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    before = srv.rss_mb()
    res = asyncio.run(fire())
    stop.set()
    th.join()
    codes = [c for c, _ in res]
    lat = sorted(t for _, t in res)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]  # noqa: E731
    return {"statuses": {str(k): codes.count(k) for k in sorted(set(codes))}, "p50_s": round(q(0.5), 3),
            "p95_s": round(q(0.95), 3), "rss_before_mb": round(before), "rss_peak_mb": round(max(rss))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--concurrency-only", type=int, default=0, metavar="N",
                    help="only the 50-request burst, N times (a fresh server each time)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="djh19-"))
    world = make_runs(tmp / "w")
    res: dict = {}
    for i in range(args.concurrency_only):
        srv = LiveServer(world["runs"], tmp / f"cache{i}", "--token", TOKEN)
        try:
            print(f"burst {i}", concurrency(srv), flush=True)
        finally:
            srv.stop()
    if args.concurrency_only:
        return
    srv = LiveServer(world["runs"], tmp / "cache", "--token", TOKEN, "--datasets", str(world["datasets"]))
    try:
        res["concurrency"] = concurrency(srv)
        res.update(body_cases(srv.url))
        res.update(access_cases(srv.url, srv.port))
        res.update(pointer_case(world, srv.url))
    finally:
        srv.stop()
    res.update(cache_case(world, tmp))
    res.update(cache_dir_file(tmp))
    for k, v in res.items():
        print(f"{k:45s} {v}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
