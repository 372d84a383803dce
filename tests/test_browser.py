"""The web page in a real browser: Debian's Chromium driven by Playwright, against uvicorn
serving a fake-backed index from a thread of this process (so the fakes registered here apply)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from segindex.service import ServiceSettings, create_app
from segindex.testing.fakes import draw_scene

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "benchmarks" / "screenshots" / "web.png"

THUMBS_LOADED = (
    "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"
)
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")

MORE_SCENES = {
    "e.png": ([("red", (30, 20, 110, 80)), ("yellow", (5, 60, 30, 90))], "green"),
    "f.png": ([("green", (0, 50, 128, 96)), ("blue", (40, 10, 80, 40))], "cyan"),
    "g.png": ([("magenta", (20, 20, 60, 70)), ("green", (70, 30, 120, 60))], "white"),
    "h.png": ([("orange", (10, 40, 60, 90)), ("green", (64, 8, 100, 44))], "gray"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(make_index, photos: Path):  # type: ignore[no-untyped-def]
    import uvicorn

    for name, (shapes, background) in MORE_SCENES.items():
        Image.fromarray(draw_scene(shapes, background=background)).save(photos / name)
    idx = make_index()
    idx.ingest(photos)
    port = free_port()
    config = uvicorn.Config(
        create_app(idx, ServiceSettings()), host="127.0.0.1", port=port, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_search_draw_a_box_and_explore(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    query_image = tmp_path / "query.png"
    Image.fromarray(draw_scene([("green", (10, 10, 50, 50)), ("yellow", (70, 20, 110, 70))])).save(
        query_image
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 820})
            requests_elsewhere: list[str] = []
            page.on(
                "request",
                lambda r: (
                    None
                    if r.url.startswith((server, "blob:", "data:"))
                    else requests_elsewhere.append(r.url)
                ),
            )
            page.goto(server + "/")
            expect(page.locator("#stats")).to_contain_text("8 images")

            # type a query with the keyboard and see thumbnails
            page.locator("#q").focus()
            page.keyboard.type("red")
            page.keyboard.press("Enter")
            thumbs = page.locator("#grid .hit img")
            expect(thumbs.first).to_be_visible()
            expect(page.locator("#grid .hit .label").first).to_have_text("red")
            page.wait_for_function(THUMBS_LOADED)
            assert thumbs.count() >= 3

            # filters and pages
            page.fill("#f-labels", "gray")
            page.fill("#f-k", "2")
            page.keyboard.press("Tab")
            page.locator("#search-btn").click()
            expect(page.locator("#grid .hit")).to_have_count(2)
            expect(page.locator("#grid .hit .label")).to_have_text(["gray", "gray"])
            page.locator("#next").click()
            expect(page.locator("#page-info")).to_have_text("page 2")
            page.fill("#f-labels", "")
            page.fill("#f-k", "12")

            # upload an image, draw a box around the green square, get green regions
            page.set_input_files("#file", str(query_image))
            canvas = page.locator("#canvas")
            expect(canvas).to_be_visible()
            box = canvas.bounding_box()
            assert box is not None
            s = box["width"] / 128  # image pixels -> screen pixels
            page.mouse.move(box["x"] + 10 * s, box["y"] + 10 * s)
            page.mouse.down()
            page.mouse.move(box["x"] + 30 * s, box["y"] + 30 * s, steps=4)
            page.mouse.move(box["x"] + 50 * s, box["y"] + 50 * s, steps=4)
            page.mouse.up()
            expect(page.locator("#status")).to_contain_text("query region from box")
            labels = page.locator("#grid .hit .label")
            expect(labels.first).to_have_text("green")
            assert labels.count() >= 4
            assert all(t == "green" for t in labels.all_inner_texts()[:4])
            box_values = [page.input_value(f"#b{c}") for c in ("x0", "y0", "x1", "y1")]
            assert all(
                abs(int(v) - w) <= 1 for v, w in zip(box_values, (10, 10, 50, 50), strict=True)
            )
            page.wait_for_function(THUMBS_LOADED)
            page.screenshot(path=str(tmp_path / "web.png"), full_page=True)

            # open a result: the whole image with its regions; then more like this region
            page.locator("#grid .hit").first.click()
            dialog = page.locator("#detail")
            expect(dialog).to_be_visible()
            page.wait_for_function(
                "document.getElementById('overlay').complete && "
                "document.getElementById('overlay').naturalWidth > 0"
            )
            expect(page.locator("#region-list button").first).to_be_visible()
            page.screenshot(path=str(tmp_path / "detail.png"))
            page.locator("#more-like").click()
            expect(dialog).to_be_hidden()
            expect(page.locator("#grid .hit .label").first).to_have_text("green")

            # the keyboard opens and Escape closes the detail view
            page.locator("#grid .hit").first.focus()
            page.keyboard.press("Enter")
            expect(dialog).to_be_visible()
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()
            assert requests_elsewhere == [], requests_elsewhere  # works offline: no CDN
        finally:
            browser.close()
    assert (tmp_path / "web.png").stat().st_size > 0
    if os.environ.get("SEGINDEX_UPDATE_SCREENSHOTS") == "1":  # refresh the README's pictures
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "web.png", SCREENSHOT)
        shutil.copy(tmp_path / "detail.png", SCREENSHOT.with_name("web-detail.png"))
