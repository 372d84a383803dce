"""The web page in a real browser: Debian's Chromium driven by Playwright, against uvicorn
serving a fake-backed index from a thread of this process (so the fakes registered here apply)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
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
SCREENSHOT = Path(__file__).resolve().parents[2] / "benchmarks" / "screenshots" / "web.png"

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


@contextmanager
def serving(idx: Any) -> Iterator[str]:
    """uvicorn serving ``idx`` from a thread of this process; yields its base URL."""
    import uvicorn

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
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server(make_index, photos: Path):  # type: ignore[no-untyped-def]
    for name, (shapes, background) in MORE_SCENES.items():
        Image.fromarray(draw_scene(shapes, background=background)).save(photos / name)
    idx = make_index()
    idx.ingest(photos)
    with serving(idx) as url:
        yield url


def walk_frame(i: int) -> np.ndarray:
    """A red square moving right 4 px per frame and a static blue one on grey, 96x128."""
    x = 8 + 4 * i
    return draw_scene([("red", (x, 16, x + 28, 44)), ("blue", (90, 60, 118, 88))])


def park_frame(i: int) -> np.ndarray:
    """A yellow square moving down 2 px per frame on white, 96x128."""
    return draw_scene([("yellow", (40, 8 + 2 * i, 76, 44 + 2 * i))], background="white")


@pytest.fixture
def video_server(make_index, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Two clips of 16 frames at 8 fps: walk.webm (VP8, which Chromium plays) and park.mkv (FFV1,
    which it cannot), every frame sampled."""
    from segindex.config import VideoOptions
    from segindex.testing.clips import write_clip

    root = tmp_path / "clips"
    root.mkdir()
    write_clip(root / "walk.webm", 16, fps=8, codec="libvpx", draw=walk_frame)
    write_clip(root / "park.mkv", 16, fps=8, codec="ffv1", draw=park_frame)
    idx = make_index(video=VideoOptions(fps=8, dedup_threshold=0.0))
    report = idx.ingest(root)
    assert report.failed == 0 and report.videos == 2
    with serving(idx) as url:
        yield url


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
            canvas.scroll_into_view_if_needed()  # below the filters on a short screen
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
    if os.environ.get("SEGINDEX_UPDATE_SCREENSHOTS") == "1":  # docs/http-service.md picture
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "web.png", SCREENSHOT)
        shutil.copy(tmp_path / "detail.png", SCREENSHOT.with_name("web-detail.png"))


FILMSTRIP_LOADED = (
    "[...document.querySelectorAll('#filmstrip img')].length > 0 && "
    "[...document.querySelectorAll('#filmstrip img')].every(i => i.complete && i.naturalWidth > 0)"
)


def test_video_track_plays_with_its_box_and_filmstrip(video_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(video_server + "/")
            expect(page.locator("#stats")).to_contain_text("2 videos")

            # search tracks: the red square's track comes first, with its time span
            page.select_option("#f-scope", "tracks")
            page.fill("#q", "red")
            page.keyboard.press("Enter")
            first = page.locator("#grid .hit").first
            expect(first.locator(".label")).to_have_text("red")
            expect(first.locator(".span")).to_have_text("0:00.0–0:01.9 · 16 frames")
            page.wait_for_function(THUMBS_LOADED)

            # open it: a filmstrip of 16 frames (mask tinted, box drawn), and the VP8 video
            # plays from the track's start to its end with the box drawn over it
            first.click()
            dialog = page.locator("#track-detail")
            expect(dialog).to_be_visible()
            expect(page.locator("#track-title")).to_have_text("red in walk.webm")
            expect(page.locator("#filmstrip img")).to_have_count(16)
            page.wait_for_function(FILMSTRIP_LOADED)
            page.wait_for_function(
                "document.getElementById('player').dataset.state === 'playing' && "
                "document.getElementById('track-video').currentTime > 0.2"
            )
            page.wait_for_function("document.getElementById('track-box').dataset.frame !== ''")
            page.screenshot(path=str(tmp_path / "track.png"))
            # the box drawn matches the sampled frame shown (red square at x = 8 + 4 i)
            drawn = page.evaluate(
                "(() => { const c = document.getElementById('track-box');"
                " const f = Number(c.dataset.frame);"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " const x = 8 + 4 * f; const at = (x, y) => d[(y * c.width + x) * 4 + 3];"
                " return [c.width, c.height, f, at(x, 30), at(x + 14, 30)]; })()"
            )
            assert drawn[:2] == [128, 96] and 0 <= drawn[2] < 16
            assert drawn[3] > 0 and drawn[4] == 0  # the box's left edge, not its inside
            assert page.locator("#track-video").bounding_box()["height"] > 300  # type: ignore[index]
            page.wait_for_function(
                "document.getElementById('player').dataset.state === 'ended'", timeout=15_000
            )
            t = page.evaluate("document.getElementById('track-video').currentTime")
            assert 1.85 <= t <= 2.2  # stopped at the track's end (1.875 s)
            assert page.evaluate("document.getElementById('track-video').paused")

            # a filmstrip frame seeks the video there
            page.locator("#filmstrip button").nth(4).click()
            page.wait_for_function(
                "Math.abs(document.getElementById('track-video').currentTime - 0.5) < 0.01 && "
                "document.getElementById('track-box').dataset.frame === '4'"
            )
            expect(page.locator("#filmstrip button").nth(4)).to_have_attribute(
                "aria-pressed", "true"
            )
            # the video really decodes there: frame 4's red square is at x 24..52, y 16..44
            rgb = page.evaluate(
                "(() => { const v = document.getElementById('track-video');"
                " const c = document.createElement('canvas'); c.width = 128; c.height = 96;"
                " const g = c.getContext('2d'); g.drawImage(v, 0, 0, 128, 96);"
                " return [...g.getImageData(38, 30, 1, 1).data.slice(0, 3),"
                " ...g.getImageData(20, 70, 1, 1).data.slice(0, 3)]; })()"
            )
            assert rgb[0] > 160 and rgb[1] < 90 and rgb[2] < 90, rgb  # red inside the box
            assert all(90 < v < 170 for v in rgb[3:]), rgb  # grey background

            # more like this track: other tracks, not this one
            page.locator("#more-like-track").click()
            expect(dialog).to_be_hidden()
            expect(page.locator("#grid .hit").first).to_be_visible()

            # FFV1 in Matroska cannot be played: the filmstrip remains
            page.fill("#q", "yellow")
            page.locator("#search-btn").click()
            expect(page.locator("#grid .hit .label").first).to_have_text("yellow")
            page.locator("#grid .hit").first.click()
            expect(page.locator("#track-title")).to_have_text("yellow in park.mkv")
            expect(page.locator("#no-play")).to_be_visible()
            expect(page.locator("#player")).to_be_hidden()
            expect(page.locator("#filmstrip img")).to_have_count(16)
            page.wait_for_function(FILMSTRIP_LOADED)
            page.screenshot(path=str(tmp_path / "filmstrip.png"))
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()
        finally:
            browser.close()
    if os.environ.get("SEGINDEX_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(tmp_path / "track.png", SCREENSHOT.with_name("web-track.png"))
