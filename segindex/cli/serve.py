"""``segindex serve``: the HTTP service and web page over one index."""

from __future__ import annotations

import os
from pathlib import Path

import click

from segindex.cli.common import device_option, friendly, index_option, runtime_option


@click.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="TCP port.")
@click.option(
    "--api-key",
    default=None,
    envvar="SEGINDEX_API_KEY",
    help="Key required by write endpoints (POST /images, DELETE); env SEGINDEX_API_KEY.",
)
@click.option(
    "--cors-origin",
    multiple=True,
    help="Allow cross-origin requests from this origin (repeatable); default: no CORS.",
)
@click.option(
    "--max-upload-mb", type=float, default=20.0, show_default=True, help="Upload size limit."
)
@click.option(
    "--max-upload-megapixels",
    type=float,
    default=40.0,
    show_default=True,
    help="Upload pixel limit (width x height / 1e6).",
)
@device_option
@runtime_option
@friendly
def serve(
    index_path: Path,
    host: str,
    port: int,
    api_key: str | None,
    cors_origin: tuple[str, ...],
    max_upload_mb: float,
    max_upload_megapixels: float,
    device: str,
    precision: str,
    runtime: str,
) -> None:
    """Serve INDEX over HTTP: the web page at /, the API (OpenAPI docs at /docs)."""
    import uvicorn

    from segindex.config import RuntimeOptions
    from segindex.index import Index
    from segindex.service import ServiceSettings, create_app
    from segindex.service.warmup import warm_up

    settings = ServiceSettings(
        api_key=api_key or None,
        max_upload_bytes=max(1, int(max_upload_mb * 1024 * 1024)),
        max_upload_pixels=max(1, int(max_upload_megapixels * 1e6)),
        cors_origins=cors_origin,
        warm_up=False,  # warmed below, before the app exists (a failure ends serve in one line)
    )
    with Index.open(
        index_path, runtime=RuntimeOptions(device=device, precision=precision, runtime=runtime)
    ) as index:
        _ = index.vectors  # load (or rebuild) the vector index before taking requests
        # the query encoders too: a missing model fails here, in one line; the first query is
        # as fast as the tenth
        ready = warm_up(index)
        how = [str((ready.runtime or {}).get("runtime", "")), "" if ready.torch else "no PyTorch"]
        note = ", ".join(h for h in how if h)
        click.echo(
            f"segindex: query encoders ready in {ready.seconds:.1f} s"
            + (f" ({note})" if note else ""),
            err=True,
        )
        app = create_app(index, settings)
        if host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
            click.echo(
                f"warning: listening on {host} with no --api-key: anyone who can reach it may "
                "add and delete images",
                err=True,
            )
        click.echo(f"segindex: serving {index_path} at http://{host}:{port}/", err=True)
        uvicorn.run(app, host=host, port=port, log_level=os.environ.get("SEGINDEX_LOG", "info"))


COMMANDS = [serve]
