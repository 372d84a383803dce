"""Where images come in: finding image and video files, hashing them, decoding images to arrays.

Videos are recognised here by content (:func:`media_kind`) and decoded as a stream by
:mod:`segindex.ingest.video`.

Every decoded image is an ``HxWx3`` ``uint8`` RGB array (HWC, C-contiguous, writable), whatever the
file's format or mode, with EXIF orientation already applied. Anything that cannot be decoded raises
:class:`~segindex.errors.ImageDecodeError` naming the file and a short reason.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segindex.errors import ConfigError, ImageDecodeError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
"""Lower-case suffixes that :func:`discover` treats as images when it walks a folder or a glob."""

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".3gp", ".ogv"}
)
"""Lower-case suffixes that :func:`discover` treats as videos when it walks a folder or a glob
(whatever a file is called, :func:`media_kind` decides from its first bytes)."""

#: ISO base media ``ftyp`` brands of still images (HEIF/AVIF): these files are not videos
_IMAGE_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1", b"avif", b"avis", b"jpx "}
)

DEFAULT_MAX_PIXELS = 200_000_000
"""Default limit on ``width * height`` for :func:`load_image` (decompression-bomb guard)."""

_CHUNK = 1 << 20
_GLOB_CHARS = frozenset("*?[")
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_COLOR_KEY_MODES = frozenset({"1", "L", "RGB", "P"})  # modes whose info["transparency"] is honoured
_INT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ORIENTATION_TAG = 0x0112
_PIL_LIMIT_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------
# discovery


def discover(sources: Iterable[str | Path] | str | Path) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted list of absolute media paths.

    Each source is one of:

    * a **file**: included whatever its suffix (it was asked for by name; decoding decides);
    * a **folder**: walked recursively, following symlinks (each real folder is visited once, so
      symlink loops terminate); only files whose lower-cased suffix is in
      :data:`IMAGE_EXTENSIONS` or :data:`VIDEO_EXTENSIONS` are kept (broken symlinks too, so
      ingestion records them as failed; fifos, sockets and devices never);
    * a **glob pattern** (``*``, ``?``, ``[...]``; ``**`` crosses folders): matched files with an
      image or video suffix are kept, matched folders are walked as above.

    Paths are made absolute (``~`` expanded) but symlinks in them are kept as found. The same file
    reached twice (named twice, or as a file and through a folder or a symlink) appears once, under
    the lexicographically smallest of its paths. The result is sorted, so it is deterministic.

    A single ``str`` or ``Path`` is accepted as one source.

    Raises:
        ConfigError: a source names nothing that exists (a missing file or folder, a broken
            symlink, a glob that matches nothing), or a glob matches only non-image files.
            An existing folder without images is not an error: it contributes nothing.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    found: dict[str, str] = {}  # real path -> shortest-sorting absolute path seen for it
    visited_dirs: set[str] = set()  # real paths of folders already walked

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real not in found or path < found[real]:
            found[real] = path

    for source in sources:
        given = os.fspath(source)
        text = os.path.expanduser(given)
        path = os.path.abspath(text)
        if os.path.isfile(path):
            add(path)
        elif os.path.isdir(path):
            for image in _walk_images(path, visited_dirs):
                add(image)
        elif os.path.lexists(path):
            reason = "a broken symlink" if os.path.islink(path) else "not a file or folder"
            raise ConfigError(f"no images found at {given!r}: {reason}")
        elif _GLOB_CHARS.intersection(text):
            if not _add_glob_matches(text, visited_dirs, add):
                raise ConfigError(f"no images found at {given!r}")
        else:
            raise ConfigError(f"no images found at {given!r}: no such file or folder")
    return sorted(Path(p) for p in found.values())


def _add_glob_matches(pattern: str, visited_dirs: set[str], add: Callable[[str], None]) -> bool:
    """Add a glob's image files and walk its folders; False when it matched nothing usable."""
    usable = False
    for match in sorted(glob.glob(pattern, recursive=True)):
        path = os.path.abspath(match)
        if os.path.isdir(path):
            usable = True  # an existing folder, even an empty one, is a valid answer
            for image in _walk_images(path, visited_dirs):
                add(image)
        elif _has_image_suffix(path) and os.path.isfile(path):
            usable = True
            add(path)
    return usable


def _walk_images(top: str, visited_dirs: set[str]) -> Iterator[str]:
    """Yield image files under ``top``, following symlinks but entering each real folder once."""
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited_dirs:
            dirnames[:] = []  # already walked (symlink loop, or the same folder given twice)
            continue
        visited_dirs.add(real)
        for name in filenames:
            if _has_image_suffix(name):
                full = os.path.join(dirpath, name)
                # Regular files, and broken symlinks so that ingestion records them as failed;
                # never fifos, sockets or devices (reading those could block forever).
                if os.path.isfile(full) or (os.path.islink(full) and not os.path.exists(full)):
                    yield full


def _has_image_suffix(name: str) -> bool:
    """An image or a video suffix: the media files a folder walk or a glob picks up."""
    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_EXTENSIONS or suffix in VIDEO_EXTENSIONS


def media_kind(path: str | Path) -> str:
    """``"video"`` or ``"image"`` from the file's first bytes, whatever its name: an ISO media
    ``ftyp`` box with a movie brand (mp4, mov, m4v, 3gp), a Matroska/WebM EBML header, a RIFF
    AVI, an MPEG program/transport stream, Ogg or FLV is a video; anything else (including HEIF
    and AVIF stills and unreadable files) is treated as an image, whose decoder reports what is
    wrong with it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(376)
    except OSError:
        return "image"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "image" if head[8:12] in _IMAGE_BRANDS else "video"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, WebM
        return "video"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):  # MPEG-PS / MPEG-1 video
        return "video"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:  # MPEG-TS sync bytes
        return "video"
    if head[:4] == b"OggS" or head[:3] == b"FLV":
        return "video"
    return "image"


# --------------------------------------------------------------------------------------------
# hashing


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# decoding


def load_image(
    source: str | Path | bytes | Image.Image,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an image to an ``HxWx3`` ``uint8`` RGB array (HWC, C-contiguous, writable).

    ``source`` is a path, the encoded bytes of a file (an upload), or an already opened PIL image
    (which is not modified). JPEG, PNG, WebP, BMP, TIFF and GIF are the formats meant; anything
    else PIL can read works too. Multi-frame files (GIF, APNG, TIFF) give their first frame; a PIL
    image passed in gives the frame it is on.

    The EXIF orientation tag is applied, so the array is upright as a viewer shows it. Embedded
    ICC colour profiles are *not* applied: pixel values are taken as sRGB.

    Modes are converted as follows:

    * ``RGB``: as is. ``L``/``1``: grey replicated to three channels (``1`` gives 0 or 255).
    * Anything with alpha (``RGBA``, ``LA``, ``PA``, ``P`` or ``L``/``RGB`` with a transparency
      key): **composited over a white background**, ``out = (c*a + 255*(255-a)) / 255`` rounded,
      so a fully transparent pixel is white, not the colour hidden under it.
    * ``I;16*`` (16-bit): divided by 257 and rounded (65535 -> 255, 257*k -> k).
      ``I`` (32-bit int): clipped to 0..65535 first, then the same.
    * ``F`` (float): NaN -> 0; if the largest finite value is <= 1 the image is taken as 0..1 and
      scaled by 255, otherwise as 0..255; values are clipped to that range and rounded.
    * ``CMYK`` (incl. Adobe's inverted JPEGs, which PIL handles), ``YCbCr``, ``HSV``, ``LAB``
      (through a LAB -> sRGB transform), ``RGBX`` and others: PIL's conversion to ``RGB``.

    ``max_pixels`` bounds ``width * height`` and is checked from the header *before* the pixels
    are decoded; ``None`` disables it. It replaces PIL's global ``Image.MAX_IMAGE_PIXELS`` check,
    which is lifted only while the header is parsed (under a lock, restored afterwards).

    Raises:
        ImageDecodeError: the file is missing, empty, unreadable, not an image, truncated or
            corrupt, or has more than ``max_pixels`` pixels. The message names the file.
        ConfigError: ``max_pixels`` is not a positive int or ``None``.
        TypeError: ``source`` is none of the accepted types.
    """
    if max_pixels is not None and (
        isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1
    ):
        raise ConfigError(f"max_pixels must be a positive int or None, got {max_pixels!r}")

    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "<PIL image>"
        _check_pixels(source.size, name, max_pixels)
        return _decode(source, name, owned=False)

    fp: str | io.BytesIO
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = "<bytes>"
        if len(source) == 0:
            raise ImageDecodeError(f"cannot decode {name!r}: empty data")
        fp = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        fp = name = os.fspath(source)
        try:
            empty = os.path.getsize(fp) == 0
        except OSError as exc:
            raise ImageDecodeError(f"cannot decode {name!r}: {_reason(exc)}") from exc
        if empty:
            raise ImageDecodeError(f"cannot decode {name!r}: empty file")
    else:
        raise TypeError(f"source must be a path, bytes or a PIL image, got {type(source).__name__}")

    try:
        with _pil_bomb_check_lifted():
            image = Image.open(fp)
    except Exception as exc:  # PIL raises many types for bad headers; all mean "not decodable"
        raise ImageDecodeError(f"cannot decode {name!r}: {_reason(exc)}") from exc
    with image:
        _check_pixels(image.size, name, max_pixels)
        return _decode(image, name, owned=True)


@contextmanager
def _pil_bomb_check_lifted() -> Iterator[None]:
    """Disable PIL's global pixel limit for the ``with`` body; :func:`_check_pixels` replaces it.

    PIL reads ``Image.MAX_IMAGE_PIXELS`` inside ``Image.open`` and has no per-call override, so
    the global is set to ``None`` and restored. The lock keeps concurrent callers from restoring
    each other's value; the body should be short (header parsing only).
    """
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
    pixels = size[0] * size[1]
    if max_pixels is not None and pixels > max_pixels:
        raise ImageDecodeError(
            f"{name!r} has {pixels:,} pixels, more than the limit {max_pixels:,}"
        )
    if pixels == 0:
        raise ImageDecodeError(f"cannot decode {name!r}: image has no pixels ({size[0]}x{size[1]})")


def _decode(image: Image.Image, name: str, *, owned: bool) -> np.ndarray:
    """Fully decode, orient and convert; any failure becomes :class:`ImageDecodeError`."""
    try:
        image.load()  # forces the whole decode: truncated data raises here, not later
        upright = _exif_upright(image, in_place=owned)
        return _to_rgb_array(upright)
    except ImageDecodeError:
        raise
    except Exception as exc:  # corrupt data surfaces as OSError, ValueError, SyntaxError, ...
        raise ImageDecodeError(f"cannot decode {name!r}: {_reason(exc)}") from exc


def _exif_upright(image: Image.Image, *, in_place: bool) -> Image.Image:
    """Apply the EXIF orientation tag; a missing, invalid or unreadable tag leaves it as is."""
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG)
    except Exception:  # malformed EXIF must not make otherwise good pixels undecodable
        return image
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return image
    if in_place:
        ImageOps.exif_transpose(image, in_place=True)
        return image
    return ImageOps.exif_transpose(image)


def _has_alpha(image: Image.Image) -> bool:
    if image.mode in _ALPHA_MODES:
        return True
    if image.mode in _COLOR_KEY_MODES and "transparency" in image.info:
        return True
    return image.mode == "P" and image.palette is not None and image.palette.mode == "RGBA"


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert a loaded PIL image of any mode to ``HxWx3`` ``uint8`` RGB; see :func:`load_image`."""
    mode = image.mode
    if _has_alpha(image):
        if mode == "La":
            image = image.convert("LA")  # PIL has no direct La -> RGBA
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        alpha = rgba[..., 3:4]
        out = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
        return np.ascontiguousarray(out, dtype=np.uint8)
    if mode == "RGB":
        return np.array(image, dtype=np.uint8)  # np.array copies: writable, unlike np.asarray
    if mode in _INT_MODES:
        values = np.asarray(image).astype(np.int64)
        grey = (np.clip(values, 0, 65535) + 128) // 257
        return _grey_to_rgb(grey)
    if mode == "F":
        return _grey_to_rgb(_float_to_uint8(np.asarray(image, dtype=np.float64)))
    if mode == "1":
        image = image.convert("L")
    if image.mode == "L":
        return _grey_to_rgb(np.asarray(image))
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values, nan=0.0, posinf=np.inf, neginf=-np.inf)
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    scaled = np.clip(values, 0.0, 1.0) * 255.0 if top <= 1.0 else np.clip(values, 0.0, 255.0)
    return np.rint(scaled)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    out = np.empty((*grey.shape, 3), dtype=np.uint8)
    out[...] = grey.astype(np.uint8)[..., None]
    return out


def _reason(exc: BaseException) -> str:
    """A short, human reason for a decode failure."""
    message = str(exc)
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format"
    if isinstance(exc, Image.DecompressionBombError):
        return f"too many pixels for PIL ({message})"
    if "truncated" in message.lower():
        return "truncated image"
    return message or type(exc).__name__
