"""Issue 19, the HTTP API: hostile and clumsy requests get a clear 4xx (never a 500, never their input
echoed back), every API route but /api/health needs the token, the Host header must name this server,
generated results stay fetchable for the promised time, and the OpenAPI spec says all of it (checked by
schemathesis against a live server)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from test_server import AUTH, TOKEN, LiveServer, client, live_server, make_runs  # noqa: F401  (tests/ is on sys.path)

GENERATE_FIELDS = ("count", "seed", "bpm", "seconds", "steps", "interpolate_to", "repeat")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_runs(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def live(world):
    yield from live_server(world, workers=1, queue=2)  # small limits: the exhaustion tests reach them


def post(live, content, headers=None):
    return httpx.post(live.url + "/api/generate", content=content, timeout=60,
                      headers={"Content-Type": "application/json", **AUTH, **(headers or {})})


# ---- resource exhaustion ------------------------------------------------------------------------------
def test_large_bodies_get_413_with_or_without_content_length(live):
    big = json.dumps({"run": "tiny", "junk": "A" * 200_000}).encode()
    r = post(live, big)
    assert r.status_code == 413 and len(r.content) < 200 and "65536" in r.json()["detail"]

    def chunks():  # no Content-Length: Transfer-Encoding: chunked
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    r = post(live, chunks())
    assert r.status_code == 413 and len(r.content) < 200
    assert httpx.get(live.url + "/api/health").status_code == 200  # the server is fine afterwards


def test_errors_never_echo_the_input(live):
    junk = "Z" * 60_000  # under the body cap: a 422, not a 413
    r = post(live, json.dumps({"run": "tiny", "junk": junk}))
    assert r.status_code == 422 and "ZZZZ" not in r.text and len(r.content) < 1000
    assert r.json()["errors"][0]["field"] == "junk"
    r = post(live, json.dumps({"run": "tiny", "K" * 60_000: 1}))  # an unknown key is named, cut short
    assert r.status_code == 422 and "K" * 100 not in r.text and len(r.content) < 1000
    r = post(live, json.dumps({"run": "tiny", "count": "Z" * 50_000}))
    assert r.status_code == 422 and "ZZZZ" not in r.text
    r = post(live, json.dumps({"run": "r" * 128}))  # a long id is named, cut short
    assert r.status_code == 404 and "r" * 60 not in r.json()["detail"]


# ---- clear 4xx instead of 500 -------------------------------------------------------------------------
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_422_naming_the_field(live, literal):
    for field in GENERATE_FIELDS:
        r = post(live, f'{{"run": "tiny", "{field}": {literal}}}')
        assert r.status_code == 422, (field, literal, r.status_code, r.text)
        body = r.json()
        assert isinstance(body["detail"], str) and body["detail"].startswith(field + ":"), body


@pytest.mark.parametrize("field,value", [("count", True), ("seed", False), ("bpm", True), ("seconds", True),
                                         ("repeat", True), ("count", "2"), ("count", 2.5), ("seed", "0"), ("steps", 1e3 + 0.5)])
def test_numbers_are_strict(live, field, value):
    r = post(live, json.dumps({"run": "tiny", field: value}))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text


def test_a_latest_pointer_outside_the_run_is_409(world, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(world["runs"] / "tiny", runs / "ptr", symlinks=True)
    shutil.copy(world["runs"] / "tiny" / "checkpoints" / "step_0000010.pt", tmp_path / "step_0000010.pt")
    (runs / "ptr" / "checkpoints" / "latest").write_text("../../../step_0000010.pt\n")
    from fastapi.testclient import TestClient

    from djenerator.server import create_app

    with TestClient(create_app(runs_dir=runs, cache_dir=tmp_path / "cache")) as c:
        r = c.post("/api/generate", json={"run": "ptr", "count": 1})
        assert r.status_code == 409 and "points outside the run" in r.json()["detail"]
        d = c.get("/api/runs/ptr")
        assert d.status_code == 200 and d.json()["latest_checkpoint"] is None and d.json()["problems"]
        ok = c.post("/api/generate", json={"run": "ptr", "checkpoint": "step_0000010.pt", "count": 1})
        assert ok.status_code == 200  # a checkpoint asked for by name still works
        (runs / "ptr" / "checkpoints" / "latest").write_text("step_0000404.pt\n")  # stale: newest one
        assert c.post("/api/generate", json={"run": "ptr", "count": 1}).json()["checkpoint"] == "step_0000010.pt"


def test_cache_dir_that_is_a_file_is_one_sentence(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    p = subprocess.run([sys.executable, "-m", "djenerator", "serve", "--runs", str(tmp_path), "--cache-dir", str(f)],
                       capture_output=True, text=True, timeout=120)
    err = (p.stdout + p.stderr).strip()
    assert p.returncode != 0 and "Traceback" not in err
    assert "is a file" in err and str(f) in err.replace("\n", "")


# ---- access ---------------------------------------------------------------------------------------------
def test_every_api_route_needs_the_token(live):
    r = httpx.post(live.url + "/api/generate", json={"run": "tiny", "count": 1}, headers=AUTH, timeout=60)
    assert r.status_code == 200
    clip = r.json()["clips"][0]
    bare = f"/api/clips/{clip['id']}"
    for path in ("/api/runs", "/api/runs/tiny", "/api/runs/tiny/losses", bare, bare + "/analysis",
                 "/api/datasets", "/api/jobs", "/api/jobs/abc", "/api/runs/nope"):
        assert httpx.get(live.url + path).status_code == 401, path
        assert httpx.get(live.url + path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
        assert httpx.get(live.url + path, headers=AUTH).status_code in (200, 404), path
    assert httpx.post(live.url + "/api/jobs/abc/stop").status_code == 401
    for path in ("/api/health", "/", "/static/app.js", "/static/style.css"):
        assert httpx.get(live.url + path).status_code == 200, path


def test_clip_urls_are_signed_for_the_audio_element(live):
    r = httpx.post(live.url + "/api/generate", json={"run": "tiny", "count": 1, "seed": 7}, headers=AUTH, timeout=60)
    res = r.json()
    clip = res["clips"][0]
    assert "sig=" in clip["url"] and "sig=" in clip["download_url"] and "sig=" in clip["analysis_url"]
    assert res["ttl_seconds"] == 600 and res["expires_at"] > time.time() + 590
    for url in (clip["url"], clip["download_url"], clip["analysis_url"]):
        assert httpx.get(live.url + url).status_code == 200, url  # no header: the signature stands in
    assert httpx.get(live.url + clip["url"], headers={"Range": "bytes=0-9"}).status_code == 206
    base, query = clip["url"].split("?")
    params = dict(p.split("=") for p in query.split("&"))
    tampered = f"{base}?exp={params['exp']}&sig={'0' * 32}"
    later = f"{base}?exp={int(params['exp']) + 1}&sig={params['sig']}"
    other = f"/api/clips/{res['id']}-01?exp={params['exp']}&sig={params['sig']}"  # another clip, same signature
    for url in (tampered, later, other):
        assert httpx.get(live.url + url).status_code == 401, url
    from djenerator.server.guards import Auth

    old = int(time.time()) - 5  # a correct signature that has expired
    expired = f"{base}?exp={old}&sig={Auth(TOKEN).sign(clip['id'], old)}"
    assert httpx.get(live.url + expired).status_code == 401


@pytest.mark.parametrize("how", ["env", "file"])
def test_token_from_env_or_file_does_not_show_in_ps(world, tmp_path, how):
    secret = "from-" + how + "-t0ken"
    if how == "env":
        srv = LiveServer(world["runs"], tmp_path / "cache", env={"DJENERATOR_TOKEN": secret})
    else:
        (tmp_path / "tok").write_text(secret + "\n")
        srv = LiveServer(world["runs"], tmp_path / "cache", "--token-file", str(tmp_path / "tok"))
    try:
        assert secret.encode() not in Path(f"/proc/{srv.proc.pid}/cmdline").read_bytes()
        assert httpx.get(srv.url + "/api/runs").status_code == 401
        assert httpx.get(srv.url + "/api/runs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    finally:
        srv.stop()


def test_unreadable_token_file_is_one_sentence(tmp_path):
    p = subprocess.run([sys.executable, "-m", "djenerator", "serve", "--runs", str(tmp_path), "--token-file",
                        str(tmp_path / "missing")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "token file" in p.stderr


def test_host_header_must_name_this_server(live):
    ok = ("localhost", f"localhost:{live.port}", f"127.0.0.1:{live.port}", f"[::1]:{live.port}", "LOCALHOST.")
    bad = ("evil.example", f"evil.example:{live.port}", f"localhost:{live.port + 1}", "127.0.0.1.nip.io", "")
    for host in ok:
        assert httpx.get(live.url + "/api/health", headers={"Host": host}).status_code == 200, host
    for host in bad:
        r = httpx.get(live.url + "/api/health", headers={"Host": host})
        assert r.status_code == 400 and "Host" in r.json()["detail"], host
    r = httpx.get(live.url + "/api/runs", headers={"Host": "evil.example", **AUTH})
    assert r.status_code == 400  # a token does not make a rebinding request acceptable


def test_host_rules():
    from djenerator.server.guards import allowed_hosts

    assert allowed_hosts("127.0.0.1") == {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts("0.0.0.0") == {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts("0.0.0.0", ["Studio.lan", "10.0.0.5"]) == {"localhost", "127.0.0.1", "::1", "studio.lan",
                                                                     "10.0.0.5"}
    assert allowed_hosts("192.168.1.9") == {"192.168.1.9"}
    assert allowed_hosts("0.0.0.0", ["*"]) is None


# ---- results stay fetchable for the stated time ----------------------------------------------------------
def test_results_stay_fetchable_for_the_ttl(world, tmp_path):
    with client(world, tmp_path, cache_max_entries=2, clip_ttl=60) as c:
        assert c.get("/api/health").json()["clip_ttl_seconds"] == 60
        got = [c.post("/api/generate", json={"run": "tiny", "count": 2, "seed": s}) for s in range(2)]
        assert [r.status_code for r in got] == [200, 200]
        full = c.post("/api/generate", json={"run": "tiny", "count": 2, "seed": 2})
        assert full.status_code == 503 and 1 <= int(full.headers["Retry-After"]) <= 60
        assert "promised" in full.json()["detail"]
        for r in got:  # every URL a 200 named still works
            assert r.json()["ttl_seconds"] == 60
            for cl in r.json()["clips"]:
                assert c.get(cl["url"]).status_code == 200
        again = c.post("/api/generate", json={"run": "tiny", "count": 2, "seed": 0})  # a cached result: fine
        assert again.status_code == 200 and again.json()["cached"]
        assert c.get("/api/health").json()["cache"]["entries"] == 2


def test_byte_bound_keeps_promised_results(world, tmp_path):
    with client(world, tmp_path, cache_max_bytes=6000, clip_ttl=60) as c:  # one 2-clip result is ~4.2 kB
        first = c.post("/api/generate", json={"run": "tiny", "count": 2, "seed": 0})
        assert first.status_code == 200
        second = c.post("/api/generate", json={"run": "tiny", "count": 2, "seed": 1})
        assert second.status_code == 503
        assert all(c.get(cl["url"]).status_code == 200 for cl in first.json()["clips"])
        assert c.get("/api/health").json()["cache"]["entries"] == 1


def test_expired_promises_are_evicted(world, tmp_path, monkeypatch):
    import djenerator.server.store as store

    now = [time.time()]
    monkeypatch.setattr(store.time, "time", lambda: now[0])
    with client(world, tmp_path, cache_max_entries=1, clip_ttl=30) as c:
        assert c.post("/api/generate", json={"run": "tiny", "count": 1, "seed": 0}).status_code == 200
        assert c.post("/api/generate", json={"run": "tiny", "count": 1, "seed": 1}).status_code == 503
        now[0] += 31
        assert c.post("/api/generate", json={"run": "tiny", "count": 1, "seed": 1}).status_code == 200


# ---- OpenAPI --------------------------------------------------------------------------------------------
def test_openapi_states_limits_errors_and_presets(world, tmp_path):
    from djenerator.config import BPM_LIMITS
    from djenerator.presets import PRESETS

    with client(world, tmp_path, max_count=9, max_steps=11, max_seconds=33, max_train_steps=77) as c:
        spec = c.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    g = schemas["GenerateRequest"]["properties"]
    assert g["count"]["maximum"] == 9 and g["count"]["minimum"] == 1
    assert g["steps"]["maximum"] == 11 and g["seconds"]["maximum"] == 33 and g["seconds"]["exclusiveMinimum"] == 0
    assert [g["bpm"][k] for k in ("minimum", "maximum")] == list(BPM_LIMITS)
    j = schemas["JobRequest"]["properties"]
    assert j["steps"]["maximum"] == 77 and j["preset"]["enum"] == list(PRESETS)
    assert schemas["ErrorResponse"]["properties"]["detail"]["type"] == "string"
    gen = spec["paths"]["/api/generate"]["post"]["responses"]
    assert {"400", "401", "404", "409", "413", "422", "503"} <= set(gen)
    assert {"401", "404", "409", "413", "422", "429"} <= set(spec["paths"]["/api/jobs"]["post"]["responses"])
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for code, resp in op["responses"].items():
                if code.startswith("4") or code.startswith("5"):
                    ref = resp["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorResponse"), (path, method, code)
            if path != "/api/health":
                assert "401" in op["responses"] and op.get("security"), (path, method)


SEMANTIC_422 = ("steps is the number of interpolation steps", "cannot make", "fixed", "window",
                "cannot generate from")


def test_schemathesis_all_checks_against_a_live_server(live):
    """Every operation, positive and negative data, every schemathesis check (bounded: ~15 s)."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    checks = [CHECKS.get_one(n) for n in CHECKS.get_all_names()]

    def semantic_422_only(ctx, response, case):
        """A 422 for schema-valid data must be one of the cross-field rules the schema cannot state."""
        meta = case.meta
        positive = meta is not None and meta.generation.mode.is_positive and not any(
            c.mode.is_negative for c in meta.components.values())
        if positive and response.status_code == 422:
            detail = response.json()["detail"]
            assert any(s in detail for s in SEMANTIC_422), f"valid data rejected: {detail}"

    r = httpx.post(live.url + "/api/generate", json={"run": "tiny", "count": 1, "seed": 99}, headers=AUTH, timeout=60)
    clip_id = r.json()["clips"][0]["id"]
    cfg = schemathesis.Config.from_dict({
        "headers": dict(AUTH),
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "404", "409", "422", "503"]}},
    })
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json", config=cfg)
    counts: dict[int, int] = {}
    failures = []
    for result in schema.get_all_operations():
        op = result.ok()
        names = {p.name for p in op.path_parameters}
        real = {"run": "tiny", "clip_id": clip_id}
        strategies = [op.as_strategy(mode) for mode in GenerationMode]
        if names & set(real):  # also ask about things that exist
            strategies.append(op.as_strategy(path_parameters={k: real[k] for k in names & set(real)}))
        if op.path == "/api/generate":
            strategies.append(op.as_strategy().map(lambda c: _with_run(c, "tiny")))

        @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=st.one_of(strategies))
        def run(case):
            response = case.call_and_validate(headers=dict(AUTH), checks=checks,
                                              additional_checks=[semantic_422_only], timeout=60)
            counts[response.status_code] = counts.get(response.status_code, 0) + 1

        try:
            run()
        except BaseException as e:  # noqa: BLE001 - collect every operation's failure (a group), then report all
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            failures.append(f"{op.label}: {str(e)[:2000]}")
    n = sum(counts.values())
    print(f"\nschemathesis: {n} cases, statuses {dict(sorted(counts.items()))}, {len(failures)} failing operations")
    assert not failures, "\n\n".join(failures)
    assert n >= 150 and counts.get(200, 0) > 10 and all(code < 500 for code in counts)


def _with_run(case, run):
    if isinstance(case.body, dict):
        case.body["run"] = run
        case.body.pop("seconds", None)  # the tiny run is a fixed-window model
    return case


def test_a_wildcard_bind_answers_to_allow_host_names(world, tmp_path):
    from fastapi.testclient import TestClient

    from djenerator.server import create_app
    from djenerator.server.guards import allowed_hosts

    app = create_app(runs_dir=world["runs"], cache_dir=tmp_path / "cache", port=8000,
                     allowed_hosts=allowed_hosts("0.0.0.0", ["studio.lan"]))
    with TestClient(app, base_url="http://studio.lan:8000") as c:
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/health", headers={"Host": "localhost:8000"}).status_code == 200
        assert c.get("/api/health", headers={"Host": "attacker.example:8000"}).status_code == 400
        assert c.get("/api/health", headers={"Host": "studio.lan:9999"}).status_code == 400
