"""The app factory: routes, error translation (library errors -> HTTP at this edge only),
upload limits, optional CORS, and the offline web page."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from segindex.errors import (
    ConfigError,
    ImageDecodeError,
    ModelLoadError,
    NotFoundError,
    QueryError,
    SegindexError,
)
from segindex.index import Index
from segindex.service.errors import UploadTooLarge, error
from segindex.service.settings import ServiceSettings
from segindex.service.warmup import Readiness, warm_up

log = logging.getLogger("segindex.service")
STATIC = files("segindex.service") / "static"
BODY_SLACK = 64 * 1024  # multipart headers and the JSON query field around an upload


def build_app(index: Index, settings: ServiceSettings) -> FastAPI:
    from segindex.service.routes_data import router as data_router
    from segindex.service.routes_scenes import router as scenes_router
    from segindex.service.routes_search import router as search_router
    from segindex.service.routes_video import router as video_router

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Runs before the server takes connections: /health answers only once encoders are ready.
        if settings.warm_up:
            from fastapi.concurrency import run_in_threadpool

            app.state.readiness = await run_in_threadpool(warm_up, index, raise_errors=False)
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="segindex",
        version="0.1.0",
        description=(
            "Object-level image and video search: find regions (masks) and video tracks by "
            "text, by image, by a region drawn on a new image, or by an indexed region or "
            "track; with filters inside the search."
        ),
    )
    app.state.index = index
    app.state.settings = settings
    app.state.readiness = Readiness(0.0)  # until the warm-up (if any) says otherwise
    app.include_router(scenes_router)
    app.include_router(search_router)
    app.include_router(data_router)
    app.include_router(video_router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error(400, "invalid Content-Length header")
            if int(length) > settings.max_upload_bytes + BODY_SLACK:
                return error(
                    413, f"request body over the limit of {settings.max_upload_bytes:,} bytes"
                )
        return await call_next(request)

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization"],
        )
    _add_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]  # FastAPI's documented way
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus ``SearchIn``, which ``POST /search`` parses itself (it takes JSON
    or multipart)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        from segindex.service.schemas import SearchIn

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        search = SearchIn.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(search.pop("$defs", {}))
        components["SearchIn"] = search
        app.openapi_schema = schema
    return app.openapi_schema


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error(exc.status_code, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if hasattr(exc, "errors") else []
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in errors
        ]
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors]
        return error(422, "invalid request: " + "; ".join(parts), details=details)

    @app.exception_handler(UploadTooLarge)
    async def too_large(_: Request, exc: UploadTooLarge) -> JSONResponse:
        return error(413, str(exc))

    @app.exception_handler(SegindexError)
    async def library_error(_: Request, exc: SegindexError) -> JSONResponse:
        if isinstance(exc, NotFoundError):
            return error(404, str(exc))
        if isinstance(exc, (QueryError, ConfigError, ImageDecodeError)):
            return error(400, str(exc))
        if isinstance(exc, ModelLoadError):
            return error(503, f"a model could not be loaded: {exc}")
        log.exception("library error")
        return error(500, f"{type(exc).__name__}: {exc}")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error(500, f"internal error ({type(exc).__name__}); see the server log")
