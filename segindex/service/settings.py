"""Typed settings of the HTTP service, passed to ``create_app``; there are no module globals."""

from __future__ import annotations

from dataclasses import dataclass

from segindex.errors import ConfigError


@dataclass(frozen=True)
class ServiceSettings:
    """How the service behaves.

    api_key:           required (``X-API-Key`` header or ``Authorization: Bearer``) by the write
                       endpoints (``POST /images``, ``DELETE /images/{id}``); ``None``: open
    max_upload_bytes:  larger uploads are refused with 413 (before decoding)
    max_upload_pixels: uploads with more pixels (width x height, read from the header) get 413
    max_k:             the largest ``k`` one search may ask for
    cors_origins:      origins allowed by CORS; empty (default) adds no CORS headers at all
    warm_up:           before taking requests, load the query encoders and encode one dummy
                       text and image (:func:`~segindex.service.warmup.warm_up`), so the first
                       query is as fast as the tenth; ``False``: load them on the first query
    """

    api_key: str | None = None
    max_upload_bytes: int = 20 * 1024 * 1024
    max_upload_pixels: int = 40_000_000
    max_k: int = 200
    cors_origins: tuple[str, ...] = ()
    warm_up: bool = True

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key must be a non-empty string or None")
        for name in ("max_upload_bytes", "max_upload_pixels", "max_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
