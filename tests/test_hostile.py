"""Hostile and odd inputs: each bad file is recorded as failed with its reason, the run goes on,
and every good image is indexed."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segindex.testing.fakes import draw_scene


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny file claiming 30000x30000 pixels (900 M): a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def encoded(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


SCENE = Image.fromarray(draw_scene([("red", (10, 10, 60, 50)), ("blue", (70, 40, 120, 90))]))


def build_corpus(root: Path) -> tuple[set[str], set[str]]:
    """Write the corpus; return (names that must be indexed, names that must fail)."""
    good: dict[str, bytes] = {
        "plain.png": encoded(SCENE, "PNG"),
        "wrong_extension.jpg": encoded(SCENE, "PNG"),  # PNG bytes named .jpg
        "one_pixel.png": encoded(Image.new("RGB", (1, 1), (220, 30, 30)), "PNG"),
        "sixteen_bit.png": encoded(
            Image.fromarray(np.arange(96 * 128, dtype=np.uint16).reshape(96, 128) * 5), "PNG"
        ),
        "cmyk.jpg": encoded(SCENE.convert("CMYK"), "JPEG"),
        "palette_transparent.png": encoded(SCENE.convert("P"), "PNG", transparency=0),
        "animated.gif": encoded(
            SCENE, "GIF", save_all=True, append_images=[Image.new("RGB", SCENE.size, (0, 0, 0))]
        ),
        "huge_exif.jpg": encoded(SCENE, "JPEG", exif=_big_exif()),
        "rotated_exif.jpg": encoded(SCENE, "JPEG", exif=_orientation_exif(6)),
        "gray_alpha.png": encoded(SCENE.convert("LA"), "PNG"),
        "multipage.tiff": encoded(
            SCENE, "TIFF", save_all=True, append_images=[Image.new("RGB", SCENE.size)]
        ),
        "thin_strip.png": encoded(Image.new("RGB", (4000, 1), (30, 60, 220)), "PNG"),
        "UPPER.PNG": encoded(SCENE, "PNG"),
        "webp_lossless.webp": encoded(SCENE, "WEBP", lossless=True),
    }
    full_jpeg = encoded(SCENE, "JPEG")
    full_png = encoded(SCENE, "PNG")
    bad: dict[str, bytes] = {
        "zero_bytes.jpg": b"",
        "truncated.jpg": full_jpeg[: len(full_jpeg) // 2],
        "truncated.png": full_png[: len(full_png) // 2],
        "text_named.jpg": b"hello, I am plain text pretending to be a JPEG\n",
        "html_named.png": b"<html><body>not an image</body></html>",
        "svg_named.png": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        "bomb.png": bomb_png(),
        "garbage.bmp": os.urandom(2048),
        "header_only.gif": b"GIF89a",
    }
    for name, data in {**good, **bad}.items():
        (root / name).write_bytes(data)
    # a broken symlink, a directory loop, a fifo, and a non-UTF-8 file name
    os.symlink(root / "does_not_exist.png", root / "broken_link.png")
    (root / "loop").mkdir()
    os.symlink(root, root / "loop" / "back_to_root")
    os.mkfifo(root / "fifo.jpg")
    weird = os.fsdecode(b"caf\xe9_latin1_name.png")
    (root / weird).write_bytes(encoded(SCENE, "PNG"))
    good_names = set(good) | {weird}
    bad_names = set(bad) | {"broken_link.png"}
    return good_names, bad_names


def _orientation_exif(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def _big_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription, ~60 KB of EXIF
    return exif


def test_hostile_corpus(make_index, tmp_path: Path) -> None:
    root = tmp_path / "hostile"
    root.mkdir()
    good, bad = build_corpus(root)
    assert len(good) + len(bad) + 2 >= 20  # + directory loop + fifo: at least 20 kinds
    idx = make_index()
    report = idx.ingest(root)
    from segindex.store.sql import db_path

    indexed = {Path(r.path).name for r in idx.store.indexed_images()}
    failed = {Path(p).name: reason for p, reason in idx.store.failed_images()}
    assert indexed == {Path(db_path(str(root / n))).name for n in good}
    assert set(failed) == bad
    assert report.indexed == len(good) and report.failed == len(bad)
    for name, reason in failed.items():
        assert reason, name
    assert "more than the limit" in failed["bomb.png"]
    assert "truncated" in failed["truncated.jpg"]
    assert "broken symbolic link" in failed["broken_link.png"]
    # EXIF rotation applied: the 128x96 scene is stored as 96x128
    rotated = next(r for r in idx.store.indexed_images() if r.path.endswith("rotated_exif.jpg"))
    assert (rotated.width, rotated.height) == (96, 128)
    # every indexed image is searchable and FAISS matches SQL
    assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
    assert idx.search("red", k=1)[0].label == "red"
    # failures are listed by info, skipped when unchanged, retried on request
    assert {Path(f["path"]).name for f in idx.info()["failed"]} == bad
    again = idx.ingest(root)
    assert again.indexed == 0 and again.failed == 1  # only the broken link (no bytes to hash)
    assert idx.ingest(root, retry_failed=True).failed == len(bad)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_recorded(make_index, tmp_path: Path) -> None:
    root = tmp_path / "perm"
    root.mkdir()
    (root / "ok.png").write_bytes(encoded(SCENE, "PNG"))
    locked = root / "locked.png"
    locked.write_bytes(encoded(SCENE, "PNG"))
    locked.chmod(0)
    idx = make_index()
    report = idx.ingest(root)
    assert report.indexed == 1 and report.failed == 1
    assert "cannot read file" in dict(idx.store.failed_images())[str(locked)]


def test_pixel_and_region_limits_are_configurable(tmp_path: Path) -> None:
    from segindex import Index, RuntimeOptions
    from segindex.ingest import top_regions
    from segindex.regions import Regions

    root = tmp_path / "limits"
    root.mkdir()
    (root / "big.png").write_bytes(encoded(SCENE, "PNG"))  # 128x96 = 12288 px
    (root / "many.png").write_bytes(
        encoded(
            Image.fromarray(
                draw_scene(
                    [
                        ("red", (0, 0, 20, 20)),
                        ("blue", (30, 0, 60, 40)),
                        ("green", (70, 0, 128, 60)),
                    ]
                )
            ),
            "PNG",
        )
    )
    runtime = RuntimeOptions(max_pixels=12_000, max_regions=2)
    with Index.create(
        tmp_path / "l.segindex", segmenter="fake", embedder="fake", runtime=runtime
    ) as idx:
        report = idx.ingest(root / "big.png")
        assert report.failed == 1 and "more than the limit 12,000" in report.failures[0][1]
    # region cap keeps the highest scores, then the largest areas
    masks = np.zeros((4, 10, 10), bool)
    masks[0, :1, :1] = masks[1, :5, :5] = masks[2, :3, :3] = masks[3, :9, :9] = True
    r = Regions.from_masks(masks, scores=[0.9, 0.5, 0.9, 0.5])
    assert top_regions(r, 2).areas.tolist() == [1, 9]
    assert top_regions(r, 3).areas.tolist() == [1, 9, 81]
    with Index.create(
        tmp_path / "m.segindex",
        segmenter="fake",
        embedder="fake",
        runtime=RuntimeOptions(max_regions=2),
    ) as idx:
        idx.ingest(root / "many.png")
        segs = [r for r in idx.store.iter_regions() if r.kind == "segment"]
        assert len(segs) == 2
