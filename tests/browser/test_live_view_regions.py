"""Managing a stream's zones in the live view, in a real browser (Chromium from Debian, driven by
Playwright) while its frames stream: the registry's streams are listed with their state; a zone drawn
on the live frame that the control API refuses shows the field it names; a valid one, saved, is in the
registry and its counts appear as the walking box enters it; dragged and saved again, it moves.

The stream is in the registry (added through the API, as the CLI does) with no line or zone; the service
is fed synthetic results as in test_live_view.py. A screenshot is kept in
out/test-artefacts/live-view-regions.png.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.browser.live_support import ARTEFACTS, WAIT_MS, chromium_path, streaming_service
from tools.harness.processes import ServiceProcess, analytics_url

pytestmark = pytest.mark.broker

STREAM = "bikes-edit"
TOKEN = "browser-test-region-editor-token"
SECTION = f'section[data-stream-id="{STREAM}"]'
# Corners as fractions of the frame. The box walks along 5/6 of the frame's height, left to right.
CROSSING = [(0.2, 0.6), (0.5, 0.6), (0.5, 0.95), (0.2, 0.95)]
BOW_TIE = [(0.2, 0.6), (0.5, 0.95), (0.5, 0.6), (0.2, 0.95)]


def _api(service: ServiceProcess, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(analytics_url(service, path), method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@pytest.fixture
def registry_service(kafka_bootstrap, kafka_settings, tmp_path) -> Iterator[ServiceProcess]:
    with streaming_service(
        kafka_bootstrap, kafka_settings, tmp_path, STREAM, None, ANALYTICS_API_TOKEN=TOKEN
    ) as service:
        _api(service, "PUT", f"/api/registry/streams/{STREAM}", {"source": f"secret:{STREAM}", "target_fps": 10})
        yield service


def test_a_zone_drawn_on_the_live_frame_is_saved_and_counts(chromium, registry_service):
    from playwright.sync_api import sync_playwright

    service = registry_service
    problems: list[str] = []
    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(analytics_url(service, f"/?token={TOKEN}"))

            # The registry's stream is listed, publishing (its results arrive), with its rate.
            state = f'#registry tr[data-registry-stream="{STREAM}"] td[data-state]'
            page.wait_for_selector(f'{state}[data-state="publishing"]', timeout=WAIT_MS)
            # Its frame is drawn, with the editor (it is a stream of the registry).
            page.wait_for_function(f"() => document.querySelector('{SECTION} canvas')?.dataset.seq", timeout=WAIT_MS)
            page.wait_for_selector(f'{SECTION} button[data-edit="zone"]', state="visible", timeout=WAIT_MS)
            canvas = page.locator(f"{SECTION} canvas")

            def draw_zone(name: str, corners: list[tuple[float, float]]) -> None:
                page.fill(f"{SECTION} input[data-region-name]", name)
                page.click(f'{SECTION} button[data-edit="zone"]')
                page.wait_for_selector(f'{SECTION} button[data-edit="zone"][aria-pressed="true"]')
                box = canvas.bounding_box()
                assert box is not None
                for x, y in corners:
                    page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
                page.click(f'{SECTION} button[data-edit="save"]')

            # A zone that crosses itself: refused, the field named, nothing saved.
            draw_zone("knot", BOW_TIE)
            error = page.locator(f"{SECTION} p.edit-error")
            page.wait_for_function(
                f"() => document.querySelector('{SECTION} p.edit-error').dataset.field !== ''", timeout=WAIT_MS
            )
            assert error.get_attribute("data-field") == f"streams[{STREAM}].zones[0].polygon"
            assert "intersects itself" in error.inner_text()
            assert _api(service, "GET", f"/api/registry/streams/{STREAM}")["definition"]["zones"] == []
            page.click(f'{SECTION} button[data-edit="discard"]')

            # A good one: saved, in the registry, and counted as the box walks into it.
            draw_zone("crossing", CROSSING)
            page.wait_for_selector(f'{SECTION} p.edit-error[data-saved="true"]', state="attached", timeout=WAIT_MS)
            (zone,) = _api(service, "GET", f"/api/registry/streams/{STREAM}")["definition"]["zones"]
            assert zone["name"] == "crossing"
            for (x, y), expected in zip(zone["polygon"], CROSSING, strict=True):
                assert x == pytest.approx(expected[0], abs=0.01) and y == pytest.approx(expected[1], abs=0.01)
            entered = f'{SECTION} li[data-zone="crossing"]'
            page.wait_for_function(
                f"() => Number(document.querySelector('{entered}')?.dataset.entered) > 0", timeout=WAIT_MS
            )
            assert page.get_attribute("#status", "data-state") == "ok"

            # Moved: Edit, drag the zone by its inside 10% of the frame to the right, Save.
            page.click(f'{SECTION} button[data-edit="edit"]')
            page.wait_for_selector(f'{SECTION} button[data-edit="edit"][aria-pressed="true"]')
            box = canvas.bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.7 * box["height"])
            page.mouse.down()
            page.mouse.move(box["x"] + 0.4 * box["width"], box["y"] + 0.7 * box["height"], steps=5)
            page.mouse.up()
            page.click(f'{SECTION} button[data-edit="save"]')
            page.wait_for_selector(f'{SECTION} button[data-edit="edit"][aria-pressed="false"]')
            (moved,) = _api(service, "GET", f"/api/registry/streams/{STREAM}")["definition"]["zones"]
            assert [x for x, _ in moved["polygon"]] == pytest.approx([x + 0.1 for x, _ in zone["polygon"]], abs=0.01)
            assert [y for _, y in moved["polygon"]] == [y for _, y in zone["polygon"]]

            ARTEFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTEFACTS / "live-view-regions.png"), full_page=True)
        finally:
            browser.close()
    # The page runs under its Content-Security-Policy with no violation and no script error (the refused
    # save's 422 is an answer the page shows, not an error of its own).
    assert [p for p in problems if "422" not in p] == []
