"""The HTTP door: a FastAPI app over one :class:`~segindex.index.Index`.

    from segindex.service import ServiceSettings, create_app
    app = create_app(index, ServiceSettings(api_key="secret"))

FastAPI is imported when :func:`create_app` is called, not when this package is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segindex.service.settings import ServiceSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from segindex.index import Index

__all__ = ["ServiceSettings", "create_app"]


def create_app(index: Index, settings: ServiceSettings | None = None) -> FastAPI:
    """A FastAPI app serving ``index``; nothing is global, so one process may serve several."""
    from segindex.service.app import build_app

    return build_app(index, settings or ServiceSettings())
