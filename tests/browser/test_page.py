"""The web page in headless Debian Chromium (driven by Playwright; never a downloaded browser).

Opens the page served by a real `djenerator serve` process, generates clips, and checks that the
audio element loads with a non-zero duration, the waveform, spectrogram and loss chart are drawn,
and the memorisation flag from the run's report.json is shown. Saves a screenshot in the test's tmp dir.
"""
from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("DJENERATOR_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium when run as root with apt",
                allow_module_level=True)

from test_server import LiveServer, make_runs  # noqa: E402  (tests/ is on sys.path via tests/conftest.py)

NONBLANK = """(sel) => {
  const c = document.querySelector(sel);
  if (!c || !c.width) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    world = make_runs(tmp_path_factory.mktemp("browser"))
    srv = LiveServer(world["runs"], world["root"] / "cache")
    yield srv
    srv.stop()


def test_page_generates_plays_and_draws(server, tmp_path):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True,
                                    env={**os.environ, "HOME": str(tmp_path)})
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
            page.goto(server.url + "/")
            page.wait_for_function("document.querySelector('#run').options.length > 0 && "
                                   "document.querySelector('#checkpoint').options.length > 0")
            assert page.locator("#run").input_value() == "tiny"
            assert "architecture\ndense" in page.locator("#run-info").inner_text()
            assert page.locator("#repeat").is_disabled()  # no bar clock: a dense model's clips cannot be locked to it
            page.wait_for_function(f"({NONBLANK})('#loss-chart') > 500")
            page.fill("#count", "3")
            page.fill("#seed", "0")
            page.click("[data-testid=generate]")
            page.wait_for_selector("[data-testid=clip]")
            assert page.locator("[data-testid=clip]").count() == 3
            page.wait_for_function("[...document.querySelectorAll('[data-testid=clip] audio')]"
                                   ".every(a => a.readyState >= 1 && a.duration > 0)", timeout=15000)
            duration = page.evaluate("document.querySelector('[data-testid=clip] audio').duration")
            assert abs(duration - 1024 / 8000) < 0.01
            page.wait_for_function("document.querySelector('[data-testid=waveform]').dataset.drawn === '1'")
            assert page.evaluate(NONBLANK, "[data-testid=waveform]") > 200
            assert page.evaluate(NONBLANK, "[data-testid=spectrogram]") > 200
            # seed 0, clip 1 is flagged in the run's evaluation report; clip 2 is not
            assert page.locator("[data-testid=clip]").nth(0).get_attribute("data-flagged") == "true"
            assert page.locator("[data-testid=clip]").nth(1).get_attribute("data-flagged") == "false"
            href = page.locator("[data-testid=clip] a.download").first.get_attribute("href")
            assert href.endswith("?download=1")
            # play/seek: clicking the waveform seeks the audio element
            page.evaluate("document.querySelector('[data-testid=clip] audio').currentTime = 0.05")
            page.wait_for_function("document.querySelector('[data-testid=clip] audio').currentTime > 0.04")
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("DJENERATOR_SCREENSHOT"):
                shutil.copy(shot, os.environ["DJENERATOR_SCREENSHOT"])
            assert not errors, errors
            assert not outside, outside
        finally:
            browser.close()
