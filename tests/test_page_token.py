"""The page's token handling, run in Node against a live server (no browser needed): the first 401 asks
for the token once, it is kept in sessionStorage (never localStorage), and the clip URLs it gets play
without a header (what an <audio> element needs). Skipped without `node`."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from test_server import TOKEN, LiveServer, make_runs  # noqa: E402  (tests/ is on sys.path)

NODE = shutil.which("node")
APP_JS = Path(__file__).resolve().parents[1] / "src" / "djenerator" / "server" / "static" / "app.js"

DRIVER = r"""
const vm = require("vm"), fs = require("fs");
const [base, token, appJs] = process.argv.slice(2);
const store = () => { const m = new Map(); return { getItem: (k) => (m.has(k) ? m.get(k) : null),
  setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k), size: () => m.size }; };
const els = {};
let prompts = 0;
const ctx = {
  sessionStorage: store(), localStorage: store(), console, setTimeout, URLSearchParams, Promise,
  location: { search: "" },
  window: { prompt: () => { prompts++; return token; }, addEventListener() {} },
  document: { getElementById: (id) => (els[id] = els[id] || { value: "", hidden: false, addEventListener() {} }),
              addEventListener() {} },
  fetch: (path, opts) => fetch(base + path, opts),
};
ctx.localStorage.setItem("djenerator-token", "stale-from-an-old-page");
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(appJs, "utf8"), ctx);
vm.runInContext(`localStorage.removeItem(TOKEN_KEY);`, ctx);  // what init() does first
(async () => {
  const out = {};
  const runs = await vm.runInContext(`api("/api/runs")`, ctx);
  out.runs = runs.map((r) => r.id);
  await vm.runInContext(`api("/api/runs/tiny")`, ctx);
  const res = await vm.runInContext(`api("/api/generate", { method: "POST", headers: headers(true), ` +
    `body: JSON.stringify({ run: "tiny", count: 1 }) })`, ctx);
  out.prompts = prompts;
  out.session = ctx.sessionStorage.getItem("djenerator-token");
  out.local = ctx.localStorage.getItem("djenerator-token");
  const clip = await fetch(base + res.clips[0].url);  // no Authorization header, as an <audio> element
  out.clip = [clip.status, clip.headers.get("content-type")];
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_page_asks_for_the_token_once_and_plays_signed_clips(tmp_path):
    world = make_runs(tmp_path / "w")
    srv = LiveServer(world["runs"], tmp_path / "cache", "--token", TOKEN)
    try:
        (tmp_path / "driver.js").write_text(DRIVER)
        p = subprocess.run([NODE, str(tmp_path / "driver.js"), srv.url, TOKEN, str(APP_JS)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        srv.stop()
    assert out["runs"] == ["tiny"] and out["prompts"] == 1
    assert out["session"] == TOKEN and out["local"] is None
    assert out["clip"] == [200, "audio/wav"]
