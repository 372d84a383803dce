"""The service makes its query encoders ready before it takes requests (issue 22): the app's
startup builds the embedder and encodes a dummy text and image, so the first query does not pay
the model load; a model that cannot be loaded leaves the service up, ``/health`` degraded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from segindex.config import BackendSpec
from segindex.embed import EMBEDDERS
from segindex.errors import ModelLoadError
from segindex.service import ServiceSettings, create_app
from segindex.service.warmup import WARM_TEXT, warm_up
from segindex.testing.fakes import FakeEmbedder

CALLS: list[tuple[str, Any]] = []


class CountingEmbedder(FakeEmbedder):
    """The fake embedder, recording its builds and batches."""

    def __init__(self, **kw: Any) -> None:
        CALLS.append(("build", None))
        super().__init__(**kw)

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        CALLS.append(("texts", list(texts)))
        return super()._embed_texts(texts)

    def _embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        CALLS.append(("images", len(images)))
        return super()._embed_images(images)


class BrokenEmbedder(FakeEmbedder):
    def __init__(self, **kw: Any) -> None:
        raise ModelLoadError("could not load CLIP model 'x': not in the local cache")


@pytest.fixture
def counting_index(make_index, photos: Path):  # type: ignore[no-untyped-def]
    EMBEDDERS.register("counting", CountingEmbedder, replace=True)
    index = make_index(embedder="counting")
    index.ingest(photos)
    # reopen: a served index builds its embedder lazily, as `segindex serve` opens it
    from segindex import Index

    path = index.path
    index.close()
    reopened = Index.open(path)
    yield reopened
    reopened.close()


def test_encoders_are_warm_before_the_first_request(counting_index) -> None:  # type: ignore[no-untyped-def]
    CALLS.clear()
    app = create_app(counting_index)
    assert CALLS == []  # building the app loads nothing
    with TestClient(app) as client:
        assert ("build", None) in CALLS  # the startup built the embedder ...
        assert ("texts", [WARM_TEXT]) in CALLS and ("images", 1) in CALLS  # ... and used it
        before = len(CALLS)
        assert client.get("/health").json() == {"status": "ok", "images": 4}
        r = client.post("/search", json={"text": "red", "k": 3})
        assert r.status_code == 200
        assert ("build", None) not in CALLS[before:]  # the first query built nothing
    assert app.state.readiness.ready and app.state.readiness.seconds >= 0


def test_no_warm_up_when_switched_off(counting_index) -> None:  # type: ignore[no-untyped-def]
    CALLS.clear()
    with TestClient(create_app(counting_index, ServiceSettings(warm_up=False))) as client:
        assert CALLS == []
        assert client.post("/search", json={"text": "red", "k": 3}).status_code == 200
        assert CALLS[0] == ("build", None)


def test_a_model_that_cannot_load_leaves_health_degraded(make_index, photos: Path) -> None:  # type: ignore[no-untyped-def]
    from segindex import Index

    index = make_index()
    index.ingest(photos)
    path = index.path
    index.close()
    EMBEDDERS.register("broken", BrokenEmbedder, replace=True)
    # the stored settings name the fake embedder; serve it with one that cannot load
    with Index.open(path) as served:
        served.models.embedder_spec = BackendSpec("broken", {})
        served.models.identity = lambda: None
        with TestClient(create_app(served), raise_server_exceptions=False) as client:
            health = client.get("/health").json()
            assert health["status"] == "degraded" and "not in the local cache" in health["error"]
            r = client.post("/search", json={"text": "red"})
            assert r.status_code == 503  # as before: the query says why
            assert client.get("/regions/1").status_code == 200  # the rest still answers


def test_warm_up_raises_by_default(make_index, photos: Path) -> None:  # type: ignore[no-untyped-def]
    index = make_index()
    index.models.embedder_spec = BackendSpec("broken", {})
    index.models.loaded_embedder = None
    EMBEDDERS.register("broken", BrokenEmbedder, replace=True)
    with pytest.raises(ModelLoadError):
        warm_up(index)
    ready = warm_up(index, raise_errors=False)
    assert not ready.ready and "not in the local cache" in (ready.error or "")
