"""The live view in a real browser (headless Chromium from Debian, driven by Playwright) while frames
stream: the archived frame is drawn with its boxes, and boxes, frame and counts update.

The service is fed synthetic results (a box walking across a line and through a zone, again and again)
and the frames they name are written to a local archive first, as the consumer does: real JPEGs from
the sample video when set-up fetched it, drawn ones otherwise. The real pipeline (model included) is
the end-to-end test's. The service has a token: the browser comes in through the printed link
(/?token=...) once, as an operator does. A screenshot is kept in out/test-artefacts/live-view.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.analytics_support import GATE, PEN, write_streams_file
from tests.browser.live_support import ARTEFACTS, WAIT_MS, chromium_path, streaming_service
from tools.harness.processes import ServiceProcess, analytics_url

pytestmark = pytest.mark.broker

STREAM = "bikes-live"
TOKEN = "browser-test-live-view-token"


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@pytest.fixture
def live_service(kafka_bootstrap, kafka_settings, tmp_path) -> Iterator[ServiceProcess]:
    streams_file = write_streams_file(tmp_path / "streams.yaml", {STREAM: {"lines": [GATE], "zones": [PEN]}})
    with streaming_service(
        kafka_bootstrap, kafka_settings, tmp_path, STREAM, streams_file, ANALYTICS_API_TOKEN=TOKEN
    ) as service:
        yield service


def test_live_view_draws_frames_boxes_and_counts_that_update(chromium, live_service):
    from playwright.sync_api import sync_playwright

    service = live_service
    problems: list[str] = []
    canvas = f'section[data-stream-id="{STREAM}"] canvas'
    crossings_in = f'section[data-stream-id="{STREAM}"] li[data-line="gate"][data-direction="in"]'
    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            # Without the token the page is refused.
            stranger = browser.new_page()
            assert stranger.goto(analytics_url(service, "/")).status == 401
            stranger.close()
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            # The link with the token sets the session and drops the token from the address.
            page.goto(analytics_url(service, f"/?token={TOKEN}"))
            assert page.url == analytics_url(service, "/"), page.url

            # Boxes on an archived frame.
            page.wait_for_function(
                f"""() => {{ const c = document.querySelector('{canvas}');
                    return c && Number(c.dataset.boxes) > 0 && c.dataset.frame === 'archived'; }}""",
                timeout=WAIT_MS,
            )
            first = page.get_attribute(canvas, "data-seq")
            # ... and the next frame replaces it.
            page.wait_for_function(
                f"() => document.querySelector('{canvas}').dataset.seq !== '{first}'", timeout=WAIT_MS
            )
            second = page.get_attribute(canvas, "data-seq")
            assert first != second and int(second) > int(first)
            assert int(page.get_attribute(canvas, "data-boxes")) == 1  # one box per synthetic frame
            # The frame itself was drawn: the canvas is not one flat colour.
            spread = page.evaluate(
                f"""() => {{ const c = document.querySelector('{canvas}');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let lo = 255, hi = 0;
                    for (let i = 0; i < d.length; i += 4 * 97) {{ lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }}
                    return hi - lo; }}"""
            )
            assert spread > 30

            # Counts appear, then grow as the box crosses the line again.
            page.wait_for_function(
                f"() => Number(document.querySelector('{crossings_in}')?.dataset.count) > 0", timeout=WAIT_MS
            )
            counted = int(page.get_attribute(crossings_in, "data-count"))
            page.wait_for_function(
                f"() => Number(document.querySelector('{crossings_in}').dataset.count) > {counted}", timeout=WAIT_MS
            )
            zone = page.locator(f'section[data-stream-id="{STREAM}"] li[data-zone="pen"]')
            assert int(zone.get_attribute("data-entered")) >= 1
            assert page.get_attribute(f'section[data-stream-id="{STREAM}"] [data-fps]', "data-fps")
            assert page.get_attribute(f'section[data-stream-id="{STREAM}"] [data-latency-ms]', "data-latency-ms")
            assert page.get_attribute("#status", "data-state") == "ok"

            ARTEFACTS.mkdir(parents=True, exist_ok=True)
            shot: Path = ARTEFACTS / "live-view.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 0
    # The page runs under its Content-Security-Policy with no violation and no script error.
    assert problems == []
