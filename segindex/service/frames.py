"""The picture a region was found in: its image file, or the sampled video frame it belongs to
(decoded from the video at the frame's stored time, turned upright like at ingest)."""

from __future__ import annotations

import numpy as np

from segindex.images import load_image
from segindex.index import Index
from segindex.search import Hit


def region_pixels(index: Index, hit: Hit) -> np.ndarray:
    """``HxWx3`` uint8 RGB of the image or video frame of ``hit`` (a region of any kind; a track
    row stands for its most typical frame). Raises ``NotFoundError`` / ``ImageDecodeError``."""
    from segindex.search import read_frames

    path = index.image_file(hit.image_id)
    if hit.time_s is None:
        return load_image(path)
    row = index.store.image_row(hit.image_id)
    rotation = int(row.rotation or 0) if row is not None else 0
    return read_frames(path, [hit.time_s], rotation=rotation)[0]
