"""Scene queries on the web page in real Chromium (as tests/service/test_browser.py drives it):
cards with each part's mask drawn in its colour and a legend, the caret under a bad query, video
spans with their tracks, and the filmstrip alone where the browser cannot decode a video."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segindex import rle as rle_codec
from segindex.testing.fakes import draw_scene
from tests.service.test_browser import ARGS, CHROMIUM, FILMSTRIP_LOADED, SCREENSHOT, serving

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")

# 96x128 pictures of coloured squares on grey: boxes are x0, y0, x1, y1
SCENES = {
    "left.png": [("red", (10, 30, 50, 70)), ("blue", (78, 30, 118, 70))],
    "right.png": [("blue", (10, 30, 50, 70)), ("red", (78, 30, 118, 70))],
    "three.png": [("red", (8, 8, 40, 40)), ("blue", (84, 50, 120, 86)),
                  ("yellow", (50, 60, 70, 80))],
    "alone.png": [("red", (40, 20, 90, 70))],
}  # fmt: skip
CARDS_LOADED = (
    "[...document.querySelectorAll('#grid .scene-hit img')].length > 0 && "
    "[...document.querySelectorAll('#grid .scene-hit img')]"
    ".every(i => i.complete && i.naturalWidth > 0)"
)
# the colour of the mask canvas at image pixel (x, y) of card n: [r, g, b, a]
PIXEL = (
    "([n, x, y]) => { const c = document.querySelectorAll('#grid .scene-hit canvas.masks')[n];"
    " return [...c.getContext('2d').getImageData(x, y, 1, 1).data]; }"
)
# how many pixels of card n's mask canvas have colour [r, g, b] (any alpha)
COUNT = (
    "([n, rgb]) => { const c = document.querySelectorAll('#grid .scene-hit canvas.masks')[n];"
    " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let k = 0;"
    " for (let i = 0; i < d.length; i += 4) {"
    "  if (d[i + 3] > 0 && Math.abs(d[i] - rgb[0]) <= 2 && Math.abs(d[i + 1] - rgb[1]) <= 2"
    "      && Math.abs(d[i + 2] - rgb[2]) <= 2) k += 1; }"
    " return k; }"
)


def rgb(hex_colour: str) -> list[int]:
    n = int(hex_colour.lstrip("#"), 16)
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255]


@pytest.fixture
def scene_server(make_index, tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "scenes"
    root.mkdir()
    for name, shapes in SCENES.items():
        Image.fromarray(draw_scene(shapes)).save(root / name)
    idx = make_index()
    idx.ingest(root)
    with serving(idx) as url:
        yield url


def test_scene_query_draws_each_part_in_its_colour(scene_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.goto(scene_server + "/")
            expect(page.locator("#stats")).to_contain_text("4 images")

            # an upper-case keyword makes it a scene query: the two images with red left of blue
            page.locator("#q").focus()
            page.keyboard.type("red LEFT OF blue")
            page.keyboard.press("Enter")
            cards = page.locator("#grid .scene-hit")
            expect(cards).to_have_count(2)
            expect(page.locator("#status")).to_contain_text("2 images where the scene holds")
            paths = cards.locator(".path").all_inner_texts()
            assert sorted(paths) == ["left.png", "three.png"]
            for n in range(2):
                expect(cards.nth(n).locator(".legend .part-name")).to_have_text(["red", "blue"])
                expect(cards.nth(n).locator(".score")).to_contain_text("score ")
            page.wait_for_function(CARDS_LOADED)

            # each part's mask in its legend colour, where the drawn square is, nothing elsewhere
            for n, name in enumerate(paths):
                colours = {
                    b.get_attribute("data-part"): b.get_attribute("data-colour")
                    for b in cards.nth(n).locator(".legend .part").all()
                }
                assert len(set(colours.values())) == 2
                size = page.evaluate(
                    f"(() => {{ const c = document.querySelectorAll('#grid canvas.masks')[{n}];"
                    " return [c.width, c.height]; })()"
                )
                assert size == [128, 96]
                for part, box in SCENES[name]:
                    if part == "yellow":
                        continue
                    x0, y0, x1, y1 = box
                    want = rgb(colours[part])  # type: ignore[arg-type]
                    inside = page.evaluate(PIXEL, [n, (x0 + x1) // 2, (y0 + y1) // 2])
                    close = [abs(a - b) <= 2 for a, b in zip(inside[:3], want, strict=True)]
                    assert all(close), (part, inside)
                    assert inside[3] > 0
                    edge = page.evaluate(PIXEL, [n, x0, (y0 + y1) // 2])
                    assert edge[3] == 255  # the outline is solid
                    count = page.evaluate(COUNT, [n, want])
                    assert count == (x1 - x0) * (y1 - y0), (part, count)
                assert page.evaluate(PIXEL, [n, 64, 5])[3] == 0  # the background is clear
            page.screenshot(path=str(tmp_path / "scenes.png"))

            # the page's RLE decoder agrees with segindex.rle on masks with many short runs;
            # a large image's masks are drawn on a canvas scaled to at most 800 px
            gen = np.random.default_rng(0)
            for h, w in ((37, 53), (120, 90)):
                mask = gen.random((h, w)) < 0.5
                mask[h // 3 : h // 2] = True
                got = page.evaluate("r => Array.from(decodeRle(r))", rle_codec.encode(mask))
                assert np.array_equal(np.array(got, dtype=bool).reshape(h, w), mask)
            big = np.zeros((1200, 1600), dtype=bool)
            big[300:900, 400:800] = True
            drawn = page.evaluate(
                "r => { const c = document.createElement('canvas');"
                " drawMasks(c, [{rle: r, colour: '#00e5ff'}]);"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n += 1;"
                " return [c.width, c.height, n]; }",
                rle_codec.encode(big),
            )
            assert drawn == [800, 600, 300 * 200]

            # a legend entry opens the part's region in the detail view
            cards.first.locator(".legend .part").first.click()
            expect(page.locator("#detail")).to_be_visible()
            page.keyboard.press("Escape")
            expect(page.locator("#detail")).to_be_hidden()

            # bad syntax: the message and a caret under the character where it went wrong
            page.fill("#q", "red LEFT OF AND blue")
            page.keyboard.press("Enter")
            expect(page.locator("#query-error")).to_be_visible()
            expect(page.locator("#status")).to_contain_text("Error 422")
            expect(page.locator("#status")).to_contain_text("unexpected 'AND'")
            expect(page.locator("#query-error-where")).to_have_text("at character 12")
            text = page.locator("#query-error-text").inner_text()
            assert text.split("\n")[:2] == ["red LEFT OF AND blue", " " * 12 + "^"]
            expect(cards).to_have_count(0)
            page.screenshot(path=str(tmp_path / "scenes-error.png"))

            # a plain text is the ordinary region search again, and the error goes away
            page.fill("#q", "red")
            page.keyboard.press("Enter")
            expect(page.locator("#grid .hit .label").first).to_have_text("red")
            expect(page.locator("#query-error")).to_be_hidden()

            # NOT and COUNT: red alone (no blue) is one image
            page.fill("#q", "COUNT(red) >= 1 AND NOT blue")
            page.keyboard.press("Enter")
            expect(cards).to_have_count(1)
            expect(cards.locator(".path")).to_have_text("alone.png")
            expect(cards.locator(".legend .part-name")).to_have_text(["red"])
        finally:
            browser.close()
    if os.environ.get("SEGINDEX_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(tmp_path / "scenes.png", SCREENSHOT.with_name("scenes.png"))
        shutil.copy(tmp_path / "scenes-error.png", SCREENSHOT.with_name("scenes-error.png"))


def pair_frame(i: int) -> np.ndarray:
    """A red square moving right and a blue one appearing at frame 6, on grey, 96x128."""
    shapes = [("red", (8 + 4 * i, 16, 36 + 4 * i, 44))]
    if i >= 6:
        shapes.append(("blue", (90, 56, 118, 84)))
    return draw_scene(shapes)


def yellow_frame(i: int) -> np.ndarray:
    return draw_scene([("yellow", (40, 8 + 2 * i, 76, 44 + 2 * i))], background="white")


def green_frame(i: int) -> np.ndarray:
    return draw_scene([("green", (10 + 3 * i, 30, 50 + 3 * i, 70))], background="white")


@pytest.fixture
def clip_server(make_index, tmp_path: Path):  # type: ignore[no-untyped-def]
    """pair.webm (VP8: red throughout, blue from 0.75 s), walk.mp4 (H.264, yellow) and old.mp4
    (MPEG-4 part 2, green, which Chromium cannot decode); 16 frames at 8 fps, all sampled."""
    from segindex.config import VideoOptions
    from segindex.testing.clips import write_clip

    root = tmp_path / "clips"
    root.mkdir()
    write_clip(root / "pair.webm", 16, fps=8, codec="libvpx", draw=pair_frame)
    write_clip(root / "walk.mp4", 16, fps=8, codec="libx264", draw=yellow_frame)
    write_clip(root / "old.mp4", 16, fps=8, codec="mpeg4", draw=green_frame)
    idx = make_index(video=VideoOptions(fps=8, dedup_threshold=0.0))
    report = idx.ingest(root)
    assert report.failed == 0 and report.videos == 3
    with serving(idx) as url:
        yield url


# Debian's Chromium may lack H.264 (this one decodes it): it then refuses the codec, as here
NO_H264 = """
const canPlayType = HTMLMediaElement.prototype.canPlayType;
HTMLMediaElement.prototype.canPlayType = function (type) {
  return /avc1/.test(type) ? "" : canPlayType.call(this, type);
};
"""


def open_track(page, text: str, title: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.select_option("#f-scope", "tracks")
    page.fill("#q", text)
    page.keyboard.press("Enter")
    expect(page.locator("#grid .hit .label").first).to_have_text(text)
    page.locator("#grid .hit").first.click()
    expect(page.locator("#track-title")).to_have_text(title)


def test_video_scenes_and_the_filmstrip_alone(clip_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.add_init_script(NO_H264)
            page.goto(clip_server + "/")
            expect(page.locator("#stats")).to_contain_text("3 videos")

            # a video scene: the span where both tracks are, each track in its colour
            page.select_option("#f-scope", "tracks")
            page.fill("#q", "red WITH blue")
            page.keyboard.press("Enter")
            cards = page.locator("#grid .scene-hit")
            expect(cards).to_have_count(1)
            card = cards.first
            expect(card.locator(".path")).to_have_text("pair.webm")
            expect(card.locator(".legend .part-name")).to_have_text(["red", "blue"])
            expect(card.locator(".span")).to_have_text("0:00.0–0:01.9")
            expect(card.locator(".legend .part").nth(1)).to_contain_text("0:00.8–0:01.9")
            expect(card.locator(".scene-tracks img")).to_have_count(2)
            expect(card.locator(".timeline .bar")).to_have_count(2)
            page.wait_for_function(
                "[...document.querySelectorAll('.scene-tracks img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            bars = card.locator(".timeline .bar")
            red_bar, blue_bar = bars.nth(0).bounding_box(), bars.nth(1).bounding_box()
            assert red_bar is not None and blue_bar is not None
            assert blue_bar["x"] > red_bar["x"] + 0.3 * red_bar["width"]  # blue starts later
            page.screenshot(path=str(tmp_path / "scenes_video.png"))

            # its legend opens the track; VP8 plays
            card.locator(".legend .part").nth(1).click()
            expect(page.locator("#track-title")).to_have_text("blue in pair.webm")
            expect(page.locator("#player")).to_be_visible()
            page.wait_for_function("document.getElementById('player').dataset.state === 'playing'")
            page.keyboard.press("Escape")

            # H.264 refused by the browser: no dark player, the filmstrip alone
            open_track(page, "yellow", "yellow in walk.mp4")
            expect(page.locator("#player")).to_be_hidden()
            expect(page.locator("#no-play")).to_be_visible()
            expect(page.locator("#play-track")).to_be_disabled()
            expect(page.locator("#filmstrip img")).to_have_count(16)
            page.wait_for_function(FILMSTRIP_LOADED)
            page.screenshot(path=str(tmp_path / "filmstrip.png"))
            page.locator("#filmstrip button").nth(3).click()  # still selectable
            expect(page.locator("#filmstrip button").nth(3)).to_have_attribute(
                "aria-pressed", "true"
            )
            page.keyboard.press("Escape")

            # a codec the browser takes for MP4 but cannot decode (the video's error event)
            open_track(page, "green", "green in old.mp4")
            page.wait_for_function(
                "document.getElementById('player').dataset.state === 'unplayable'"
            )
            expect(page.locator("#player")).to_be_hidden()
            expect(page.locator("#no-play")).to_be_visible()
            expect(page.locator("#filmstrip img")).to_have_count(16)
            page.keyboard.press("Escape")
        finally:
            browser.close()
    if os.environ.get("SEGINDEX_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(tmp_path / "scenes_video.png", SCREENSHOT.with_name("scenes_video.png"))
