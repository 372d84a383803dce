"""The library's exceptions. Edges (CLI, HTTP) translate these; nothing else catches them."""

from __future__ import annotations


class SegindexError(Exception):
    """Base class of every error segindex raises on purpose."""


class ConfigError(SegindexError, ValueError):
    """A setting, argument or option has a value that cannot be used."""


class UnknownBackendError(ConfigError):
    """No segmenter or embedder is registered under the requested name."""


class ModelLoadError(SegindexError):
    """Model weights could not be found or loaded (offline, wrong name, bad file)."""


class ImageDecodeError(SegindexError):
    """An image file could not be read or decoded."""


class VideoDecodeError(ImageDecodeError):
    """A video file could not be opened or decoded (corrupt, truncated, no video stream)."""


class IndexNotFoundError(SegindexError):
    """No index exists at the given location."""


class IndexExistsError(SegindexError):
    """An index already exists where a new one was to be created."""


class IndexMismatchError(SegindexError):
    """The index was built with other settings than the ones requested (e.g. another embedder)."""


class QueryError(SegindexError, ValueError):
    """A search request is malformed (no query, bad k, unknown region id...).

    position: for a query text that does not parse, the 0-based character offset where it went
    wrong (shown in the message); ``None`` otherwise.
    """

    def __init__(self, message: str = "", position: int | None = None) -> None:
        self.position = position
        if position is not None:
            message = f"{message} (at character {position})"
        super().__init__(message)


class NotFoundError(QueryError, LookupError):
    """An image or region id that the index does not hold."""


class IndexLockedError(SegindexError):
    """Another process is writing to the index (ingest, delete, repair)."""
