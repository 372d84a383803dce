"""Tests for segindex.images: discovery, hashing and decoding to HxWx3 uint8 RGB."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segindex.errors import ConfigError, ImageDecodeError
from segindex.images import IMAGE_EXTENSIONS, discover, file_sha256, load_image

WHITE = (255, 255, 255)


def _filled(mode: str, value: object, size: tuple[int, int] = (3, 2)) -> Image.Image:
    return Image.new(mode, size, value)  # type: ignore[arg-type]


def _palette(transparent_index: int | None) -> Image.Image:
    image = Image.new("P", (3, 2), 1)
    image.putpalette([255, 0, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    return image


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def _assert_rgb(array: np.ndarray, shape: tuple[int, int]) -> None:
    assert array.shape == (*shape, 3)
    assert array.dtype == np.uint8
    assert array.flags.c_contiguous and array.flags.writeable


# ---------------------------------------------------------------------------------------------
# modes: (id, image factory, lossless format for a file round trip or None, expected RGB)

MODE_CASES = [
    ("L", lambda: _filled("L", 77), "PNG", (77, 77, 77)),
    ("LA-opaque", lambda: _filled("LA", (77, 255)), "PNG", (77, 77, 77)),
    ("LA-transparent", lambda: _filled("LA", (0, 0)), "PNG", WHITE),
    ("LA-half", lambda: _filled("LA", (0, 128)), "PNG", (127, 127, 127)),
    ("P", lambda: _palette(None), "PNG", (10, 20, 30)),
    ("P-transparent", lambda: _palette(1), "PNG", WHITE),
    ("P-other-index-transparent", lambda: _palette(0), "PNG", (10, 20, 30)),
    ("RGB", lambda: _filled("RGB", (1, 2, 3)), "PNG", (1, 2, 3)),
    ("RGBA-transparent", lambda: _filled("RGBA", (255, 0, 0, 0)), "PNG", WHITE),
    ("RGBA-opaque", lambda: _filled("RGBA", (255, 0, 0, 255)), "PNG", (255, 0, 0)),
    ("RGBA-half", lambda: _filled("RGBA", (0, 0, 255, 128)), "PNG", (127, 127, 255)),
    ("CMYK-red", lambda: _filled("CMYK", (0, 255, 255, 0)), "TIFF", (255, 0, 0)),
    ("CMYK-black", lambda: _filled("CMYK", (0, 0, 0, 255)), "TIFF", (0, 0, 0)),
    ("I;16-max", lambda: _filled("I;16", 65535), "PNG", (255, 255, 255)),
    ("I;16-257x100", lambda: _filled("I;16", 257 * 100), "PNG", (100, 100, 100)),
    ("I;16B", lambda: _filled("I;16B", 257 * 100), "TIFF", (100, 100, 100)),
    ("I-above-16bit", lambda: _filled("I", 70_000), "TIFF", (255, 255, 255)),
    ("I-negative", lambda: _filled("I", -5), "TIFF", (0, 0, 0)),
    ("I-257x100", lambda: _filled("I", 257 * 100), "TIFF", (100, 100, 100)),
    ("F-unit-range", lambda: _filled("F", 0.2), "TIFF", (51, 51, 51)),
    ("F-byte-range", lambda: _filled("F", 100.0), "TIFF", (100, 100, 100)),
    ("F-above-255", lambda: _filled("F", 300.0), "TIFF", (255, 255, 255)),
    ("1-on", lambda: _filled("1", 1), "PNG", (255, 255, 255)),
    ("1-off", lambda: _filled("1", 0), "BMP", (0, 0, 0)),
    ("YCbCr", lambda: _filled("YCbCr", (128, 128, 128)), None, (128, 128, 128)),
    ("HSV", lambda: _filled("HSV", (0, 255, 255)), None, (255, 0, 0)),
]


@pytest.mark.parametrize(
    ("make", "fmt", "expected"),
    [pytest.param(make, fmt, expected, id=case) for case, make, fmt, expected in MODE_CASES],
)
def test_mode_conversion_exact(make, fmt, expected, tmp_path: Path) -> None:
    image = make()
    direct = load_image(image)
    _assert_rgb(direct, (2, 3))
    assert (direct == np.array(expected, np.uint8)).all(), direct[0, 0]
    if fmt is not None:
        path = tmp_path / f"img.{fmt.lower()}"
        image.save(path, fmt)
        from_file = load_image(path)
        _assert_rgb(from_file, (2, 3))
        assert (from_file == np.array(expected, np.uint8)).all(), from_file[0, 0]


def test_lab_white_is_near_white() -> None:
    out = load_image(_filled("LAB", (255, 128, 128))).astype(int)
    assert np.abs(out - 255).max() <= 2


def test_float_nan_becomes_black_and_mixed_range() -> None:
    values = np.array([[np.nan, 0.5, 1.0]], np.float32)
    out = load_image(Image.fromarray(values, mode="F"))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_pil_image_passed_in_is_not_modified() -> None:
    image = Image.new("RGBA", (4, 2), (255, 0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.info["exif"] = exif.tobytes()
    before = image.tobytes()
    out = load_image(image)
    assert out.shape == (4, 2, 3)  # rotated, and the transparent red composited to white
    assert (out == 255).all()
    assert image.mode == "RGBA" and image.size == (4, 2) and image.tobytes() == before


# ---------------------------------------------------------------------------------------------
# formats


def _gradient(width: int = 17, height: int = 11) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2), mode="RGB")


@pytest.mark.parametrize(
    ("fmt", "suffix", "lossless"),
    [
        ("JPEG", ".jpg", False),
        ("PNG", ".png", True),
        ("WEBP", ".webp", False),
        ("BMP", ".bmp", True),
        ("TIFF", ".tif", True),
    ],
)
def test_format_round_trip(fmt: str, suffix: str, lossless: bool, tmp_path: Path) -> None:
    image = _gradient()
    path = tmp_path / f"img{suffix}"
    image.save(path, fmt)
    out = load_image(path)
    _assert_rgb(out, (11, 17))
    diff = np.abs(out.astype(int) - np.asarray(image, dtype=int))
    assert diff.max() == 0 if lossless else diff.mean() < 12
    assert (load_image(path.read_bytes()) == out).all()  # bytes (an upload) decode the same


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    _filled("CMYK", (0, 255, 255, 0), (16, 16)).save(path, "JPEG", quality=95)
    with Image.open(path) as opened:
        assert opened.mode == "CMYK"
    out = load_image(path).astype(int)
    assert np.abs(out - np.array([255, 0, 0])).max() <= 8


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 6), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as opened:
        assert opened.n_frames == 3
    out = load_image(path)
    _assert_rgb(out, (6, 8))
    assert (out == np.array([255, 0, 0], np.uint8)).all()


def _two_blocks() -> Image.Image:
    """20 wide, 10 high: left half red, right half blue."""
    image = Image.new("RGB", (20, 10), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 10))
    return image


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_6_rotates(fmt: str, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / f"rot.{fmt.lower()}"
    _two_blocks().save(path, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    out = load_image(path).astype(int)
    assert out.shape == (20, 10, 3)
    # Clockwise rotation moves the left (red) half to the top and the right (blue) to the bottom.
    top, bottom = out[2:8, 2:8].mean(axis=(0, 1)), out[12:18, 2:8].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 50, top
    assert bottom[2] > 200 and bottom[0] < 50, bottom
    with Image.open(path) as opened:
        assert load_image(opened).shape == (20, 10, 3)  # an opened PIL image is oriented too
        assert opened.size == (20, 10)  # ... without being changed


def test_no_orientation_keeps_layout(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    _two_blocks().save(path)
    out = load_image(path)
    assert out.shape == (10, 20, 3)
    assert tuple(out[5, 2]) == (255, 0, 0) and tuple(out[5, 17]) == (0, 0, 255)


# ---------------------------------------------------------------------------------------------
# failures


def _png_with_size(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR claims ``width x height`` (valid CRC): header-only bomb."""
    data = bytearray(_encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def _noise_bytes(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return _encode(Image.fromarray(pixels, mode="RGB"), fmt)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty file"),
        ("cut.jpg", _noise_bytes("JPEG")[:1500], "truncated image"),
        ("cut.png", _noise_bytes("PNG")[:4000], "truncated image"),
        ("cut-near-end.png", _noise_bytes("PNG")[:-40], "truncated image"),
        ("notes.jpg", b"this is not an image\n" * 10, "not a recognised image format"),
        ("header-only.jpg", _noise_bytes("JPEG")[:300], "truncated"),
    ],
)
def test_undecodable_files_raise(name: str, content: bytes, reason: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason) as info:
        load_image(path)
    assert name in str(info.value)
    if content:
        with pytest.raises(ImageDecodeError, match=reason):
            load_image(content)


def test_missing_file_and_folder_raise(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageDecodeError, match="is a folder"):
        load_image(tmp_path)
    with pytest.raises(ImageDecodeError, match="empty data"):
        load_image(b"")


def test_too_many_pixels(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (20, 20)).save(path)
    with pytest.raises(
        ImageDecodeError, match=r"'.*big\.png' has 400 pixels, more than the limit 100"
    ):
        load_image(path, max_pixels=100)
    assert load_image(path, max_pixels=400).shape == (20, 20, 3)
    with pytest.raises(ImageDecodeError, match="more than the limit"):
        with Image.open(path) as opened:
            load_image(opened, max_pixels=399)


def test_pixel_limit_checked_before_decoding() -> None:
    bomb = _png_with_size(30_000, 30_000)  # 900 M pixels; decoding would allocate 2.7 GB
    with pytest.raises(
        ImageDecodeError, match="has 900,000,000 pixels, more than the limit 200,000,000"
    ):
        load_image(bomb)


def test_our_limit_replaces_pils_and_global_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # PIL alone would refuse 20x20 (> 2*10)
    data = _encode(Image.new("RGB", (20, 20), (5, 6, 7)), "PNG")
    assert tuple(load_image(data)[0, 0]) == (5, 6, 7)
    assert Image.MAX_IMAGE_PIXELS == 10
    with pytest.raises(ImageDecodeError, match="more than the limit"):
        load_image(data, max_pixels=399)
    assert Image.MAX_IMAGE_PIXELS == 10


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_max_pixels_is_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_pixels"):
        load_image(b"x", max_pixels=bad)  # type: ignore[arg-type]


def test_wrong_source_type() -> None:
    with pytest.raises(TypeError, match="path, bytes or a PIL image"):
        load_image(123)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# discover


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for rel in ["a.JPG", "sub/b.png", "sub/deeper/c.TiFf", ".hidden/d.webp", "sub/e.Gif"]:
        (root / rel).write_bytes(b"not decoded by discover")
    for rel in ["notes.txt", "sub/raw.cr2", "sub/deeper/png"]:
        (root / rel).write_bytes(b"skip me")
    return root


def _names(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_image_extensions() -> None:
    assert IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def test_discover_folder_recursive_case_insensitive(tree: Path) -> None:
    found = discover([tree])
    assert all(p.is_absolute() for p in found)
    assert found == sorted(found)
    assert _names(found, tree) == [
        ".hidden/d.webp",
        "a.JPG",
        "sub/b.png",
        "sub/deeper/c.TiFf",
        "sub/e.Gif",
    ]


def test_discover_relative_source_gives_absolute(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree.parent)
    found = discover(["photos/sub"])
    assert found == [tree / "sub/b.png", tree / "sub/deeper/c.TiFf", tree / "sub/e.Gif"]
    assert discover("photos/a.JPG") == [tree / "a.JPG"]  # one str is one source


def test_discover_glob_recursive(tree: Path) -> None:
    assert _names(discover([str(tree / "**" / "*.png")]), tree) == ["sub/b.png"]
    # a glob over everything keeps image files only, and walks matched folders
    assert _names(discover([str(tree / "su*")]), tree) == [
        "sub/b.png",
        "sub/deeper/c.TiFf",
        "sub/e.Gif",
    ]
    with pytest.raises(ConfigError, match="no images found at"):
        discover([str(tree / "**" / "*.txt")])  # matches, but nothing that is an image
    with pytest.raises(ConfigError, match="no images found at"):
        discover([str(tree / "**" / "*.nothing")])


def test_discover_explicit_file_any_suffix_and_dedup(tree: Path) -> None:
    found = discover([tree / "notes.txt", tree / "a.JPG", tree, str(tree / "a.JPG"), tree / "sub"])
    assert _names(found, tree) == [
        ".hidden/d.webp",
        "a.JPG",
        "notes.txt",
        "sub/b.png",
        "sub/deeper/c.TiFf",
        "sub/e.Gif",
    ]


def test_discover_symlink_loop_terminates(tree: Path) -> None:
    os.symlink(tree, tree / "sub" / "loop")  # photos/sub/loop -> photos
    os.symlink(tree / "sub", tree / "sub" / "deeper" / "up")  # and a second loop deeper
    found = discover([tree])
    assert _names(found, tree) == [
        ".hidden/d.webp",
        "a.JPG",
        "sub/b.png",
        "sub/deeper/c.TiFf",
        "sub/e.Gif",
    ]


def test_discover_follows_symlinked_folder_and_dedups_by_real_path(
    tmp_path: Path, tree: Path
) -> None:
    link = tmp_path / "alias"
    os.symlink(tree / "sub", link)
    found = discover([link, tree / "sub" / "b.png"])
    assert len(found) == 3  # b.png through the link and by name is one file
    assert {p.name for p in found} == {"b.png", "c.TiFf", "e.Gif"}


def test_discover_reports_broken_symlink_in_folder(tree: Path) -> None:
    os.symlink(tree / "gone.jpg", tree / "broken.jpg")
    os.mkfifo(tree / "pipe.jpg")
    names = _names(discover([tree]), tree)
    assert "broken.jpg" in names  # kept so that ingestion records it as failed
    assert "pipe.jpg" not in names  # reading a fifo could block forever
    with pytest.raises(ConfigError, match="broken symlink"):
        discover([tree / "broken.jpg"])  # named explicitly: an error


def test_discover_missing_source_raises(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ConfigError, match=f"no images found at {str(missing)!r}"):
        discover([missing])


def test_discover_empty_folder_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images")
    assert discover([tmp_path / "empty"]) == []
    assert discover([]) == []


# ---------------------------------------------------------------------------------------------
# file_sha256


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, (1 << 20) * 2 + 17])
def test_file_sha256_matches_hashlib(size: int, tmp_path: Path) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()
