"""Reading uploaded images within the service's byte and pixel limits."""

from __future__ import annotations

import io
import warnings

from PIL import Image
from starlette.datastructures import UploadFile  # fastapi's is a subclass; forms give this

from segindex.errors import ImageDecodeError
from segindex.service.errors import UploadTooLarge
from segindex.service.settings import ServiceSettings


async def read_upload(upload: UploadFile, settings: ServiceSettings) -> bytes:
    """The upload's bytes; 413 over ``max_upload_bytes`` or ``max_upload_pixels`` (the pixel
    count is read from the header, before anything is decoded), 400 if it is no image."""
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise UploadTooLarge(f"upload over the limit of {settings.max_upload_bytes:,} bytes")
    check_pixels(data, settings.max_upload_pixels)
    return data


def check_pixels(data: bytes, max_pixels: int) -> None:
    if not data:
        raise ImageDecodeError("cannot decode the uploaded image: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except Image.DecompressionBombError as e:
        raise UploadTooLarge(f"image has too many pixels: {e}") from None
    except Exception as e:  # noqa: BLE001 - PIL raises many types for data that is no image
        raise ImageDecodeError(f"cannot decode the uploaded image: {e}") from None
    if width * height > max_pixels:
        raise UploadTooLarge(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,}"
        )
