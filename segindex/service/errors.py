"""The service's own error type and JSON error body, apart from the app so that routes and
upload readers can use them without importing the app (no import circle)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


class UploadTooLarge(Exception):
    """An upload over the byte or pixel limit (HTTP 413)."""


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    """``{"error": message, "status": status, ...}`` with that HTTP status."""
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status)
